// SPDX-License-Identifier: MIT
// The objects behind the C API's opaque types: the runtime (a borrowed-loop uvasync::runtime, a
// root cancel source and a queue of deferred callbacks), scopes (cancel sources linked in a
// tree, with a deadline watched by a task) and the accounting that lets the runtime close only
// after the last callback. Loop thread only unless a member says otherwise.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <unordered_map>

#include <uvasync.h>
#include <uvasync/cancel.hpp>
#include <uvasync/error.hpp>
#include <uvasync/io/error.hpp>
#include <uvasync/runtime.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_handle.hpp>

namespace uvasync::capi {

struct c_runtime;
struct c_scope;
struct stream_state;

/// Something called back later from the runtime's idle handle (never inline in the call or
/// the cancellation that caused it).
struct deferred {
    deferred* next_deferred = nullptr;
    virtual void run() noexcept = 0;

protected:
    ~deferred() = default;
};

/// Why a scope is cancelled by itself (rather than through a parent).
enum class cause : int { none = 0, cancelled = 1, expired = 2, closed = 3 };

struct c_runtime : uvasync_runtime_s {
    c_runtime(uv_loop_t* loop, bool virtual_clock);
    c_runtime(const c_runtime&) = delete;
    c_runtime& operator=(const c_runtime&) = delete;
    ~c_runtime();

    uv_loop_t* loop;
    uvasync::runtime rt;
    cancel_source root;
    uv_idle_t idle{}; // runs deferred callbacks; also the close sequence's last handle
    deferred* first = nullptr;
    deferred* last = nullptr;
    std::size_t pending = 0; // operations and deferred calls that will still call back
    std::size_t refs = 1;    // the program's, plus one per scope
    bool closing = false;
    bool handles_closing = false;
    uvasync_close_cb close_cb = nullptr;

    void defer(deferred* d) noexcept;

    void started() noexcept { ++pending; }

    void finished() noexcept;
    void maybe_close() noexcept;
    void release() noexcept;
    void on_idle() noexcept;
};

/// A scope's deadline: watched by a task that sleeps until it and expires the scope. The task
/// holds the slot; the scope clears `owner` when it moves or drops the deadline.
struct deadline_slot {
    c_scope* owner = nullptr;
};

struct cancel_note;

struct c_scope : uvasync_scope_s {
    c_scope(c_runtime* rt, c_scope* parent);
    ~c_scope();

    c_runtime* rt;
    c_scope* parent;
    cancel_source source;
    std::atomic<int> own_cause{0};
    std::string reason;
    std::atomic<bool> reason_set{false};
    bool expired = false;
    bool user_released = false;
    std::size_t refs = 1; // the program's, plus children and pending operations
    uint64_t when = UVASYNC_NEVER;
    std::shared_ptr<deadline_slot> slot;
    task_handle<> watcher;
    cancel_note* notes = nullptr;

    /// The status an operation under this scope gets now (0 if not cancelled): decided by the
    /// outermost cancelled scope (SEMANTICS D-3).
    [[nodiscard]] int status() const noexcept;
    bool cancel(cause why, const char* why_text) noexcept;
    int set_deadline(uint64_t abs) noexcept;

    void add_ref() noexcept { ++refs; }

    void release() noexcept;
};

/// Drops the buffered data of the runtime's streams (the program closed them itself).
void forget_streams(c_runtime* rt) noexcept;

/// Every start function: a checked scope, the request initialised, no exception escapes.
int check_start(uvasync_req_t* req, uvasync_scope_t* scope, const void* cb) noexcept;

inline c_scope* scope_of(uvasync_scope_t* s) noexcept {
    return static_cast<c_scope*>(s);
}

/// The C status of the exception being handled (inside a catch block).
int status_of_current_exception(c_scope* scope) noexcept;

/// Runs `f` and turns any exception into a status; for entry points.
template <class F>
int guarded(F&& f) noexcept {
    try {
        return f();
    } catch (const std::bad_alloc&) {
        return UV_ENOMEM;
    } catch (const std::system_error& e) {
        return e.code().category() == uv_category() ? e.code().value() : UV_EIO;
    } catch (const std::invalid_argument&) {
        return UV_EINVAL;
    } catch (...) {
        return UV_EIO;
    }
}

} // namespace uvasync::capi
