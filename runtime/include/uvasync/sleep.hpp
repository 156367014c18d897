// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <coroutine>
#include <string>
#include <type_traits>

#include <uvasync/cancel.hpp>
#include <uvasync/clock.hpp>
#include <uvasync/detail/deadline_entry.hpp>
#include <uvasync/detail/deadline_queue.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/task.hpp>

namespace uvasync {

namespace detail {

/// The awaiter behind `sleep`, `sleep_until` and `yield`. It lives in the awaiting frame and
/// is its own deadline-heap entry and abort hook: a sleep allocates nothing.
// The deadline entry comes first so that the flags below fit in the tail padding of the
// parked wait (Itanium C++ ABI): 8 bytes less in every frame that holds a sleep.
class [[nodiscard]] sleep_awaiter : private deadline_entry, private parked_wait {
public:
    /// A relative sleep: the deadline is fixed when the sleep is awaited (like D-4).
    explicit sleep_awaiter(loop_clock::duration rounded_or_due, bool relative) noexcept
        : deadline_entry(&on_fire)
        , parked_wait(&on_abort, kind)
        , relative_(relative) {
        this->when = deadline(rounded_or_due);
    }

    /// `relative`: `until` is the delay as a time since the epoch; `forever`: no deadline.
    sleep_awaiter(deadline until, bool relative, bool forever) noexcept
        : deadline_entry(&on_fire)
        , parked_wait(&on_abort, kind)
        , relative_(relative)
        , forever_(forever) {
        this->when = until;
    }

    sleep_awaiter(const sleep_awaiter&) = delete;
    sleep_awaiter& operator=(const sleep_awaiter&) = delete;

    sleep_awaiter(sleep_awaiter&& other) noexcept // only before it is awaited
        : deadline_entry(&on_fire)
        , parked_wait(std::move(other))
        , relative_(other.relative_)
        , forever_(other.forever_) {
        this->when = other.when;
    }

    sleep_awaiter& operator=(sleep_awaiter&&) = delete;

    ~sleep_awaiter() {
        if (queued()) { // the frame is destroyed while parked (a leaked task at shutdown)
            deadline_queue::leave(*this);
        }
    }

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller) {
        const deadline until = this->when; // the request, until the entry is queued
        if (relative_ && !forever_ && until.time_since_epoch() <= loop_clock::duration(0)) {
            yielded_ = true; // yield() and sleep(d <= 0): no deadline, no abort hook
            return park_until_poll(caller, "yield");
        }
        if (task_core* self = current_task(); self != nullptr) {
            self->rt->reserve_deadline(); // may throw bad_alloc: before anything changes
        }
        if (!park(caller, "sleep")) {
            return false;
        }
        runtime_state* rt = core()->rt;
        // A relative delay is measured from now, not from the iteration's start (SEMANTICS 13.2).
        const deadline now = relative_ ? rt->fresh_now() : rt->now();
        deadline when = until;
        if (relative_) {
            when = forever_ ? never : add_saturated(now, until.time_since_epoch());
        }
        if (when <= now) {
            // sleep(0), sleep_until(past) and yield(): resume after the loop's next poll for
            // I/O (SEMANTICS 4.1), unlike a 0 ms uv_timer, which libuv may run again in the
            // same iteration.
            complete_after_poll();
            yielded_ = true;
        } else if (when != never) {
            this->when = when;
            rt->add_deadline(*this);
        }
        return true;
    }

    void await_resume() {
        if (yielded_ && current_state() == state::completed && core()->current->cancelled()) {
            throw_cancelled(core()); // yield() checks again on resumption (SEMANTICS 4.1)
        }
        finish();
    }

    /// For `as_outcome` (see `parked_wait::delivery_pending`): also true for a yield whose
    /// scope was cancelled while it waited for the poll.
    [[nodiscard]] bool delivery_pending() const noexcept {
        return parked_wait::delivery_pending() ||
               (yielded_ && current_state() == state::completed && core()->current->cancelled());
    }

private:
    static const wait_kind kind;

    /// "until T ms" (milliseconds since the runtime started, as runtime::dump writes times) or
    /// "forever".
    static void describe(const parked_wait& w, deadline origin, std::string& out) {
        const auto& self = static_cast<const sleep_awaiter&>(w);
        if (self.queued()) {
            out += "until " +
                   std::to_string(
                       std::chrono::duration_cast<std::chrono::milliseconds>(self.when - origin)
                           .count()) +
                   " ms";
        } else {
            out += "forever";
        }
    }

    static void on_fire(deadline_entry* e) noexcept { static_cast<sleep_awaiter*>(e)->complete(); }

    static void on_abort(parked_wait* p) noexcept {
        auto* self = static_cast<sleep_awaiter*>(p);
        if (self->queued()) {
            deadline_queue::leave(*self);
        }
        self->aborted();
    }

    // Until it is awaited, the deadline entry's `when` holds the request: a relative delay (as
    // a time since the epoch) or the deadline; one slot for both, 8 bytes less per awaiter.
    bool relative_ = false;
    bool forever_ = false;
    bool yielded_ = false;
};

inline const wait_kind sleep_awaiter::kind{"sleep", &sleep_awaiter::describe};

/// What `sleep` (`Relative`: a delay, `never` for no deadline) and `sleep_until` (a deadline)
/// return: the request, 8 bytes, until it is awaited. `co_await` builds the `sleep_awaiter` (96
/// bytes: its deadline entry and its registration) in the awaiting frame; `timeout` and
/// `as_outcome` build it inside their own awaiter. A frame therefore never carries a moved-from
/// awaiter: the temporary of `co_await timeout(d, sleep(x))` is this request (bench/NOTES.md,
/// W2 memory).
template <bool Relative>
class [[nodiscard]] sleep_request {
public:
    using awaiter_type = sleep_awaiter; // self-contained: it keeps no reference to the request

