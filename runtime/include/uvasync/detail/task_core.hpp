// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstdint>
#include <exception>
#include <utility>

#include <uvasync/detail/export.hpp>
#include <uvasync/detail/intrusive_list.hpp>
#include <uvasync/detail/scope.hpp>

namespace uvasync::detail {

class runtime_state;
class task_core;
class local_map;
struct all_tasks_tag;
struct waiter_tag;
struct child_set_tag;

/// Something parked until a task finishes (another task's await, gather, a group).
struct task_waiter : list_hook<waiter_tag> {
    using function = void (*)(task_waiter*) noexcept;

    explicit task_waiter(function f) noexcept
        : on_done(f) {}

    function on_done;
};

/// Told when a task finishes, before its waiters become ready: the task group or gather the
/// task is a child of (child_set, which derives from this), so the task core does not depend on
/// task groups.
struct finish_observer {
    using function = void (*)(finish_observer*, task_core*) noexcept;

    explicit finish_observer(function f) noexcept
        : child_finished(f) {}

    function child_finished;
};

/// How many symmetric transfers a task may chain before one bounce through the run queue.
/// GCC 12 does not compile symmetric transfer into a tail call at -O0/-O1 or under sanitizers,
/// so each transfer can cost native stack; bouncing bounds the depth whatever the compiler.
inline constexpr std::uint16_t transfer_budget_per_resume = 256;

enum class outcome : std::uint8_t { pending, value, error, cancelled };

/// The owner of a lazy task's frame (see task.hpp); the runtime only needs to destroy it.
class task_base;

/// The state of one spawned task: its scope chain, its place in the run queue, its outcome.
/// `spawn` constructs it in the allocation of the task's own frame, in front of the frame
/// (decision 0021, task.hpp): one allocation per spawned task. It dies when the task is done and
/// no `task_handle` refers to it any more; the frame may go before it (a finished body without
/// a value, a task destroyed at shutdown), never after it.
class UVASYNC_API task_core : public list_hook<all_tasks_tag>, public list_hook<child_set_tag> {
public:
    task_core() noexcept = default;
    task_core(const task_core&) = delete;
    task_core& operator=(const task_core&) = delete;
    task_core(task_core&&) = delete;
    task_core& operator=(task_core&&) = delete;
    ~task_core();

    [[nodiscard]] bool done() const noexcept { return result != outcome::pending; }

    /// A task_handle (or the runtime while the task runs) keeps the frame alive.
    void add_ref() noexcept { ++refs; }

    void release() noexcept;

    /// Marks the outcome observed and rethrows it unless it is a value.
    void rethrow_unless_value() {
        retrieved = true;
        if (result == outcome::error) {
            std::rethrow_exception(error);
        }
        if (result == outcome::cancelled) {
            throw_cancelled_outcome();
        }
    }

    /// Cancels the task scope (SEMANTICS 3). Loop thread only.
    bool cancel(message_ptr message) noexcept {
        return !done() && task_scope.node.request_cancel(std::move(message));
    }

    /// Called when the outcome is recorded: wakes the waiters, reports an error nobody can
    /// observe any more, and lets the runtime drop its reference.
    void finish() noexcept;

    /// Called at the final suspension point of the task's body: turns the body's end (`error`
    /// is the promise's, null when it returned) into the task's outcome without rethrowing a
    /// cancellation the runtime delivered (SEMANTICS 2.3), destroys the frame unless it holds
    /// the value (`keep_frame`), and finishes. May free `*this`.
    void body_finished(std::exception_ptr& error, bool keep_frame) noexcept;

    /// Called by the run queue before the first step: a task cancelled before it ever ran
    /// never runs its body (SEMANTICS 2.7); its frame is destroyed, its outcome is cancelled,
    /// and it finishes. Returns false when the body should run. May free `*this`.
    bool cancelled_before_start() noexcept;

    /// Destroys the body's frame if it still exists (its locals' destructors run); the core
    /// stays for its handles.
    void destroy_frame() noexcept;

private:
    [[noreturn]] void throw_cancelled_outcome() const;

public:
    // The run queue link (intrusive_queue<task_core> reads it).
    task_core* queue_next_ = nullptr;

    runtime_state* rt = nullptr;
    std::coroutine_handle<> resume_point; // what the run queue resumes next

    /// The body's frame, in whose allocation this core lives (right behind it; defined in
    /// task.hpp). Valid to resume or destroy only while the frame is live.
    [[nodiscard]] inline std::coroutine_handle<> frame() const noexcept;

    scope task_scope{scope_kind::task};
    scope* current = &task_scope; // the innermost scope at the task's current point
    scope* token_scope = nullptr; // owned; encloses task_scope for a task spawned with a token
    finish_observer* parent_set = nullptr; // the task group or gather this task is a child of
    local_map* locals = nullptr; // task-local values, shared copy-on-write (local_map.hpp)
    // Introspection (task_info.hpp): the spawner's id tagged, or the task's side record.
    std::uintptr_t info = 0;

    intrusive_list<task_waiter, waiter_tag> waiters;
    // Once the task is done: the error (outcome::error) or the cancellation's message
    // (outcome::cancelled). While it runs, the same two slots hold the last cancellation
    // delivered in it (throw_cancelled) and that delivery's message: when the body ends with
    // that very exception object, the core records the cancelled outcome without rethrowing
    // it, one unwind per cancelled task instead of two (bench/NOTES.md). Sharing the slots
    // keeps the core small (W2's bytes per task).
    std::exception_ptr error;
    message_ptr cancel_message;

    [[nodiscard]] const std::exception_ptr& last_delivery() const noexcept { return error; }

    /// Forgets the last delivery (the body caught it, or `as_outcome` reported it).
    void clear_last_delivery() noexcept {
        error = nullptr;
        cancel_message = nullptr;
    }

    std::uint32_t refs = 1; // the runtime's reference, dropped when the task finishes
    outcome result = outcome::pending;
    bool retrieved = false; // the error or value has been observed through a handle
    bool value_taken = false;
    bool started = false;                            // the run queue has resumed the body once
    std::uint16_t transfer_budget = 0;               // see transfer() in task.hpp
    std::uint16_t deliveries_without_suspending = 0; // see throw_cancelled()
};

/// Builds the delivery for a cancellation point of `core` (SEMANTICS 4.1 step 2 and 4.8): a
/// `cancelled_error` owned by the outermost cancelled scope around the point, kept in the
/// core's last-delivery slots so that the core recognises it if it ends the body.
UVASYNC_API void record_delivery(task_core* core);

/// Raises the delivery for a cancellation point of `core`. Inline and forced so on purpose:
/// `std::rethrow_exception` takes its argument by value, and the frame that makes that copy
/// needs a landing pad to destroy it. Out of line, that frame was a cleanup-only stop between
/// the throw and the task's handler, and the unwinder restarted from it (`_Unwind_Resume`):
/// about 8,500 instructions per delivery, more than a third of W3's (bench/NOTES.md, fourth
/// pass). Inlined into the awaiting coroutine, the cleanup shares the landing pad of the
/// coroutine's own handler, and the unwind walks one frame fewer.
[[noreturn, gnu::always_inline]] inline void throw_cancelled(task_core* core) {
    record_delivery(core);
    std::rethrow_exception(core->last_delivery());
}

/// The same, out of line: for a rare path inside an awaiter that must itself stay small
/// enough to be inlined (the timeout scope's `await_resume`, whose common throw is its own
/// `timeout_error`).
[[noreturn]] UVASYNC_API void throw_cancelled_out_of_line(task_core* core);

} // namespace uvasync::detail
