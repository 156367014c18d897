// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include <uvasync/detail/local_map.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/error.hpp>

namespace uvasync {

/// A value per task, inherited by the tasks it spawns (asyncio's `contextvars.ContextVar`):
///
/// ```cpp
/// inline task_local<std::string> request_id;
///
/// task<> handle(request r) {
///     auto scope = request_id.scoped(r.id); // this task and what it spawns from here
///     co_await task_group::run(serve_parts); // children see r.id
/// } // restored
/// ```
///
/// Each task has its own values. A task spawned from a task (`spawn`, `runtime::spawn`,
/// `task_group::spawn`, gather, `wait_any`, `as_completed` children) starts with a copy of the
/// spawner's values at the moment of the spawn; afterwards changes on either side are not seen
/// by the other (SEMANTICS 26). Awaiting a `task<T>` runs it in the same task, so it sees and
/// changes the same values. A task spawned from outside any task, or onto another runtime,
/// starts with none.
///
/// **Cost:** until the program first sets a value, a spawn pays one relaxed load and a branch;
/// a task without values has no map and a spawn from it allocates nothing; a spawn from a task
/// with values shares its map (one count increment); the first change copies the map (copy on
/// write). Values are stored once, in a shared immutable box, and live until the last task
/// state holding them is freed (a task's state lives until it is done and its handles are
/// gone).
///
/// **Thread:** loop thread only (values are read and written in tasks); a `task_local` object
/// itself may be created anywhere, typically as a namespace-scope variable.
template <class T>
class task_local {
    static_assert(std::is_object_v<T> && !std::is_const_v<T>, "task_local<T> needs a value type");

public:
    /// No default: `get()` in a task without a value throws.
    task_local() noexcept
        : key_(detail::local_map::next_key()) {}

    /// `get()` in a task without a value returns `default_value`.
    explicit task_local(T default_value)
        : key_(detail::local_map::next_key())
        , default_(std::move(default_value)) {}

    task_local(const task_local&) = delete;
    task_local& operator=(const task_local&) = delete;
    task_local(task_local&&) = delete;
    task_local& operator=(task_local&&) = delete;
    ~task_local() = default;

    /// The running task's value, or null when it has none (or outside a task). The pointer is
    /// valid until this task next changes this variable (`set`, the end of a `scoped`).
    [[nodiscard]] const T* find() const noexcept {
        detail::task_core* core = detail::current_task();
        if (core == nullptr || core->locals == nullptr) {
            return nullptr;
        }
        return static_cast<const T*>(core->locals->find(key_));
    }

    /// The running task's value, else the default; with neither, `invalid_state`. The reference
    /// is valid as `find()`'s pointer is (the default: as long as this object).
    [[nodiscard]] const T& get() const {
        if (const T* v = find()) {
            return *v;
        }
        if (default_) {
            return *default_;
        }
        throw invalid_state("uvasync: this task_local has no value in this task and no default");
    }

    /// Sets the running task's value for the rest of the task (or until changed again). Outside
    /// a task: `invalid_state`.
    void set(T value) {
        detail::task_core* core = detail::require_task("task_local::set()");
        detail::local_map::assign(core, key_, std::make_shared<const T>(std::move(value)));
    }

    /// Restores what `scoped()` replaced, in the task that called it, when destroyed.
    class [[nodiscard]] scope_guard {
    public:
        scope_guard(const scope_guard&) = delete;
        scope_guard& operator=(const scope_guard&) = delete;
        scope_guard(scope_guard&&) = delete;
        scope_guard& operator=(scope_guard&&) = delete;

        ~scope_guard() {
            // Restores only this variable: values of others set meanwhile stay. The earlier
            // value's box is reused; only copying a map shared with a child allocates.
            detail::local_map::assign(core_, key_, std::move(previous_));
        }

    private:
        friend class task_local;

        scope_guard(detail::task_core* core, std::uint64_t key,
                    std::shared_ptr<const void> previous) noexcept
            : core_(core)
            , key_(key)
            , previous_(std::move(previous)) {}

        detail::task_core* core_;
        std::uint64_t key_;
        std::shared_ptr<const void> previous_;
    };

    /// Sets the running task's value until the returned guard is destroyed, then restores the
    /// previous value (or none). Outside a task: `invalid_state`. Keep the guard in the task
    /// that made it (it is not movable); nested guards restore in reverse order.
    [[nodiscard]] scope_guard scoped(T value) {
        detail::task_core* core = detail::require_task("task_local::scoped()");
        std::shared_ptr<const void> previous =
            core->locals != nullptr ? core->locals->find_shared(key_) : nullptr;
        detail::local_map::assign(core, key_, std::make_shared<const T>(std::move(value)));
        return scope_guard(core, key_, std::move(previous));
    }

private:
    std::uint64_t key_;
    std::optional<T> default_;
};

} // namespace uvasync
