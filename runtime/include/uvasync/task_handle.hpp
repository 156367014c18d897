// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <uvasync/detail/park.hpp>
#include <uvasync/detail/root.hpp>
#include <uvasync/detail/trace_points.hpp>
#include <uvasync/error.hpp>
#include <uvasync/outcome.hpp>

namespace uvasync {

namespace detail {

/// The outcome of a finished task, as awaiting its handle gives it: the value (copied; a
/// move-only value moved out, once), the error rethrown, or a cancellation raised.
template <class T>
T take_result(task_state<T>* target) {
    switch (target->result) {
    case outcome::value:
        target->retrieved = true;
        if constexpr (!std::is_void_v<T>) {
            if constexpr (std::is_copy_constructible_v<T>) {
                return *target->value();
            } else {
                if (target->value_taken) {
                    throw invalid_state(
                        "uvasync: the move-only result of this task was already taken");
                }
                target->value_taken = true;
                return std::move(*target->value());
            }
        } else {
            return;
        }
    case outcome::error:
        target->retrieved = true;
        std::rethrow_exception(target->error);
    case outcome::cancelled:
    case outcome::pending:
        break;
    }
    // Cancelled: a delivery in the caller when one of its own scopes is cancelled (owner by
    // D-3); otherwise an exception no scope of ours owns, carrying the task's message.
    task_core* self = current_task();
    if (self != nullptr && self->current->cancelled()) {
        throw_cancelled(self);
    }
    throw cancelled_error(target->cancel_message, 0);
}

/// Waits for a spawned task to finish: a cancellation point with forwarding (SEMANTICS 2.6),
/// or, for `shield`, without: the waiter just stops waiting (8a.3).
template <class T, bool Forward = true>
class [[nodiscard]] join_awaiter : private parked_wait, private task_waiter {
public:
    explicit join_awaiter(task_state<T>* target) noexcept
        : parked_wait(&on_abort)
        , task_waiter(&on_done)
        , target_(target) {
        static constexpr wait_kind kind{"join", &describe};
        describe_as(kind);
    }

    join_awaiter(const join_awaiter&) = delete;
    join_awaiter& operator=(const join_awaiter&) = delete;

    join_awaiter(join_awaiter&& other) noexcept // only before it is awaited
        : parked_wait(std::move(other))
        , task_waiter(&on_done)
        , target_(other.target_) {}

    join_awaiter& operator=(join_awaiter&&) = delete;

    ~join_awaiter() { task_waiter::unlink(); }

    // Awaiting a finished task is not a cancellation point.
    [[nodiscard]] bool await_ready() const noexcept {
        return target_ == nullptr || target_->done();
    }

    bool await_suspend(std::coroutine_handle<> caller) {
        if (current_task() == target_) {
            throw invalid_state("uvasync: a task cannot await its own handle");
        }
        if (!park(caller, "awaiting a task_handle")) {
            return false;
        }
        target_->waiters.push_back(*this);
        return true;
    }

    T await_resume() {
        if (target_ == nullptr) {
            throw invalid_state("uvasync: awaiting an empty task_handle");
        }
        task_waiter::unlink();
        if (!target_->done()) {
            finish(); // aborted before it started waiting: raises
        }
        return take_result(target_);
    }

    /// `await_resume` for `as_outcome` (SEMANTICS 19.2): the same outcome as a value, without
    /// rethrowing the task's error or raising a cancellation. Misuse still throws.
    ::uvasync::outcome<T> await_resume_outcome() {
        if (target_ == nullptr) {
            throw invalid_state("uvasync: awaiting an empty task_handle");
        }
        task_waiter::unlink();
        task_core* self = current_task();
        if (!target_->done()) {
            return ::uvasync::outcome<T>(make_delivery(self)); // aborted before it started waiting
        }
        switch (target_->result) {
        case detail::outcome::error:
            target_->retrieved = true;
            return ::uvasync::outcome<T>(target_->error);
        case detail::outcome::cancelled:
            if (self != nullptr && self->current->cancelled()) {
                return ::uvasync::outcome<T>(make_delivery(self)); // a delivery here, owner by D-3
            }
            return ::uvasync::outcome<T>(cancelled_error(target_->cancel_message, 0));
        default:
            break;
        }
        if constexpr (std::is_void_v<T>) {
            take_result(target_);
            return ::uvasync::outcome<T>(unit{});
        } else {
            return ::uvasync::outcome<T>(take_result(target_));
        }
    }

private:
    // runtime::dump: "join task #N".
    static void describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
        const task_state<T>* t = static_cast<const join_awaiter&>(w).target_;
        if (t != nullptr) {
            out += "task #" + std::to_string(t->task_scope.id);
        }
    }

    static void on_done(task_waiter* w) noexcept { static_cast<join_awaiter*>(w)->complete(); }

