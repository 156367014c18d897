// SPDX-License-Identifier: MIT
// A stream's one-shot requests: connect and shutdown (stream_request_awaiter), and
// stream::shutdown.

#include <utility>

#include <uv.h>
#include <uvasync/io/stream.hpp>
#include <uvasync/uv_error.hpp>

#include "stream_state.hpp"

namespace uvasync {

namespace detail {

namespace {

const wait_kind& shutdown_kind() noexcept {
    static constexpr wait_kind k{"stream shutdown"};
    return k;
}

} // namespace

stream_request_awaiter::stream_request_awaiter(stream_state* s, op kind, const void* target,
                                               const char* label) noexcept
    : stream_awaiter(s, &on_abort)
    , op_(kind)
    , target_(target)
    , label_(label) {
    describe_as(op_ == op::shutdown ? shutdown_kind() : stream_request_awaiter::kind);
}

const wait_kind stream_request_awaiter::kind{"connect", &stream_request_awaiter::describe};

// "connect to 127.0.0.1:8080" (the label the caller's address printed as, alive in its frame).
void stream_request_awaiter::describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
    const auto& self = static_cast<const stream_request_awaiter&>(w);
    if (self.label_ != nullptr && *self.label_ != '\0') {
        out += std::string("to ") + self.label_;
    }
}

stream_request_awaiter::stream_request_awaiter(stream_request_awaiter&& other) noexcept
    : stream_awaiter(std::move(other))
    , op_(other.op_)
    , target_(other.target_)
    , label_(other.label_) {
}

namespace {

stream_request_awaiter*& slot_of(stream_state* s, stream_request_awaiter::op o) noexcept {
    return o == stream_request_awaiter::op::shutdown ? s->shutdown_waiter : s->connect_waiter;
}

const char* op_name(stream_request_awaiter::op o) noexcept {
    return o == stream_request_awaiter::op::shutdown ? "shutdown" : "connect";
}

} // namespace

stream_request_awaiter::~stream_request_awaiter() {
    // A frame destroyed while the request is pending: the request and the address live in the
    // state (libuv copied the address), so detaching is enough; the callback finds no waiter.
    if (state_ != nullptr && waiting() && slot_of(state_, op_) == this) {
        slot_of(state_, op_) = nullptr;
    }
}

bool stream_request_awaiter::await_suspend(std::coroutine_handle<> caller) {
    if (!park_on_open_stream(caller, op_name(op_))) {
        return false; // the libuv call is never made
    }
    stream_state* s = state_;
    if (slot_of(s, op_) != nullptr) {
        unpark();
        throw invalid_state(std::string("uvasync: ") + kind_ + "::" + op_name(op_) +
                            ": another task is already waiting for one");
    }
    int rc = 0;
    switch (op_) {
    case op::connect_tcp:
        s->connect_req.data = s;
        rc = uv_tcp_connect(&s->connect_req, &s->u.tcp, static_cast<const sockaddr*>(target_),
                            &stream_state::on_connect);
        break;
    case op::connect_pipe:
        s->connect_req.data = s;
        uv_pipe_connect(&s->connect_req, &s->u.pipe, static_cast<const char*>(target_),
                        &stream_state::on_connect); // errors come through the callback
        break;
    case op::shutdown:
        s->shutdown_req.data = s;
        rc = uv_shutdown(&s->shutdown_req, s->stream(), &stream_state::on_shutdown);
        break;
    }
    if (rc < 0) {
        status_ = rc;
        unpark();
        return false;
    }
    slot_of(s, op_) = this;
    return true;
}

void stream_request_awaiter::await_resume() {
    finish();
    if (status_ < 0) {
        if (label_ != nullptr) {
            std::string what = label_;
            if (reason_ != nullptr) {
                what += ": ";
                what += reason_;
            }
            throw_uv_error(status_, what.c_str());
        }
        throw_stream_error(status_, kind_, op_name(op_), reason_);
    }
}

void stream_request_awaiter::deliver(int status) noexcept {
    status_ = status;
    if (status == UV_ECANCELED) {
        reason_ = unusable_reason(state_);
    }
    complete();
}

void stream_request_awaiter::on_abort(parked_wait* p) noexcept {
    auto* self = static_cast<stream_request_awaiter*>(p);
    // Neither a connect nor a shutdown can be undone: close the handle (SEMANTICS 14.5).
    slot_of(self->state_, self->op_) = nullptr;
    self->closed_.link(self->state_, &on_closed, self);
    request_close(self->state_, self->op_ == op::shutdown
                                    ? "the stream was closed because a pending shutdown "
                                      "was cancelled"
                                    : "the stream was closed because a pending connect "
                                      "was cancelled");
}

void stream_request_awaiter::on_closed(void* p) noexcept {
    auto* self = static_cast<stream_request_awaiter*>(p);
    self->aborted();
}

} // namespace detail

detail::stream_request_awaiter stream::shutdown() {
    return {state_.get(), detail::stream_request_awaiter::op::shutdown, nullptr, nullptr};
}

} // namespace uvasync
