/* SPDX-License-Identifier: MIT */
/*
 * uvasync for C: cancellation scopes with deadlines on the loop clock, and libuv operations
 * bound to a scope, each calling back exactly once. docs/c-api.md is the manual.
 *
 * Conventions (libuv's):
 *  - every function that can fail returns 0 or a negative UV_E* code; UV_EINVAL for a NULL or
 *    out-of-range argument. When a start function fails, its callback is never called.
 *  - every object has a `data` pointer the library never touches.
 *  - every operation callback is called exactly once, on the loop thread, never from inside
 *    the call that started it, with: 0 or the operation's result; UV_ECANCELED when the scope
 *    that owns the cancellation was cancelled; UV_ETIMEDOUT when that scope's own deadline
 *    expired; UVASYNC_ECLOSED when the runtime is being closed. The owner is the outermost
 *    cancelled scope around the operation (SEMANTICS D-3).
 *  - memory passed in (requests, buffers, paths are copied) stays the caller's only after the
 *    callback has been called. An operation that completed before its cancellation was
 *    processed reports its real result (completion wins, SEMANTICS D-2).
 *  - loop thread only, except uvasync_scope_cancel_threadsafe and
 *    uvasync_scope_cancel_requested.
 */
#ifndef UVASYNC_H
#define UVASYNC_H

#include <uv.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(UVASYNC_BUILDING)
#define UVASYNC_EXPORT __declspec(dllexport)
#elif defined(_WIN32)
#define UVASYNC_EXPORT __declspec(dllimport)
#elif defined(__GNUC__)
#define UVASYNC_EXPORT __attribute__((visibility("default")))
#else
#define UVASYNC_EXPORT
#endif

/* The status of operations ended because their runtime is being closed. It lies outside
 * libuv's error range (every UV_E* is above UV_ERRNO_MAX), so it never equals a libuv code. */
#define UVASYNC_ECLOSED (-5001)

/* A deadline that never comes: no timer, nothing that keeps the loop alive. */
#define UVASYNC_NEVER UINT64_MAX

typedef struct uvasync_runtime_s uvasync_runtime_t;
typedef struct uvasync_scope_s uvasync_scope_t;
typedef struct uvasync_req_s uvasync_req_t;

/* The public part of library-allocated objects. */
struct uvasync_runtime_s {
    void* data;
};

struct uvasync_scope_s {
    void* data;
};

typedef enum {
    UVASYNC_REQ_UNKNOWN = 0,
    UVASYNC_REQ_SLEEP,
    UVASYNC_REQ_READ,
    UVASYNC_REQ_WRITE,
    UVASYNC_REQ_CONNECT,
    UVASYNC_REQ_ACCEPT,
    UVASYNC_REQ_SHUTDOWN,
    UVASYNC_REQ_GETADDRINFO,
    UVASYNC_REQ_FS,
    UVASYNC_REQ_WORK
} uvasync_req_type;

/* A request, allocated by the program (like uv_fs_t). Set `data` as you like; the library
 * fills the other public fields before the callback. */
struct uvasync_req_s {
    void* data;
    uvasync_req_type type;
    uvasync_scope_t* scope;
    /* The callback's status, or for a success the operation's value: bytes read or written,
     * the file descriptor of uvasync_fs_open, 0 otherwise. */
    ssize_t result;
    /* getaddrinfo: the answer, valid until the callback returns (copy what you keep). */
    const struct addrinfo* addrinfo;
    /* uvasync_fs_stat: the metadata. */
    uv_stat_t statbuf;
    /* Private. */
    void* internal_;
};

typedef void (*uvasync_cb)(uvasync_req_t* req, int status);
typedef void (*uvasync_work_cb)(uvasync_req_t* req);
typedef void (*uvasync_close_cb)(uvasync_runtime_t* rt);
typedef void (*uvasync_cancel_cb)(uvasync_scope_t* scope, int status, void* arg);

/* Errors: libuv's names and messages, plus UVASYNC_ECLOSED. */
UVASYNC_EXPORT const char* uvasync_strerror(int err);
UVASYNC_EXPORT const char* uvasync_err_name(int err);

/* Runtime ---------------------------------------------------------------------------------- */

/* Creates a runtime on the program's loop. It never runs the loop, and keeps it alive only
 * while one of its operations is pending. */
