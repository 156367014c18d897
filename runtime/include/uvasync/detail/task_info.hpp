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

class parked_wait;

/// A task's introspection record (docs/introspection.md), reached through the one word
/// `task_core::info`. That word holds either the id of the task that spawned this one shifted
/// left by one (`id << 1`, low bit clear, no allocation: an unnamed task never allocates one),
/// or a pointer to this side record with its low bit set, allocated the first time the task is
/// named or, with a tracer, the first time it parks. The low bit set means "a record": the one
/// test the core's destructor makes.
struct task_info {
    std::uint64_t spawned_by = 0;
    std::string name;
    spawn_site spawned_at{};
    bool has_spawn_site = false;
    // The slow-wait check (trace.hpp): the wait the task was parked in at the end of its last
    // step, and when.
    const parked_wait* parked_in = nullptr;
    deadline parked_since{};
};

/// What a named spawn attaches to the new task.
struct spawn_label {
    std::string_view name;
    spawn_site where;
};

inline std::uintptr_t spawned_by_tag(std::uint64_t id) noexcept {
    return static_cast<std::uintptr_t>(id << 1U);
}

inline std::uintptr_t record_tag(task_info* r) noexcept {
    return reinterpret_cast<std::uintptr_t>(r) | 1U;
}

/// The side record, or null when the word holds only a spawner id.
inline task_info* info_record(std::uintptr_t word) noexcept {
    return (word & 1U) != 0 ? reinterpret_cast<task_info*>(word & ~std::uintptr_t{1}) : nullptr;
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
    if ((word & 1U) != 0) [[unlikely]] {
        delete info_record(word);
    }
}

} // namespace uvasync::detail
