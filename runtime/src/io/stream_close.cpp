// SPDX-License-Identifier: MIT
// The close protocol shared by streams and listeners: one uv_close, waiters woken in the close
// callback, the state freed when neither its owner nor a pin needs it (SEMANTICS 14.4).

#include <coroutine>

#include <uv.h>
#include <uvasync/io/stream.hpp>
#include <uvasync/uv_error.hpp>

#include "stream_state.hpp"

namespace uvasync::detail {

namespace {

void on_handle_closed(uv_handle_t* h) noexcept {
    handle_base* base = state_of<handle_base>(h);
    base->closed = true;
    // The waiters unlink themselves as they are woken; each only schedules its task.
    while (close_waiter* w = base->waiters) {
        void (*fn)(void*) noexcept = w->on_closed;
        void* ctx = w->context;
        w->unlink();
        fn(ctx);
    }
    if (!base->owner_alive && base->pins == 0) {
        delete base;
    }
}

} // namespace

void request_close(handle_base* h, const char* reason) noexcept {
    if (h->closing) {
        return;
    }
    h->closing = true;
    h->close_reason = reason;
    h->on_close_requested();
    uv_close(h->handle(), &on_handle_closed);
}

void release(handle_base* h) noexcept {
    if (h == nullptr) {
        return;
    }
    h->owner_alive = false;
    if (h->closed && h->pins == 0) {
        delete h;
    } else {
        request_close(h, nullptr);
    }
}

state_pin::~state_pin() {
    if (h_ != nullptr && --h_->pins == 0 && !h_->owner_alive && h_->closed) {
        delete h_;
    }
}

close_waiter::~close_waiter() {
    unlink();
}

void close_waiter::link(handle_base* h, void (*fn)(void*) noexcept, void* ctx) noexcept {
    owner = h;
    on_closed = fn;
    context = ctx;
    prev = nullptr;
    next = h->waiters;
    if (next != nullptr) {
        next->prev = this;
    }
    h->waiters = this;
}

void close_waiter::unlink() noexcept {
    if (owner == nullptr) {
        return;
    }
    if (prev != nullptr) {
        prev->next = next;
    } else {
        owner->waiters = next;
    }
    if (next != nullptr) {
        next->prev = prev;
    }
    owner = nullptr;
    prev = next = nullptr;
}

close_awaiter::close_awaiter(handle_base* h) noexcept
    : handle_(h) {
}

close_awaiter::close_awaiter(close_awaiter&& other) noexcept
    : handle_(other.handle_) {
}

bool close_awaiter::await_ready() const noexcept {
    return handle_ == nullptr || handle_->closed;
}

bool close_awaiter::await_suspend(std::coroutine_handle<> caller) {
    core_ = require_task("close");
    caller_ = caller;
    request_close(handle_, nullptr);
    node_.link(handle_, &on_closed, this);
    return true;
}

void close_awaiter::on_closed(void* p) noexcept {
    auto* self = static_cast<close_awaiter*>(p);
    self->core_->rt->schedule(self->core_, self->caller_);
}

} // namespace uvasync::detail