UVASYNC_EXPORT int uvasync_runtime_init(uv_loop_t* loop, uvasync_runtime_t** out);

/* The same with a virtual clock for tests (SEMANTICS 18): every deadline and uvasync_sleep is
 * on it, and whenever every operation is waiting for one, the clock jumps to the next deadline
 * instead of waiting in real time, so a program of 5 s sleeps runs in milliseconds with exact
 * loop-clock times (uvasync_now). Real I/O, threadpool work and the program's own uv_timer_t
 * keep real time. */
UVASYNC_EXPORT int uvasync_runtime_init_virtual(uv_loop_t* loop, uvasync_runtime_t** out);

/* Cancels every scope (operations and on-cancel callbacks call back with UVASYNC_ECLOSED),
 * then calls `cb` (may be NULL) once the last of them has called back and the runtime's
 * handles are closed: once uv_run returns, uv_loop_close() returns 0. Callable from inside any
 * callback. The runtime is freed after `cb` once no scope refers to it (free your scopes, before
 * or after). From this call on, starting anything returns UVASYNC_ECLOSED; a second close returns
 * UV_EALREADY. */
UVASYNC_EXPORT int uvasync_runtime_close(uvasync_runtime_t* rt, uvasync_close_cb cb);

UVASYNC_EXPORT uv_loop_t* uvasync_runtime_loop(const uvasync_runtime_t* rt);

/* While on (calls nest), the runtime's cross-thread wake-up keeps the loop alive, so uv_run
 * waits for uvasync_scope_cancel_threadsafe from other threads even when nothing else is
 * active. Off by default: a cancel from another thread is processed the next time the loop
 * runs. */
UVASYNC_EXPORT void uvasync_runtime_keep_alive(uvasync_runtime_t* rt, int on);

/* The loop clock in milliseconds: uv_now after uv_update_time (SEMANTICS 13.2), so two calls
 * may differ; deadlines are on this clock. Virtual runtimes return the virtual time. */
UVASYNC_EXPORT uint64_t uvasync_now(const uvasync_runtime_t* rt);

/* Scopes ----------------------------------------------------------------------------------- */

/* A new scope, under `parent` (NULL: directly under the runtime). Cancelling a scope cancels
 * every scope and operation under it. A scope under a cancelled parent is born cancelled. */
UVASYNC_EXPORT int uvasync_scope_new(uvasync_runtime_t* rt, uvasync_scope_t* parent,
                                     uvasync_scope_t** out);

/* Drops the program's reference. Does not cancel: operations and child scopes under it go on,
 * and its deadline still applies to them. Pending on-cancel callbacks are dropped. */
UVASYNC_EXPORT void uvasync_scope_free(uvasync_scope_t* scope);

/* Sets or moves the deadline to now + ms (ms >= 0; 0 expires the scope at once). */
UVASYNC_EXPORT int uvasync_scope_set_timeout(uvasync_scope_t* scope, int64_t ms);

/* Sets or moves the deadline to `when` on the loop clock; a past value expires the scope at
 * once, UVASYNC_NEVER removes the deadline. UV_EALREADY once the scope is cancelled. */
UVASYNC_EXPORT int uvasync_scope_set_deadline(uvasync_scope_t* scope, uint64_t when);

/* The same as uvasync_scope_set_deadline (trio's and asyncio's name for moving a deadline). */
UVASYNC_EXPORT int uvasync_scope_reschedule(uvasync_scope_t* scope, uint64_t when);

/* The scope's own deadline, or UVASYNC_NEVER. */
UVASYNC_EXPORT uint64_t uvasync_scope_deadline(const uvasync_scope_t* scope);

/* Cancels the scope on the loop thread; the first reason wins. Returns 0, or UV_EALREADY if
 * it was already cancelled. Callbacks are never called from inside this call. */
UVASYNC_EXPORT int uvasync_scope_cancel(uvasync_scope_t* scope, const char* reason);

/* The same from any thread: the flag is set at once, the cancellation reaches the operations
 * on the loop thread soon after. The scope must stay alive until this returns. */
UVASYNC_EXPORT int uvasync_scope_cancel_threadsafe(uvasync_scope_t* scope, const char* reason);

