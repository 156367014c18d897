// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstddef>
#include <utility>
#include <vector>

#include <uvasync/detail/child_set.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/detail/task_core.hpp>

namespace uvasync::detail {

/// A child_set that records its children in completion order, for `wait_any` and
/// `as_completed`. It consumes every child's outcome (none is reported as unobserved), and
/// wakes at most one waiter per completion: either a plain wait for the first completion (not
/// a cancellation point: a cancellation reaches the children through the scope), or a
/// cancellable `next` (see as_completed.hpp).
class completion_set : public child_set {
public:
    /// A cancellable wait for the next completion; the derived awaiter supplies the abort hook.
    class waiter : protected parked_wait {
    public:
        waiter(const waiter&) = delete;
        waiter& operator=(const waiter&) = delete;
        waiter& operator=(waiter&&) = delete;

        waiter(waiter&& other) noexcept // only before it is awaited
            : parked_wait(std::move(other)) {}

        void wake() noexcept { complete(); }

    protected:
        explicit waiter(abort_hook hook) noexcept
            : parked_wait(hook) {}

        ~waiter() = default;
    };

    completion_set() noexcept
        : child_set(&on_child_done) {}

    /// Capacity for `n` completions, taken before the children start, so recording one never
    /// allocates (the hook is noexcept).
    void reserve(std::size_t n) { done_.reserve(n); }

    [[nodiscard]] const std::vector<task_core*>& done() const noexcept { return done_; }

    /// Waits until at least one child has finished. Not a cancellation point.
    auto wait_first() noexcept {
        struct awaiter {
            completion_set& set;

            [[nodiscard]] bool await_ready() const noexcept { return !set.done_.empty(); }

            void await_suspend(std::coroutine_handle<> h) noexcept { set.first_waiter_ = h; }

            void await_resume() const noexcept {}
        };

        return awaiter{*this};
    }

    /// The one parked `next` (null when none).
    waiter* parked = nullptr;

private:
    static void on_child_done(child_set* s, task_core* child) noexcept {
        auto* self = static_cast<completion_set*>(s);
        child->retrieved = true; // the outcome is handed to the caller or consumed
        self->done_.push_back(child);
        if (self->first_waiter_) {
            self->owner()->rt->schedule(self->owner(), std::exchange(self->first_waiter_, nullptr));
        }
        if (waiter* w = std::exchange(self->parked, nullptr)) {
            w->wake();
        }
    }

    std::vector<task_core*> done_;
    std::coroutine_handle<> first_waiter_;
};

} // namespace uvasync::detail
