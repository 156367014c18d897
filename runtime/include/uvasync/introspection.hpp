// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <uvasync/detail/export.hpp>

// Task names and the snapshot of live tasks (docs/introspection.md). `runtime::tasks()` and
// `runtime::dump()` are members of `runtime` (runtime.hpp); named spawns are overloads of
// `spawn` and `task_group::spawn`.

namespace uvasync {

/// Where a named spawn was written: the default argument `spawn_site::here()` captures the
/// caller's file and line, as `std::source_location::current()` would (which clang 14 with
/// libstdc++ 12 does not provide).
struct spawn_site {
    const char* file = "";
    unsigned line = 0;

    [[nodiscard]] static constexpr spawn_site here(const char* file = __builtin_FILE(),
                                                   unsigned line = __builtin_LINE()) noexcept {
        return spawn_site{file, line};
    }
};

/// Where a live task is, as `runtime::tasks()` and `runtime::dump()` report it.
enum class task_status : std::uint8_t {
    ready,     // queued to run (also: spawned, not started yet)
    running,   // the task that asked
    parked,    // suspended in a wait (a sleep, I/O, a lock, a join, a group's exit, ...)
    finishing, // cancelled (its handle, shutdown, its group or token) and not finished yet
};

/// One live task in `runtime::tasks()`: plain data, copied when the snapshot is made.
struct task_snapshot {
    std::uint64_t id = 0; // unique in the runtime, in spawn order; task_handle::id()
    std::string name;     // empty unless named (spawn(t, name), set_current_task_name)
    task_status status = task_status::ready;
    std::uint64_t spawned_by = 0; // the id of the task that spawned it; 0 from outside a task
    std::uint64_t group = 0;      // for a task group (or gather) child: the group's scope id
    std::string parked_on;        // the kind of its parked wait ("sleep", "semaphore", ...)
};

/// Names the running task (replacing its name). Allocates the task's side record once
/// (`std::bad_alloc`); outside a task, `invalid_state`. Loop thread only.
UVASYNC_API void set_current_task_name(std::string_view name);

/// The running task's name (empty when unnamed); outside a task, `invalid_state`.
[[nodiscard]] UVASYNC_API std::string current_task_name();

/// The running task's id (as in `runtime::tasks()`); outside a task, `invalid_state`.
[[nodiscard]] UVASYNC_API std::uint64_t current_task_id();

/// The text of a task status: "ready", "running", "parked", "finishing".
[[nodiscard]] UVASYNC_API const char* to_string(task_status s) noexcept;

} // namespace uvasync
