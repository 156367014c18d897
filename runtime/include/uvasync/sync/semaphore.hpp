// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstddef>
#include <optional>

#include <uvasync/detail/list_waiter.hpp>
#include <uvasync/detail/unit_hold.hpp>
#include <uvasync/detail/wait_kind.hpp>
#include <uvasync/error.hpp>

namespace uvasync {

/// A counting semaphore with FIFO hand-off and RAII permits (asyncio.Semaphore).
///
/// **Cancellation:** `acquire()` is a cancellation point. A waiter cancelled while parked is
/// detached and takes nothing. A waiter that was handed a permit before its cancellation took
/// effect gets the permit (completion wins, SEMANTICS D-2; Kotlin #2233 leaked it) and raises
/// at its next cancellation point, releasing the permit as it unwinds. A waiter handed a permit
/// whose frame is destroyed before it resumes (a task leaked at shutdown) passes it on.
/// **Thread:** loop thread only.
class semaphore {
    // Gives a permit back: to the first waiter, if any.
    struct release_one {
        void operator()(semaphore* s) const noexcept { s->release(); }
    };

public:
    /// Releases its permit when destroyed, unless moved from or released already.
    class permit : private detail::unit_hold<semaphore, release_one> {
    public:
        permit() noexcept = default;

        /// Returns the permit now. No effect on an empty permit.
        void release() noexcept { give_back(); }

        [[nodiscard]] bool held() const noexcept { return owner_ != nullptr; }

    private:
        friend class semaphore;
        friend detail::unit_waiter<semaphore, permit, release_one>;

        explicit permit(semaphore* s) noexcept
            : unit_hold(s) {}
    };

    explicit semaphore(std::size_t initial) noexcept
        : count_(initial) {}

    semaphore(const semaphore&) = delete;
    semaphore& operator=(const semaphore&) = delete;
    semaphore(semaphore&&) = delete;
    semaphore& operator=(semaphore&&) = delete;
    ~semaphore() = default;

    /// The awaitable of `acquire()` (detail/unit_hold.hpp).
    using acquirer = detail::unit_waiter<semaphore, permit, release_one>;

    /// Waits for a permit; `co_await` gives the `permit`.
    [[nodiscard]] acquirer acquire() noexcept { return acquirer(*this); }

    /// A permit if one is free right now (and nobody waits), else nothing. Never suspends.
    [[nodiscard]] std::optional<permit> try_acquire() noexcept {
        if (take_unit()) {
            return permit(this);
        }
        return std::nullopt;
    }

    /// Returns a permit: hands it to the first waiter, or makes it free.
    void release() noexcept {
        if (acquirer* w = waiters_.front()) {
            w->grant();
        } else {
            ++count_;
        }
    }

    [[nodiscard]] std::size_t available() const noexcept { return count_; }

private:
    friend acquirer;

    static constexpr detail::wait_kind unit_kind{"semaphore"};
    static constexpr const char* unit_call = "semaphore::acquire()";

    /// A permit now if one is free and nobody queues ahead (FIFO fairness).
    bool take_unit() noexcept {
        if (count_ == 0 || !waiters_.empty()) {
            return false;
        }
        --count_;
        return true;
    }

    std::size_t count_;
    detail::waiter_list<acquirer> waiters_;
};

} // namespace uvasync
