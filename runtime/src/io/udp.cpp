// SPDX-License-Identifier: MIT
#include <algorithm>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include <uv.h>
#include <uvasync/error.hpp>
#include <uvasync/io/error.hpp>
#include <uvasync/io/udp.hpp>

#include "socket_name.hpp"

namespace uvasync {

namespace detail {

/// The socket's handle and its one receiver. Freed in the close callback.
class udp_state final : public handle_state {
public:
    udp_state() noexcept
        : handle_state("udp_socket") {
        handle_.data = static_cast<handle_state*>(this);
    }

    uv_udp_t* handle() noexcept { return &handle_; }

    void on_close_requested() noexcept override {
        if (udp_receive_awaiter* r = std::exchange(receiver_, nullptr)) {
            uv_udp_recv_stop(&handle_);
            r->deliver(UV_ECANCELED, 0, nullptr, false);
        }
    }

    /// Queued sends complete with UV_ECANCELED before the close callback (handle.rst).
    unsigned close_handles() noexcept override {
        close_uv_handle(reinterpret_cast<uv_handle_t*>(&handle_));
        return 1;
    }

    [[nodiscard]] bool busy() const noexcept { return receiver_ != nullptr; }

    /// Starts reading for `r`; a negative status when libuv refuses.
    int receive(udp_receive_awaiter* r) noexcept {
        receiver_ = r;
        const int rc = uv_udp_recv_start(&handle_, &on_alloc, &on_receive);
        if (rc < 0) {
            receiver_ = nullptr;
        }
        return rc;
    }

    /// The receiver is cancelled or its frame goes away: stop reading, so nothing is read
    /// into its buffer any more.
    void forget(udp_receive_awaiter* r) noexcept {
        if (receiver_ == r) {
            receiver_ = nullptr;
            uv_udp_recv_stop(&handle_);
        }
    }

private:
    // libuv calls on_alloc and then on_receive within one read, with nothing in between, so
    // the receiver's buffer (in its frame) is only used while the receiver is registered.
    static void on_alloc(uv_handle_t* h, std::size_t /*suggested*/, uv_buf_t* buf) noexcept {
        auto* self = static_cast<udp_state*>(static_cast<handle_state*>(h->data));
        if (udp_receive_awaiter* r = self->receiver_) {
            // A buffer over 4 GiB is clamped (no datagram comes near it) rather than wrapped.
            const std::size_t len =
                std::min<std::size_t>(r->buffer_.size(), std::numeric_limits<unsigned>::max());
            *buf = uv_buf_init(r->buffer_.data(), static_cast<unsigned>(len));
        } else {
            *buf = uv_buf_init(nullptr, 0); // libuv reports UV_ENOBUFS to on_receive
        }
    }

    static void on_receive(uv_udp_t* h, ssize_t nread, const uv_buf_t* /*buf*/,
                           const sockaddr* from, unsigned flags) noexcept {
        auto* self = static_cast<udp_state*>(static_cast<handle_state*>(h->data));
        udp_receive_awaiter* r = self->receiver_;
        if (r == nullptr) {
            uv_udp_recv_stop(h);
            return;
        }
        if (nread == 0 && from == nullptr) {
            return; // nothing to read after all (EAGAIN): keep waiting
        }
        self->receiver_ = nullptr;
        // Stop at once: later datagrams stay in the kernel for the next receive.
        uv_udp_recv_stop(h);
        if (nread < 0) {
            r->deliver(static_cast<int>(nread), 0, nullptr, false);
        } else {
            r->deliver(0, static_cast<std::size_t>(nread), from, (flags & UV_UDP_PARTIAL) != 0);
        }
    }

    uv_udp_t handle_{};
    udp_receive_awaiter* receiver_ = nullptr;
};

/// A queued send: owns its copy of the datagram until libuv's callback, which may come after
/// the awaiting task has been cancelled or destroyed.
struct udp_send_request {
    uv_udp_send_t req{};
    std::string data;
    udp_send_awaiter* waiter = nullptr;

