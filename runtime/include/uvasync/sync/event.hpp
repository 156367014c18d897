// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>

#include <uvasync/detail/list_waiter.hpp>

namespace uvasync {

/// A level-triggered flag tasks can wait for (asyncio.Event).
///
/// **Cancellation:** `wait()` is a cancellation point; cancelling a waiter only detaches it.
/// Waiting on an event that is already set does not suspend and is not a cancellation point.
/// **Thread:** loop thread only. Destroying an event with waiters leaves them waiting until
/// they are cancelled.
class event {
public:
    event() = default;
    event(const event&) = delete;
    event& operator=(const event&) = delete;
    event(event&&) = delete;
    event& operator=(event&&) = delete;
    ~event() = default;

    /// Sets the flag and makes every waiter ready (they run later, from the run queue).
    void set() noexcept {
        set_ = true;
        while (waiter* w = waiters_.front()) {
            w->wake();
        }
    }

    void clear() noexcept { set_ = false; }

    [[nodiscard]] bool is_set() const noexcept { return set_; }

    class [[nodiscard]] waiter : public detail::list_waiter {
    public:
        explicit waiter(event& e) noexcept
            : event_(e) {
            static constexpr detail::wait_kind kind{"event"};
            describe_as(kind);
        }

        [[nodiscard]] bool await_ready() const noexcept { return event_.set_; }

        bool await_suspend(std::coroutine_handle<> caller) {
            return park_in(event_.waiters_, caller, "event::wait()");
        }

        void await_resume() { finish(); }

    private:
        event& event_;
    };

    /// Waits until the flag is set.
    [[nodiscard]] waiter wait() noexcept { return waiter(*this); }

private:
    bool set_ = false;
    detail::waiter_list<waiter> waiters_;
};

} // namespace uvasync
