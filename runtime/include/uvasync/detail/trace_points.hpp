// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#include <uvasync/detail/export.hpp>

// The trace points of the scheduler, scopes and parked waits (trace.hpp). Each call site is
// guarded by one branch on `runtime_state::tracing()`, so nothing here runs, and nothing is
// read beyond that pointer, while no tracer is installed. Loop thread only; never throw.

namespace uvasync::detail {

class task_core;
class parked_wait;
struct scope;

enum class scope_trace : std::uint8_t { enter, expire, exit };

UVASYNC_API void trace_spawned(task_core& core) noexcept;
UVASYNC_API void trace_started(task_core& core) noexcept;
UVASYNC_API void trace_finished(task_core& core) noexcept;
UVASYNC_API void trace_cancel_requested(task_core& core) noexcept;
/// `converted`: the scope turned its own cancellation into `timeout_error` or, `move_on`, an
/// empty result (exit only).
UVASYNC_API void trace_scope(scope_trace what, const scope& s, task_core& core, bool expired,
                             bool converted, bool move_on) noexcept;
/// A wait parked / completed or was aborted: the slow-wait check (trace.hpp).
UVASYNC_API void trace_parked(task_core& core) noexcept;
UVASYNC_API void trace_unparked(task_core& core, const parked_wait& wait) noexcept;

} // namespace uvasync::detail
