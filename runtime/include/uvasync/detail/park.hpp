// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <coroutine>
#include <cstdint>
#include <type_traits>

#include <uvasync/detail/cancel_node.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/scope.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/detail/wait_kind.hpp>
#include <uvasync/error.hpp>

namespace uvasync::detail {

/// The delivery `throw_cancelled` (task_core.hpp) would raise, as a value: `as_outcome` reports it
/// without a throw (SEMANTICS 19.2). Counts as a delivery for the "1000 without suspending" report
/// (4.6).
UVASYNC_API cancelled_error make_delivery(task_core* core);

/// The running task, or `invalid_state` when called outside one (SEMANTICS 5.1).
UVASYNC_API task_core* require_task(const char* what);

/// A leaf awaiter of the library (SEMANTICS 19.2): it can tell, before `await_resume`, that
/// resuming would only raise the delivery of its cancellation point
/// (`parked_wait::delivery_pending`). `as_outcome` and the inline timeout scope use it to skip the
/// throw.
template <class W>
concept delivery_reporting = requires(const W& w) {
    { w.delivery_pending() }
    noexcept->std::same_as<bool>;
};

/// A request for a leaf wait that is small until it is awaited (`sleep`'s `sleep_request`):
/// `operator co_await` builds a self-contained `awaiter_type` that keeps no reference to the
/// request. `timeout` and `as_outcome` build that awaiter inside their own awaiter, so the
/// awaiting frame holds the request (a temporary) and one awaiter, not two awaiters.
template <class R>
concept leaf_request = requires(R&& r) {
    typename std::remove_cvref_t<R>::awaiter_type;
    {
        static_cast<R&&>(r).operator co_await()
        } -> std::same_as<typename std::remove_cvref_t<R>::awaiter_type>;
};

/// The shared half of every cancellation point: trio's abort protocol (SEMANTICS 1, "Abort
/// hook"). A derived awaiter calls `park()` before it starts its operation; the operation's
/// completion calls `complete()`; a cancellation of the innermost scope calls the derived
/// abort hook once, which either undoes the operation and calls `aborted()`, or leaves the
/// operation running (it cannot be undone, or it forwards the cancellation).
/// Whatever comes first wins; the other is ignored (completion wins, D-2).
class parked_wait : private cancel_registration {
public:
    enum class state : std::uint8_t { idle, waiting, completed, aborted };

    parked_wait(const parked_wait&) = delete;
    parked_wait& operator=(const parked_wait&) = delete;
    parked_wait& operator=(parked_wait&&) = delete;

    /// Awaiters may be moved before they are awaited (for example into `timeout(d, aw)`),
    /// never while parked.
    parked_wait(parked_wait&& other) noexcept
        : cancel_registration(&on_cancel)
        , hook_(other.hook_)
        , kind_(other.kind_) {}

    /// The no-throw half of step 4, for `as_outcome` (SEMANTICS 19.2): true when the wait was
    /// aborted (or never started because the scope was already cancelled), that is when
    /// `await_resume` would do nothing but raise the delivery. `as_outcome` then skips
    /// `await_resume` and reports `make_delivery()` as the cancelled outcome. A leaf awaiter
    /// opts in with `using parked_wait::delivery_pending;` once its `await_resume` starts with
    /// `finish()` (or only calls it when not completed).
    [[nodiscard]] bool delivery_pending() const noexcept { return state_ == state::aborted; }

protected:
    using abort_hook = void (*)(parked_wait*) noexcept;

    explicit parked_wait(abort_hook hook) noexcept
        : cancel_registration(&on_cancel)
        , hook_(hook) {}

    explicit parked_wait(abort_hook hook, const wait_kind& kind) noexcept
        : cancel_registration(&on_cancel)
        , hook_(hook)
        , kind_(&kind) {}

    /// What this wait is, for `runtime::dump` and the slow-wait trace (wait_kind.hpp); `kind`
    /// has static storage. Set before the wait parks.
    void describe_as(const wait_kind& kind) noexcept { kind_ = &kind; }

    ~parked_wait() = default; // the registration unlinks itself

    /// Step 2 of the protocol: false (and nothing started) when the innermost scope is already
    /// cancelled; `finish()` then raises. Otherwise records the caller and registers the hook.
    bool park(std::coroutine_handle<> caller, const char* what) {
        if (!enter(caller, what)) {
            return false;
        }
        state_ = state::waiting;
        core_->current->node.add(*this);
        return true;
    }

    /// `park()` for `yield()` (SEMANTICS 4.1): checks the scope like `park()`, then completes at
    /// once; the task resumes after the loop's next poll. No abort hook is registered: there is
    /// nothing to abort, and `yield()` checks the scope again when it resumes.
    bool park_until_poll(std::coroutine_handle<> caller, const char* what) {
        if (!enter(caller, what)) {
            return false;
        }
        state_ = state::completed;
        core_->rt->schedule_after_poll(core_, caller);
        return true;
    }

    /// The operation could not be started after `park()` (libuv returned an error, so no
    /// callback will come): leaves the wait without scheduling, so `await_suspend` can return
    /// false and `await_resume` reports the error at once.
    void unpark() noexcept {
        state_ = state::completed;
        unlink();
    }

    /// The operation finished; the task becomes ready. Ignored after an abort.
    void complete() noexcept { end_wait(state::completed); }

    /// `yield()`: completes at once, but the task resumes only after the loop's next poll for
    /// I/O (SEMANTICS 4.1).
    void complete_after_poll() noexcept {
        state_ = state::completed;
        unlink();
        core_->rt->schedule_after_poll(core_, caller_);
    }

    /// The abort hook undid the operation; the task becomes ready and will raise.
    void aborted() noexcept { end_wait(state::aborted); }

    /// Step 4: raises when aborted, else returns normally (the result is the caller's).
    void finish() {
        unlink();
        if (state_ == state::aborted) {
            throw_cancelled(core_);
        }
    }

    [[nodiscard]] state current_state() const noexcept { return state_; }

    [[nodiscard]] task_core* core() const noexcept { return core_; }

    [[nodiscard]] bool waiting() const noexcept { return state_ == state::waiting; }

private:
    friend struct introspection_access;

    // The check both parks start with: the running task (else `invalid_state`), and false
    // (the wait aborted before it started) when its innermost scope is already cancelled;
    // otherwise records the caller.
    bool enter(std::coroutine_handle<> caller, const char* what) {
        core_ = require_task(what);
        if (core_->current->cancelled()) {
            state_ = state::aborted;
            return false;
        }
        caller_ = caller;
        return true;
    }

    // Whichever of completion and abort comes first ends the wait as `how` and makes the task
    // ready; the later one is ignored (D-2).
    void end_wait(state how) noexcept {
        if (state_ != state::waiting) {
            return;
        }
        state_ = how;
        unlink();
        core_->rt->schedule(core_, caller_);
    }

    // Compiled (this_task.cpp): its one address tells introspection which registrations of a
    // scope are parked waits.
    UVASYNC_API static void on_cancel(cancel_registration* r) noexcept;

    abort_hook hook_;
    const wait_kind* kind_ = &unnamed_wait;
    task_core* core_ = nullptr;
    std::coroutine_handle<> caller_;
    state state_ = state::idle;
};

} // namespace uvasync::detail
