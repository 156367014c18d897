// SPDX-License-Identifier: MIT
// A stream's libuv side: the read buffer and its growth, the read, connect, shutdown and write
// callbacks, and the errors every stream operation throws.

#include "stream_state.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include <uv.h>
#include <uvasync/io/stream.hpp>
#include <uvasync/uv_error.hpp>

#include "uv_buf.hpp"

#include <signal.h> // NOLINT(modernize-deprecated-headers): POSIX sigaction, not in <csignal>

namespace uvasync::detail {

bool stream_awaiter::park_on_open_stream(std::coroutine_handle<> caller, const char* op) {
    if (state_ != nullptr) {
        kind_ = state_->kind;
    }
    if (!park(caller, op)) {
        return false;
    }
    if (const char* why = unusable_reason(state_)) {
        status_ = UV_EBADF;
        reason_ = why;
        unpark();
        return false;
    }
    return true;
}

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

void stream_state::on_close_requested() noexcept {
    reading = false; // uv_close stops reading
    if (read_awaiter* r = reader) {
        reader = nullptr;
        r->deliver(0, UV_ECANCELED, unusable_reason(this));
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

void stream_state::free_write(write_request* r) noexcept {
    if (r->heap) {
        delete r;
    } else {
        r->waiter = nullptr;
        r->owned = std::string();
        inline_write_busy = false;
    }
}

void write_request::on_write(uv_write_t* req, int status) noexcept {
    auto* r = static_cast<write_request*>(req->data);
    stream_state* s = r->state;
    --s->pending_writes;
    write_awaiter* w = r->waiter;
    s->free_write(r);
    if (w != nullptr) {
        w->request_ = nullptr;
        if (status == UV_ECANCELED) {
            w->reason_ = unusable_reason(s);
        }
        w->deliver(status);
    }
}

} // namespace uvasync::detail