/* Any thread: 1 once a cancellation was requested here or reached here from a parent. */
UVASYNC_EXPORT int uvasync_scope_cancel_requested(const uvasync_scope_t* scope);

/* Calls cb(scope, status, arg) once, on the loop thread, after the scope is cancelled (in a
 * later callback if it already is). Dropped by uvasync_scope_free. */
UVASYNC_EXPORT int uvasync_scope_on_cancel(uvasync_scope_t* scope, uvasync_cancel_cb cb, void* arg);

/* 0 while not cancelled; otherwise the status an operation under it gets now: UV_ECANCELED,
 * UV_ETIMEDOUT or UVASYNC_ECLOSED (decided by the outermost cancelled scope). */
UVASYNC_EXPORT int uvasync_scope_status(const uvasync_scope_t* scope);

/* 1 if this scope's own deadline passed (an inherited cancellation does not count). */
UVASYNC_EXPORT int uvasync_scope_expired(const uvasync_scope_t* scope);

/* The first cancellation reason given to this scope or an ancestor that cancelled it, or "". */
UVASYNC_EXPORT const char* uvasync_scope_reason(const uvasync_scope_t* scope);

/* Operations ------------------------------------------------------------------------------- */

/* Calls back after `ms` milliseconds (ms >= 0; 0 lets the loop poll once first). */
UVASYNC_EXPORT int uvasync_sleep(uvasync_req_t* req, uvasync_scope_t* scope, int64_t ms,
                                 uvasync_cb cb);

/* uv_getaddrinfo; `node` or `service` may be NULL (not both). req->addrinfo is valid during
 * the callback. Resolver failures are UV_EAI_*. */
UVASYNC_EXPORT int uvasync_getaddrinfo(uvasync_req_t* req, uvasync_scope_t* scope, const char* node,
                                       const char* service, const struct addrinfo* hints,
                                       uvasync_cb cb);

/* Runs work(req) on the threadpool, then calls cb on the loop thread. Queued work is taken back
 * on cancellation; running work is waited for (it may poll uvasync_scope_cancel_requested). */
UVASYNC_EXPORT int uvasync_queue_work(uvasync_req_t* req, uvasync_scope_t* scope,
                                      uvasync_work_cb work, uvasync_cb cb);

/* Files (uv_fs_*, on the threadpool). Paths are copied. On success req->result is the fd
 * (open), bytes (read, write) or 0. */
UVASYNC_EXPORT int uvasync_fs_open(uvasync_req_t* req, uvasync_scope_t* scope, const char* path,
                                   int flags, int mode, uvasync_cb cb);
UVASYNC_EXPORT int uvasync_fs_close(uvasync_req_t* req, uvasync_scope_t* scope, uv_file file,
                                    uvasync_cb cb);
UVASYNC_EXPORT int uvasync_fs_read(uvasync_req_t* req, uvasync_scope_t* scope, uv_file file,
                                   char* buf, size_t len, int64_t offset, uvasync_cb cb);
UVASYNC_EXPORT int uvasync_fs_write(uvasync_req_t* req, uvasync_scope_t* scope, uv_file file,
                                    const char* buf, size_t len, int64_t offset, uvasync_cb cb);
UVASYNC_EXPORT int uvasync_fs_stat(uvasync_req_t* req, uvasync_scope_t* scope, const char* path,
                                   uvasync_cb cb);
UVASYNC_EXPORT int uvasync_fs_unlink(uvasync_req_t* req, uvasync_scope_t* scope, const char* path,
                                     uvasync_cb cb);
UVASYNC_EXPORT int uvasync_fs_rename(uvasync_req_t* req, uvasync_scope_t* scope, const char* from,
                                     const char* to, uvasync_cb cb);
UVASYNC_EXPORT int uvasync_fs_mkdir(uvasync_req_t* req, uvasync_scope_t* scope, const char* path,
                                    int mode, uvasync_cb cb);
UVASYNC_EXPORT int uvasync_fs_rmdir(uvasync_req_t* req, uvasync_scope_t* scope, const char* path,
                                    uvasync_cb cb);
/* Reads the whole file `path` into buf (req->result = its size; UV_ENOBUFS if it is larger than
 * len, and then buf is not written): open, read and close, each a cancellation point. */
