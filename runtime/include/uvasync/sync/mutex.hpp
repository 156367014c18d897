// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>

#include <uvasync/detail/list_waiter.hpp>
#include <uvasync/detail/unit_hold.hpp>
#include <uvasync/detail/wait_kind.hpp>

namespace uvasync {

class mutex;
class condition;

/// A non-recursive lock for tasks, with FIFO hand-off and a scoped guard (asyncio.Lock):
///
/// ```cpp
/// mutex::guard g = co_await m.lock(); // released when g goes out of scope
/// ```
///
/// The lock belongs to the guard, not to a task: a guard may be moved to another task. A task
/// that locks a mutex it already holds waits for itself forever (as with asyncio.Lock).
///
/// **Cancellation** (SEMANTICS 23): `lock()` is a cancellation point when it has to wait. A
/// waiter cancelled while queued leaves the queue and takes nothing. A waiter that was handed
/// the lock before its cancellation took effect gets it (completion wins, D-2), and raises at
/// its next cancellation point, releasing the lock as the guard unwinds. A waiter handed the
/// lock whose frame is destroyed before it resumes (a task leaked at shutdown) passes the
/// lock on: a hand-off is never lost.
///
/// **Thread:** loop thread only. Destroying a mutex while it is locked or has waiters is a
/// bug (the guards and waiters refer to it).
class mutex {
    // Gives a guard's lock back: to the first waiter, if any.
    struct unlock_one {
        void operator()(mutex* m) const noexcept { m->unlock(); }
    };

public:
    /// Owns the lock until destroyed, `unlock()`ed or moved from.
    class guard : private detail::unit_hold<uvasync::mutex, unlock_one> {
    public:
        guard() noexcept = default;

        /// Releases the lock (to the first waiter, if any). No effect on an empty guard.
        void unlock() noexcept { give_back(); }

        [[nodiscard]] bool owns_lock() const noexcept { return owner_ != nullptr; }

        explicit operator bool() const noexcept { return owns_lock(); }

        /// The mutex this guard holds, or null.
        [[nodiscard]] uvasync::mutex* mutex() const noexcept { return owner_; }

    private:
        friend class uvasync::mutex;
        friend class uvasync::condition;
        friend detail::unit_waiter<uvasync::mutex, guard, unlock_one>;

        explicit guard(uvasync::mutex* m) noexcept
            : unit_hold(m) {}
    };

    /// The awaitable of `lock()` (detail/unit_hold.hpp).
    using locker = detail::unit_waiter<mutex, guard, unlock_one>;

    mutex() = default;
    mutex(const mutex&) = delete;
    mutex& operator=(const mutex&) = delete;
    mutex(mutex&&) = delete;
    mutex& operator=(mutex&&) = delete;
    ~mutex() = default;

    /// Waits for the lock; `co_await` gives the `guard`.
    [[nodiscard]] locker lock() noexcept { return locker(*this); }

    /// The lock if it is free right now, else an empty guard. Never suspends; also usable
    /// outside a task.
    [[nodiscard]] guard try_lock() noexcept { return take_unit() ? guard(this) : guard(); }

    /// True while some guard holds the lock or a waiter has been handed it.
    [[nodiscard]] bool locked() const noexcept { return locked_; }

private:
    friend class condition;
    friend locker;

    static constexpr detail::wait_kind unit_kind{"mutex"};
    static constexpr const char* unit_call = "mutex::lock()";

    /// The lock now if it is free. Nobody queues while it is free (unlock hands it over).
    bool take_unit() noexcept {
        if (locked_) {
            return false;
        }
        locked_ = true;
        return true;
    }

    /// Hands the lock to the first waiter, or makes it free.
    void unlock() noexcept {
        if (detail::list_waiter* w = waiters_.front()) {
            w->grant();
        } else {
            locked_ = false;
        }
    }

    /// For `condition`: the lock for `w` now if it is free, else `w` queues (FIFO).
    void acquire_for(detail::list_waiter& w) noexcept {
        if (take_unit()) {
            w.grant();
        } else {
            waiters_.push_back(w);
        }
    }

    bool locked_ = false;
    detail::waiter_list<detail::list_waiter> waiters_; // lockers and notified condition waiters
};

} // namespace uvasync
