// SPDX-License-Identifier: MIT
// Operations the C++ layer already does correctly (sleep, getaddrinfo, fs, threadpool work):
// each runs as a task spawned on the runtime, cancelled through a registration on the scope's
// token, and calls the program back exactly once from the end of that task.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <uvasync/io/dns.hpp>
#include <uvasync/io/fs.hpp>
#include <uvasync/io/work.hpp>
#include <uvasync/sleep.hpp>

#include "internal.hpp"

namespace uvasync::capi {

namespace {

/// One operation. The task is spawned unbound and registers on the scope's token itself (in
/// its first step), so that a scope cancelled before the task starts still reaches the body:
/// the first cancellation point then raises without starting the operation (SEMANTICS 4.1) and
/// the callback still comes.
struct task_op {
    struct cancel_self {
        task_op* op;

        void operator()() const noexcept { op->handle.cancel(); }
    };

    task_op(uvasync_req_t* r, c_scope* s, uvasync_cb c) noexcept
        : req(r)
        , scope(s)
        , cb(c) {}

    task_op(const task_op&) = delete;
    task_op& operator=(const task_op&) = delete;
    virtual ~task_op() = default;

    /// The operation; returns its value (bytes, fd, 0) or throws.
    virtual task<ssize_t> perform() = 0;

    /// Fills the request's outputs just before the callback.
    virtual void publish() noexcept {}

    uvasync_req_t* req;
    c_scope* scope;
    uvasync_cb cb;
    task_handle<> handle;
    std::optional<cancel_callback<cancel_self>> reg;
};

task<> drive(task_op* op) {
    op->reg.emplace(op->scope->source.token(), task_op::cancel_self{op});
    int status = 0;
    ssize_t value = 0;
    try {
        value = co_await op->perform();
    } catch (...) {
        status = status_of_current_exception(op->scope);
    }
    op->reg.reset();
    c_scope* scope = op->scope;
    c_runtime* rt = scope->rt;
    uvasync_req_t* req = op->req;
    req->result = status < 0 ? status : value;
    if (status == 0) {
        op->publish();
    }
    op->cb(req, status); // the request is the program's again from here
    delete op;
    scope->release();
    rt->finished();
}

/// Takes ownership of `op` and starts it; on failure frees it and returns the status.
int launch(task_op* raw, uvasync_req_type type) noexcept {
    std::unique_ptr<task_op> op(raw);
    c_scope* scope = op->scope;
    return guarded([&] {
        op->handle = scope->rt->rt.spawn(drive(op.get()));
        uvasync_req_t* req = op->req;
        req->type = type;
        req->scope = scope;
        req->result = 0;
        req->addrinfo = nullptr;
        req->internal_ = op.release();
        scope->add_ref();
        scope->rt->started();
        return 0;
    });
}

template <class Op, class... Args>
int start(uvasync_req_type type, uvasync_req_t* req, uvasync_scope_t* scope, uvasync_cb cb,
          Args&&... args) noexcept {
    if (const int rc = check_start(req, scope, reinterpret_cast<const void*>(cb)); rc != 0) {
        return rc;
    }
    Op* op = nullptr;
    if (const int rc = guarded([&] {
            op = new Op(req, scope_of(scope), cb, std::forward<Args>(args)...);
            return 0;
        });
        rc != 0) {
        return rc;
    }
    return launch(op, type);
}

struct sleep_op final : task_op {
    sleep_op(uvasync_req_t* r, c_scope* s, uvasync_cb c, int64_t milliseconds)
        : task_op(r, s, c)
        , ms(milliseconds) {}

    task<ssize_t> perform() override {
        co_await sleep(std::chrono::milliseconds(ms));
        co_return 0;
    }

    int64_t ms;
};

struct getaddrinfo_op final : task_op {
    getaddrinfo_op(uvasync_req_t* r, c_scope* s, uvasync_cb c, const char* node,
                   const char* service, const struct addrinfo* h)
        : task_op(r, s, c)
        , host(node != nullptr ? node : "")
        , serv(service != nullptr ? service : "") {
        hints.socktype = 0; // getaddrinfo's own default, not resolve()'s
        if (h != nullptr) {
            hints.family = h->ai_family;
            hints.socktype = h->ai_socktype;
            hints.protocol = h->ai_protocol;
            hints.flags = h->ai_flags;
        }
    }

    task<ssize_t> perform() override {
        result = co_await resolve(host, serv, hints);
        co_return 0;
    }

    void publish() noexcept override { req->addrinfo = result.get(); }

    std::string host;
    std::string serv;
    resolve_hints hints;
    address_list result;
};

/// An fs call on a descriptor the program owns: the C++ file object only borrows it.
struct borrowed_file {
    fs::file f;

    borrowed_file(uv_loop_t* loop, uv_file fd) noexcept
        : f(loop, fd) {}

    borrowed_file(const borrowed_file&) = delete;
    borrowed_file& operator=(const borrowed_file&) = delete;

