// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstddef>
#include <span>
#include <utility>

#include <uv.h>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/handle_state.hpp>
#include <uvasync/io/address.hpp>

namespace uvasync {

/// One received datagram: its `size` (the bytes written into the buffer), its sender, and
/// whether it was `truncated` because it did not fit into the buffer (the rest is lost).
struct udp_datagram {
    std::size_t size = 0;
    socket_address from;
    bool truncated = false;
};

/// The largest UDP payload over IPv4 (65535 minus the IP and UDP headers); `udp_socket::send`
/// rejects more with `UV_EMSGSIZE`.
inline constexpr std::size_t max_datagram = 65507;

namespace detail {

class udp_state;
struct udp_send_request;

/// The awaiter behind `udp_socket::send`.
class [[nodiscard]] UVASYNC_API udp_send_awaiter : private handle_awaiter<udp_state> {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    udp_send_awaiter(udp_state* state, std::span<const char> data,
                     const socket_address& to) noexcept;

    udp_send_awaiter(udp_send_awaiter&& other) noexcept; // only before it is awaited

    ~udp_send_awaiter();

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller);

    void await_resume();

private:
    // runtime::dump: what this wait is (wait_kind.hpp), described only when a dump is made.
    static const wait_kind kind;
    static void describe(const parked_wait& w, deadline origin, std::string& out);
    friend struct udp_send_request;

    static void on_abort(parked_wait* p) noexcept;

    void deliver(int status) noexcept;

    std::span<const char> data_;
    socket_address to_;
    udp_send_request* request_ = nullptr; // while a queued send is pending
    int status_ = 0;
};

/// The awaiter behind `udp_socket::receive`.
class [[nodiscard]] UVASYNC_API udp_receive_awaiter : private handle_awaiter<udp_state> {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    udp_receive_awaiter(udp_state* state, std::span<char> buffer) noexcept;

    udp_receive_awaiter(udp_receive_awaiter&& other) noexcept; // only before it is awaited

    ~udp_receive_awaiter();

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller);

    udp_datagram await_resume();

private:
    // runtime::dump: what this wait is (wait_kind.hpp), described only when a dump is made.
    static const wait_kind kind;
    static void describe(const parked_wait& w, deadline origin, std::string& out);
    friend class udp_state;

    static void on_abort(parked_wait* p) noexcept;

    void deliver(int status, std::size_t size, const sockaddr* from, bool truncated) noexcept;

    std::span<char> buffer_;
    udp_datagram result_;
    int status_ = 0;
    bool registered_ = false;
};

} // namespace detail

/// A UDP socket (`uv_udp_t`) bound to a local address: sends datagrams to any peer and
/// receives datagrams from any peer.
///
/// The socket owns one heap state with the handle embedded; this object is a move-only owner.
/// Closing (explicitly, or without waiting in the destructor) frees the memory in the close
/// callback. One task
/// may receive at a time; any number may send.
///
/// **Thread:** loop thread only.
class UVASYNC_API udp_socket {
public:
    /// A socket that is not open: every operation fails with `UV_EBADF`.
    udp_socket() noexcept = default;

    /// A socket bound to `address` (port 0 picks a free port; see `local_address()`), on the
    /// current runtime's loop.
    ///
    /// **Errors:** `std::system_error` (uv category) naming the address, for example
    /// "udp_socket::bind 127.0.0.1:53: permission denied"; nothing stays open. `invalid_state`
    /// without a runtime on this thread.
    static udp_socket bind(socket_address address);

    /// Sends `data` as one datagram to `to`. The datagram is first offered to the kernel at
    /// once (`uv_udp_try_send`): when that succeeds the task continues without suspending.
    /// Otherwise (the socket's send queue is busy) it is queued with an owned copy of the
    /// bytes (`uv_udp_send`), so `data` need only stay valid until the awaiter is first
    /// resumed or the `co_await` starts suspending, and the task resumes when libuv has sent it.
    ///
    /// **Cancellation:** a cancellation point before it starts (nothing is sent). A queued
    /// send cannot be taken back (libuv cannot cancel a send request): the awaiter stays
    /// parked until libuv's send callback and returns its real result (completion wins, D-2);
    /// the cancellation raises at the task's next cancellation point. The socket stays open.
    ///
    /// **Errors:** `std::system_error` (uv category): `UV_EBADF` on a closed socket,
    /// `UV_EINVAL` for an unspecified address, `UV_EMSGSIZE` (also for more than
    /// `max_datagram` bytes, checked before anything is sent), `UV_ECANCELED` when the socket
    /// is closed while the send is queued, ...
    [[nodiscard]] detail::udp_send_awaiter send(std::span<const char> data,
                                                const socket_address& to);

    /// Waits for the next datagram and writes it into `buffer` (no copy). A datagram larger
    /// than the buffer is truncated and says so; an empty datagram has size 0. Reading is
    /// started for this call (`uv_udp_recv_start`) and stopped when it resumes, so datagrams
    /// that arrive while nobody receives wait in the kernel's socket buffer.
    ///
    /// **Cancellation:** a cancellation point; total: reading stops (`uv_udp_recv_stop`) and
    /// the datagram that arrives next stays queued for the next receive. A datagram delivered
    /// before the cancellation is returned (completion wins).
    ///
    /// **Errors:** `std::invalid_argument` for an empty buffer (thrown by this call);
    /// `std::system_error` (uv category): `UV_EBADF` on a closed socket, `UV_ECANCELED` when
    /// the socket is closed while this task waits, a receive error; `invalid_state` when
    /// another task is already receiving.
    [[nodiscard]] detail::udp_receive_awaiter receive(std::span<char> buffer);

    /// The bound address (the real port after binding port 0).
    ///
    /// **Errors:** `std::system_error` (uv category), `UV_EBADF` on a closed socket.
    [[nodiscard]] socket_address local_address() const;

    /// Closes the socket. A pending receive resumes with `UV_ECANCELED`, queued sends are
    /// completed by libuv with `UV_ECANCELED`. The returned awaitable resumes after the close
    /// callback (awaiting it is optional). Never a cancellation point.
    [[nodiscard]] detail::close_awaiter close() noexcept;

    /// True until the socket is closed or moved from.
    [[nodiscard]] bool is_open() const noexcept { return state_ != nullptr; }

    /// The libuv handle, or null when not open. Do not close it or start reading on it.
    [[nodiscard]] uv_udp_t* native_handle() noexcept;

private:
    detail::state_owner<detail::udp_state> state_;
};

} // namespace uvasync