    static void on_sent(uv_udp_send_t* req, int status) noexcept {
        auto* self = static_cast<udp_send_request*>(req->data);
        if (udp_send_awaiter* w = self->waiter) {
            w->request_ = nullptr;
            w->deliver(status);
        }
        delete self;
    }
};

// ---------------------------------------------------------------------------------------------
// send

udp_send_awaiter::udp_send_awaiter(udp_state* state, std::span<const char> data,
                                   const socket_address& to) noexcept
    : handle_awaiter(state, &on_abort)
    , data_(data)
    , to_(to) {
    describe_as(kind);
}

const wait_kind udp_send_awaiter::kind{"udp send", &udp_send_awaiter::describe};

// "udp send of 512 bytes to 127.0.0.1:9000".
void udp_send_awaiter::describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
    const auto& self = static_cast<const udp_send_awaiter&>(w);
    out += "of " + std::to_string(self.data_.size()) + " bytes";
    try {
        out += " to " + self.to_.to_string();
    } catch (const std::bad_alloc&) {
        throw;
    } catch (...) { // an address family to_string does not know
    }
}

udp_send_awaiter::udp_send_awaiter(udp_send_awaiter&& other) noexcept
    : handle_awaiter(std::move(other))
    , data_(other.data_)
    , to_(other.to_) {
}

udp_send_awaiter::~udp_send_awaiter() {
    if (request_ != nullptr) { // the frame is destroyed while the send is queued
        request_->waiter = nullptr;
    }
}

bool udp_send_awaiter::await_suspend(std::coroutine_handle<> caller) {
    if (state_ == nullptr || state_->closing) {
        status_ = UV_EBADF;
        return false;
    }
    if (data_.size() > max_datagram) { // also keeps the size below 4 GiB for uv_buf_t
        status_ = UV_EMSGSIZE;
        return false;
    }
    if (!park(caller, "udp_socket::send")) {
        return false;
    }
    if (to_.family() != AF_INET && to_.family() != AF_INET6) {
        status_ = UV_EINVAL;
        unpark();
        return false;
    }
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): libuv does not write to it
    uv_buf_t buf =
        uv_buf_init(const_cast<char*>(data_.data()), static_cast<unsigned>(data_.size()));
    const int sent = uv_udp_try_send(state_->handle(), &buf, 1, to_.data());
    if (sent != UV_EAGAIN) { // sent, or failed for good
        status_ = sent < 0 ? sent : 0;
        unpark();
        return false;
    }
    auto* req = new udp_send_request;
    req->data.assign(data_.data(), data_.size());
    req->req.data = req;
    buf = uv_buf_init(req->data.data(), static_cast<unsigned>(req->data.size()));
    if (const int rc = uv_udp_send(&req->req, state_->handle(), &buf, 1, to_.data(),
                                   &udp_send_request::on_sent);
        rc < 0) {
        delete req; // no callback will come
        status_ = rc;
        unpark();
        return false;
    }
    req->waiter = this;
    request_ = req;
    return true;
}

void udp_send_awaiter::await_resume() {
    finish();
    if (status_ < 0) {
        throw_uv_error(status_, ("udp_socket::send to " + to_.to_string()).c_str());
    }
}

void udp_send_awaiter::on_abort(parked_wait* /*p*/) noexcept {
    // libuv cannot cancel a send request, and the datagram may still go out: stay parked
    // until its callback and return the real result (completion wins, D-2; SEMANTICS 14.5).
    // The cancellation raises at the task's next cancellation point.
}

void udp_send_awaiter::deliver(int status) noexcept {
    status_ = status;
    complete();
}

// ---------------------------------------------------------------------------------------------
// receive

udp_receive_awaiter::udp_receive_awaiter(udp_state* state, std::span<char> buffer) noexcept
    : handle_awaiter(state, &on_abort)
    , buffer_(buffer) {
    describe_as(kind);
}

