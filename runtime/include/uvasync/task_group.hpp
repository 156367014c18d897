// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <exception>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <uvasync/detail/child_set.hpp>
#include <uvasync/detail/deferred.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/error.hpp>
#include <uvasync/exception_group.hpp>
#include <uvasync/introspection.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_handle.hpp>

namespace uvasync {

/// Structured concurrency (asyncio's TaskGroup, trio's nursery; SEMANTICS 9):
///
/// ```cpp
/// co_await task_group::run([&](task_group& g) -> task<> {
///     g.spawn(fetch(a));
///     g.spawn(fetch(b));
///     co_return; // a body with no co_await still needs one, or it is not a coroutine
/// });
/// ```
///
/// The group scope encloses the body and every child and sits inside the scopes around the
/// `run` call, so a timeout around the group bounds the children. `run` returns only after
/// every child has finished, cleanup included. The first child failure (or the body's) cancels
/// the group; all failures come out as one `exception_group` (completion order, the body's
/// error last). A cancellation from outside stays a `cancelled_error`; `g.cancel()` stops the
/// group without an error. A child that ends cancelled is not a failure.
///
/// **Thread:** loop thread only, inside a task.
class task_group : private detail::child_set {
public:
    task_group(const task_group&) = delete;
    task_group& operator=(const task_group&) = delete;
    task_group(task_group&&) = delete;
    task_group& operator=(task_group&&) = delete;
    ~task_group() = default;

    /// Runs `body(group)` and then waits for every child. Returns the body's result; throws an
    /// `exception_group` if any child or the body failed; rethrows a cancellation the group does
    /// not own, and raises one when an enclosing scope is cancelled at exit (SEMANTICS 9.8).
    /// When the group absorbs its own cancellation (`cancel()`), a non-void result is
    /// value-initialised.
    template <class F>
    requires std::invocable < std::decay_t<F>

    &, task_group& >
           &&detail::is_task<std::invoke_result_t<std::decay_t<F>&, task_group&>>::value static auto
           run(F&& body) {
        using B = std::decay_t<F>;
        using T = typename std::invoke_result_t<B&, task_group&>::value_type;
        return detail::deferred_call<T, runner<B>, B>(std::forward<F>(body));
    }

    /// Starts `t` as a child of the group. Before the group runs or after it finished:
    /// `invalid_state` (the task never runs). While the group is cancelled the child is born
    /// cancelled and never runs. Children may spawn while the group waits at its exit.
    template <class T>
    task_handle<T> spawn(task<T> t) {
        return spawn_labelled(std::move(t), nullptr);
    }

    /// `spawn(t)` naming the child `name` and recording the spawn site (introspection.hpp).
    template <class T>
    task_handle<T> spawn(task<T> t, std::string_view name, spawn_site where = spawn_site::here()) {
        const detail::spawn_label label{name, where};
        return spawn_labelled(std::move(t), &label);
    }

    /// Cancels the group: the body and every child. The group then exits without an error,
    /// unless some child failed. Idempotent.
    void cancel() noexcept { child_set::cancel(detail::make_message("task group cancelled")); }

    /// True once the group's scope is cancelled (by `cancel()`, a failure, or an enclosing
    /// scope).
    [[nodiscard]] bool cancelled() const noexcept { return scope_cancelled(); }

private:
    template <class T>
    task_handle<T> spawn_labelled(task<T> t, const detail::spawn_label* label) {
        // Room for this child's error now (throws bad_alloc here, before the child exists):
        // on_child_done records it in a noexcept path.
        errors_.reserve(errors_.size() + live_children_ + 1);
        ++live_children_;
        try {
            return child_set::spawn(std::move(t), label);
        } catch (...) {
            --live_children_;
            throw;
        }
    }

    template <class B>
    struct runner {
        static auto call(B& body) { return task_group::run_impl(body); }
    };

    template <class B>
    static std::invoke_result_t<B&, task_group&> run_impl(B& body) {
        using T = typename std::invoke_result_t<B&, task_group&>::value_type;
        task_group g;
        g.enter(detail::require_task("task_group::run"));
        std::optional<std::conditional_t<std::is_void_v<T>, unit, T>> value;
        std::exception_ptr body_error;
        std::exception_ptr body_cancel;
        std::uint64_t body_cancel_owner = 0;
        try {
            task<T> b = body(g);
            if constexpr (std::is_void_v<T>) {
                co_await b;
                value.emplace();
            } else {
                value.emplace(co_await b);
            }
        } catch (const cancelled_error& e) {
            body_cancel = std::current_exception();
            body_cancel_owner = e.owner();
        } catch (...) {
            body_error = std::current_exception();
            g.cancel_for_failure(); // the body failing works like a child failing (9.7)
        }
        co_await g.wait_all();
        // It converts when it was cancelled by its own cancel() and ends normally (9.8).
        g.leave(g.cancelled_itself() && g.errors_.empty() && !body_error &&
                (!body_cancel || body_cancel_owner == g.scope_id()));
        if (!g.errors_.empty() || body_error) {
            std::vector<std::exception_ptr> errors = std::move(g.errors_);
            if (body_error) {
                errors.push_back(body_error);
            }
            throw exception_group(std::move(errors));
        }
        if (body_cancel) {
            if (body_cancel_owner != g.scope_id()) {
                std::rethrow_exception(body_cancel); // toward its owner outside (9.8.3)
            }
            if constexpr (!std::is_void_v<T>) {
                value.emplace(); // absorbed
            }
        }
        if (detail::task_core* core = detail::current_task(); core->current->cancelled()) {
            detail::throw_cancelled(core); // the exit is a cancellation point (9.8.4)
        }
        if constexpr (!std::is_void_v<T>) {
            co_return std::move(*value);
        }
    }

    task_group() noexcept
        : child_set(&on_child_done) {}

    void cancel_for_failure() noexcept {
        child_set::cancel(detail::make_message("a task in the group failed"));
    }

    static void on_child_done(child_set* set, detail::task_core* child) noexcept {
        auto* g = static_cast<task_group*>(set);
        --g->live_children_;
        if (child->result != detail::outcome::error) {
            return; // a cancelled child is not a failure (9.5)
        }
        child->retrieved = true;            // the group reports it
        g->errors_.push_back(child->error); // never allocates: spawn reserved the room
        g->cancel_for_failure();
    }

    std::vector<std::exception_ptr> errors_;
    std::size_t live_children_ = 0; // spawned and not finished: errors_ has room for each
};

} // namespace uvasync