    ~borrowed_file() { (void)f.release(); }
};

enum class fs_kind {
    open,
    close,
    read,
    write,
    stat,
    unlink,
    rename,
    mkdir,
    rmdir,
    scandir,
    read_file,
    write_file
};

struct fs_op final : task_op {
    fs_op(uvasync_req_t* r, c_scope* s, uvasync_cb c, fs_kind k)
        : task_op(r, s, c)
        , kind(k) {}

    task<ssize_t> perform() override {
        uv_loop_t* loop = scope->rt->loop;
        switch (kind) {
        case fs_kind::open: {
            fs::file f = co_await fs::open(path, flags, mode);
            co_return f.release();
        }
        case fs_kind::close: {
            fs::file f(loop, fd); // closed by the request (or at once if cancelled first)
            co_await f.close();
            co_return 0;
        }
        case fs_kind::read: {
            borrowed_file b(loop, fd);
            const std::size_t n = co_await b.f.read(std::span<char>(rbuf, len), offset);
            co_return static_cast<ssize_t>(n);
        }
        case fs_kind::write: {
            borrowed_file b(loop, fd);
            const std::size_t n = co_await b.f.write(std::span<const char>(wbuf, len), offset);
            co_return static_cast<ssize_t>(n);
        }
        case fs_kind::stat:
            statbuf = co_await fs::stat(path);
            co_return 0;
        case fs_kind::unlink:
            co_await fs::unlink(path);
            co_return 0;
        case fs_kind::rename:
            co_await fs::rename(path, path2);
            co_return 0;
        case fs_kind::mkdir:
            co_await fs::mkdir(path, mode);
            co_return 0;
        case fs_kind::rmdir:
            co_await fs::rmdir(path);
            co_return 0;
        case fs_kind::scandir:
            entries = co_await fs::scandir(path);
            co_return static_cast<ssize_t>(entries.size());
        case fs_kind::read_file: {
            task<std::string> t = fs::read_file(path); // named before the co_await (GCC 12)
            const std::string content = co_await std::move(t);
            if (content.size() > len) {
                throw_uv_error(UV_ENOBUFS, "uvasync_fs_read_file");
            }
            std::copy(content.begin(), content.end(), rbuf);
            co_return static_cast<ssize_t>(content.size());
        }
        case fs_kind::write_file: {
            task<void> t = fs::write_file(path, std::string_view(wbuf, len));
            co_await std::move(t);
            co_return static_cast<ssize_t>(len);
        }
        }
        co_return UV_EINVAL;
    }

    void publish() noexcept override {
        if (kind == fs_kind::stat) {
            req->statbuf = statbuf;
        }
    }

    fs_kind kind;
    std::string path;
    std::string path2;
    int flags = 0;
    int mode = 0;
    uv_file fd = -1;
    char* rbuf = nullptr;
    const char* wbuf = nullptr;
    std::size_t len = 0;
    int64_t offset = -1;
    uv_stat_t statbuf{};
    std::vector<fs::dir_entry> entries;
};

struct work_op final : task_op {
    struct run_work {
        uvasync_work_cb work;
        uvasync_req_t* req;

        void operator()() const { work(req); }
    };

    work_op(uvasync_req_t* r, c_scope* s, uvasync_cb c, uvasync_work_cb w)
        : task_op(r, s, c)
        , work(w) {}

    task<ssize_t> perform() override {
        run_work fn{work, req}; // named before the co_await (GCC 12)
        co_await to_thread(fn);
        co_return 0;
    }

    uvasync_work_cb work;
};

/// Builds an fs_op, lets `fill` set its arguments, and starts it.
template <class Fill>
int start_fs(uvasync_req_t* req, uvasync_scope_t* scope, uvasync_cb cb, fs_kind kind,
             Fill fill) noexcept {
    if (const int rc = check_start(req, scope, reinterpret_cast<const void*>(cb)); rc != 0) {
        return rc;
    }
    fs_op* op = nullptr;
    if (const int rc = guarded([&] {
            auto o = std::make_unique<fs_op>(req, scope_of(scope), cb, kind);
            fill(*o);
            op = o.release();
            return 0;
        });
        rc != 0) {
        return rc;
    }
    return launch(op, UVASYNC_REQ_FS);
}

} // namespace

} // namespace uvasync::capi

using namespace uvasync::capi;

