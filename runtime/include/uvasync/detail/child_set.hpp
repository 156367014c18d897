// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <utility>

#include <uvasync/detail/export.hpp>
#include <uvasync/detail/intrusive_list.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/scope.hpp>
#include <uvasync/detail/spawn.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/error.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_handle.hpp>

namespace uvasync::detail {

/// The structured core shared by `task_group` and `gather`: a group scope entered in the
/// owning task, children spawned inside it (their task scopes are linked under it, so any
/// cancellation of it or of the scopes around it reaches them), and a wait for all children
/// that is not a cancellation point (SEMANTICS 9.3).
class UVASYNC_API child_set : private finish_observer {
public:
    /// Called once per child, when it finishes, before anything it woke runs.
    using done_hook = void (*)(child_set*, task_core*) noexcept;

    explicit child_set(done_hook hook) noexcept
        : finish_observer(&on_child_finished)
        , hook_(hook) {}

    child_set(const child_set&) = delete;
    child_set& operator=(const child_set&) = delete;
    child_set(child_set&&) = delete;
    child_set& operator=(child_set&&) = delete;
    ~child_set();

    void enter(task_core* owner) noexcept;
    /// `converted`: the owner absorbs the group's own cancellation (task_group, trace.hpp).
    void leave(bool converted = false) noexcept;

    /// Spawns `t` as a child. Before `enter` or after `leave`: `invalid_state`, and the frame
    /// is destroyed without running. In a cancelled scope the child is born cancelled and
    /// never runs (SEMANTICS 9.2).
    template <class T>
    task_handle<T> spawn(task<T> t, const spawn_label* label = nullptr) {
        if (phase_ != phase::open) {
            throw invalid_state(
                "uvasync: spawning into a task group or gather that is not running");
        }
        task_handle<T> h =
            spawn_in(*owner_->rt, current_task(), std::move(t), nullptr, &scope_, label);
        h.state()->parent_set = static_cast<finish_observer*>(this);
        children_.push_back(*h.state());
        return h;
    }

    /// Cancels the scope (children, and the owner's code inside it). True on the transition.
    bool cancel(message_ptr message) noexcept {
        const bool first = scope_.node.request_cancel(std::move(message));
        cancelled_itself_ = cancelled_itself_ || first;
        return first;
    }

    /// What the owner waits at the exit of, for `runtime::dump` ("task group", "gather",
    /// "wait_any", "as_completed"); a string with static storage.
    void describe_as(const char* what) noexcept { what_ = what; }

    [[nodiscard]] const char* what() const noexcept { return what_; }

    /// The scope was cancelled by `cancel()` (its own request, not an enclosing scope's).
    [[nodiscard]] bool cancelled_itself() const noexcept { return cancelled_itself_; }

    [[nodiscard]] bool empty() const noexcept { return children_.empty(); }

    [[nodiscard]] std::uint64_t scope_id() const noexcept { return scope_.id; }

    [[nodiscard]] bool scope_cancelled() const noexcept { return scope_.cancelled(); }

    [[nodiscard]] task_core* owner() const noexcept { return owner_; }

    /// Waits until every child has finished. Not a cancellation point: it raises nothing and
    /// waits on through any cancellation (which reaches the children through the scope).
    auto wait_all() noexcept {
        struct awaiter {
            child_set& set;

            [[nodiscard]] bool await_ready() const noexcept { return set.children_.empty(); }

            void await_suspend(std::coroutine_handle<> h) noexcept { set.exit_waiter_ = h; }

            void await_resume() const noexcept {}
        };

        return awaiter{*this};
    }

private:
    friend struct introspection_access;

    /// Called by task_core::finish.
    static void on_child_finished(finish_observer* self, task_core* child) noexcept;
    void child_finished(task_core* child) noexcept;

    enum class phase : std::uint8_t { created, open, closed };

    scope scope_{scope_kind::group};
    intrusive_list<task_core, child_set_tag> children_;
    done_hook hook_;
    task_core* owner_ = nullptr;
    std::coroutine_handle<> exit_waiter_;
    phase phase_ = phase::created;
    bool cancelled_itself_ = false;
    const char* what_ = "task group";
};

} // namespace uvasync::detail
