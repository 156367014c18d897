// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/task_core.hpp>

namespace uvasync::detail {

/// The task-local values of one task (task_local.hpp): an immutable-when-shared map from a
/// `task_local`'s key to a boxed value. A spawned task shares its spawner's map (one count
/// increment, no allocation); the first `set` in either task copies it (copy on write), so
/// a child sees the values as they were at spawn, and later changes on either side stay on
/// that side (asyncio copies the context at task creation). A task with no values has no map.
///
/// Loop thread only: the counts are not atomic.
class local_map {
public:
    struct entry {
        std::uint64_t key;
        std::shared_ptr<const void> value;
    };

    [[nodiscard]] const void* find(std::uint64_t key) const noexcept {
        auto it = lower(key);
        return it != entries_.end() && it->key == key ? it->value.get() : nullptr;
    }

    [[nodiscard]] std::shared_ptr<const void> find_shared(std::uint64_t key) const noexcept {
        auto it = lower(key);
        return it != entries_.end() && it->key == key ? it->value : nullptr;
    }

    /// Sets (or, with a null value, removes) `key` in `core`'s map, copying a shared map first.
    static void assign(task_core* core, std::uint64_t key, std::shared_ptr<const void> value) {
        local_map* m = core->locals;
        if (m == nullptr) {
            if (value == nullptr) {
                return;
            }
            in_use().store(true, std::memory_order_relaxed);
            core->locals = m = new local_map;
        } else if (m->refs_ > 1) {
            auto copy = std::make_unique<local_map>();
            copy->entries_ = m->entries_;
            --m->refs_;
            core->locals = m = copy.release();
        }
        auto it = m->entries_.begin() + static_cast<std::ptrdiff_t>(position(m->entries_, key));
        if (it != m->entries_.end() && it->key == key) {
            if (value != nullptr) {
                it->value = std::move(value);
            } else {
                m->entries_.erase(it);
            }
        } else if (value != nullptr) {
            m->entries_.insert(it, entry{key, std::move(value)});
        }
        if (m->entries_.empty()) {
            core->locals = nullptr;
            release(m);
        }
    }

    /// What a task spawned on `rt` from the running code starts with: the running task's map,
    /// shared, when it belongs to the same runtime; else none. Until the program first sets a
    /// task-local value this is one relaxed load and a branch (not even the thread-local read
    /// of the current task).
    static local_map* inherit(const runtime_state& rt, task_core* parent) noexcept {
        if (!in_use().load(std::memory_order_relaxed)) {
            return nullptr;
        }
        if (parent == nullptr || parent->locals == nullptr || parent->rt != &rt) {
            return nullptr;
        }
        ++parent->locals->refs_;
        return parent->locals;
    }

    static void release(local_map* m) noexcept {
        if (m != nullptr && --m->refs_ == 0) {
            delete m;
        }
    }

    /// A process-wide unique key per `task_local` object (never reused, so a map never shows a
    /// destroyed variable's value to a new one at the same address).
    static std::uint64_t next_key() noexcept {
        static std::atomic<std::uint64_t> last{0};
        return last.fetch_add(1, std::memory_order_relaxed) + 1;
    }

private:
    /// Set once, when the first map is created (any thread); never cleared.
    static std::atomic<bool>& in_use() noexcept {
        static std::atomic<bool> used{false};
        return used;
    }

    [[nodiscard]] std::vector<entry>::const_iterator lower(std::uint64_t key) const noexcept {
        return entries_.begin() + static_cast<std::ptrdiff_t>(position(entries_, key));
    }

    /// The index of the first entry whose key is not below `key` (std::lower_bound's rule,
    /// written out so that every user does not compile <algorithm> for one binary search).
    static std::size_t position(const std::vector<entry>& entries, std::uint64_t key) noexcept {
        std::size_t lo = 0;
        std::size_t hi = entries.size();
        while (lo < hi) {
            const std::size_t mid = lo + (hi - lo) / 2;
            if (entries[mid].key < key) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    std::vector<entry> entries_; // sorted by key
    std::uint32_t refs_ = 1;
};

} // namespace uvasync::detail
