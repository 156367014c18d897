// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#include <uvasync/detail/cancel_node.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/intrusive_list.hpp>

// The trace points of the scheduler and scopes (trace.hpp). Each call site is guarded by one
// branch on `runtime_state::tracing()` or a flag derived from it (a drain step, a spawn), so
// nothing here runs while no tracer is installed. Loop thread only; never throw.

namespace uvasync::detail {

class task_core;
class parked_wait;
struct scope;

enum class scope_trace : std::uint8_t { enter, expire, exit };

UVASYNC_API void trace_spawned(task_core& core) noexcept;
UVASYNC_API void trace_started(task_core& core) noexcept;
/// `group`: the id of the task's group, read before the step that finished it (the group
/// forgets a finished child).
UVASYNC_API void trace_finished(task_core& core, std::uint64_t group) noexcept;
UVASYNC_API std::uint64_t trace_group(const task_core& core) noexcept;
/// The propagation observer (cancel_node.hpp) installed while a runtime has a tracer: the
/// "cancel requested" events of every task a cancellation reaches, and the scope events of
/// the scopes it cancels.
UVASYNC_API void trace_propagation(cancel_node& origin,
                                   intrusive_list<cancel_node, work_tag>& marked,
                                   bool posted) noexcept;
/// `converted`: the scope turned its own cancellation into `timeout_error` or, `move_on`, an
/// empty result (exit only).
UVASYNC_API void trace_scope(scope_trace what, const scope& s, task_core& core, bool expired,
                             bool converted, bool move_on) noexcept;
/// The slow-wait check (trace.hpp), made by the run queue around a step, so the waits
/// themselves carry no trace point: at the end of a step the task is parked in a wait (or
/// not), which is remembered with the clock; when the task is resumed, the wait's time is
/// compared with the threshold.
UVASYNC_API void trace_suspended(task_core& core) noexcept;
UVASYNC_API void trace_resumed(task_core& core) noexcept;

} // namespace uvasync::detail
