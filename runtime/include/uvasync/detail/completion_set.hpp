// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include <uvasync/detail/child_set.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/list_waiter.hpp>
#include <uvasync/detail/task_core.hpp>

namespace uvasync::detail {

/// `as_completed`'s index from a child's state to its position in the input.
using child_positions = std::vector<std::pair<task_core*, std::size_t>>;

/// Sorts `index` by state, for `position_of`. Compiled, so users do not compile <algorithm>.
UVASYNC_API void sort_positions(child_positions& index) noexcept;

/// The input position of `core`, which the sorted `index` holds.
UVASYNC_API std::size_t position_of(const child_positions& index, const task_core* core) noexcept;

/// A child_set that records its children in completion order, for `wait_any` and
/// `as_completed`. It consumes every child's outcome (none is reported as unobserved). For
/// `wait_any` it cancels its scope when the first child finishes (the losers), before anything
/// that child woke runs; for `as_completed` it wakes the one parked `next`.
class completion_set : public child_set {
public:
    /// `cancel_after_first`: cancel the scope (every other child) when the first child finishes.
    explicit completion_set(bool cancel_after_first) noexcept
        : child_set(&on_child_done)
        , cancel_after_first_(cancel_after_first) {}

    /// Capacity for `n` completions, taken before the children start, so recording one never
    /// allocates (the hook is noexcept).
    void reserve(std::size_t n) { done_.reserve(n); }

    [[nodiscard]] const std::vector<task_core*>& done() const noexcept { return done_; }

    /// The parked `next` (one at most): woken by the next completion. Aborted, it only leaves,
    /// so that completion waits for the next call.
    waiter_list<list_waiter> parked;

private:
    static void on_child_done(child_set* s, task_core* child) noexcept {
        auto* self = static_cast<completion_set*>(s);
        child->retrieved = true; // the outcome is handed to the caller or consumed
        self->done_.push_back(child);
        if (self->cancel_after_first_ && self->done_.size() == 1) {
            self->cancel(make_message("wait_any: another task finished first"));
        }
        if (list_waiter* w = self->parked.front()) {
            w->wake();
        }
    }

    std::vector<task_core*> done_;
    bool cancel_after_first_;
};

} // namespace uvasync::detail
