// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <utility>

#include <uvasync/detail/intrusive_list.hpp>
#include <uvasync/detail/park.hpp>

namespace uvasync {

class mutex;
class condition;

namespace detail {

struct mutex_waiter_tag;

/// A task queued for a mutex: a `mutex::lock()`, or a `condition::wait` that must take the
/// mutex back. The mutex hands the lock over by setting `granted` and making the task ready
/// (FIFO hand-off: the lock never becomes free while someone queues).
class mutex_waiter : protected parked_wait, public list_hook<mutex_waiter_tag> {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    mutex_waiter(const mutex_waiter&) = delete;
    mutex_waiter& operator=(const mutex_waiter&) = delete;
    mutex_waiter& operator=(mutex_waiter&&) = delete;

    mutex_waiter(mutex_waiter&& other) noexcept // only before it is awaited
        : parked_wait(std::move(other)) {}

    /// The mutex hands this waiter the lock: it leaves the queue and becomes ready.
    void grant() noexcept {
        granted = true;
        list_hook<mutex_waiter_tag>::unlink();
        complete();
    }

    bool granted = false;

protected:
    explicit mutex_waiter(abort_hook hook) noexcept
        : parked_wait(hook) {}

    ~mutex_waiter() { list_hook<mutex_waiter_tag>::unlink(); }
};

} // namespace detail

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
public:
    /// Owns the lock until destroyed, `unlock()`ed or moved from.
    class guard {
    public:
        guard() noexcept = default;

        guard(guard&& other) noexcept
            : m_(std::exchange(other.m_, nullptr)) {}

        guard& operator=(guard&& other) noexcept {
            if (this != &other) {
                unlock();
                m_ = std::exchange(other.m_, nullptr);
            }
            return *this;
        }

        guard(const guard&) = delete;
        guard& operator=(const guard&) = delete;

        ~guard() { unlock(); }

        /// Releases the lock (to the first waiter, if any). No effect on an empty guard.
        void unlock() noexcept {
            if (m_ != nullptr) {
                std::exchange(m_, nullptr)->unlock();
            }
        }

        [[nodiscard]] bool owns_lock() const noexcept { return m_ != nullptr; }

        explicit operator bool() const noexcept { return owns_lock(); }

        /// The mutex this guard holds, or null.
        [[nodiscard]] uvasync::mutex* mutex() const noexcept { return m_; }

    private:
        friend class uvasync::mutex;
        friend class uvasync::condition;

        explicit guard(uvasync::mutex* m) noexcept
            : m_(m) {}

        uvasync::mutex* m_ = nullptr;
    };

    class [[nodiscard]] locker : public detail::mutex_waiter {
    public:
        explicit locker(mutex& m) noexcept
            : mutex_waiter(&on_abort)
            , m_(m) {
            static constexpr detail::wait_kind kind{"mutex"};
            describe_as(kind);
        }

        locker(locker&& other) noexcept // only before it is awaited
            : mutex_waiter(std::move(other))
            , m_(other.m_) {}

        locker(const locker&) = delete;
        locker& operator=(const locker&) = delete;
        locker& operator=(locker&&) = delete;

        ~locker() {
            if (granted && !taken_) {
                m_.unlock(); // handed the lock, never resumed: pass it on
            }
        }

        // Immediate when the mutex is free (then nobody queues: unlock hands over directly).
        [[nodiscard]] bool await_ready() noexcept {
            if (!m_.locked_) {
                m_.locked_ = true;
                granted = true;
            }
            return granted;
        }

        bool await_suspend(std::coroutine_handle<> caller) {
            if (!park(caller, "mutex::lock()")) {
                return false;
            }
            m_.waiters_.push_back(*this);
            return true;
        }

        guard await_resume() {
            if (!granted) {
                finish(); // raises: aborted before the lock arrived
            }
            taken_ = true;
            return guard(&m_);
        }

    private:
        static void on_abort(parked_wait* p) noexcept {
            auto* self = static_cast<locker*>(p);
            self->list_hook<detail::mutex_waiter_tag>::unlink();
            self->aborted();
        }

        mutex& m_;
        bool taken_ = false;
    };

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
    [[nodiscard]] guard try_lock() noexcept {
        if (locked_) {
            return guard();
        }
        locked_ = true;
        return guard(this);
    }

    /// True while some guard holds the lock or a waiter has been handed it.
    [[nodiscard]] bool locked() const noexcept { return locked_; }

private:
    friend class condition;

    /// Hands the lock to the first waiter, or makes it free.
    void unlock() noexcept {
        if (detail::mutex_waiter* w = waiters_.front()) {
            w->grant();
        } else {
            locked_ = false;
        }
    }

    /// For `condition`: the lock for `w` now if it is free, else `w` queues (FIFO).
    void acquire_for(detail::mutex_waiter& w) noexcept {
        if (!locked_) {
            locked_ = true;
            w.grant();
        } else {
            waiters_.push_back(w);
        }
    }

    bool locked_ = false;
    detail::intrusive_list<detail::mutex_waiter, detail::mutex_waiter_tag> waiters_;
};

} // namespace uvasync
