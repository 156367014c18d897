// SPDX-License-Identifier: MIT
#include <cerrno>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include <uv.h>
#include <uvasync/io/error.hpp>
#include <uvasync/io/tcp.hpp>

#include "socket_name.hpp"
#include "stream_state.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace uvasync {

namespace {

socket_address name_of(const uv_tcp_t* h, detail::socket_name_fn<uv_tcp_t> fn, const char* what) {
    if (h == nullptr) {
        throw_uv_error(UV_EBADF, (std::string(what) + ": not open").c_str());
    }
    socket_address a;
    detail::check_uv(detail::socket_name(h, fn, a), what);
    return a;
}

/// An unconnected `tcp_stream` on the current runtime's loop (`caller` and `what` name the
/// call in errors).
tcp_stream unconnected_tcp(const char* caller, const char* what) {
    uv_loop_t* loop = detail::current_runtime(caller).loop();
    return {detail::adopt,
            detail::init_handle(
                new detail::stream_state("tcp_stream"),
                [loop](detail::stream_state* s) { return uv_tcp_init(loop, &s->u.tcp); }, what)};
}

void require_open(const detail::stream_state* s, const char* what) {
    if (s == nullptr || s->closing) {
        throw_uv_error(UV_EBADF, (std::string(what) + ": the stream is not open").c_str());
    }
}

} // namespace

// ---------------------------------------------------------------------------------------------
// tcp_stream

task<tcp_stream> tcp_stream::connect(socket_address address) {
    const std::string label = "tcp_stream::connect " + address.to_string();
    if (address.family() != AF_INET && address.family() != AF_INET6) {
        throw_uv_error(UV_EINVAL, label.c_str());
    }
    tcp_stream s = unconnected_tcp("tcp_stream::connect", label.c_str());
    detail::stream_request_awaiter connecting(s.state_.get(),
                                              detail::stream_request_awaiter::op::connect_tcp,
                                              address.data(), label.c_str());
    co_await connecting;
    co_return s;
}

tcp_stream tcp_stream::open(uv_os_sock_t socket) {
    const std::string what = "tcp_stream::open socket " + std::to_string(socket);
    tcp_stream s = unconnected_tcp("tcp_stream::open", what.c_str());
    // On failure `s` closes the handle, which has no socket yet: the caller keeps `socket`.
    detail::check_uv(uv_tcp_open(&s.state_->u.tcp, socket), what.c_str());
    return s;
}

tcp_stream tcp_stream::adopt(uv_tcp_t* accepted) {
    uv_os_fd_t fd = -1;
    if (accepted == nullptr) {
        throw_uv_error(UV_EINVAL, "tcp_stream::adopt: null handle");
    }
    detail::check_uv(uv_fileno(reinterpret_cast<uv_handle_t*>(accepted), &fd), "tcp_stream::adopt");
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) {
        throw_uv_error(uv_translate_sys_error(errno), "tcp_stream::adopt: dup");
    }
    try {
        return open(copy);
    } catch (...) {
        ::close(copy);
        throw;
    }
}

void tcp_stream::set_nodelay(bool enable) {
    require_open(state_.get(), "tcp_stream::set_nodelay");
    detail::check_uv(uv_tcp_nodelay(&state_->u.tcp, enable ? 1 : 0), "tcp_stream::set_nodelay");
}

void tcp_stream::set_keepalive(bool enable, std::chrono::seconds delay) {
    require_open(state_.get(), "tcp_stream::set_keepalive");
    if (enable && (delay.count() < 1 || delay.count() > std::numeric_limits<unsigned>::max())) {
        // libuv takes an unsigned int: a larger delay would silently wrap (and 0 is EINVAL).
        throw std::invalid_argument("uvasync: tcp_stream::set_keepalive: the delay must be 1 to " +
                                    std::to_string(std::numeric_limits<unsigned>::max()) +
                                    " seconds");
    }
    detail::check_uv(
        uv_tcp_keepalive(&state_->u.tcp, enable ? 1 : 0, static_cast<unsigned>(delay.count())),
        "tcp_stream::set_keepalive");
}

socket_address tcp_stream::local_address() const {
    return name_of(state_ != nullptr && !state_->closing ? &state_->u.tcp : nullptr,
                   &uv_tcp_getsockname, "tcp_stream::local_address");
}

socket_address tcp_stream::peer_address() const {
    return name_of(state_ != nullptr && !state_->closing ? &state_->u.tcp : nullptr,
                   &uv_tcp_getpeername, "tcp_stream::peer_address");
}

uv_tcp_t* tcp_stream::native_handle() noexcept {
    return state_ != nullptr ? &state_->u.tcp : nullptr;
}

// ---------------------------------------------------------------------------------------------
// tcp_listener

tcp_listener tcp_listener::bind(socket_address address, int backlog) {
    const std::string what = "tcp_listener::bind " + address.to_string();
    if (address.family() != AF_INET && address.family() != AF_INET6) {
        throw_uv_error(UV_EINVAL, what.c_str());
    }
    uv_loop_t* loop = detail::current_runtime("tcp_listener::bind").loop();
    detail::listener_state* l = detail::init_handle(
        new detail::listener_state("tcp_listener", "tcp_stream", false),
        [loop](detail::listener_state* s) { return uv_tcp_init(loop, &s->u.tcp); }, what.c_str());
    tcp_listener result;
    result.state_.reset(l); // closes the handle if binding fails
    // libuv may defer a bind error (EADDRINUSE) to uv_listen; both are checked.
    detail::check_uv(uv_tcp_bind(&l->u.tcp, address.data(), 0), what.c_str());
    detail::check_uv(uv_listen(l->stream(), backlog, &detail::listener_state::on_connection),
                     what.c_str());
    return result;
}

detail::accept_awaiter<tcp_stream> tcp_listener::accept() {
    // NOLINTNEXTLINE(modernize-return-braced-init-list): the constructor is explicit
    return detail::accept_awaiter<tcp_stream>(state_.get());
}

socket_address tcp_listener::local_address() const {
    return name_of(state_ != nullptr && !state_->closing ? &state_->u.tcp : nullptr,
                   &uv_tcp_getsockname, "tcp_listener::local_address");
}

uv_tcp_t* tcp_listener::native_handle() noexcept {
    return state_ != nullptr ? &state_->u.tcp : nullptr;
}

} // namespace uvasync
