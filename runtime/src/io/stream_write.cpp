// SPDX-License-Identifier: MIT
// Writing a stream: the write awaiter (uv_try_write first, then uv_write) and stream::write.

#include <string>
#include <utility>

#include <uv.h>
#include <uvasync/io/stream.hpp>
#include <uvasync/uv_error.hpp>

#include "stream_state.hpp"
#include "uv_buf.hpp"

namespace uvasync {

namespace detail {

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

write_awaiter::write_awaiter(stream_state* s, std::span<const char> data) noexcept
    : stream_awaiter(s, &on_abort)
    , data_(data)
    , owning_(false) {
    describe_as(kind);
}

write_awaiter::write_awaiter(stream_state* s, std::string data) noexcept
    : stream_awaiter(s, &on_abort)
    , owned_(std::move(data))
    , owning_(true) {
    describe_as(kind);
}

const wait_kind write_awaiter::kind{"stream write", &write_awaiter::describe};

// "stream write 65536 bytes pending, to 127.0.0.1:40000": the bytes libuv still queues for
// the stream (this write's remainder and any queued before it), and the peer of a TCP stream.
void write_awaiter::describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
    stream_state* s = static_cast<const write_awaiter&>(w).state_;
    if (s == nullptr || s->closing) {
        return;
    }
    out += std::to_string(uv_stream_get_write_queue_size(s->stream())) + " bytes pending";
    std::string peer;
    append_address(s, true, peer);
    if (!peer.empty()) {
        out += ", to " + peer;
    }
}

write_awaiter::write_awaiter(write_awaiter&& other) noexcept
    : stream_awaiter(std::move(other))
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
    if (!park_on_open_stream(caller, "write")) {
        return false; // nothing was written
    }
    stream_state* s = state_;
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
        s->free_write(r);
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

} // namespace detail

detail::write_awaiter stream::write(std::span<const char> data) {
    return {state_.get(), data};
}

detail::write_awaiter stream::write(std::string data) {
    return {state_.get(), std::move(data)};
}

} // namespace uvasync
