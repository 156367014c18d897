// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstddef>
#include <utility>

#include <uvasync/detail/deferred.hpp>
#include <uvasync/detail/list_waiter.hpp>
#include <uvasync/error.hpp>
#include <uvasync/outcome.hpp>
#include <uvasync/sync/mutex.hpp>
#include <uvasync/task.hpp>

namespace uvasync {

/// A condition variable tied to a `mutex` (asyncio.Condition):
///
/// ```cpp
/// mutex::guard g = co_await m.lock();
/// co_await cv.wait(g, [&] { return !items.empty(); });
/// ```
///
/// `wait(g)` releases the mutex held by `g`, waits for a notification, and takes the mutex
/// back into `g` before it returns or raises: whatever happens, `g` holds the lock again
/// afterwards. A notified waiter goes straight from the condition's queue to the mutex's
/// queue ("wait morphing"), so it resumes once, holding the lock. Waiters are notified in FIFO
/// order. Notifying does not require holding the mutex.
///
/// **Cancellation** (SEMANTICS 24): `wait` is a cancellation point. Cancelled before it starts,
/// it raises without releasing the lock. Cancelled while waiting for a notification, it stops
/// waiting, queues for the mutex (a wait that cannot be aborted: the lock must come back), and
/// raises once it holds the lock again. Notified before its cancellation took effect, it
/// consumes the notification and returns normally, holding the lock (completion wins, D-2);
/// its next cancellation point raises. A notification is never lost to a cancelled waiter.
///
/// **Thread:** loop thread only. The condition and its mutex must outlive their waiters.
class condition {
public:
    explicit condition(mutex& m) noexcept
        : m_(m) {}

    condition(const condition&) = delete;
    condition& operator=(const condition&) = delete;
    condition(condition&&) = delete;
    condition& operator=(condition&&) = delete;
    ~condition() = default;

    /// Granted when the mutex hands it the lock back (notified, or cancelled while waiting).
    class [[nodiscard]] waiter : public detail::list_waiter {
    public:
        waiter(condition& c, mutex::guard& g) noexcept
            : list_waiter(&on_abort)
            , c_(c)
            , g_(g) {
            static constexpr detail::wait_kind kind{"condition"};
            describe_as(kind);
        }

        waiter(waiter&&) noexcept = default; // only before it is awaited

        ~waiter() {
            if (unclaimed()) {
                c_.m_.unlock(); // handed the lock back, never resumed: pass it on
            }
        }

        [[nodiscard]] bool await_ready() const noexcept { return false; }

        bool await_suspend(std::coroutine_handle<> caller) {
            c_.check(g_); // again: the guard may have been unlocked since wait() was called
            if (!park_in(c_.waiters_, caller, "condition::wait()")) {
                return false; // cancelled: raises with the lock still held
            }
            g_.owner_ = nullptr;
            c_.m_.unlock();
            return true;
        }

        void await_resume() {
            claim(); // raises: cancelled before it released anything
            g_.owner_ = &c_.m_;
            if (cancelled_) {
                detail::throw_cancelled(core()); // the lock is back; now raise
            }
        }

        /// `await_resume` for `as_outcome` (SEMANTICS 19.2): the lock is back in `g` as above,
        /// and a cancellation is reported as a value instead of raised.
        outcome<void> await_resume_outcome() {
            if (delivery_pending()) {
                return outcome<void>(detail::make_delivery(core())); // released nothing
            }
            claim();
            g_.owner_ = &c_.m_;
            if (cancelled_) {
                return outcome<void>(detail::make_delivery(core()));
            }
            return outcome<void>(unit{});
        }

    private:
        friend class condition;

        // Not yet notified: leave the condition and queue for the mutex; stay parked until
        // the lock comes back (then raise). Already notified: completion wins, keep waiting.
        static void on_abort(parked_wait* p) noexcept {
            auto* self = static_cast<waiter*>(p);
            if (self->notified_) {
                return;
            }
            self->cancelled_ = true;
            self->leave_list();
            self->c_.m_.acquire_for(*self);
        }

        condition& c_;
        mutex::guard& g_;
        bool notified_ = false;
        bool cancelled_ = false;
    };

    /// Releases the lock `g` holds, waits for a notification, takes the lock back into `g`.
    /// Throws `invalid_state` at once if `g` does not hold this condition's mutex.
    [[nodiscard]] waiter wait(mutex::guard& g) {
        check(g);
        return waiter(*this, g);
    }

    /// Waits until `pred()` is true, checking it with the lock held: first before any wait
    /// (true at once: no suspension, not a cancellation point), then after every
    /// notification. `pred` is kept in the awaitable and called on the awaiting task.
    template <class Pred>
    [[nodiscard]] auto wait(mutex::guard& g, Pred&& pred) {
        check(g);
        using P = std::decay_t<Pred>;
        return detail::deferred_call<void, wait_until<P>, condition*, mutex::guard*, P>(
            this, &g, std::forward<Pred>(pred));
    }

    /// Moves the first waiter (if any) to the mutex's queue; it resumes holding the lock.
    void notify_one() noexcept { notify(1); }

    /// Moves up to `n` waiters, in FIFO order.
    void notify(std::size_t n) noexcept {
        while (n-- > 0) {
            waiter* w = waiters_.pop_front();
            if (w == nullptr) {
                return;
            }
            w->notified_ = true;
            m_.acquire_for(*w);
        }
    }

    void notify_all() noexcept {
        while (waiter* w = waiters_.pop_front()) {
            w->notified_ = true;
            m_.acquire_for(*w);
        }
    }

    [[nodiscard]] mutex& get_mutex() const noexcept { return m_; }

private:
    template <class P>
    struct wait_until {
        static task<void> call(condition*& c, mutex::guard*& g, P& pred) {
            while (!pred()) {
                co_await c->wait(*g);
            }
        }
    };

    void check(const mutex::guard& g) const {
        if (g.mutex() != &m_) {
            throw invalid_state("uvasync: condition::wait needs a guard holding the "
                                "condition's mutex");
        }
    }

    mutex& m_;
    detail::waiter_list<waiter> waiters_;
};

} // namespace uvasync
