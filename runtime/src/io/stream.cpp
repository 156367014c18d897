// SPDX-License-Identifier: MIT
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include <uv.h>
#include <uvasync/detail/uv_buf.hpp>
#include <uvasync/io/error.hpp>
#include <uvasync/io/stream.hpp>
#include <uvasync/sleep.hpp>

#include "stream_state.hpp"

#include <signal.h>

namespace uvasync {

namespace detail {

namespace {

constexpr const char* closed_reason = "the stream was closed";
constexpr const char* not_open_reason = "the stream is not open";

/// Throws `std::system_error(status)` with "<kind>::<op>[: <reason>]".
[[noreturn]] void throw_stream_error(int status, const char* kind, const char* op,
                                     const char* reason) {
    std::string what = std::string(kind) + "::" + op;
    if (reason != nullptr) {
        what += ": ";
        what += reason;
    }
    throw_uv_error(status, what.c_str());
}

void on_handle_closed(uv_handle_t* h) noexcept {
    handle_base* base = state_of<handle_base>(h);
    base->closed = true;
    // The waiters unlink themselves as they are woken; each only schedules its task.
    while (close_waiter* w = base->waiters) {
        void (*fn)(void*) noexcept = w->on_closed;
        void* ctx = w->context;
        w->unlink();
        fn(ctx);
    }
    if (!base->owner_alive && base->pins == 0) {
        delete base;
    }
}

} // namespace

void ignore_sigpipe_once() noexcept {
#ifndef _WIN32
    static const bool done = [] {
        struct sigaction old {};
        if (sigaction(SIGPIPE, nullptr, &old) == 0 && (old.sa_flags & SA_SIGINFO) == 0 &&
            old.sa_handler == SIG_DFL) {
            struct sigaction ign {};
            ign.sa_handler = SIG_IGN;
            sigemptyset(&ign.sa_mask);
            sigaction(SIGPIPE, &ign, nullptr);
        }
        return true;
    }();
    (void)done;
#endif
}

// ---------------------------------------------------------------------------------------------
// Close protocol

void request_close(handle_base* h, const char* reason) noexcept {
    if (h->closing) {
        return;
    }
    h->closing = true;
    h->close_reason = reason;
    h->on_close_requested();
    uv_close(h->handle(), &on_handle_closed);
}

void release(handle_base* h) noexcept {
    if (h == nullptr) {
        return;
    }
    h->owner_alive = false;
    if (h->closed && h->pins == 0) {
        delete h;
    } else {
        request_close(h, nullptr);
    }
}

state_pin::~state_pin() {
    if (h_ != nullptr && --h_->pins == 0 && !h_->owner_alive && h_->closed) {
        delete h_;
    }
}

close_waiter::~close_waiter() {
    unlink();
}

void close_waiter::link(handle_base* h, void (*fn)(void*) noexcept, void* ctx) noexcept {
    owner = h;
    on_closed = fn;
    context = ctx;
    prev = nullptr;
    next = h->waiters;
    if (next != nullptr) {
        next->prev = this;
    }
    h->waiters = this;
}

void close_waiter::unlink() noexcept {
    if (owner == nullptr) {
        return;
    }
    if (prev != nullptr) {
        prev->next = next;
    } else {
        owner->waiters = next;
    }
    if (next != nullptr) {
        next->prev = prev;
    }
    owner = nullptr;
    prev = next = nullptr;
}

close_awaiter::close_awaiter(handle_base* h) noexcept
    : handle_(h) {
}

close_awaiter::close_awaiter(close_awaiter&& other) noexcept
    : handle_(other.handle_) {
}

bool close_awaiter::await_ready() const noexcept {
    return handle_ == nullptr || handle_->closed;
}

bool close_awaiter::await_suspend(std::coroutine_handle<> caller) {
    core_ = require_task("close");
    caller_ = caller;
    request_close(handle_, nullptr);
    node_.link(handle_, &on_closed, this);
    return true;
}

void close_awaiter::on_closed(void* p) noexcept {
    auto* self = static_cast<close_awaiter*>(p);
    self->core_->rt->schedule(self->core_, self->caller_);
}

// ---------------------------------------------------------------------------------------------
// stream_state

void stream_state::on_close_requested() noexcept {
    reading = false; // uv_close stops reading
    if (read_awaiter* r = reader) {
        reader = nullptr;
        r->deliver(0, UV_ECANCELED, close_reason != nullptr ? close_reason : closed_reason);
    }
}

int stream_state::ensure_reading() noexcept {
    if (reading) {
        return 0;
    }
    const int rc = uv_read_start(stream(), &on_alloc, &on_read);
    if (rc == 0 || rc == UV_EALREADY) {
        reading = true;
        return 0;
    }
    return rc;
}

void stream_state::stop_reading() noexcept {
    if (reading) {
        uv_read_stop(stream());
        reading = false;
    }
}

void stream_state::grow() {
    if (!buf) {
        buf = std::make_unique_for_overwrite<char[]>(initial_capacity);
        capacity = initial_capacity;
        return;
    }
    if (end < capacity) {
        return;
    }
    if (begin > 0) {
        std::memmove(buf.get(), buf.get() + begin, end - begin);
        end -= begin;
        begin = 0;
        return;
    }
    // Only read_until asks for more than a full buffer; it bounds the size by max_size.
    auto bigger = std::make_unique_for_overwrite<char[]>(capacity * 2);
    std::memcpy(bigger.get(), buf.get(), end);
    buf = std::move(bigger);
    capacity *= 2;
}

bool stream_state::grow_in_callback() noexcept {
    if (capacity >= max_capacity || begin > 0) {
        return false; // a partly consumed buffer is compacted by on_alloc instead
    }
    std::unique_ptr<char[]> bigger(new (std::nothrow) char[capacity * 2]);
    if (!bigger) {
        return false;
    }
    std::memcpy(bigger.get(), buf.get(), end);
    buf = std::move(bigger);
    capacity *= 2;
    return true;
}

void stream_state::on_alloc(uv_handle_t* h, std::size_t /*suggested*/, uv_buf_t* out) noexcept {
    auto* s = state_of<stream_state>(h);
    // A reader waits and nothing is buffered: libuv reads straight into the reader's span,
    // which saves the copy. This is safe because libuv calls on_read right after this
    // callback, with no other code in between (uv__read: alloc_cb, read(), read_cb), so the
    // reader is still waiting, and alive, when its bytes land; a frame destroyed or a read
    // aborted later runs only between libuv's callbacks, when no buffer is lent out (and
    // uv_read_stop takes effect at once). A peek (read_until) needs the data in the buffer.
    if (read_awaiter* r = s->reader; r != nullptr && !r->peek_ && s->buffered() == 0) {
        s->direct = true;
        *out = make_uv_buf(r->buffer_.data(), r->buffer_.size());
        return;
    }
    s->direct = false;
    if (!s->buf) {
        // The one allocation of a stream's read path; a failure reads as UV_ENOBUFS.
        s->buf.reset(new (std::nothrow) char[initial_capacity]);
        s->capacity = s->buf ? initial_capacity : 0;
    }
    // Compact when the tail is small, so reads do not shrink to a trickle.
    if (s->begin > 0 && s->capacity - s->end < s->capacity / 4) {
        std::memmove(s->buf.get(), s->buf.get() + s->begin, s->end - s->begin);
        s->end -= s->begin;
        s->begin = 0;
    }
    *out = make_uv_buf(s->buf.get() + s->end, s->capacity - s->end);
}

void stream_state::on_read(uv_stream_t* st, ssize_t nread, const uv_buf_t* /*b*/) noexcept {
    auto* s = state_of<stream_state>(st);
    if (nread > 0) {
        s->received += static_cast<std::uint64_t>(nread);
    }
    if (std::exchange(s->direct, false)) {
        if (nread > 0) { // the bytes are in the reader's span already
            read_awaiter* r = s->reader;
            s->reader = nullptr;
            r->deliver(static_cast<std::size_t>(nread), 0, nullptr);
            return;
        }
        // Nothing was read (EAGAIN), or EOF / an error: handled below like any other.
    }
    if (nread > 0) {
        s->end += static_cast<std::size_t>(nread);
        if (read_awaiter* r = s->reader) {
            s->reader = nullptr;
            if (r->peek_) {
                r->deliver(static_cast<std::size_t>(nread), 0, nullptr);
            } else {
                const std::size_t n = std::min(r->buffer_.size(), s->buffered());
                std::memcpy(r->buffer_.data(), s->data(), n);
                s->consume(n);
                r->deliver(n, 0, nullptr);
            }
        }
        if (s->buffered() == s->capacity && !s->grow_in_callback()) {
            s->stop_reading(); // backpressure: restarted by the next read that has to wait
        }
        return;
    }
    if (nread == 0) {
        return; // EAGAIN
    }
    if (nread == UV_ENOBUFS) {
        s->stop_reading(); // the buffer is full (or could not be allocated)
        if (read_awaiter* r = s->reader; r != nullptr && !s->buf) {
            s->reader = nullptr;
            r->deliver(0, UV_ENOBUFS, "could not allocate the read buffer");
        }
        return;
    }
    // EOF or a read error: remembered for every later read.
    s->read_status = static_cast<int>(nread);
    s->stop_reading();
    if (read_awaiter* r = s->reader) {
        s->reader = nullptr;
        r->deliver(0, s->read_status, nullptr);
    }
}

void stream_state::on_connect(uv_connect_t* req, int status) noexcept {
    auto* s = static_cast<stream_state*>(req->data);
    if (stream_request_awaiter* w = s->connect_waiter) {
        s->connect_waiter = nullptr;
        w->deliver(status);
    }
}

void stream_state::on_shutdown(uv_shutdown_t* req, int status) noexcept {
    auto* s = static_cast<stream_state*>(req->data);
    if (stream_request_awaiter* w = s->shutdown_waiter) {
        s->shutdown_waiter = nullptr;
        w->deliver(status);
    }
}

void write_request::on_write(uv_write_t* req, int status) noexcept {
    auto* r = static_cast<write_request*>(req->data);
    stream_state* s = r->state;
    --s->pending_writes;
    write_awaiter* w = r->waiter;
    if (r->heap) {
        delete r;
    } else {
        r->waiter = nullptr;
        r->owned = std::string();
        s->inline_write_busy = false;
    }
    if (w != nullptr) {
        w->request_ = nullptr;
        if (status == UV_ECANCELED) {
            w->reason_ = s->close_reason != nullptr ? s->close_reason : closed_reason;
        }
        w->deliver(status);
    }
}

namespace {

/// True when libuv holds no unwritten byte of this stream: every queued write has been handed
/// to the kernel, even if its callback has not run yet.
bool written_out(stream_state* s) noexcept {
#ifndef _WIN32
    return uv_stream_get_write_queue_size(s->stream()) == 0;
#else
    (void)s;
    return false; // the queue size does not mean the same there: wait for the callback
#endif
}

/// The status of a request that finished inside libuv before its callback ran.
int request_status(const write_request* r) noexcept {
#ifndef _WIN32
    return r->req.error; // a private libuv field: set before the deferred callback
#else
    (void)r;
    return 0;
#endif
}

} // namespace

// ---------------------------------------------------------------------------------------------
// read_awaiter

read_awaiter::read_awaiter(stream_state* s, std::span<char> buffer, bool peek) noexcept
    : parked_wait(&on_abort)
    , state_(s)
    , buffer_(buffer)
    , peek_(peek) {
}

read_awaiter::read_awaiter(read_awaiter&& other) noexcept
    : parked_wait(std::move(other))
    , state_(other.state_)
    , buffer_(other.buffer_)
    , peek_(other.peek_) {
}

read_awaiter::~read_awaiter() {
    if (registered_) {
        // The frame is destroyed while the read waits (a leaked task): libuv writes only into
        // the stream's buffer, so detaching is enough; stop reading as an abort would.
        state_->reader = nullptr;
        state_->stop_reading();
    }
}

bool read_awaiter::await_suspend(std::coroutine_handle<> caller) {
    if (state_ != nullptr) {
        kind_ = state_->kind;
    }
    if (!park(caller, "read_some")) {
        return false; // a cancelled scope raises even when data is buffered
    }
    stream_state* s = state_;
    if (s == nullptr || s->closing) {
        status_ = UV_EBADF;
        reason_ = s == nullptr ? not_open_reason
                               : (s->close_reason != nullptr ? s->close_reason : closed_reason);
        unpark();
        return false;
    }
    if (s->reader != nullptr) {
        unpark();
        throw invalid_state(std::string("uvasync: ") + kind_ +
                            "::read_some: another task is already reading this stream");
    }
    if (!peek_ && s->buffered() > 0) {
        result_ = std::min(buffer_.size(), s->buffered());
        std::memcpy(buffer_.data(), s->data(), result_);
        s->consume(result_);
        unpark();
        return false;
    }
    if (s->read_status != 0) {
        status_ = s->read_status == UV_EOF ? 0 : s->read_status;
        unpark();
        return false;
    }
    if (peek_) {
        s->grow(); // read_until waits for more data than a full buffer holds
    }
    if (const int rc = s->ensure_reading(); rc < 0) {
        status_ = rc;
        unpark();
        return false;
    }
    s->reader = this;
    registered_ = true;
    return true;
}

std::size_t read_awaiter::await_resume() {
    finish();
    if (status_ < 0) {
        throw_stream_error(status_, kind_, peek_ ? "read_until" : "read_some", reason_);
    }
    return result_;
}

void read_awaiter::deliver(std::size_t n, int status, const char* reason) noexcept {
    registered_ = false;
    result_ = n;
    status_ = status == UV_EOF ? 0 : status;
    reason_ = reason;
    complete();
}

void read_awaiter::on_abort(parked_wait* p) noexcept {
    auto* self = static_cast<read_awaiter*>(p);
    // SEMANTICS 14.2: stop reading; data that arrives later waits in the kernel, data that
    // arrived already stays in the buffer for the next read.
    self->registered_ = false;
    self->state_->reader = nullptr;
    self->state_->stop_reading();
    self->aborted();
}

// ---------------------------------------------------------------------------------------------
// write_awaiter

write_awaiter::write_awaiter(stream_state* s, std::span<const char> data) noexcept
    : parked_wait(&on_abort)
    , state_(s)
    , data_(data)
    , owning_(false) {
}

write_awaiter::write_awaiter(stream_state* s, std::string data) noexcept
    : parked_wait(&on_abort)
    , state_(s)
    , owned_(std::move(data))
    , owning_(true) {
}

write_awaiter::write_awaiter(write_awaiter&& other) noexcept
    : parked_wait(std::move(other))
    , state_(other.state_)
    , data_(other.data_)
    , owned_(std::move(other.owned_))
    , owning_(other.owning_) {
}

write_awaiter::~write_awaiter() {
    if (request_ != nullptr) {
        // The frame is destroyed while the write is pending (a leaked task at shutdown). An
        // owning request keeps its bytes; borrowed bytes may die with this frame, so the stream
        // is closed now: uv_close closes the fd at once, and libuv fails the queued writes with
        // UV_ECANCELED without reading their bytes again (SEMANTICS 14.5).
        request_->waiter = nullptr;
        const bool borrowed = request_->owned.empty();
        request_ = nullptr;
        if (borrowed) {
            request_close(state_, "the stream was closed because a task was destroyed while "
                                  "its write was pending");
        }
    }
}

bool write_awaiter::await_suspend(std::coroutine_handle<> caller) {
    if (state_ != nullptr) {
        kind_ = state_->kind;
    }
    if (!park(caller, "write")) {
        return false; // nothing was written
    }
    stream_state* s = state_;
    if (s == nullptr || s->closing) {
        status_ = UV_EBADF;
        reason_ = s == nullptr ? not_open_reason
                               : (s->close_reason != nullptr ? s->close_reason : closed_reason);
        unpark();
        return false;
    }
    const std::span<const char> all = owning_ ? std::span<const char>(owned_) : data_;
    std::size_t offset = 0;
    if (all.empty()) {
        unpark();
        return false;
    }
    // Fast path: no request, no allocation. With writes queued libuv answers UV_EAGAIN, so the
    // order of bytes on the wire is kept; skip the call then.
    if (s->pending_writes == 0 && s->use_try_write) {
        uv_buf_t b = make_uv_buf(all.data(), try_write_length(all.size()));
        const int n = uv_try_write(s->stream(), &b, 1);
        if (n >= 0) {
            offset = static_cast<std::size_t>(n);
            if (offset == all.size()) {
                unpark();
                return false;
            }
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            status_ = n;
            unpark();
            return false;
        }
    }
    write_request* r = nullptr;
    if (!s->inline_write_busy) {
        r = &s->inline_write;
        s->inline_write_busy = true;
    } else {
        r = new write_request();
        r->heap = true;
    }
    r->state = s;
    r->waiter = this;
    r->req.data = r;
    uv_buf_t b{};
    if (owning_) {
        // The request owns the bytes from here on (the string's buffer moves with it unless
        // it is short, hence the offset is applied after the move).
        r->owned = std::move(owned_);
        b = make_uv_buf(r->owned.data() + offset, r->owned.size() - offset);
    } else {
        b = make_uv_buf(all.data() + offset, all.size() - offset);
    }
    const int rc = uv_write(&r->req, s->stream(), &b, 1, &write_request::on_write);
    if (rc < 0) {
        if (r->heap) {
            delete r;
        } else {
            r->waiter = nullptr;
            r->owned = std::string();
            s->inline_write_busy = false;
        }
        status_ = rc;
        unpark();
        return false;
    }
    ++s->pending_writes;
    if (written_out(s)) {
        // uv_write wrote every byte itself, but libuv defers the callback to the next
        // iteration (uv__io_feed), after the timers: a deadline there must not find this write
        // pending and close a stream whose bytes were all sent (completion wins, D-2). Complete
        // now; the request is detached and its callback only frees it.
        r->waiter = nullptr;
        status_ = request_status(r);
        unpark();
        return false;
    }
    request_ = r;
    return true;
}

void write_awaiter::await_resume() {
    finish();
    if (status_ < 0) {
        throw_stream_error(status_, kind_, "write", reason_);
    }
}

void write_awaiter::deliver(int status) noexcept {
    status_ = status;
    complete();
}

void write_awaiter::on_abort(parked_wait* p) noexcept {
    auto* self = static_cast<write_awaiter*>(p);
    if (written_out(self->state_)) {
        // Every byte is with the kernel and only the deferred callback is missing: the write
        // has completed, so it is delivered instead of closing the stream (D-2).
        write_request* r = std::exchange(self->request_, nullptr);
        r->waiter = nullptr;
        self->deliver(request_status(r));
        return;
    }
    // libuv cannot cancel a queued write: close the handle (SEMANTICS 14.5). The request's
    // callback comes with UV_ECANCELED and is ignored; the task resumes after the close
    // callback, when libuv no longer refers to the bytes.
    self->request_->waiter = nullptr;
    self->request_ = nullptr;
    self->closed_.link(self->state_, &on_closed, self);
    request_close(self->state_, "the stream was closed because a pending write was cancelled");
}

void write_awaiter::on_closed(void* p) noexcept {
    auto* self = static_cast<write_awaiter*>(p);
    self->aborted();
}

// ---------------------------------------------------------------------------------------------
// stream_request_awaiter (connect, shutdown)

stream_request_awaiter::stream_request_awaiter(stream_state* s, op kind, const void* target,
                                               const char* label) noexcept
    : parked_wait(&on_abort)
    , state_(s)
    , op_(kind)
    , target_(target)
    , label_(label) {
}

stream_request_awaiter::stream_request_awaiter(stream_request_awaiter&& other) noexcept
    : parked_wait(std::move(other))
    , state_(other.state_)
    , op_(other.op_)
    , target_(other.target_)
    , label_(other.label_) {
}

namespace {

stream_request_awaiter*& slot_of(stream_state* s, stream_request_awaiter::op o) noexcept {
    return o == stream_request_awaiter::op::shutdown ? s->shutdown_waiter : s->connect_waiter;
}

const char* op_name(stream_request_awaiter::op o) noexcept {
    return o == stream_request_awaiter::op::shutdown ? "shutdown" : "connect";
}

} // namespace

stream_request_awaiter::~stream_request_awaiter() {
    // A frame destroyed while the request is pending: the request and the address live in the
    // state (libuv copied the address), so detaching is enough; the callback finds no waiter.
    if (state_ != nullptr && waiting() && slot_of(state_, op_) == this) {
        slot_of(state_, op_) = nullptr;
    }
}

bool stream_request_awaiter::await_suspend(std::coroutine_handle<> caller) {
    if (state_ != nullptr) {
        kind_ = state_->kind;
    }
    if (!park(caller, op_name(op_))) {
        return false; // the libuv call is never made
    }
    stream_state* s = state_;
    if (s == nullptr || s->closing) {
        status_ = UV_EBADF;
        reason_ = s == nullptr ? not_open_reason
                               : (s->close_reason != nullptr ? s->close_reason : closed_reason);
        unpark();
        return false;
    }
    if (slot_of(s, op_) != nullptr) {
        unpark();
        throw invalid_state(std::string("uvasync: ") + kind_ + "::" + op_name(op_) +
                            ": another task is already waiting for one");
    }
    int rc = 0;
    switch (op_) {
    case op::connect_tcp:
        s->connect_req.data = s;
        rc = uv_tcp_connect(&s->connect_req, &s->u.tcp, static_cast<const sockaddr*>(target_),
                            &stream_state::on_connect);
        break;
    case op::connect_pipe:
        s->connect_req.data = s;
        uv_pipe_connect(&s->connect_req, &s->u.pipe, static_cast<const char*>(target_),
                        &stream_state::on_connect); // errors come through the callback
        break;
    case op::shutdown:
        s->shutdown_req.data = s;
        rc = uv_shutdown(&s->shutdown_req, s->stream(), &stream_state::on_shutdown);
        break;
    }
    if (rc < 0) {
        status_ = rc;
        unpark();
        return false;
    }
    slot_of(s, op_) = this;
    return true;
}

void stream_request_awaiter::await_resume() {
    finish();
    if (status_ < 0) {
        if (label_ != nullptr) {
            std::string what = label_;
            if (reason_ != nullptr) {
                what += ": ";
                what += reason_;
            }
            throw_uv_error(status_, what.c_str());
        }
        throw_stream_error(status_, kind_, op_name(op_), reason_);
    }
}

void stream_request_awaiter::deliver(int status) noexcept {
    status_ = status;
    if (status == UV_ECANCELED) {
        reason_ = state_->close_reason != nullptr ? state_->close_reason : closed_reason;
    }
    complete();
}

void stream_request_awaiter::on_abort(parked_wait* p) noexcept {
    auto* self = static_cast<stream_request_awaiter*>(p);
    // Neither a connect nor a shutdown can be undone: close the handle (SEMANTICS 14.5).
    slot_of(self->state_, self->op_) = nullptr;
    self->closed_.link(self->state_, &on_closed, self);
    request_close(self->state_, self->op_ == op::shutdown
                                    ? "the stream was closed because a pending shutdown "
                                      "was cancelled"
                                    : "the stream was closed because a pending connect "
                                      "was cancelled");
}

void stream_request_awaiter::on_closed(void* p) noexcept {
    auto* self = static_cast<stream_request_awaiter*>(p);
    self->aborted();
}

// ---------------------------------------------------------------------------------------------
// Listeners (tcp_listener, pipe_listener)

void listener_state::on_close_requested() noexcept {
    while (accept_awaiter_base* w = pop()) {
        w->deliver(nullptr, UV_ECANCELED, "the listener was closed");
    }
}

void listener_state::push(accept_awaiter_base* w) noexcept {
    w->next_ = nullptr;
    w->queued_ = true;
    if (tail != nullptr) {
        tail->next_ = w;
    } else {
        head = w;
    }
    tail = w;
}

accept_awaiter_base* listener_state::pop() noexcept {
    accept_awaiter_base* w = head;
    if (w != nullptr) {
        head = w->next_;
        if (head == nullptr) {
            tail = nullptr;
        }
        w->next_ = nullptr;
        w->queued_ = false;
    }
    return w;
}

void listener_state::remove(accept_awaiter_base* w) noexcept {
    accept_awaiter_base* prev = nullptr;
    for (accept_awaiter_base* it = head; it != nullptr; prev = it, it = it->next_) {
        if (it == w) {
            (prev != nullptr ? prev->next_ : head) = w->next_;
            if (tail == w) {
                tail = prev;
            }
            w->next_ = nullptr;
            w->queued_ = false;
            return;
        }
    }
}

stream_state* listener_state::accept_one(int& status) noexcept {
    auto* s = new (std::nothrow) stream_state(stream_kind);
    if (s == nullptr) {
        status = UV_ENOMEM;
        return nullptr;
    }
    uv_loop_t* loop = u.stream.loop;
    int rc = pipe ? uv_pipe_init(loop, &s->u.pipe, 0) : uv_tcp_init(loop, &s->u.tcp);
    if (rc < 0) {
        delete s;
        status = rc;
        return nullptr;
    }
    s->u.stream.data = static_cast<handle_base*>(s);
    rc = uv_accept(stream(), s->stream());
    if (rc < 0) {
        release(s);
        status = rc;
        // libuv announced a connection it could not hand over: forget it.
        ready = 0;
        return nullptr;
    }
    --ready;
    status = 0;
    return s;
}

void listener_state::on_connection(uv_stream_t* server, int status) noexcept {
    auto* l = state_of<listener_state>(server);
    if (status < 0) {
        // EMFILE and friends: the waiter gets the error, the listener stays usable (14.3).
        if (accept_awaiter_base* w = l->pop()) {
            w->deliver(nullptr, status, nullptr);
        } else {
            l->pending_error = status;
        }
        return;
    }
    ++l->ready;
    if (accept_awaiter_base* w = l->head) {
        int rc = 0;
        stream_state* s = l->accept_one(rc);
        l->pop();
        w->deliver(s, rc, nullptr);
    }
}

accept_awaiter_base::accept_awaiter_base(listener_state* l) noexcept
    : parked_wait(&on_abort)
    , listener_(l) {
}

accept_awaiter_base::accept_awaiter_base(accept_awaiter_base&& other) noexcept
    : parked_wait(std::move(other))
    , listener_(other.listener_) {
}

accept_awaiter_base::~accept_awaiter_base() {
    if (queued_) {
        listener_->remove(this); // a leaked frame: the connection stays for the next accept
    }
    release(result_); // delivered but never taken (the frame was destroyed)
}

bool accept_awaiter_base::await_suspend(std::coroutine_handle<> caller) {
    if (listener_ != nullptr) {
        kind_ = listener_->kind;
    }
    if (!park(caller, "accept")) {
        return false;
    }
    listener_state* l = listener_;
    if (l == nullptr || l->closing) {
        status_ = UV_EBADF;
        reason_ = l == nullptr ? "the listener is not open" : "the listener was closed";
        unpark();
        return false;
    }
    if (l->pending_error != 0) {
        status_ = std::exchange(l->pending_error, 0);
        unpark();
        return false;
    }
    if (l->ready > 0 && l->head == nullptr) {
        result_ = l->accept_one(status_);
        unpark();
        return false;
    }
    l->push(this);
    return true;
}

stream_state* accept_awaiter_base::take() {
    finish();
    if (status_ < 0) {
        throw_stream_error(status_, kind_, "accept", reason_);
    }
    return std::exchange(result_, nullptr);
}

void accept_awaiter_base::deliver(stream_state* s, int status, const char* reason) noexcept {
    result_ = s;
    status_ = status;
    reason_ = reason;
    complete();
}

void accept_awaiter_base::on_abort(parked_wait* p) noexcept {
    auto* self = static_cast<accept_awaiter_base*>(p);
    self->listener_->remove(self); // total: a later connection stays queued
    self->aborted();
}

} // namespace detail

// ---------------------------------------------------------------------------------------------
// stream

stream::stream(stream&& other) noexcept
    : state_(std::exchange(other.state_, nullptr)) {
}

stream& stream::operator=(stream&& other) noexcept {
    if (this != &other) {
        detail::release(state_);
        state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
}

stream::~stream() {
    detail::release(state_);
}

detail::read_awaiter stream::read_some(std::span<char> buffer) {
    if (buffer.empty()) {
        throw std::invalid_argument("uvasync: stream::read_some: the buffer is empty");
    }
    return detail::read_awaiter(state_, buffer, false);
}

namespace {

// Both loops hold the state, never the `stream` object: the owner may be moved or destroyed
// while they wait. The pin keeps the state's memory (not the handle) alive; once the handle is
// closing every read fails with UV_EBADF / UV_ECANCELED.

task<std::size_t> read_exactly_loop(detail::state_pin pin, detail::stream_state* s,
                                    std::span<char> buffer) {
    std::size_t done = 0;
    while (done < buffer.size()) {
        const std::size_t n = co_await detail::read_awaiter(s, buffer.subspan(done), false);
        if (n == 0) {
            break;
        }
        done += n;
    }
    (void)pin;
    co_return done;
}

task<std::string> read_until_loop(detail::state_pin pin, detail::stream_state* s,
                                  std::string delimiter, std::size_t max_size) {
    // Level-triggered like read_some: a cancelled scope raises even when the line is buffered.
    co_await checkpoint();
    std::size_t searched = 0; // bytes of the buffer already known not to start a delimiter
    for (;;) {
        if (s != nullptr && s->buffered() > 0) {
            const std::string_view data(s->data(), std::min(s->buffered(), max_size));
            const std::size_t from =
                searched >= delimiter.size() ? searched - (delimiter.size() - 1) : 0;
            const std::size_t pos = data.find(delimiter, from);
            if (pos != std::string_view::npos) {
                std::string line(data.substr(0, pos + delimiter.size()));
                s->consume(line.size());
                co_return line;
            }
            searched = data.size();
            if (s->buffered() >= max_size) {
                throw_uv_error(UV_ENOBUFS, (std::string(s->kind) +
                                            "::read_until: no delimiter within max_size bytes")
                                               .c_str());
            }
        }
        const std::size_t n = co_await detail::read_awaiter(s, {}, true);
        if (n == 0) { // EOF: the rest, without a delimiter
            std::string rest(s->data(), s->buffered());
            s->consume(rest.size());
            (void)pin;
            co_return rest;
        }
    }
}

} // namespace

task<std::size_t> stream::read_exactly(std::span<char> buffer) {
    return read_exactly_loop(detail::state_pin(state_), state_, buffer);
}

task<std::string> stream::read_until(std::string_view delimiter, std::size_t max_size) {
    if (delimiter.empty()) {
        throw std::invalid_argument("uvasync: stream::read_until: the delimiter is empty");
    }
    if (max_size == 0) {
        throw std::invalid_argument("uvasync: stream::read_until: max_size is 0");
    }
    return read_until_loop(detail::state_pin(state_), state_, std::string(delimiter), max_size);
}

detail::write_awaiter stream::write(std::span<const char> data) {
    return detail::write_awaiter(state_, data);
}

detail::write_awaiter stream::write(std::string data) {
    return detail::write_awaiter(state_, std::move(data));
}

detail::stream_request_awaiter stream::shutdown() {
    return detail::stream_request_awaiter(state_, detail::stream_request_awaiter::op::shutdown,
                                          nullptr, nullptr);
}

detail::close_awaiter stream::close() {
    return detail::close_awaiter(state_);
}

bool stream::is_open() const noexcept {
    return state_ != nullptr && !state_->closing;
}

std::size_t stream::buffered() const noexcept {
    return state_ != nullptr ? state_->buffered() : 0;
}

uv_stream_t* stream::native_stream() const noexcept {
    return state_ != nullptr ? state_->stream() : nullptr;
}

} // namespace uvasync
