// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <uv.h>
#include <uvasync/detail/export.hpp>

namespace uvasync {

/// An IPv4 or IPv6 socket address (address and port): a copyable value type holding a
/// `sockaddr_storage`. A default-constructed address is `AF_UNSPEC` and binds or connects to
/// nothing.
///
/// **Thread:** any thread (a plain value).
class UVASYNC_API socket_address {
public:
    /// An empty address of family `AF_UNSPEC`.
    socket_address() noexcept;

    /// Parses an IPv4 literal ("127.0.0.1") or an IPv6 literal ("::1", without brackets; a
    /// scope "fe80::1%eth0" is accepted) and attaches `port`. No name resolution is done.
    ///
    /// **Errors:** `std::system_error` with `UV_EINVAL` (uv category) when `ip` is neither.
    static socket_address parse(std::string_view ip, std::uint16_t port);

    /// Copies an `AF_INET` or `AF_INET6` socket address.
    ///
    /// **Errors:** `std::invalid_argument` for a null pointer or another family.
    static socket_address from(const sockaddr* sa);

    /// The address for libuv and socket calls. Valid while this object lives.
    [[nodiscard]] const sockaddr* data() const noexcept;

    /// `AF_INET`, `AF_INET6` or `AF_UNSPEC`.
    [[nodiscard]] int family() const noexcept;

    /// The address part as text ("127.0.0.1", "::1"); empty for `AF_UNSPEC`.
    [[nodiscard]] std::string ip() const;

    /// The port in host byte order; 0 for `AF_UNSPEC`.
    [[nodiscard]] std::uint16_t port() const;

    /// "127.0.0.1:8080" or "[::1]:8080"; "unspecified" for `AF_UNSPEC`.
    [[nodiscard]] std::string to_string() const;

    /// Same family, address, port (and IPv6 scope); two `AF_UNSPEC` addresses are equal.
    friend bool operator==(const socket_address& a, const socket_address& b) noexcept;

private:
    sockaddr_storage storage_{};
};

// Redeclared here to be exported: a friend declaration cannot carry the attribute.
UVASYNC_API bool operator==(const socket_address& a, const socket_address& b) noexcept;

} // namespace uvasync
