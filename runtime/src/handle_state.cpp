// SPDX-License-Identifier: MIT
// The close protocol of every I/O object: one uv_close per handle, the close waiters woken
// after the last close callback, the state freed when neither its owner, a pin nor libuv needs
// it (SEMANTICS 14.4).

#include <coroutine>
#include <utility>

#include <uv.h>
#include <uvasync/detail/handle_state.hpp>

namespace uvasync::detail {

namespace {

/// Frees `h` when nothing holds it any more: the owner is gone, the handles are closed, no pin.
void dispose_if_unused(handle_state* h) noexcept {
    if (!h->owner_alive && h->closed && h->pins == 0) {
        delete h;
    }
}

void on_uv_closed(uv_handle_t* h) noexcept {
    static_cast<handle_state*>(h->data)->handle_closed();
}

} // namespace

void handle_state::unpin() noexcept {
    --pins;
    dispose_if_unused(this);
}

void handle_state::on_released() noexcept {
    request_close(this, nullptr);
}

void handle_state::handle_closed() noexcept {
    if (--open_handles > 0) {
        return;
    }
    closed = true;
    on_handles_closed();
    // The waiters unlink themselves as they are woken; each only schedules its task.
    while (close_waiter* w = waiters.pop_front()) {
        w->on_closed(w->context);
    }
    dispose_if_unused(this);
}

void request_close(handle_state* h, const char* reason) noexcept {
    if (h->closing) {
        return;
    }
    h->closing = true;
    h->close_reason = reason;
    h->on_close_requested();
    // One count for this call, so that a callback cannot finish the close while handles are
    // still being closed, and so that an object without handles finishes here.
    h->open_handles += 1 + h->close_handles();
    h->handle_closed();
}

void release(handle_state* h) noexcept {
    if (h == nullptr) {
        return;
    }
    h->owner_alive = false;
    if (h->closed) {
        dispose_if_unused(h);
    } else {
        h->on_released();
    }
}

void close_uv_handle(uv_handle_s* h) noexcept {
    uv_close(h, &on_uv_closed);
}

void close_waiter::link(handle_state* h, void (*fn)(void*) noexcept, void* ctx) noexcept {
    on_closed = fn;
    context = ctx;
    h->waiters.push_back(*this);
}

close_awaiter::close_awaiter(handle_state* h, bool owning) noexcept
    : h_(h)
    , owning_(owning) {
    if (h_ != nullptr && !owning_) {
        h_->pin();
    }
}

close_awaiter::close_awaiter(handle_state* h) noexcept
    : close_awaiter(h, false) {
}

close_awaiter close_awaiter::owning(handle_state* h) noexcept {
    return {h, true};
}

close_awaiter::close_awaiter(close_awaiter&& other) noexcept
    : h_(std::exchange(other.h_, nullptr))
    , owning_(other.owning_) {
}

close_awaiter::~close_awaiter() {
    node_.unlink(); // the frame is destroyed while parked
    if (handle_state* h = std::exchange(h_, nullptr)) {
        if (owning_) {
            release(h); // closes it if it was never awaited
        } else {
            h->unpin();
        }
    }
}

void close_awaiter::await_suspend(std::coroutine_handle<> caller) {
    core_ = require_task("close");
    caller_ = caller;
    // Linked first: an object without handles finishes its close inside request_close.
    node_.link(h_, &on_closed, this);
    request_close(h_, nullptr);
}

void close_awaiter::on_closed(void* self) noexcept {
    auto* a = static_cast<close_awaiter*>(self);
    a->core_->rt->schedule(a->core_, a->caller_);
}

} // namespace uvasync::detail
