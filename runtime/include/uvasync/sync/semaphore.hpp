// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstddef>
#include <optional>
#include <utility>

#include <uvasync/detail/list_waiter.hpp>
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
public:
    /// Releases its permit when destroyed, unless moved from or released already.
    class permit {
    public:
        permit() noexcept = default;

        permit(permit&& other) noexcept
            : sem_(std::exchange(other.sem_, nullptr)) {}

        permit& operator=(permit&& other) noexcept {
            if (this != &other) {
                release();
                sem_ = std::exchange(other.sem_, nullptr);
            }
            return *this;
        }

        permit(const permit&) = delete;
        permit& operator=(const permit&) = delete;

        ~permit() { release(); }

        void release() noexcept {
            if (sem_ != nullptr) {
                std::exchange(sem_, nullptr)->release();
            }
        }

        [[nodiscard]] bool held() const noexcept { return sem_ != nullptr; }

    private:
        friend class semaphore;

        explicit permit(semaphore* s) noexcept
            : sem_(s) {}

        semaphore* sem_ = nullptr;
    };

    explicit semaphore(std::size_t initial) noexcept
        : count_(initial) {}

    semaphore(const semaphore&) = delete;
    semaphore& operator=(const semaphore&) = delete;
    semaphore(semaphore&&) = delete;
    semaphore& operator=(semaphore&&) = delete;
    ~semaphore() = default;

    class [[nodiscard]] acquirer : public detail::list_waiter {
    public:
        explicit acquirer(semaphore& s) noexcept
            : sem_(s) {
            static constexpr detail::wait_kind kind{"semaphore"};
            describe_as(kind);
        }

        acquirer(acquirer&& other) noexcept // only before it is awaited
            : list_waiter(std::move(other))
            , sem_(other.sem_) {}

        acquirer(const acquirer&) = delete;
        acquirer& operator=(const acquirer&) = delete;
        acquirer& operator=(acquirer&&) = delete;

        ~acquirer() {
            if (granted_ && !taken_) {
                sem_.release(); // handed a permit, never resumed (a leaked frame): pass it on
            }
        }

        // Immediate when a permit is free and nobody queues ahead (FIFO fairness).
        [[nodiscard]] bool await_ready() noexcept {
            if (sem_.count_ > 0 && sem_.waiters_.empty()) {
                --sem_.count_;
                granted_ = true;
            }
            return granted_;
        }

        bool await_suspend(std::coroutine_handle<> caller) {
            if (!park(caller, "semaphore::acquire()")) {
                return false;
            }
            sem_.waiters_.push_back(*this);
            return true;
        }

        permit await_resume() {
            if (!granted_) {
                finish(); // raises: aborted before a permit arrived
            }
            taken_ = true;
            return permit(&sem_);
        }

    private:
        friend class semaphore;
        semaphore& sem_;
        bool granted_ = false;
        bool taken_ = false;
    };

    /// Waits for a permit.
    [[nodiscard]] acquirer acquire() noexcept { return acquirer(*this); }

    /// A permit if one is free right now (and nobody waits), else nothing. Never suspends.
    [[nodiscard]] std::optional<permit> try_acquire() noexcept {
        if (count_ > 0 && waiters_.empty()) {
            --count_;
            return permit(this);
        }
        return std::nullopt;
    }

    /// Returns a permit: hands it to the first waiter, or makes it free.
    void release() noexcept {
        if (acquirer* w = waiters_.front()) {
            w->granted_ = true;
            w->wake();
        } else {
            ++count_;
        }
    }

    [[nodiscard]] std::size_t available() const noexcept { return count_; }

private:
    std::size_t count_;
    detail::waiter_list<acquirer> waiters_;
};

} // namespace uvasync
