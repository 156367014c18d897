// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <initializer_list>
#include <utility>

#include <uvasync/detail/export.hpp>
#include <uvasync/detail/handle_state.hpp>

namespace uvasync {

namespace detail {

class signal_state;

/// The awaiter behind `signal_set::wait()`.
class [[nodiscard]] UVASYNC_API signal_awaiter
    : public single_waiter<signal_awaiter, signal_state> {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    explicit signal_awaiter(signal_state* state) noexcept;

    signal_awaiter(signal_awaiter&& other) noexcept = default; // only before it is awaited

    ~signal_awaiter();

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller);

    int await_resume();

private:
    friend class signal_state;

    // runtime::dump: what this wait is (wait_kind.hpp), described only when a dump is made.
    static const wait_kind kind;
    static void describe(const parked_wait& w, deadline origin, std::string& out);

    /// Called by the set: `signum` arrived, or 0 when the set was closed.
    void deliver(int signum) noexcept;

    int signum_ = 0;
};

} // namespace detail

/// Catches a set of POSIX signals (`SIGINT`, `SIGTERM`, `SIGHUP`, ...) and hands them to a task
/// one at a time: the graceful-shutdown building block of a server.
///
/// Each signal gets its own `uv_signal_t`. From construction until close, the signals are
/// caught by libuv on behalf of this set (their default action, such as terminating the
/// process on `SIGINT`, no longer happens). A signal that arrives while no task waits is
/// queued and counted, and returned by a later `wait()`: none is lost. The set keeps the loop
/// alive only while a task waits in `wait()`.
///
/// Move-only; the destructor closes the set (see `close()`) without waiting for the close
/// callbacks.
///
/// **Thread:** loop thread only (it is created on the thread's runtime).
class UVASYNC_API signal_set {
public:
    /// Starts catching `signals` (duplicates are ignored).
    ///
    /// **Errors:** `std::invalid_argument` for an empty list; `std::system_error` (uv
    /// category) naming the signal when libuv cannot catch it (`SIGKILL`, `SIGSTOP`, a number
    /// that is no signal); `invalid_state` without a runtime on this thread.
    explicit signal_set(std::initializer_list<int> signals);

    /// Waits for the next signal and returns its number. Signals queued before the call are
    /// returned first, in the order in which each kind of signal first arrived, then round
    /// robin among the kinds; each queued occurrence is returned once. A queued signal
    /// resumes the task through the run queue at once.
    ///
    /// **Cancellation:** a cancellation point; total. The waiter is removed and
    /// `cancelled_error` is raised; the set keeps catching, so a signal that arrives later is
    /// queued for the next `wait()`. A signal that was already handed to the waiter when the
    /// cancellation came is returned (completion wins).
    ///
    /// **Errors:** `invalid_state` when the set is closed or moved from, when another task is
    /// already waiting, or when the set is closed while this task waits.
    detail::signal_awaiter wait();

    /// Stops catching the signals and closes the handles; queued signals are dropped and a
    /// task waiting in `wait()` raises `invalid_state`. The returned awaitable resumes after
    /// the last close callback (awaiting it is optional). Never a cancellation point.
    [[nodiscard]] detail::close_awaiter close() noexcept;

    /// True until the set is closed or moved from.
    [[nodiscard]] bool is_open() const noexcept { return state_ != nullptr; }

private:
    detail::state_owner<detail::signal_state> state_;
};

} // namespace uvasync
