// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include <uvasync/detail/completion_set.hpp>
#include <uvasync/detail/deferred.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/error.hpp>
#include <uvasync/gather.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_handle.hpp>
#include <uvasync/wait_any.hpp>

namespace uvasync {

template <class T>
class completions;

namespace detail {

template <class T, class B>
struct as_completed_runner;

} // namespace detail

/// The children of an `as_completed` call, handed out in completion order by `next()`.
///
/// **Thread:** loop thread only; `next()` only in the task that runs the `as_completed` body.
template <class T>
class completions {
public:
    completions(const completions&) = delete;
    completions& operator=(const completions&) = delete;
    completions(completions&&) = delete;
    completions& operator=(completions&&) = delete;
    ~completions() = default;

    class [[nodiscard]] next_awaiter : public detail::list_waiter {
    public:
        explicit next_awaiter(completions& c) noexcept
            : c_(c) {
            describe_as(kind());
        }

        // A completion not yet handed out, or none left to come: no suspension.
        [[nodiscard]] bool await_ready() const noexcept {
            return c_.delivered_ < c_.set_.done().size() || c_.delivered_ == c_.handles_.size();
        }

        bool await_suspend(std::coroutine_handle<> caller) {
            if (!c_.set_.parked.empty()) {
                throw invalid_state("uvasync: completions::next() is already being awaited");
            }
            return park_in(c_.set_.parked, caller, "completions::next()");
        }

        std::optional<completion<T>> await_resume() {
            finish(); // raises if cancelled before a completion arrived
            return c_.take_next();
        }

    private:
        // runtime::dump: "as_completed next 1 of 3 tasks done".
        static const detail::wait_kind& kind() noexcept {
            static constexpr detail::wait_kind k{"as_completed next", &describe};
            return k;
        }

        static void describe(const detail::parked_wait& w, deadline /*origin*/, std::string& out) {
            const completions& c = static_cast<const next_awaiter&>(w).c_;
            out += std::to_string(c.set_.done().size()) + " of " +
                   std::to_string(c.handles_.size()) + " tasks done";
        }

        completions& c_;
    };

    /// The next child to finish, in completion order: its index in the input and its outcome.
    /// Empty once every child has been handed out.
    [[nodiscard]] next_awaiter next() noexcept { return next_awaiter(*this); }

    /// Children not yet handed out by `next()` (finished or not).
    [[nodiscard]] std::size_t remaining() const noexcept { return handles_.size() - delivered_; }

    [[nodiscard]] std::size_t size() const noexcept { return handles_.size(); }

private:
    template <class, class>
    friend struct detail::as_completed_runner;

    completions() { set_.describe_as("as_completed"); }

    void start(std::vector<task<T>>& tasks) {
        set_.reserve(tasks.size());
        handles_.reserve(tasks.size());
        by_core_.reserve(tasks.size());
        for (auto& t : tasks) {
            handles_.push_back(set_.spawn(std::move(t)));
            by_core_.emplace_back(handles_.back().state(), handles_.size() - 1);
        }
        detail::sort_positions(by_core_);
    }

    std::optional<completion<T>> take_next() {
        if (delivered_ == set_.done().size()) {
            return std::nullopt; // every child handed out
        }
        detail::task_core* core = set_.done()[delivered_++];
        const std::size_t i = detail::position_of(by_core_, core);
        return completion<T>{i, detail::take_outcome(handles_[i].state())};
    }

    detail::completion_set set_{false};
    std::vector<task_handle<T>> handles_;
    detail::child_positions by_core_; // sorted, for the index
    std::size_t delivered_ = 0;
};

namespace detail {

template <class T, class B>
struct as_completed_runner {
    using R = typename std::invoke_result_t<B&, completions<T>&>::value_type;

    static task<R> call(std::vector<task<T>>& tasks, B& body) {
        task_core* core = require_task("as_completed");
        for (const auto& t : tasks) {
            if (!t.valid()) {
                throw invalid_state("uvasync: as_completed got an empty or already awaited task");
            }
        }
        if (core->current->cancelled()) {
            throw_cancelled(core); // entry is a cancellation point: nothing starts
        }
        completions<T> c;
        c.set_.enter(core);
        c.start(tasks);
        std::optional<std::conditional_t<std::is_void_v<R>, unit, R>> value;
        std::exception_ptr body_error;
        try {
            task<R> b = body(c);
            if constexpr (std::is_void_v<R>) {
                co_await b;
                value.emplace();
            } else {
                value.emplace(co_await b);
            }
        } catch (...) {
            body_error = std::current_exception();
        }
        // Closing: what is left is cancelled and awaited; outcomes not handed out are dropped.
        c.set_.cancel(make_message("as_completed closed"));
        co_await c.set_.wait_all();
        c.set_.leave();
        if (body_error) {
            std::rethrow_exception(body_error);
        }
        if (core->current->cancelled()) {
            throw_cancelled(core); // the exit is a cancellation point, as a task group's
        }
        if constexpr (!std::is_void_v<R>) {
            co_return std::move(*value);
        }
    }
};

} // namespace detail

/// Runs the tasks concurrently as children and lets `body` take their outcomes in completion
/// order (asyncio `as_completed`), structured (SEMANTICS 22):
///
/// ```cpp
/// co_await as_completed(std::move(fetches), [&](completions<page>& done) -> task<> {
///     while (auto c = co_await done.next()) {
///         if (c->result) {
///             use(c->index, c->result.value());
///             co_return; // enough
///         }
///     }
/// });
/// ```
///
/// When `body` finishes (returns or throws), the children still running are cancelled and
/// awaited, cleanup included, before `as_completed` returns the body's result or rethrows its
/// exception; outcomes the body did not take are dropped (errors included). A C++ destructor
/// cannot wait, so the close is the end of the body rather than the destruction of an
/// iterator. The body runs inside the call's scope, like a task group's body.
///
/// **Cancellation:** entering is a cancellation point (neither the children nor the body
/// start). `next()` is a cancellation point when it has to wait: cancelled, it raises and the
/// completion it would have returned stays for a later `next()`. A cancellation of a scope
/// around the call reaches every child. The exit raises when a scope around the call is
/// cancelled, even if the body returned (as a task group's exit, SEMANTICS 9.8).
template <class T, class F>
requires std::invocable < std::decay_t<F>

&, completions<T>& >
       &&detail::is_task<std::invoke_result_t<std::decay_t<F>&, completions<T>&>>::value auto
       as_completed(std::vector<task<T>> tasks, F&& body) {
    using B = std::decay_t<F>;
    using impl = detail::as_completed_runner<T, B>;
    return detail::deferred_call<typename impl::R, impl, std::vector<task<T>>, B>(
        std::move(tasks), std::forward<F>(body));
}

} // namespace uvasync
