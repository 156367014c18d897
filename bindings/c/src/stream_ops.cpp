// SPDX-License-Identifier: MIT
// Operations on the program's own streams. The C++ stream classes own their handles, so these
// follow the same cancellation protocol here (SEMANTICS 4.1, 14.2, 14.3, 14.5):
//  - scope cancelled before the start: nothing is started, the callback comes later;
//  - a read is aborted with uv_read_stop; everything received stays buffered for the next read;
//  - an accept is aborted by leaving the queue; a waiting connection stays queued;
//  - a write, connect or shutdown cannot be taken back: the abort closes the stream, libuv
//    completes the request with UV_ECANCELED, and the callback comes after the close callback;
//  - whatever completed first is delivered (completion wins, D-2).
// Every callback of an operation on a closing stream comes from the library's close callback,
// after libuv has finished with the handle, so the program may free it from there.
#include <algorithm>
#include <string>
#include <vector>

#include <uvasync/detail/intrusive_list.hpp>

#include "internal.hpp"

namespace uvasync::capi {

struct stream_op;

struct acceptor_tag {};

struct stream_state {
    c_runtime* rt = nullptr;
    uv_stream_t* stream = nullptr;
    std::string buffer; // received and not yet consumed
    std::vector<char> scratch;
    bool reading = false;
    bool eof = false;
    int read_error = 0;
    bool closing = false; // uv_close was called through the library
    uv_close_cb user_close_cb = nullptr;
    int queued_connections = 0;
    int listen_error = 0;
    stream_op* reader = nullptr;
    // Accepts waiting for a connection, FIFO; an aborted one leaves in O(1).
    uvasync::detail::intrusive_list<stream_op, acceptor_tag> acceptors;
    std::vector<stream_op*> after_close; // called back from the close callback

    void close(uv_close_cb user_cb) noexcept;

    void stop_reading() noexcept {
        if (reading) {
            uv_read_stop(stream);
            reading = false;
        }
    }
};

enum class op_kind { read_some, read_exactly, read_until, write, connect, shutdown, accept };

struct stream_op final : deferred, uvasync::detail::list_hook<acceptor_tag> {
    struct abort_fn {
        stream_op* op;

        void operator()() const noexcept { op->abort(); }
    };

    stream_op(uvasync_req_t* r, c_scope* s, uvasync_cb c, stream_state* st, op_kind k) noexcept
        : req(r)
        , scope(s)
        , cb(c)
        , state(st)
        , kind(k) {}

    [[nodiscard]] bool is_read() const noexcept {
        return kind == op_kind::read_some || kind == op_kind::read_exactly ||
               kind == op_kind::read_until;
    }

    void abort() noexcept;

    /// Unregisters and calls back now (from a libuv callback or a deferred run).
    void complete(int st, ssize_t value) noexcept {
        reg.reset();
        c_scope* s = scope;
        c_runtime* rt = s->rt;
        req->result = st < 0 ? st : value;
        uvasync_cb c = cb;
        uvasync_req_t* r = req;
        delete this;
        c(r, st); // the request is the program's again from here
        s->release();
        rt->finished();
    }

    /// Calls back from the runtime's idle handle (never inline in a call or a cancellation).
    void finish_later(int st, ssize_t value = 0) noexcept {
        reg.reset();
        status = st;
        result = value;
        scope->rt->defer(this);
    }

    void run() noexcept override;

    uvasync_req_t* req;
    c_scope* scope;
    uvasync_cb cb;
    stream_state* state;
    op_kind kind;
    char* buf = nullptr;
    size_t len = 0;
    char delim = 0;
    uv_stream_t* client = nullptr;
    int status = 0;
    int uv_status = 0;
    bool uv_done = false;
    ssize_t result = 0;
    bool aborted = false;
    bool kick = false; // a read queued to be served from the buffer

    union {
        uv_req_t any;
        uv_write_t write;
        uv_connect_t connect;
        uv_shutdown_t shutdown;
    } uvreq{};