    // Forwarding: cancel the awaited task with our owner's message and keep waiting.
    // Detached (shield): stop waiting; the task runs on undisturbed.
    static void on_abort(parked_wait* p) noexcept {
        auto* self = static_cast<join_awaiter*>(p);
        if constexpr (Forward) {
            task_state<T>* t = self->target_;
            t->cancel(owner_of(self->core()->current)->node.message());
        } else {
            self->task_waiter::unlink();
            self->aborted();
        }
    }

    task_state<T>* target_;
};

} // namespace detail

/// A spawned task, seen from outside: cancel it, ask whether it is done, await its outcome.
///
/// Copies refer to the same task. Dropping every handle detaches the task; it keeps running
/// (the runtime owns it) and an error nobody observed goes to the runtime's exception handler.
/// Awaiting returns the value (copied; a move-only value can be taken once), rethrows the
/// error object, or raises `cancelled_error` with the task's message. Several tasks may await
/// one handle, also after it finished; `result()` gives the same without waiting once `done()`.
///
/// **Cancellation:** awaiting is a cancellation point with forwarding: if the awaiter is
/// cancelled while it waits, the awaited task is cancelled too and the awaiter keeps waiting
/// for it to finish (SEMANTICS 2.6); `shield` prevents that.
///
/// **Thread:** loop thread only.
template <class T = void>
class task_handle {
public:
    using value_type = T;

    task_handle() noexcept = default;

    explicit task_handle(detail::task_state<T>* state) noexcept
        : state_(state) {
        state_->add_ref();
    }

    task_handle(const task_handle& other) noexcept
        : state_(other.state_) {
        if (state_ != nullptr) {
            state_->add_ref();
        }
    }

    task_handle(task_handle&& other) noexcept
        : state_(std::exchange(other.state_, nullptr)) {}

    task_handle& operator=(task_handle other) noexcept {
        std::swap(state_, other.state_);
        return *this;
    }

    ~task_handle() { detach(); }

    /// Cancels the task. False if it is done or its scope was already cancelled (the message
    /// of such a call is ignored); true if this call cancelled it, which does not mean it will
    /// end cancelled (SEMANTICS 3). Never runs the task's code inline.
    ///
    /// **Thread:** loop thread only (SEMANTICS 3.8); with thread checks on (debug builds) a
    /// call from another thread throws `invalid_state`. From another thread, cancel through a
    /// `cancel_source` bound to the task (`runtime::spawn(t, token)`) or `runtime::post`.
    bool cancel(std::string_view message = {}) {
        if (state_ == nullptr) {
            return false;
        }
        if (state_->rt != nullptr) {
            state_->rt->check_thread("task_handle::cancel()");
        }
        return state_->cancel(detail::make_message(message));
    }

    /// True once the task has a value, an error, or ended cancelled.
    [[nodiscard]] bool done() const noexcept { return state_ != nullptr && state_->done(); }

    /// True if the task ended cancelled.
    [[nodiscard]] bool cancelled() const noexcept {
        return state_ != nullptr && state_->result == detail::outcome::cancelled;
    }

    /// True if this handle refers to a task.
    [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

    /// The task's id (as in `runtime::tasks()` and `runtime::dump()`); 0 for an empty handle.
    [[nodiscard]] std::uint64_t id() const noexcept {
        return state_ != nullptr ? state_->task_scope.id : 0;
    }

    explicit operator bool() const noexcept { return valid(); }

    /// Lets go of the task without cancelling it.
    void detach() noexcept {
        if (state_ != nullptr) {
            std::exchange(state_, nullptr)->release();
        }
    }

    detail::join_awaiter<T> operator co_await() const noexcept {
        return detail::join_awaiter<T>(state_);
    }

    /// The outcome of a finished task, without waiting: exactly what `co_await` on this handle
    /// gives once the task is done. Returns the value — a copy, so it can be asked for again;
    /// a move-only value is moved out and can be taken once (again: `invalid_state`) —,
    /// rethrows the task's error object, or raises `cancelled_error` with the task's message
    /// (a delivery to the caller instead when the calling task's own scope is cancelled, as
    /// for `co_await`). Counts as observing the outcome: an error taken here is not reported
    /// to the runtime's exception handler.
    ///
    /// Throws `invalid_state` if the handle is empty or the task has not finished (check
    /// `done()` first; to wait, `co_await` the handle). Never suspends, so it may also be
    /// called outside any task, e.g. by a host that ran the loop until `done()`.
    ///
    /// **Thread:** loop thread only.
    T result() const {
        if (state_ == nullptr) {
            throw invalid_state("uvasync: result() of an empty task_handle");
        }
        if (!state_->done()) {
            throw invalid_state("uvasync: result() of a task that has not finished");
        }
        return detail::take_result(state_);
    }

    /// For library code (task groups, gather).
    [[nodiscard]] detail::task_state<T>* state() const noexcept { return state_; }

private:
    detail::task_state<T>* state_ = nullptr;
};

} // namespace uvasync
