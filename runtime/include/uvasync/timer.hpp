// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <utility>

#include <uvasync/detail/export.hpp>
#include <uvasync/detail/handle_state.hpp>

namespace uvasync {

namespace detail {

class timer_state;

/// The awaiter behind `timer::tick()`.
class [[nodiscard]] UVASYNC_API tick_awaiter : public single_waiter<tick_awaiter, timer_state> {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    explicit tick_awaiter(timer_state* state) noexcept;

    tick_awaiter(tick_awaiter&& other) noexcept = default; // only before it is awaited

    ~tick_awaiter();

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller);

    std::uint64_t await_resume();

private:
    friend class timer_state;
    // runtime::dump: what this wait is (wait_kind.hpp), described only when a dump is made.
    static const wait_kind kind;
    static void describe(const parked_wait& w, deadline origin, std::string& out);

    /// Called by the timer: the ticks are due (`ticks` > 0) or the timer stopped (0).
    void deliver(std::uint64_t ticks) noexcept;

    std::uint64_t ticks_ = 0;
    bool stopped_ = false;
};

} // namespace detail

/// A periodic timer on the runtime's clock: ticks every `interval` after its creation, for
/// periodic work that should keep its rhythm (a heartbeat, a metrics flush) rather than drift
/// like `sleep(interval)` in a loop.
///
/// The timer follows the runtime's clock, real or virtual (SEMANTICS 18): it is an entry in
/// the runtime's deadline heap, like a sleep, not a `uv_timer_t` of its own. It is only armed
/// while a task waits in `tick()`, so a timer nobody waits on costs nothing and keeps no loop
/// alive; the ticks it misses meanwhile are counted when the next `tick()` is awaited.
///
/// Move-only; the destructor stops and closes the timer, and a task waiting in `tick()` raises
/// `invalid_state`.
///
/// **Thread:** loop thread only (it is created on the thread's runtime).
class UVASYNC_API timer {
public:
    /// Starts the timer: the first tick is due one `interval` from now.
    ///
    /// **Errors:** `std::invalid_argument` when `interval` is zero, negative or too large for
    /// the loop clock; `invalid_state` without a runtime on this thread.
    explicit timer(std::chrono::milliseconds interval);

    /// Waits for the next tick and returns how many ticks became due since the previous
    /// `tick()` returned (at least 1): ticks missed while nobody waited coalesce into one
    /// return. A tick already due resumes the task through the run queue at once.
    ///
    /// **Cancellation:** a cancellation point; total. The waiter is removed and
    /// `cancelled_error` is raised; the timer keeps its schedule for later ticks. A tick that
    /// was already delivered when the cancellation came is returned (completion wins).
    ///
    /// **Errors:** `invalid_state` when the timer is stopped, closed, moved from, already
    /// awaited by another task, or stopped while this task waits.
    detail::tick_awaiter tick();

    /// Stops the timer for good: a pending `tick()` raises `invalid_state`, later ones too.
    void stop() noexcept;

    /// Closes the timer (stopping it). A timer has no libuv handle, so the returned awaitable
    /// resumes through the run queue at once; it exists so that every I/O object closes the
    /// same way. Never a cancellation point.
    [[nodiscard]] detail::close_awaiter close() noexcept;

    /// The interval given to the constructor.
    [[nodiscard]] std::chrono::milliseconds interval() const noexcept { return interval_; }

    /// False once the timer is stopped or closed.
    [[nodiscard]] bool running() const noexcept;

private:
    detail::state_owner<detail::timer_state> state_;
    std::chrono::milliseconds interval_;
};

} // namespace uvasync