    std::optional<cancel_callback<abort_fn>> reg;
};

namespace {

/// Stream states of the calling (loop) thread, by handle: libuv's read, alloc, connection and
/// close callbacks get only the handle, and its `data` is the program's.
std::unordered_map<const void*, std::unique_ptr<stream_state>>& registry() {
    thread_local std::unordered_map<const void*, std::unique_ptr<stream_state>> map;
    return map;
}

stream_state* find_state(const void* h) noexcept {
    auto& map = registry();
    auto it = map.find(h);
    return it == map.end() ? nullptr : it->second.get();
}

stream_state* state_for(c_runtime* rt, uv_stream_t* stream) {
    if (stream_state* st = find_state(stream)) {
        return st;
    }
    auto st = std::make_unique<stream_state>();
    st->rt = rt;
    st->stream = stream;
    stream_state* raw = st.get();
    registry().emplace(stream, std::move(st));
    return raw;
}

void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* out) {
    stream_state* st = find_state(h);
    try {
        st->scratch.resize(std::max<size_t>(suggested, 4096));
        *out = uv_buf_init(st->scratch.data(), static_cast<unsigned int>(st->scratch.size()));
    } catch (...) {
        *out = uv_buf_init(nullptr, 0); // libuv reports UV_ENOBUFS to the read callback
    }
}

/// What the reader would get from the buffer now: false if it must wait for more data.
bool evaluate(const stream_state* st, const stream_op* op, size_t* take, int* status) noexcept {
    *take = 0;
    *status = 0;
    switch (op->kind) {
    case op_kind::read_some:
        *take = std::min(op->len, st->buffer.size());
        break;
    case op_kind::read_exactly:
        *take = st->buffer.size() >= op->len ? op->len : 0;
        break;
    default: { // read_until
        const size_t window = std::min(op->len, st->buffer.size());
        const size_t pos = st->buffer.find(op->delim);
        if (pos != std::string::npos && pos < window) {
            *take = pos + 1;
        } else if (st->buffer.size() >= op->len) {
            *status = UV_ENOBUFS; // the data stays buffered
        }
        break;
    }
    }
    if (*take == 0 && *status == 0) {
        if (st->read_error != 0) {
            *status = st->read_error;
        } else if (st->eof) {
            *status = UV_EOF;
        } else {
            return false;
        }
    }
    return true;
}

/// Serves the reader from the buffer if it can; true when it called back.
bool try_satisfy(stream_state* st) noexcept {
    stream_op* op = st->reader;
    size_t take = 0;
    int status = 0;
    if (op == nullptr || !evaluate(st, op, &take, &status)) {
        return false;
    }
    if (take > 0) {
        std::copy_n(st->buffer.data(), take, op->buf);
        st->buffer.erase(0, take);
    }
    st->reader = nullptr;
    st->stop_reading(); // nobody reads now: the peer waits (back-pressure)
    op->complete(status, static_cast<ssize_t>(take));
    return true;
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    stream_state* st = find_state(stream);
    if (st == nullptr) {
        return;
    }
    if (nread > 0) {
        try {
            st->buffer.append(buf->base, static_cast<size_t>(nread));
        } catch (...) {
            st->read_error = UV_ENOMEM;
        }
    } else if (nread == UV_EOF) {
        st->eof = true;
    } else if (nread < 0) {
        st->read_error = static_cast<int>(nread);
    }
    if (nread < 0) {
        st->stop_reading();
    }
    try_satisfy(st);
}

int start_reading(stream_state* st) noexcept {
    if (st->reading) {
        return 0;
    }
    const int rc = uv_read_start(st->stream, &on_alloc, &on_read);
    if (rc < 0 && rc != UV_EALREADY) {
        return rc;
    }
    st->reading = true;
    return 0;
}

void on_closed(uv_handle_t* h) {
    auto& map = registry();
    auto it = map.find(h);
    if (it == map.end()) {
        return;
    }
    std::unique_ptr<stream_state> st = std::move(it->second);
    map.erase(it);
    // libuv is done with the handle: every operation calls back now, then the program's own
    // close callback (libuv's order).
    if (stream_op* r = std::exchange(st->reader, nullptr)) {
        r->status = UV_ECANCELED;
        st->after_close.push_back(r);
    }
    while (stream_op* a = st->acceptors.pop_front()) {
        a->status = UV_ECANCELED;
        st->after_close.push_back(a);
    }
    for (stream_op* op : st->after_close) {
        if (op->uv_done && (op->uv_status == 0 || !op->aborted)) {
            // Completed before the close took it back (D-2), or the program closed it.
            op->complete(op->uv_status, op->uv_status == 0 ? op->result : 0);
        } else {
            op->complete(op->status != 0 ? op->status : UV_ECANCELED, 0);
        }
    }
    if (st->user_close_cb != nullptr) {
        st->user_close_cb(h);
    }
}

void serve_acceptors(stream_state* st) noexcept {
    while (!st->acceptors.empty() && (st->queued_connections > 0 || st->listen_error != 0)) {
        stream_op* op = st->acceptors.pop_front();
        int rc = st->listen_error;
        if (rc == 0) {
            --st->queued_connections;
            rc = uv_accept(st->stream, op->client);
        }
        op->complete(rc, 0);
    }
}

void on_connection(uv_stream_t* server, int status) {
    stream_state* st = find_state(server);
    if (st == nullptr) {
        return;
    }
    if (status < 0) {
        st->listen_error = status;
    } else {
        ++st->queued_connections;
    }
    serve_acceptors(st);
}

/// The callback of a write, connect or shutdown request.
template <class Req>
void on_request_done(Req* r, int status) {
    auto* op = static_cast<stream_op*>(r->data);
    op->uv_done = true;
    op->uv_status = status;
    if (op->aborted || op->state->closing) {
        op->state->after_close.push_back(op); // called back after the close callback
        return;
    }
    op->complete(status, status == 0 ? op->result : 0);
}

/// Common checks; finds or creates the stream's state.
int begin(uvasync_req_t* req, uvasync_scope_t* scope, void* stream, uvasync_cb cb,
          stream_state** out) noexcept {
    if (const int rc = check_start(req, scope, reinterpret_cast<const void*>(cb)); rc != 0) {
        return rc;
    }
    if (stream == nullptr) {
        return UV_EINVAL;
    }
    auto* s = static_cast<uv_stream_t*>(stream);
    stream_state* known = find_state(s);
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(s)) != 0 ||
        (known != nullptr && known->closing)) {
        return UV_EBADF;
    }
    return guarded([&] {
        *out = state_for(scope_of(scope)->rt, s);
        return 0;
    });
}

