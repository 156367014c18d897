// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>

#include <uv.h>
#include <uvasync/detail/accept_awaiter.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/io/address.hpp>
#include <uvasync/io/listener.hpp>
#include <uvasync/io/stream.hpp>
#include <uvasync/task.hpp>

namespace uvasync {

/// A connected TCP stream (`uv_tcp_t`). Reading, writing and closing are `stream`'s.
///
/// **Thread:** loop thread only.
class UVASYNC_API tcp_stream : public stream {
public:
    using stream::stream; // stream(adopt, state): how the library makes one

    /// A stream that is not open.
    tcp_stream() noexcept = default;

    /// Connects to `address` on the current runtime's loop and returns the connected stream.
    ///
    /// **Cancellation:** a cancellation point; cancelled before it starts, no connection is
    /// attempted. A pending connect is cancelled by closing the socket (terminal); the task
    /// resumes with the cancellation after the close callback. A connect that completed first
    /// is delivered.
    ///
    /// **Errors:** `std::system_error` (uv category) whose text names the call and the address,
    /// for example "tcp_stream::connect 127.0.0.1:1: connection refused"; `UV_EINVAL` for an
    /// `AF_UNSPEC` address.
    static task<tcp_stream> connect(socket_address address);

    /// Wraps a connected socket (`uv_tcp_open`) on the current runtime's loop; the stream owns
    /// it from then on and closes it with the handle. For a socket accepted by other code (a
    /// C accept loop handing connections to tasks one at a time).
    ///
    /// **Errors:** `std::system_error` (for example `UV_EBADF`, `UV_ENOTSOCK`); `invalid_state`
    /// without a runtime. On failure the socket is not closed: the caller still owns it.
    static tcp_stream open(uv_os_sock_t socket);

    /// Adopts the connection of `accepted`, a `uv_tcp_t` the caller accepted with `uv_accept`
    /// on any loop: the stream takes a duplicate of its socket (`dup`), so the connection stays
    /// open in the stream. **Ownership:** the caller keeps `accepted` and must still
    /// `uv_close` it (closing it no longer ends the connection); the stream owns and closes
    /// the duplicate. Do not read from `accepted` afterwards.
    ///
    /// **Errors:** `std::system_error` (`UV_EBADF` for a handle with no socket, or `dup`'s
    /// error); `invalid_state` without a runtime.
    static tcp_stream adopt(uv_tcp_t* accepted);

    /// Enables or disables Nagle's algorithm being off (`TCP_NODELAY`).
    /// **Errors:** `std::system_error`, `UV_EBADF` when not open.
    void set_nodelay(bool enable);

    /// Enables or disables TCP keep-alive with the given initial delay.
    /// **Errors:** `std::system_error`, `UV_EBADF` when not open; `std::invalid_argument` when
    /// enabling with a delay outside 1 s to `UINT_MAX` s (libuv's type; never wrapped).
    void set_keepalive(bool enable, std::chrono::seconds delay = std::chrono::seconds(60));

    /// The local address of the socket. **Errors:** `std::system_error`.
    [[nodiscard]] socket_address local_address() const;

    /// The peer's address. **Errors:** `std::system_error` (`UV_ENOTCONN`, `UV_EBADF`).
    [[nodiscard]] socket_address peer_address() const;

    /// The libuv handle, or null when not open. Do not close it.
    [[nodiscard]] uv_tcp_t* native_handle() noexcept;
};

/// A listening TCP socket (`uv_tcp_t` after `uv_listen`). Closing is `listener`'s.
///
/// **Thread:** loop thread only.
class UVASYNC_API tcp_listener : public listener {
public:
    /// Binds to `address` and listens, on the current runtime's loop (call it on the loop
    /// thread, inside a task or while the runtime exists). Port 0 picks a free port; see
    /// `local_address()`. Connections are queued from now on, whether or not anybody accepts.
    ///
    /// **Errors:** `std::system_error` (uv category) naming the address, for example
    /// "tcp_listener::bind 127.0.0.1:80: address already in use"; `invalid_state` without a
    /// runtime.
    static tcp_listener bind(socket_address address, int backlog = 511);

    /// Waits for the next connection and returns it as a connected stream. A connection that
    /// arrived earlier is taken without waiting (the cancellation check still applies).
    ///
    /// **Cancellation:** a cancellation point. Total: the waiter is removed; a connection that
    /// arrives later stays queued for the next accept. A connection handed over before the
    /// cancellation is delivered.
    ///
    /// **Errors:** `std::system_error` (uv category) for an accept error such as `UV_EMFILE`;
    /// the listener stays usable. `UV_EBADF` when closed.
    [[nodiscard]] detail::accept_awaiter<tcp_stream> accept();

    /// The bound address (the real port after binding port 0). **Errors:** `std::system_error`.
    [[nodiscard]] socket_address local_address() const;

    /// The libuv handle, or null when not open. Do not close it.
    [[nodiscard]] uv_tcp_t* native_handle() noexcept;
};

} // namespace uvasync
