// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <iterator>
#include <memory>
#include <string>
#include <utility>

#include <uv.h>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/request.hpp>
#include <uvasync/io/address.hpp>

#include <netdb.h>
#include <sys/socket.h>

namespace uvasync {

/// What `resolve` asks for: the fields of `addrinfo` hints. The default asks for stream
/// sockets of any family.
struct resolve_hints {
    int family = AF_UNSPEC;     ///< `AF_INET`, `AF_INET6` or `AF_UNSPEC`.
    int socktype = SOCK_STREAM; ///< `SOCK_STREAM`, `SOCK_DGRAM`, or 0 for any.
    int protocol = 0;           ///< `IPPROTO_TCP`, `IPPROTO_UDP`, or 0 for any.
    int flags = 0;              ///< `AI_NUMERICHOST`, `AI_PASSIVE`, `AI_ADDRCONFIG`, ...
};

/// The result of `resolve`: owns the `addrinfo` list from `uv_getaddrinfo` and frees it with
/// `uv_freeaddrinfo` in its destructor. Move-only. Iterating yields `socket_address` values,
/// in the resolver's order; entries of families other than IPv4 and IPv6 are skipped.
class address_list {
public:
    /// A forward iterator over the IPv4 and IPv6 entries.
    class iterator {
    public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = socket_address;
        using difference_type = std::ptrdiff_t;
        using pointer = void;
        using reference = socket_address;

        iterator() noexcept = default;

        explicit iterator(const addrinfo* node) noexcept
            : node_(skip(node)) {}

        socket_address operator*() const { return socket_address::from(node_->ai_addr); }

        iterator& operator++() noexcept {
            node_ = skip(node_->ai_next);
            return *this;
        }

        iterator operator++(int) noexcept {
            iterator old = *this;
            ++*this;
            return old;
        }

        /// The underlying entry (socket type, protocol, canonical name).
        [[nodiscard]] const addrinfo* info() const noexcept { return node_; }

        friend bool operator==(const iterator&, const iterator&) noexcept = default;

    private:
        static const addrinfo* skip(const addrinfo* n) noexcept {
            while (n != nullptr && (n->ai_addr == nullptr ||
                                    (n->ai_family != AF_INET && n->ai_family != AF_INET6))) {
                n = n->ai_next;
            }
            return n;
        }

        const addrinfo* node_ = nullptr;
    };

    address_list() noexcept = default;

    /// Adopts `head` (freed by this object).
    explicit address_list(addrinfo* head) noexcept
        : head_(head) {}

    [[nodiscard]] iterator begin() const noexcept { return iterator(head_.get()); }

    [[nodiscard]] iterator end() const noexcept { return iterator(); }

    /// The number of IPv4 and IPv6 entries.
    [[nodiscard]] std::size_t size() const noexcept {
        return static_cast<std::size_t>(std::distance(begin(), end()));
    }

    [[nodiscard]] bool empty() const noexcept { return begin() == end(); }

    /// The raw list (owned by this object), for fields `socket_address` does not carry.
    [[nodiscard]] const addrinfo* get() const noexcept { return head_.get(); }

private:
    struct free_list {
        void operator()(addrinfo* head) const noexcept { uv_freeaddrinfo(head); }
    };

    std::unique_ptr<addrinfo, free_list> head_;
};

/// The result of `reverse`: a host name and a service name.
struct name_info {
    std::string host;
    std::string service;
};

namespace detail {

class UVASYNC_API getaddrinfo_op final : public request_op {
public:
    static constexpr int cancelled_status = UV_EAI_CANCELED;
    static constexpr bool throws_status = true;

    getaddrinfo_op(std::string host, std::string service, const resolve_hints& hints);
    ~getaddrinfo_op() override;

    int start(uv_loop_t* loop) noexcept override;

    uv_req_t* request() noexcept override { return reinterpret_cast<uv_req_t*>(&req_); }

    address_list take() noexcept { return address_list(std::exchange(result_, nullptr)); }

private:
    static void on_done(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept;

    uv_getaddrinfo_t req_{};
    std::string host_;
    std::string service_;
    addrinfo hints_{};
    addrinfo* result_ = nullptr; // owned until taken
};

class UVASYNC_API getnameinfo_op final : public request_op {
public:
    static constexpr int cancelled_status = UV_EAI_CANCELED;
    static constexpr bool throws_status = true;

    getnameinfo_op(const socket_address& address, int flags) noexcept
        : address_(address)
        , flags_(flags) {}

    int start(uv_loop_t* loop) noexcept override;

    uv_req_t* request() noexcept override { return reinterpret_cast<uv_req_t*>(&req_); }

    name_info take() noexcept { return std::move(result_); }

private:
    static void on_done(uv_getnameinfo_t* req, int status, const char* host,
                        const char* service) noexcept;

    uv_getnameinfo_t req_{};
    socket_address address_;
    int flags_;
    name_info result_;
};

} // namespace detail

/// Resolves `host` and `service` (`uv_getaddrinfo`, run on the threadpool) and resumes with
/// the addresses. An empty `host` or `service` is passed to getaddrinfo as null (for example
/// `resolve("", "8080", {.flags = AI_PASSIVE})` for a wildcard address); both empty is an
/// error. A numeric host with `AI_NUMERICHOST` never touches the network.
///
/// ```cpp
/// uvasync::address_list addrs = co_await uvasync::resolve("localhost", "8080");
/// for (const uvasync::socket_address& a : addrs) {
///     std::puts(a.to_string().c_str());
/// }
/// ```
///
/// **Cancellation:** a cancellation point. Cancelled before it is awaited: nothing is asked.
/// Queued on the threadpool: `uv_cancel` takes it back (libuv reports `UV_EAI_CANCELED`) and
/// `cancelled_error` is raised. Running, or completed but not yet resumed: the addresses are
/// delivered (completion wins, D-2) and the next cancellation point raises. If the awaiting
/// frame is destroyed meanwhile, the list is freed when the request finishes.
///
/// **Errors:** `std::system_error` (uv category) with libuv's code: `UV_EAI_NONAME` for an
/// unknown name, `UV_EINVAL` when both `host` and `service` are empty (the request is not
/// made), and so on; `std::invalid_argument` (from this call) for a NUL character inside
/// `host` or `service`.
///
/// **Thread:** loop thread only, inside a task.
[[nodiscard]] UVASYNC_API detail::request_awaiter<detail::getaddrinfo_op>
resolve(std::string host, std::string service, resolve_hints hints = {});

/// Looks up the host and service names of `address` (`uv_getnameinfo`, on the threadpool);
/// `flags` are getnameinfo's (`NI_NUMERICHOST`, `NI_NUMERICSERV`, `NI_NAMEREQD`, ...).
///
/// **Cancellation:** as for `resolve`.
///
/// **Errors:** `std::system_error` (uv category): `UV_EINVAL` for an address that is neither
/// IPv4 nor IPv6 (the request is not made), the resolver's `UV_EAI_*` codes otherwise.
///
/// **Thread:** loop thread only, inside a task.
[[nodiscard]] UVASYNC_API detail::request_awaiter<detail::getnameinfo_op>
reverse(const socket_address& address, int flags = 0);

} // namespace uvasync