extern "C" {

int uvasync_sleep(uvasync_req_t* req, uvasync_scope_t* scope, int64_t ms, uvasync_cb cb) {
    if (ms < 0) {
        return UV_EINVAL;
    }
    return start<sleep_op>(UVASYNC_REQ_SLEEP, req, scope, cb, ms);
}

int uvasync_getaddrinfo(uvasync_req_t* req, uvasync_scope_t* scope, const char* node,
                        const char* service, const struct addrinfo* hints, uvasync_cb cb) {
    if (node == nullptr && service == nullptr) {
        return UV_EINVAL;
    }
    return start<getaddrinfo_op>(UVASYNC_REQ_GETADDRINFO, req, scope, cb, node, service, hints);
}

int uvasync_queue_work(uvasync_req_t* req, uvasync_scope_t* scope, uvasync_work_cb work,
                       uvasync_cb cb) {
    if (work == nullptr) {
        return UV_EINVAL;
    }
    return start<work_op>(UVASYNC_REQ_WORK, req, scope, cb, work);
}

int uvasync_fs_open(uvasync_req_t* req, uvasync_scope_t* scope, const char* path, int flags,
                    int mode, uvasync_cb cb) {
    if (path == nullptr) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::open, [&](fs_op& o) {
        o.path = path;
        o.flags = flags;
        o.mode = mode;
    });
}

int uvasync_fs_close(uvasync_req_t* req, uvasync_scope_t* scope, uv_file file, uvasync_cb cb) {
    if (file < 0) {
        return UV_EBADF;
    }
    return start_fs(req, scope, cb, fs_kind::close, [&](fs_op& o) { o.fd = file; });
}

int uvasync_fs_read(uvasync_req_t* req, uvasync_scope_t* scope, uv_file file, char* buf, size_t len,
                    int64_t offset, uvasync_cb cb) {
    if (file < 0) {
        return UV_EBADF;
    }
    if (buf == nullptr && len != 0) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::read, [&](fs_op& o) {
        o.fd = file;
        o.rbuf = buf;
        o.len = len;
        o.offset = offset;
    });
}

int uvasync_fs_write(uvasync_req_t* req, uvasync_scope_t* scope, uv_file file, const char* buf,
                     size_t len, int64_t offset, uvasync_cb cb) {
    if (file < 0) {
        return UV_EBADF;
    }
    if (buf == nullptr && len != 0) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::write, [&](fs_op& o) {
        o.fd = file;
        o.wbuf = buf;
        o.len = len;
        o.offset = offset;
    });
}

int uvasync_fs_stat(uvasync_req_t* req, uvasync_scope_t* scope, const char* path, uvasync_cb cb) {
    if (path == nullptr) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::stat, [&](fs_op& o) { o.path = path; });
}

int uvasync_fs_unlink(uvasync_req_t* req, uvasync_scope_t* scope, const char* path, uvasync_cb cb) {
    if (path == nullptr) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::unlink, [&](fs_op& o) { o.path = path; });
}

int uvasync_fs_rename(uvasync_req_t* req, uvasync_scope_t* scope, const char* from, const char* to,
                      uvasync_cb cb) {
    if (from == nullptr || to == nullptr) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::rename, [&](fs_op& o) {
        o.path = from;
        o.path2 = to;
    });
}

int uvasync_fs_mkdir(uvasync_req_t* req, uvasync_scope_t* scope, const char* path, int mode,
                     uvasync_cb cb) {
    if (path == nullptr) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::mkdir, [&](fs_op& o) {
        o.path = path;
        o.mode = mode;
    });
}

int uvasync_fs_rmdir(uvasync_req_t* req, uvasync_scope_t* scope, const char* path, uvasync_cb cb) {
    if (path == nullptr) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::rmdir, [&](fs_op& o) { o.path = path; });
}

int uvasync_fs_scandir(uvasync_req_t* req, uvasync_scope_t* scope, const char* path,
                       uvasync_cb cb) {
    if (path == nullptr) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::scandir, [&](fs_op& o) { o.path = path; });
}

int uvasync_fs_read_file(uvasync_req_t* req, uvasync_scope_t* scope, const char* path, char* buf,
                         size_t len, uvasync_cb cb) {
    if (path == nullptr || (buf == nullptr && len != 0)) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::read_file, [&](fs_op& o) {
        o.path = path;
        o.rbuf = buf;
        o.len = len;
    });
}

int uvasync_fs_write_file(uvasync_req_t* req, uvasync_scope_t* scope, const char* path,
                          const char* data, size_t len, uvasync_cb cb) {
    if (path == nullptr || (data == nullptr && len != 0)) {
        return UV_EINVAL;
    }
    return start_fs(req, scope, cb, fs_kind::write_file, [&](fs_op& o) {
        o.path = path;
        o.wbuf = data;
        o.len = len;
    });
}

const char* uvasync_fs_scandir_entry(const uvasync_req_t* req, size_t index,
                                     uv_dirent_type_t* type) {
    if (req == nullptr || req->type != UVASYNC_REQ_FS || req->internal_ == nullptr) {
        return nullptr;
    }
    // Valid during the callback only: the operation is freed right after it.
    auto* op = dynamic_cast<const fs_op*>(static_cast<const task_op*>(req->internal_));
    if (op == nullptr || op->kind != fs_kind::scandir || index >= op->entries.size()) {
        return nullptr;
    }
    if (type != nullptr) {
        *type = op->entries[index].type;
    }
    return op->entries[index].name.c_str();
}

} // extern "C"
