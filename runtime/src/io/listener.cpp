// SPDX-License-Identifier: MIT
// Listeners (tcp_listener, pipe_listener): the queue of accept waiters, accepting a connection
// into a new stream, the accept awaiter, and the listener object (close, is_open).

#include <utility>

#include <uv.h>
#include <uvasync/io/listener.hpp>
#include <uvasync/io/stream.hpp>
#include <uvasync/uv_error.hpp>

#include "stream_state.hpp"

namespace uvasync::detail {

void listener_state::on_close_requested() noexcept {
    while (accept_awaiter_base* w = pop()) {
        w->deliver(nullptr, UV_ECANCELED, "the listener was closed");
    }
}

void listener_state::push(accept_awaiter_base* w) noexcept {
    waiters.push_back(*w);
}

accept_awaiter_base* listener_state::pop() noexcept {
    return waiters.pop_front();
}

void listener_state::remove(accept_awaiter_base* w) noexcept {
    static_cast<list_hook<accept_tag>&>(*w).unlink();
}

stream_state* listener_state::accept_one(int& status) noexcept {
    auto* s = new (std::nothrow) stream_state(stream_kind);
    if (s == nullptr) {
        status = UV_ENOMEM;
        return nullptr;
    }
    uv_loop_t* loop = u.stream.loop;
    int rc = pipe ? uv_pipe_init(loop, &s->u.pipe, 0) : uv_tcp_init(loop, &s->u.tcp);
    if (rc < 0) {
        delete s;
        status = rc;
        return nullptr;
    }
    s->u.stream.data = static_cast<handle_state*>(s);
    rc = uv_accept(stream(), s->stream());
    if (rc < 0) {
        release(s);
        status = rc;
        // libuv announced a connection it could not hand over: forget it.
        ready = 0;
        return nullptr;
    }
    --ready;
    status = 0;
    return s;
}

void listener_state::on_connection(uv_stream_t* server, int status) noexcept {
    auto* l = state_of<listener_state>(server);
    if (status < 0) {
        // EMFILE and friends: the waiter gets the error, the listener stays usable (14.3).
        if (accept_awaiter_base* w = l->pop()) {
            w->deliver(nullptr, status, nullptr);
        } else {
            l->pending_error = status;
        }
        return;
    }
    ++l->ready;
    if (accept_awaiter_base* w = l->waiters.front()) {
        int rc = 0;
        stream_state* s = l->accept_one(rc);
        l->pop();
        w->deliver(s, rc, nullptr);
    }
}

accept_awaiter_base::accept_awaiter_base(listener_state* l) noexcept
    : handle_awaiter(l, &on_abort) {
    describe_as(kind);
}

const wait_kind accept_awaiter_base::kind{"accept", &accept_awaiter_base::describe};

// "accept on 127.0.0.1:8080" (or the pipe's name).
void accept_awaiter_base::describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
    std::string where;
    append_address(static_cast<const accept_awaiter_base&>(w).state_, false, where);
    if (!where.empty()) {
        out += "on " + where;
    }
}

accept_awaiter_base::accept_awaiter_base(accept_awaiter_base&& other) noexcept
    : handle_awaiter(std::move(other)) {
}

accept_awaiter_base::~accept_awaiter_base() {
    if (static_cast<list_hook<accept_tag>&>(*this).linked()) {
        state_->remove(this); // a leaked frame: the connection stays for the next accept
    }
    release(result_); // delivered but never taken (the frame was destroyed)
}

bool accept_awaiter_base::await_suspend(std::coroutine_handle<> caller) {
    if (state_ != nullptr) {
        kind_ = state_->kind;
    }
    if (!park(caller, "accept")) {
        return false;
    }
    listener_state* l = state_;
    if (l == nullptr || l->closing) {
        status_ = UV_EBADF;
        reason_ = l == nullptr ? "the listener is not open" : "the listener was closed";
        unpark();
        return false;
    }
    if (l->pending_error != 0) {
        status_ = std::exchange(l->pending_error, 0);
        unpark();
        return false;
    }
    if (l->ready > 0 && l->waiters.empty()) {
        result_ = l->accept_one(status_);
        unpark();
        return false;
    }
    l->push(this);
    return true;
}

stream_state* accept_awaiter_base::take() {
    finish();
    if (status_ < 0) {
        throw_stream_error(status_, kind_, "accept", reason_);
    }
    return std::exchange(result_, nullptr);
}

void accept_awaiter_base::deliver(stream_state* s, int status, const char* reason) noexcept {
    result_ = s;
    status_ = status;
    reason_ = reason;
    complete();
}

void accept_awaiter_base::on_abort(parked_wait* p) noexcept {
    auto* self = static_cast<accept_awaiter_base*>(p);
    self->state_->remove(self); // total: a later connection stays queued
    self->aborted();
}

} // namespace uvasync::detail

namespace uvasync {

detail::close_awaiter listener::close() {
    return detail::close_awaiter(state_.get());
}

bool listener::is_open() const noexcept {
    return state_ != nullptr && !state_->closing;
}

} // namespace uvasync
