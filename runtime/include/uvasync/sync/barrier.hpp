// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstddef>
#include <stdexcept>
#include <utility>

#include <uvasync/detail/list_waiter.hpp>

namespace uvasync {

/// A reusable rendezvous of `parties` tasks (asyncio.Barrier, std::barrier):
///
/// ```cpp
/// std::size_t i = co_await b.arrive_and_wait();
/// ```
///
/// Each generation waits until `parties` tasks have arrived, then releases all of them at once
/// and starts the next generation empty: a task that arrives again, even before the others
/// of its generation have resumed, belongs to the next one. Each released task gets its
/// arrival index in the generation, 0 .. parties-1 (the last arrival gets parties-1 and does
/// not suspend).
///
/// **Cancellation** (SEMANTICS 25): `arrive_and_wait()` is a cancellation point unless the
/// caller is the last arrival. A waiter cancelled before its generation is complete
/// withdraws its arrival: the generation then waits for one more task, and the others keep
/// waiting, unaffected (as asyncio.Barrier does; a barrier never breaks). A waiter whose
/// generation completed before its cancellation took effect gets its index (completion wins,
/// D-2) and raises at its next cancellation point. To stop every party, cancel them all, for
/// example through the task group they run in.
///
/// **Thread:** loop thread only. Destroying a barrier with waiters leaves them waiting until
/// they are cancelled.
class barrier {
public:
    /// `parties` must be at least 1 (else `std::invalid_argument`).
    explicit barrier(std::size_t parties)
        : parties_(parties) {
        if (parties == 0) {
            throw std::invalid_argument("uvasync: a barrier needs at least one party");
        }
    }

    barrier(const barrier&) = delete;
    barrier& operator=(const barrier&) = delete;
    barrier(barrier&&) = delete;
    barrier& operator=(barrier&&) = delete;
    ~barrier() = default;

    /// Granted when its generation completes.
    class [[nodiscard]] arriver : public detail::list_waiter {
    public:
        explicit arriver(barrier& b) noexcept
            : list_waiter(&on_abort)
            , b_(b) {
            static constexpr detail::wait_kind kind{"barrier"};
            describe_as(kind);
        }

        arriver(arriver&&) noexcept = default; // only before it is awaited

        ~arriver() {
            if (queued()) {
                leave_list(); // destroyed while parked (a leaked task): not arrived
                --b_.arrived_;
            }
        }

        // The last arrival completes the generation without suspending.
        [[nodiscard]] bool await_ready() noexcept {
            if (b_.arrived_ + 1 == b_.parties_) {
                index_ = b_.parties_ - 1;
                granted_ = true;
                b_.release();
            }
            return granted_;
        }

        bool await_suspend(std::coroutine_handle<> caller) {
            if (!park_in(b_.waiters_, caller, "barrier::arrive_and_wait()")) {
                return false; // cancelled: it never arrived
            }
            ++b_.arrived_;
            return true;
        }

        std::size_t await_resume() {
            claim(); // raises: cancelled before its generation completed
            return index_;
        }

    private:
        friend class barrier;

        // Cancelled before the generation completed: withdraw the arrival.
        static void on_abort(parked_wait* p) noexcept {
            auto* self = static_cast<arriver*>(p);
            --self->b_.arrived_;
            self->withdraw();
        }

        barrier& b_;
        std::size_t index_ = 0;
    };

    /// Arrives and waits for the rest of this generation; gives the arrival index.
    [[nodiscard]] arriver arrive_and_wait() noexcept { return arriver(*this); }

    [[nodiscard]] std::size_t parties() const noexcept { return parties_; }

    /// Tasks waiting in the current generation.
    [[nodiscard]] std::size_t n_waiting() const noexcept { return arrived_; }

    /// Completed generations.
    [[nodiscard]] std::size_t generation() const noexcept { return generation_; }

private:
    friend class arriver;

    // Releases the waiting arrivals with their indices (arrival order) and starts the next
    // generation.
    void release() noexcept {
        std::size_t i = 0;
        while (arriver* w = waiters_.front()) {
            w->index_ = i++;
            w->grant();
        }
        arrived_ = 0;
        ++generation_;
    }

    std::size_t parties_;
    std::size_t arrived_ = 0;
    std::size_t generation_ = 0;
    detail::waiter_list<arriver> waiters_;
};

} // namespace uvasync
