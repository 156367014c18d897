// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>

#include <uvasync/detail/park.hpp>
#include <uvasync/detail/runtime_state.hpp>

namespace uvasync::detail {

class closable;

/// A task parked until an I/O object's last close callback. Not a cancellation point
/// (SEMANTICS 14.4): nothing aborts it, it always ends with the close callback.
struct closable_waiter {
    task_core* core = nullptr;
    std::coroutine_handle<> caller;
    closable* target = nullptr; // cleared by the object when it wakes the waiter
};

/// The heap-allocated state of an I/O object (signal set, timer, UDP socket, ...). The public
/// object owns it until it is closed; from then on the state owns itself and deletes itself
/// after its last close callback, the first moment libuv no longer touches its handles.
class closable {
public:
    closable() = default;
    closable(const closable&) = delete;
    closable& operator=(const closable&) = delete;
    closable(closable&&) = delete;
    closable& operator=(closable&&) = delete;

    /// Starts closing (idempotent). `w`, if not null, is woken after the last close callback.
    /// The object must not be used by its owner afterwards: it deletes itself.
    virtual void close(closable_waiter* w) noexcept = 0;

    /// Awaiters the owner created hold a pin from creation to destruction, so the memory
    /// stays valid for them even if the object is closed before they are awaited (they then
    /// find it closing and raise). Loop thread only.
    void pin() noexcept { ++pins_; }

    void unpin() noexcept {
        if (--pins_ == 0 && disposed_) {
            delete this;
        }
    }

    /// The waiter's frame is being destroyed without being resumed: forget it.
    void forget(closable_waiter* w) noexcept {
        if (closer_ == w) {
            closer_ = nullptr;
        }
    }

protected:
    virtual ~closable() = default;

    /// Called by the derived object instead of `delete this` once libuv no longer touches it:
    /// deletes it now, or when the last pinning awaiter goes.
    void dispose() noexcept {
        if (pins_ == 0) {
            delete this;
        } else {
            disposed_ = true;
        }
    }

    /// Records the waiter for `close(w)`.
    void set_closer(closable_waiter* w) noexcept {
        if (w != nullptr) {
            closer_ = w;
            w->target = this;
        }
    }

    /// Called by the derived object after its last close callback, right before it deletes
    /// itself: makes the closing task ready.
    void wake_closer() noexcept {
        if (closable_waiter* w = closer_) {
            closer_ = nullptr;
            w->target = nullptr;
            w->core->rt->schedule(w->core, w->caller);
        }
    }

private:
    closable_waiter* closer_ = nullptr;
    unsigned pins_ = 0;
    bool disposed_ = false;
};

/// The awaiter behind every `close()` of an I/O object. It owns the object's state from the
/// `close()` call on: awaiting it closes and resumes after the last close callback; dropping
/// it unawaited still closes (without waiting). Never a cancellation point.
class [[nodiscard]] closable_awaiter {
public:
    explicit closable_awaiter(closable* target) noexcept
        : target_(target) {}

    closable_awaiter(const closable_awaiter&) = delete;
    closable_awaiter& operator=(const closable_awaiter&) = delete;
    closable_awaiter& operator=(closable_awaiter&&) = delete;

    closable_awaiter(closable_awaiter&& other) noexcept // only before it is awaited
        : target_(other.target_) {
        other.target_ = nullptr;
    }

    ~closable_awaiter() {
        if (target_ != nullptr) { // never awaited
            target_->close(nullptr);
        }
        if (waiter_.target != nullptr) { // the frame is destroyed while parked
            waiter_.target->forget(&waiter_);
        }
    }

    /// Already closed (or moved from): nothing to wait for.
    [[nodiscard]] bool await_ready() const noexcept { return target_ == nullptr; }

    void await_suspend(std::coroutine_handle<> caller) {
        waiter_.core = require_task("close");
        waiter_.caller = caller;
        closable* t = target_;
        target_ = nullptr;
        t->close(&waiter_);
    }

    void await_resume() const noexcept {}

private:
    closable* target_;
    closable_waiter waiter_;
};

} // namespace uvasync::detail
