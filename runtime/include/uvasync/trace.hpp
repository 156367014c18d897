// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string_view>

#include <uvasync/clock.hpp>
#include <uvasync/detail/export.hpp>

namespace uvasync {

/// How a task ended, as `tracer::task_finished` reports it.
enum class task_end : std::uint8_t { value, error, cancelled };

/// The task an event is about. `name` is empty for an unnamed task and stays valid only
/// during the call; ids are those of `runtime::tasks()` (docs/introspection.md).
struct task_event {
    std::uint64_t id;
    std::string_view name;
    std::uint64_t spawned_by; // 0: spawned from outside any task
    std::uint64_t group;      // the task group (or gather) it is a child of, else 0
    deadline at;              // the runtime's clock when the event happened
};

/// Where a cancellation that reached a task came from (`tracer::task_cancel_requested`).
enum class cancel_cause : std::uint8_t {
    handle,       // its own task scope: `task_handle::cancel()`, or a cancelled task awaiting it
                  // forwarded its cancellation (SEMANTICS 2.6)
    shutdown,     // its own task scope, by the runtime's shutdown (or spawned during it)
    deadline,     // a timeout scope of its own whose deadline passed
    scope,        // a scope of its own cancelled by code: `timeout_scope::cancel()`,
                  // `task_group::cancel()`, a group's failing child (the owner's side)
    parent,       // a scope of another task enclosing it: its task group or gather (a failing
                  // sibling, `cancel()`, wait_any/as_completed cancelling the losers), or the
                  // owner's own cancellation reaching the group's children
    token,        // a cancel source, cancelled on the loop thread
    cross_thread, // a cancel source cancelled on another thread, propagated on the loop
};

/// "handle", "shutdown", "deadline", "scope", "parent", "token", "cross thread".
UVASYNC_API const char* to_string(cancel_cause c) noexcept;

/// Why `task_cancel_requested` fired.
struct cancel_event {
    cancel_cause cause;
    std::uint64_t origin;     // the id of the scope the request was made on; 0 for a cancel source
    std::string_view message; // the cancellation's message, empty for none
};

/// A scope (`scope_event::kind`): a timeout scope (`timeout`, `timeout_at`, `move_on_after`,
/// `move_on_at`, `timeout_scope`), a shield, a task group (also `gather`, `wait_any`,
/// `as_completed`), or the token scope of a task spawned with a cancel token. Which kinds
/// raise which events: docs/introspection.md.
enum class scope_type : std::uint8_t { timeout, shield, group, token };

struct scope_event {
    std::uint64_t scope; // the scope's id (the one `runtime::dump` prints)
    std::uint64_t task;  // the task the scope is in
    deadline when;       // the scope's deadline, `never` for none
    deadline at;         // the runtime's clock when the event happened
    bool expired;        // its deadline passed or it was cancelled (exit, expire)
    bool converted;      // exit: it turned its own cancellation into its result...
    bool move_on;        // ...an empty optional (move_on_*), else a timeout_error
    scope_type kind = scope_type::timeout;
};

/// A parked wait that waited at least `runtime_options::slow_wait_threshold`.
struct slow_wait_event {
    const char* kind;            // as `runtime::dump` names it: "sleep", "semaphore", ...
    loop_clock::duration waited; // on the runtime's clock
    bool aborted;                // it ended by cancellation, not by completing
};

/// Tracing hooks (docs/introspection.md), installed with `runtime_options::tracer`. Override
/// the events you want; the others do nothing.
///
/// **Guarantees.** Every hook runs on the loop thread, synchronously at the event, outside
/// any task's code path that could observe it: a hook must not throw (they are `noexcept`:
/// an exception terminates), must not resume or spawn tasks, and must not call into the
/// runtime except for reading (`runtime::tasks()`, `runtime::dump()`, `now()`). A hook is
/// not a cancellation point and cannot be cancelled. Events of one task come in its order:
/// spawned, started (unless it was cancelled before its first step), then any scope and
/// slow-wait events, then finished. `task_cancel_requested` comes from every source of
/// cancellation (`cancel_cause`), before the cancellation takes effect.
///
/// **Cost.** Without a tracer the task events ride on tests the scheduler already makes (one
/// per step, one per spawn), a cancellation's propagation loads one pointer, and a timeout
/// scope, shield or group tests the tracer at entry and exit; waits carry no trace point. The
/// instruction counts of bench/ stay within 0.5 % (bench/NOTES.md, decision 0044). With one,
/// each event is a virtual call, and each step records the wait its task parked in and the
/// clock in the task's side record (allocated once).
class UVASYNC_API tracer {
public:
    tracer() = default;
    tracer(const tracer&) = default;
    tracer& operator=(const tracer&) = default;
    tracer(tracer&&) = default;
    tracer& operator=(tracer&&) = default;
    virtual ~tracer();

    /// A task was spawned (before its first step).
    virtual void task_spawned(const task_event& /*task*/) noexcept {}

    /// Its body is about to run for the first time.
    virtual void task_started(const task_event& /*task*/) noexcept {}

    /// Its outcome is recorded: reported at the end of the step in which it finished, before
    /// any task waiting for it runs.
    virtual void task_finished(const task_event& /*task*/, task_end /*how*/) noexcept {}

    /// A cancellation reached the task, before it takes effect (before any abort hook runs):
    /// once per request, whatever its source (`cancel_event::cause`). A request that finds the
    /// task already cancelled at that level raises nothing.
    virtual void task_cancel_requested(const task_event& /*task*/,
                                       const cancel_event& /*why*/) noexcept {}

    /// A scope was entered (`scope_event::kind`; a timeout scope's deadline is set).
    virtual void scope_entered(const scope_event& /*scope*/) noexcept {}

    /// Its own cancellation: a timeout's deadline passed or `timeout_scope::cancel()`; a
    /// group's `cancel()`, failure or cancelled losers; a token scope's source was cancelled.
    /// Shields never expire.
    virtual void scope_expired(const scope_event& /*scope*/) noexcept {}

    /// It was left, with whether it converted its own cancellation (timeout scopes; a
    /// `task_group` that absorbed its own `cancel()`).
    virtual void scope_exited(const scope_event& /*scope*/) noexcept {}

    /// `task` resumed after being parked in a wait for at least the threshold (measured from
    /// the end of the step in which it parked to the step that resumes it).
    virtual void slow_wait(const task_event& /*task*/, const slow_wait_event& /*wait*/) noexcept {}
};

} // namespace uvasync
