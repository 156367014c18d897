// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <utility>

#include <uvasync/detail/list_waiter.hpp>
#include <uvasync/detail/wait_kind.hpp>

namespace uvasync::detail {

/// A unique, movable hold on one unit of a primitive: a mutex's lock (`mutex::guard`), a
/// semaphore's permit (`semaphore::permit`). The unit goes back to the primitive exactly once:
/// when the hold is destroyed, assigned over, or given back early; a moved-from or empty hold
/// gives back nothing. `Release` is a function object: `Release{}(owner)` returns one unit.
template <class Owner, class Release>
class unit_hold {
public:
    unit_hold() noexcept = default;

    unit_hold(unit_hold&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)) {}

    unit_hold& operator=(unit_hold&& other) noexcept {
        if (this != &other) {
            give_back();
            owner_ = std::exchange(other.owner_, nullptr);
        }
        return *this;
    }

    unit_hold(const unit_hold&) = delete;
    unit_hold& operator=(const unit_hold&) = delete;

    ~unit_hold() { give_back(); }

protected:
    explicit unit_hold(Owner* owner) noexcept
        : owner_(owner) {}

    /// Returns the unit now; no effect on an empty hold.
    void give_back() noexcept {
        if (owner_ != nullptr) {
            Release{}(std::exchange(owner_, nullptr));
        }
    }

    /// The primitive the unit belongs to, or null.
    Owner* owner_ = nullptr;
};

/// The awaiter that waits for one unit of `Owner` (`mutex::lock()`, `semaphore::acquire()`)
/// and gives it to the task as a `Hold`: immediate when `Owner::take_unit()` takes one now,
/// else queued in `Owner::waiters_` (FIFO) until the owner `grant()`s it a unit. Cancelled
/// while queued, it leaves the queue and takes nothing. Granted but never resumed (a task
/// leaked at shutdown), it gives the unit back (`Release`), so a hand-off is never lost.
/// `Owner` names the wait with `unit_kind` (runtime::dump) and `unit_call` (errors).
template <class Owner, class Hold, class Release>
class [[nodiscard]] unit_waiter : public list_waiter {
public:
    explicit unit_waiter(Owner& owner) noexcept
        : owner_(owner) {
        describe_as(Owner::unit_kind);
    }

    unit_waiter(unit_waiter&&) noexcept = default; // only before it is awaited

    ~unit_waiter() {
        if (unclaimed()) {
            Release{}(&owner_); // handed a unit, never resumed: pass it on
        }
    }

    [[nodiscard]] bool await_ready() noexcept {
        granted_ = owner_.take_unit();
        return granted_;
    }

    bool await_suspend(std::coroutine_handle<> caller) {
        return park_in(owner_.waiters_, caller, Owner::unit_call);
    }

    Hold await_resume() {
        claim(); // raises: aborted before a unit arrived
        return Hold(&owner_);
    }

private:
    Owner& owner_;
};

} // namespace uvasync::detail
