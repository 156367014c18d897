// SPDX-License-Identifier: MIT
#include <new>

#include <uvasync/io/dns.hpp>

#include "c_string.hpp"

namespace uvasync {

namespace detail {

getaddrinfo_op::getaddrinfo_op(std::string host, std::string service, const resolve_hints& hints)
    : host_(std::move(host))
    , service_(std::move(service)) {
    req_.data = this;
    hints_.ai_family = hints.family;
    hints_.ai_socktype = hints.socktype;
    hints_.ai_protocol = hints.protocol;
    hints_.ai_flags = hints.flags;
}

getaddrinfo_op::~getaddrinfo_op() {
    // A list nobody took: the awaiting frame was destroyed while the request ran, or before
    // the task resumed. Leaking it here is the C++ form of gh-81839 (SEMANTICS 14.6).
    uv_freeaddrinfo(result_);
}

int getaddrinfo_op::start(uv_loop_t* loop) noexcept {
    // Both null is getaddrinfo's EAI_NONAME; libuv refuses it up front with UV_EINVAL.
    return uv_getaddrinfo(loop, &req_, &on_done, host_.empty() ? nullptr : host_.c_str(),
                          service_.empty() ? nullptr : service_.c_str(), &hints_);
}

void getaddrinfo_op::on_done(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
    auto* self = static_cast<getaddrinfo_op*>(req->data);
    self->result_ = res; // owned from here on, also when the operation is orphaned
    self->finished(status);
}

int getnameinfo_op::start(uv_loop_t* loop) noexcept {
    req_.data = this;
    return uv_getnameinfo(loop, &req_, &on_done, address_.data(), flags_);
}

void getnameinfo_op::on_done(uv_getnameinfo_t* req, int status, const char* host,
                             const char* service) noexcept {
    auto* self = static_cast<getnameinfo_op*>(req->data);
    if (status == 0) {
        // `host` and `service` point into the request; copy them before it can go.
        try {
            self->result_.host = host != nullptr ? host : "";
            self->result_.service = service != nullptr ? service : "";
        } catch (const std::bad_alloc&) {
            status = UV_ENOMEM;
        }
    }
    self->finished(status);
}

} // namespace detail

detail::request_awaiter<detail::getaddrinfo_op> resolve(std::string host, std::string service,
                                                        resolve_hints hints) {
    detail::require_c_string(host, "uvasync::resolve", "", "host");
    detail::require_c_string(service, "uvasync::resolve", "", "service");
    return detail::request_awaiter<detail::getaddrinfo_op>(
        new detail::getaddrinfo_op(std::move(host), std::move(service), hints), "uvasync::resolve");
}

detail::request_awaiter<detail::getnameinfo_op> reverse(const socket_address& address, int flags) {
    return detail::request_awaiter<detail::getnameinfo_op>(
        new detail::getnameinfo_op(address, flags), "uvasync::reverse");
}

} // namespace uvasync