/// Allocates the operation, and either calls back later (scope already cancelled: nothing is
/// started, SEMANTICS 4.1) or registers the abort hook and lets `go` start it.
template <class Go>
int launch(uvasync_req_t* req, uvasync_scope_t* scope, uvasync_cb cb, stream_state* st,
           op_kind kind, uvasync_req_type type, Go go) noexcept {
    c_scope* s = scope_of(scope);
    stream_op* op = nullptr;
    const bool cancelled = s->source.cancel_requested();
    const int rc = guarded([&] {
        auto o = std::make_unique<stream_op>(req, s, cb, st, kind);
        o->uvreq.any.data = o.get();
        if (!cancelled) {
            o->reg.emplace(s->source.token(), stream_op::abort_fn{o.get()});
            if (const int started = go(o.get()); started < 0) {
                return started;
            }
        }
        op = o.release();
        return 0;
    });
    if (rc != 0) {
        return rc;
    }
    req->type = type;
    req->scope = s;
    req->result = 0;
    req->addrinfo = nullptr;
    req->internal_ = op;
    s->add_ref();
    s->rt->started();
    if (cancelled) {
        op->finish_later(s->status());
    }
    return 0;
}

int start_read(uvasync_req_t* req, uvasync_scope_t* scope, uv_stream_t* stream, char* buf,
               size_t len, char delim, op_kind kind, uvasync_cb cb) noexcept {
    if (buf == nullptr || len == 0) {
        return UV_EINVAL;
    }
    stream_state* st = nullptr;
    if (const int rc = begin(req, scope, stream, cb, &st); rc != 0) {
        return rc;
    }
    if (st->reader != nullptr) {
        return UV_EBUSY;
    }
    return launch(req, scope, cb, st, kind, UVASYNC_REQ_READ, [&](stream_op* op) {
        op->buf = buf;
        op->len = len;
        op->delim = delim;
        size_t take = 0;
        int status = 0;
        if (evaluate(st, op, &take, &status)) {
            // Already answerable from the buffer: answered from the idle handle, not inline.
            op->kick = true;
            st->reader = op;
            st->rt->defer(op);
            return 0;
        }
        if (const int rc = start_reading(st); rc < 0) {
            op->reg.reset();
            return rc;
        }
        st->reader = op;
        return 0;
    });
}

} // namespace

