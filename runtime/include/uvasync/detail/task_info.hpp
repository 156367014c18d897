// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <uvasync/clock.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/introspection.hpp>

namespace uvasync::detail {

/// A task's introspection record (docs/introspection.md), reached through the one word
/// `task_core::info`. That word holds either the id of the task that spawned this one, tagged
/// with its low bit (`id << 1 | 1`, no allocation: an unnamed task never allocates one), or a
/// pointer to this side record, allocated the first time the task is named or, with a tracer
/// whose slow-wait threshold is set, parks.
struct task_info {
    std::uint64_t spawned_by = 0;
    std::string name;
    spawn_site spawned_at{};
    bool has_spawn_site = false;
    deadline parked_since{}; // the slow-wait check (trace.hpp)
};

/// What a named spawn attaches to the new task.
struct spawn_label {
    std::string_view name;
    spawn_site where;
};

inline std::uintptr_t spawned_by_tag(std::uint64_t id) noexcept {
    return static_cast<std::uintptr_t>(id << 1U) | 1U;
}

/// The side record, or null when the word holds only a spawner id.
inline task_info* info_record(std::uintptr_t word) noexcept {
    return (word & 1U) == 0 ? reinterpret_cast<task_info*>(word) : nullptr;
}

inline std::uint64_t spawned_by_of(std::uintptr_t word) noexcept {
    if (const task_info* r = info_record(word)) {
        return r->spawned_by;
    }
    return static_cast<std::uint64_t>(word >> 1U);
}

/// The side record of `core`, allocated on first use (throws `std::bad_alloc`).
UVASYNC_API task_info& ensure_info(task_core& core);

/// Names a task being spawned (before it is adopted; throws `std::bad_alloc`).
UVASYNC_API void label_task(task_core& core, const spawn_label& label);

/// Frees the side record, if the word holds one (the core's destructor).
inline void drop_info(std::uintptr_t word) noexcept {
    if ((word & 1U) == 0 && word != 0) [[unlikely]] {
        delete reinterpret_cast<task_info*>(word);
    }
}

} // namespace uvasync::detail
