// SPDX-License-Identifier: MIT
// Reading a stream: read_some's awaiter, and the read_exactly and read_until loops over it.

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

#include <uv.h>
#include <uvasync/io/address.hpp>
#include <uvasync/io/stream.hpp>
#include <uvasync/sleep.hpp>
#include <uvasync/uv_error.hpp>

#include "socket_name.hpp"
#include "stream_state.hpp"

namespace uvasync {

namespace detail {

// Reading starts when a read has to wait and stops when nobody reads (backpressure) or a
// read is cancelled, so a cancellation reaches uv_read_stop from this file.

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

const wait_kind read_awaiter::kind{"stream read", &read_awaiter::describe};

void append_address(stream_handle_state* s, bool peer, std::string& out) {
    if (s == nullptr || s->closing) {
        return;
    }
    uv_handle_t* h = s->handle();
    if (h->type == UV_NAMED_PIPE) {
        char name[256];
        std::size_t len = sizeof name;
        const int rc = peer ? uv_pipe_getpeername(&s->u.pipe, name, &len)
                            : uv_pipe_getsockname(&s->u.pipe, name, &len);
        if (rc == 0 && len > 0) {
            out.append(name, len);
        }
        return;
    }
    if (h->type != UV_TCP) {
        return;
    }
    socket_address a;
    if (socket_name(&s->u.tcp, peer ? &uv_tcp_getpeername : &uv_tcp_getsockname, a) == 0) {
        out += a.to_string();
    }
}

void read_awaiter::describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
    const auto& self = static_cast<const read_awaiter&>(w);
    if (self.state_ == nullptr || self.state_->closing || self.state_->handle()->type != UV_TCP) {
        return;
    }
    std::string peer;
    append_address(self.state_, true, peer);
    if (!peer.empty()) {
        out += "from " + peer;
    }
}

read_awaiter::read_awaiter(stream_state* s, std::span<char> buffer, bool peek) noexcept
    : stream_awaiter(s, &on_abort)
    , buffer_(buffer)
    , peek_(peek) {
    describe_as(kind);
}

read_awaiter::read_awaiter(read_awaiter&& other) noexcept
    : stream_awaiter(std::move(other))
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
    if (!park_on_open_stream(caller, "read_some")) {
        return false; // a cancelled scope raises even when data is buffered
    }
    stream_state* s = state_;
    if (s->reader != nullptr) {
        unpark();
        throw invalid_state(std::string("uvasync: ") + kind_ +
                            "::read_some: another task is already reading this stream");
    }
    if (peek_ && satisfied_ != nullptr && satisfied_(this)) {
        unpark(); // what the reader waits for is buffered already
        return false;
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
    if (satisfied_ != nullptr && status == 0 && n > 0 && !satisfied_(this)) {
        state_->reader = this; // not yet: keep waiting (the buffer grows in on_read)
        return;
    }
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

read_until_awaiter::read_until_awaiter(stream_state* s, std::string& out,
                                       std::string_view delimiter, std::size_t max_size) noexcept
    : read_awaiter(s, {}, true)
    , out_(&out)
    , delimiter_(delimiter)
    , max_size_(max_size) {
    satisfied_ = &satisfied;
}

read_until_awaiter::read_until_awaiter(read_until_awaiter&& other) noexcept
    : read_awaiter(std::move(other))
    , out_(other.out_)
    , delimiter_(other.delimiter_)
    , max_size_(other.max_size_) {
    satisfied_ = &satisfied;
}

std::size_t read_until_awaiter::delimiter_end() noexcept {
    if (found_ != 0) {
        return found_; // found when the data arrived; the buffer only grew since
    }
    stream_state* s = state_;
    const std::string_view data(s->data(), std::min(s->buffered(), max_size_));
    const std::size_t from =
        searched_ >= delimiter_.size() ? searched_ - (delimiter_.size() - 1) : 0;
    const std::size_t pos = data.find(delimiter_, from);
    if (pos != std::string_view::npos) {
        found_ = pos + delimiter_.size();
        return found_;
    }
    searched_ = data.size();
    return 0;
}

bool read_until_awaiter::satisfied(read_awaiter* r) noexcept {
    auto* self = static_cast<read_until_awaiter*>(r);
    stream_state* s = self->state_;
    return s->buffered() > 0 && (self->delimiter_end() != 0 || s->buffered() >= self->max_size_);
}

std::size_t read_until_awaiter::await_resume() {
    (void)read_awaiter::await_resume(); // raises a cancellation or a read error
    stream_state* s = state_;
    std::size_t n = s->buffered() > 0 ? delimiter_end() : 0;
    if (n == 0) {
        if (s->buffered() >= max_size_) {
            throw_uv_error(UV_ENOBUFS, (std::string(s->kind) +
                                        "::read_until: no delimiter within max_size bytes")
                                           .c_str());
        }
        n = s->buffered(); // EOF: the rest, without a delimiter
    }
    out_->append(s->data(), n);
    s->consume(n);
    return n;
}

} // namespace detail

detail::read_awaiter stream::read_some(std::span<char> buffer) {
    if (buffer.empty()) {
        throw std::invalid_argument("uvasync: stream::read_some: the buffer is empty");
    }
    return {state_.get(), buffer, false};
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
    return read_exactly_loop(detail::state_pin(state_.get()), state_.get(), buffer);
}

task<std::string> stream::read_until(std::string_view delimiter, std::size_t max_size) {
    if (delimiter.empty()) {
        throw std::invalid_argument("uvasync: stream::read_until: the delimiter is empty");
    }
    if (max_size == 0) {
        throw std::invalid_argument("uvasync: stream::read_until: max_size is 0");
    }
    return read_until_loop(detail::state_pin(state_.get()), state_.get(), std::string(delimiter),
                           max_size);
}

detail::read_until_request stream::read_until(std::string& out, std::string_view delimiter,
                                              std::size_t max_size) {
    if (delimiter.empty()) {
        throw std::invalid_argument("uvasync: stream::read_until: the delimiter is empty");
    }
    if (max_size == 0) {
        throw std::invalid_argument("uvasync: stream::read_until: max_size is 0");
    }
    return {state_.get(), out, delimiter, max_size};
}

} // namespace uvasync