void forget_streams(c_runtime* rt) noexcept {
    auto& map = registry();
    for (auto it = map.begin(); it != map.end();) {
        if (it->second->rt == rt && !it->second->closing) {
            it = map.erase(it);
        } else {
            ++it;
        }
    }
}

void stream_state::close(uv_close_cb user_cb) noexcept {
    if (user_cb != nullptr) {
        user_close_cb = user_cb;
    }
    if (!closing) {
        closing = true;
        stop_reading();
        uv_close(reinterpret_cast<uv_handle_t*>(stream), &on_closed);
    }
}

void stream_op::abort() noexcept {
    reg.reset();
    status = scope->status();
    if (status == 0) {
        status = UV_ECANCELED;
    }
    switch (kind) {
    case op_kind::read_some:
    case op_kind::read_exactly:
    case op_kind::read_until:
        // uv_read_stop; what arrived stays buffered for the next read (SEMANTICS 14.2).
        if (state->reader == this) {
            state->reader = nullptr;
            state->stop_reading();
        }
        if (!kick) {
            finish_later(status);
        }
        aborted = true; // a queued kick now completes with the status
        break;
    case op_kind::accept: {
        static_cast<uvasync::detail::list_hook<acceptor_tag>&>(*this).unlink();
        finish_later(status);
        break;
    }
    case op_kind::write:
    case op_kind::connect:
    case op_kind::shutdown:
        // libuv cannot take these back: close the stream; libuv completes the request with
        // UV_ECANCELED before the close callback, which calls back (SEMANTICS 14.5).
        aborted = true;
        state->close(nullptr);
        break;
    }
}

void stream_op::run() noexcept {
    if (kick) {
        kick = false;
        if (!aborted && state->reader == this) {
            if (!try_satisfy(state)) {
                // Cannot happen (only kicked when answerable); read on rather than hang.
                if (const int rc = start_reading(state); rc < 0) {
                    state->reader = nullptr;
                    complete(rc, 0);
                }
            }
            return;
        }
    }
    complete(status, result);
}

} // namespace uvasync::capi

using namespace uvasync::capi;