const wait_kind udp_receive_awaiter::kind{"udp receive", &udp_receive_awaiter::describe};

// "udp receive on 127.0.0.1:9000": the socket's own address.
void udp_receive_awaiter::describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
    udp_state* s = static_cast<const udp_receive_awaiter&>(w).state_;
    if (s == nullptr || s->closing) {
        return;
    }
    if (socket_address a; socket_name(s->handle(), &uv_udp_getsockname, a) == 0) {
        out += "on " + a.to_string();
    }
}

udp_receive_awaiter::udp_receive_awaiter(udp_receive_awaiter&& other) noexcept
    : handle_awaiter(std::move(other))
    , buffer_(other.buffer_) {
}

udp_receive_awaiter::~udp_receive_awaiter() {
    if (registered_ && waiting()) { // the frame is destroyed while parked
        state_->forget(this);
    }
}

bool udp_receive_awaiter::await_suspend(std::coroutine_handle<> caller) {
    if (state_ == nullptr || state_->closing) {
        status_ = UV_EBADF;
        return false;
    }
    if (state_->busy()) {
        throw invalid_state("uvasync: udp_socket::receive is already awaited by another task");
    }
    if (!park(caller, "udp_socket::receive")) {
        return false;
    }
    if (const int rc = state_->receive(this); rc < 0) {
        status_ = rc;
        unpark();
        return false;
    }
    registered_ = true;
    return true;
}

udp_datagram udp_receive_awaiter::await_resume() {
    finish();
    if (status_ < 0) {
        throw_uv_error(status_, "udp_socket::receive");
    }
    return result_; // trivially copyable
}

void udp_receive_awaiter::on_abort(parked_wait* p) noexcept {
    auto* self = static_cast<udp_receive_awaiter*>(p);
    self->state_->forget(self);
    self->aborted();
}

void udp_receive_awaiter::deliver(int status, std::size_t size, const sockaddr* from,
                                  bool truncated) noexcept {
    status_ = status;
    result_.size = size;
    result_.truncated = truncated;
    if (from != nullptr && (from->sa_family == AF_INET || from->sa_family == AF_INET6)) {
        result_.from = socket_address::from(from);
    }
    complete();
}

} // namespace detail

// ---------------------------------------------------------------------------------------------
// udp_socket

udp_socket udp_socket::bind(socket_address address) {
    const std::string what = "udp_socket::bind " + address.to_string();
    uv_loop_t* loop = detail::current_runtime("udp_socket::bind").loop();
    auto* state = new detail::udp_state;
    if (const int rc = uv_udp_init(loop, state->handle()); rc < 0) {
        delete state; // the handle was never initialised: nothing to close
        throw_uv_error(rc, what.c_str());
    }
    udp_socket s;
    s.state_.reset(state); // closes the handle if binding fails
    detail::check_uv(uv_udp_bind(state->handle(), address.data(), 0), what.c_str());
    return s;
}

detail::udp_send_awaiter udp_socket::send(std::span<const char> data, const socket_address& to) {
    return {state_.get(), data, to};
}

detail::udp_receive_awaiter udp_socket::receive(std::span<char> buffer) {
    if (buffer.empty()) {
        throw std::invalid_argument("uvasync: udp_socket::receive needs a non-empty buffer");
    }
    return {state_.get(), buffer};
}

socket_address udp_socket::local_address() const {
    if (state_ == nullptr) {
        throw_uv_error(UV_EBADF, "udp_socket::local_address");
    }
    socket_address a;
    detail::check_uv(detail::socket_name(state_->handle(), &uv_udp_getsockname, a),
                     "udp_socket::local_address");
    return a;
}

detail::close_awaiter udp_socket::close() noexcept {
    return detail::close_awaiter::owning(state_.take());
}

uv_udp_t* udp_socket::native_handle() noexcept {
    return state_ != nullptr ? state_->handle() : nullptr;
}

} // namespace uvasync