UVASYNC_EXPORT int uvasync_fs_read_file(uvasync_req_t* req, uvasync_scope_t* scope,
                                        const char* path, char* buf, size_t len, uvasync_cb cb);
/* Creates or truncates `path` (mode 0644) and writes data (req->result = len). */
UVASYNC_EXPORT int uvasync_fs_write_file(uvasync_req_t* req, uvasync_scope_t* scope,
                                         const char* path, const char* data, size_t len,
                                         uvasync_cb cb);
/* Lists the directory `path` without "." and "..": on success req->result is the number of
 * entries, read them with uvasync_fs_scandir_entry during the callback. */
UVASYNC_EXPORT int uvasync_fs_scandir(uvasync_req_t* req, uvasync_scope_t* scope, const char* path,
                                      uvasync_cb cb);
/* In the callback of a successful uvasync_fs_scandir: the name of entry `index` (valid until
 * the callback returns) and, if `type` is not NULL, its type; NULL for an index out of range
 * or another request. */
UVASYNC_EXPORT const char* uvasync_fs_scandir_entry(const uvasync_req_t* req, size_t index,
                                                    uv_dirent_type_t* type);

/* Streams: the program's own uv_stream_t / uv_tcp_t. One read at a time per stream.
 * Data read past what a read asked for stays buffered for the next read; a cancelled read
 * stops reading and keeps everything it had received. A cancelled write, connect or shutdown
 * closes the stream (uv_close) and calls back after the close callback; later operations on
 * it return UV_EBADF and the program must not uv_close it again. Close a stream the library
 * has read from with uvasync_stream_close (it drops the buffered data). */

/* At least 1 byte, at most len. UV_EOF at end of stream. */
UVASYNC_EXPORT int uvasync_read_some(uvasync_req_t* req, uvasync_scope_t* scope,
                                     uv_stream_t* stream, char* buf, size_t len, uvasync_cb cb);
/* Exactly len bytes (UV_EOF if the stream ends first; the partial data stays buffered). */
UVASYNC_EXPORT int uvasync_read_exactly(uvasync_req_t* req, uvasync_scope_t* scope,
                                        uv_stream_t* stream, char* buf, size_t len, uvasync_cb cb);
/* Up to and including `delim`; UV_ENOBUFS if len bytes arrive without it (they stay
 * buffered). */
UVASYNC_EXPORT int uvasync_read_until(uvasync_req_t* req, uvasync_scope_t* scope,
                                      uv_stream_t* stream, char* buf, size_t len, char delim,
                                      uvasync_cb cb);
/* Writes every buffer (the bytes must stay valid until the callback). */
UVASYNC_EXPORT int uvasync_write(uvasync_req_t* req, uvasync_scope_t* scope, uv_stream_t* stream,
                                 const uv_buf_t bufs[], unsigned int nbufs, uvasync_cb cb);
UVASYNC_EXPORT int uvasync_tcp_connect(uvasync_req_t* req, uvasync_scope_t* scope, uv_tcp_t* tcp,
                                       const struct sockaddr* addr, uvasync_cb cb);
UVASYNC_EXPORT int uvasync_shutdown(uvasync_req_t* req, uvasync_scope_t* scope, uv_stream_t* stream,
                                    uvasync_cb cb);
/* Starts listening (uv_listen) with the library's connection callback; then use
 * uvasync_accept. A connection that arrives while nobody accepts stays queued. */
UVASYNC_EXPORT int uvasync_listen(uvasync_runtime_t* rt, uv_stream_t* server, int backlog);
/* Accepts the next connection into `client` (initialised by the program, e.g. uv_tcp_init).
 * A cancelled accept leaves the connection queued for the next one. */
UVASYNC_EXPORT int uvasync_accept(uvasync_req_t* req, uvasync_scope_t* scope, uv_stream_t* server,
                                  uv_stream_t* client, uvasync_cb cb);
/* uv_close for a stream used with the library (also a listening one); drops its buffered data.
 * Operations still pending on it call back with UV_ECANCELED. */
UVASYNC_EXPORT int uvasync_stream_close(uvasync_runtime_t* rt, uv_stream_t* stream,
                                        uv_close_cb close_cb);

#ifdef __cplusplus
}
#endif

#endif /* UVASYNC_H */
