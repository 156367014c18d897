// SPDX-License-Identifier: MIT
// The address libuv reports for a socket, without throwing: what the `local_address()` and
// `peer_address()` of TCP and UDP objects return (and throw on failure), and what
// `runtime::dump` shows for a waiting read, write, accept or receive (and leaves out).
#pragma once

#include <uv.h>
#include <uvasync/io/address.hpp>

namespace uvasync::detail {

/// A libuv call that reports a socket's address: `uv_tcp_getsockname`, `uv_tcp_getpeername`,
/// `uv_udp_getsockname`, ...
template <class Handle>
using socket_name_fn = int (*)(const Handle*, sockaddr*, int*);

/// Sets `out` to the address `fn` reports for `h`; 0, or the libuv error (`UV_EAFNOSUPPORT`
/// for a family `socket_address` does not hold). Never throws.
template <class Handle>
int socket_name(const Handle* h, socket_name_fn<Handle> fn, socket_address& out) noexcept {
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (const int rc = fn(h, reinterpret_cast<sockaddr*>(&ss), &len); rc < 0) {
        return rc;
    }
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {
        return UV_EAFNOSUPPORT;
    }
    out = socket_address::from(reinterpret_cast<const sockaddr*>(&ss)); // cannot throw now
    return 0;
}

} // namespace uvasync::detail