    explicit constexpr sleep_request(deadline until) noexcept
        : until_(until) {}

    [[nodiscard]] sleep_awaiter operator co_await() const noexcept {
        return sleep_awaiter(until_, Relative, Relative && until_ == never);
    }

private:
    deadline until_; // Relative: the delay as a time since the epoch
};

} // namespace detail

/// Suspends the task for at least `d` on the loop clock.
///
/// `d` may be any `std::chrono` duration: zero and negative behave as `yield()`; positive
/// delays round up to whole milliseconds; a delay too large for the loop clock (or +infinity)
/// sleeps until cancelled without arming any timer; NaN throws `std::invalid_argument` here,
/// before anything else happens. The deadline is taken when the sleep is awaited.
///
/// **Cancellation:** a cancellation point. Total: the deadline entry is removed and
/// `cancelled_error` is raised. **Thread:** loop thread, inside a task.
template <class Rep, class Period>
detail::sleep_request<true> sleep(std::chrono::duration<Rep, Period> d) {
    // Round and range-check against a zero origin now (NaN throws here); add "now" on await.
    // `never` (too large, or +infinity) sleeps until cancelled.
    const deadline origin{};
    return detail::sleep_request<true>(detail::deadline_after(origin, d));
}

/// Suspends the task until `when` on the loop clock; a deadline already passed behaves as
/// `yield()`, and `never` sleeps until cancelled. Cancellation as for `sleep`.
inline detail::sleep_request<false> sleep_until(deadline when) noexcept {
    return detail::sleep_request<false>(when);
}

namespace detail {

/// The awaiter of `yield()`: one pointer. A yield has no deadline and nothing to abort, so it
/// registers nothing (SEMANTICS 4.1): it checks the scope on entry, waits in the run queue for
/// the loop's next poll, and checks the scope again on resumption. (`sleep(d <= 0)` behaves
/// the same through `sleep_awaiter`.)
class [[nodiscard]] yield_awaiter {
public:
    [[nodiscard]] bool await_ready() const noexcept { return false; }

    template <class P>
    bool await_suspend(std::coroutine_handle<P> caller) {
        core_ = running_task(caller);
        if (core_->current->cancelled()) {
            return false; // not started: await_resume raises
        }
        core_->rt->schedule_after_poll(core_, caller);
        return true;
    }

    void await_resume() const {
        if (core_->current->cancelled()) {
            throw_cancelled(core_);
        }
    }

    /// For `as_outcome` and the inline timeout scope: true when `await_resume` would raise.
    [[nodiscard]] bool delivery_pending() const noexcept {
        return core_ != nullptr && core_->current->cancelled();
    }

private:
    // The body frame of a spawned task has its core in front of it (decision 0021): found
    // without the thread-local lookup of `require_task` (about 50 instructions per yield
    // through a shared library, bench/NOTES.md W1). Any other caller asks the thread.
    template <class P>
    static task_core* running_task(std::coroutine_handle<P> caller) {
        if constexpr (std::is_base_of_v<task_promise_base, P>) {
            if (frame_header(caller.address()).core_live) {
                return spawned_core(caller.address());
            }
        }
        return require_task("yield");
    }

    task_core* core_ = nullptr;
};

} // namespace detail

/// Lets every other ready task run and the loop poll once, then continues.
///
/// **Cancellation:** an explicit checkpoint: raises `cancelled_error` if the current scope is
/// cancelled, on entry and again on resumption.
inline detail::yield_awaiter yield() noexcept {
    return {};
}

/// `co_await checkpoint()` raises `cancelled_error` if the current scope is cancelled and
/// otherwise continues at once, without suspending or letting other tasks run.
inline auto checkpoint() noexcept {
    struct [[nodiscard]] awaiter {
        [[nodiscard]] bool await_ready() const noexcept { return true; }

        void await_suspend(std::coroutine_handle<>) const noexcept {}

        void await_resume() const {
            detail::task_core* core = detail::require_task("checkpoint");
            if (core->current->cancelled()) {
                detail::throw_cancelled(core);
            }
        }

        /// For `as_outcome`: true when `await_resume` would raise.
        [[nodiscard]] bool delivery_pending() const noexcept {
            detail::task_core* core = detail::current_task();
            return core != nullptr && core->current->cancelled();
        }
    };

    return awaiter{};
}

/// The effective deadline at the current point: the earliest deadline of the enclosing scopes
/// up to the nearest `shielded` scope, `never` if there is none, and no later than now when a
/// cancellation is in effect here (SEMANTICS 5.11).
UVASYNC_API deadline current_deadline();

/// `max(0, current_deadline() - now())`; `loop_clock::duration::max()` when there is no
/// deadline. Pass it on to a peer, or skip work that cannot finish in time.
UVASYNC_API loop_clock::duration remaining();

/// The token of the innermost scope at the current point (SEMANTICS 11.13). Its
/// `cancel_requested()` is true iff a cancellation point here would raise. Hand it to code
/// that is not a coroutine: threadpool work polls it, callbacks register on it. It refers to
/// the scope and must not outlive it.
UVASYNC_API cancel_token current_token();

} // namespace uvasync