extern "C" {

int uvasync_read_some(uvasync_req_t* req, uvasync_scope_t* scope, uv_stream_t* stream, char* buf,
                      size_t len, uvasync_cb cb) {
    return start_read(req, scope, stream, buf, len, 0, op_kind::read_some, cb);
}

int uvasync_read_exactly(uvasync_req_t* req, uvasync_scope_t* scope, uv_stream_t* stream, char* buf,
                         size_t len, uvasync_cb cb) {
    return start_read(req, scope, stream, buf, len, 0, op_kind::read_exactly, cb);
}

int uvasync_read_until(uvasync_req_t* req, uvasync_scope_t* scope, uv_stream_t* stream, char* buf,
                       size_t len, char delim, uvasync_cb cb) {
    return start_read(req, scope, stream, buf, len, delim, op_kind::read_until, cb);
}

int uvasync_write(uvasync_req_t* req, uvasync_scope_t* scope, uv_stream_t* stream,
                  const uv_buf_t bufs[], unsigned int nbufs, uvasync_cb cb) {
    if (bufs == nullptr || nbufs == 0) {
        return UV_EINVAL;
    }
    stream_state* st = nullptr;
    if (const int rc = begin(req, scope, stream, cb, &st); rc != 0) {
        return rc;
    }
    return launch(req, scope, cb, st, op_kind::write, UVASYNC_REQ_WRITE, [&](stream_op* op) {
        for (unsigned int i = 0; i < nbufs; ++i) {
            op->result += static_cast<ssize_t>(bufs[i].len);
        }
        return uv_write(&op->uvreq.write, stream, bufs, nbufs, &on_request_done<uv_write_t>);
    });
}

int uvasync_tcp_connect(uvasync_req_t* req, uvasync_scope_t* scope, uv_tcp_t* tcp,
                        const struct sockaddr* addr, uvasync_cb cb) {
    if (addr == nullptr) {
        return UV_EINVAL;
    }
    stream_state* st = nullptr;
    if (const int rc = begin(req, scope, tcp, cb, &st); rc != 0) {
        return rc;
    }
    return launch(req, scope, cb, st, op_kind::connect, UVASYNC_REQ_CONNECT, [&](stream_op* op) {
        return uv_tcp_connect(&op->uvreq.connect, tcp, addr, &on_request_done<uv_connect_t>);
    });
}

int uvasync_shutdown(uvasync_req_t* req, uvasync_scope_t* scope, uv_stream_t* stream,
                     uvasync_cb cb) {
    stream_state* st = nullptr;
    if (const int rc = begin(req, scope, stream, cb, &st); rc != 0) {
        return rc;
    }
    return launch(req, scope, cb, st, op_kind::shutdown, UVASYNC_REQ_SHUTDOWN, [&](stream_op* op) {
        return uv_shutdown(&op->uvreq.shutdown, stream, &on_request_done<uv_shutdown_t>);
    });
}

int uvasync_listen(uvasync_runtime_t* r, uv_stream_t* server, int backlog) {
    if (r == nullptr || server == nullptr || backlog <= 0) {
        return UV_EINVAL;
    }
    auto* rt = static_cast<c_runtime*>(r);
    if (rt->closing) {
        return UVASYNC_ECLOSED;
    }
    return guarded([&] {
        (void)state_for(rt, server);
        return uv_listen(server, backlog, &on_connection);
    });
}

int uvasync_accept(uvasync_req_t* req, uvasync_scope_t* scope, uv_stream_t* server,
                   uv_stream_t* client, uvasync_cb cb) {
    if (client == nullptr) {
        return UV_EINVAL;
    }
    stream_state* st = nullptr;
    if (const int rc = begin(req, scope, server, cb, &st); rc != 0) {
        return rc;
    }
    return launch(req, scope, cb, st, op_kind::accept, UVASYNC_REQ_ACCEPT, [&](stream_op* op) {
        op->client = client;
        if (st->queued_connections > 0 || st->listen_error != 0) {
            // A connection is waiting: take it now, call back from the idle handle.
            int rc = st->listen_error;
            if (rc == 0) {
                --st->queued_connections;
                rc = uv_accept(server, client);
            }
            op->finish_later(rc);
            return 0;
        }
        st->acceptors.push_back(*op);
        return 0;
    });
}

int uvasync_stream_close(uvasync_runtime_t* r, uv_stream_t* stream, uv_close_cb close_cb) {
    if (r == nullptr || stream == nullptr) {
        return UV_EINVAL;
    }
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(stream)) != 0) {
        return UV_EALREADY;
    }
    return guarded([&] {
        state_for(static_cast<c_runtime*>(r), stream)->close(close_cb);
        return 0;
    });
}

} // extern "C"
