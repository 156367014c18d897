// SPDX-License-Identifier: MIT
#pragma once

#include <exception>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <uvasync/detail/child_set.hpp>
#include <uvasync/detail/deferred.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/error.hpp>
#include <uvasync/outcome.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_handle.hpp>

// **Thread:** everything in this header is loop-thread only: the awaitables are created and
// awaited inside a task of the runtime (a call from another thread throws `invalid_state`).
namespace uvasync {

/// Selects the `gather` form that returns every outcome instead of the first failure.
struct return_exceptions_t {
    explicit constexpr return_exceptions_t() = default;
};

inline constexpr return_exceptions_t return_exceptions{};

namespace detail {

template <class T>
using value_or_unit = std::conditional_t<std::is_void_v<T>, unit, T>;

/// A child_set that remembers the first failure in completion order (SEMANTICS 10.4).
class gather_set : public child_set {
public:
    explicit gather_set(bool cancel_on_failure) noexcept
        : child_set(&on_child_done)
        , cancel_on_failure_(cancel_on_failure) {
        describe_as("gather");
    }

    std::exception_ptr first_error;
    message_ptr first_cancel_message;
    bool failed = false;

private:
    static void on_child_done(child_set* set, task_core* child) noexcept {
        auto* g = static_cast<gather_set*>(set);
        child->retrieved = true; // gather consumes every child's outcome (10.4)
        if (child->result == outcome::value || g->failed) {
            return;
        }
        g->failed = true;
        if (child->result == outcome::error) {
            g->first_error = child->error;
        } else {
            g->first_cancel_message = child->cancel_message;
        }
        if (g->cancel_on_failure_) {
            g->cancel(make_message("a gathered task failed"));
        }
    }

    bool cancel_on_failure_;
};

template <class A>
auto as_child(A& aw) {
    using B = std::remove_cvref_t<A>;
    if constexpr (is_task<B>::value) {
        return std::move(aw);
    } else if constexpr (requires {
                             typename B::value_type;
                             aw.state();
                         }) {
        // A task_handle: waited for with forwarding, through a child that awaits it (10.1).
        return [](B h) -> task<typename B::value_type> { co_return co_await h; }(aw);
    } else {
        return as_task(std::move(aw));
    }
}

template <class A>
using child_value_t = typename decltype(as_child(std::declval<A&>()))::value_type;

/// The children of `gather` and `wait_any`, one per argument, spawned into `set` left to right
/// (braced initialisation keeps argument order). Wrapping an awaitable in a child task
/// allocates a frame, so a spawn can fail (std::bad_alloc) after earlier children started: then
/// the started ones are cancelled with `why` and the error is returned. The caller awaits the
/// set before rethrowing it, so no child outlives the set it is linked under.
template <class Set, class... A>
std::exception_ptr spawn_children(Set& set, const char* why,
                                  std::optional<std::tuple<task_handle<child_value_t<A>>...>>& out,
                                  A&... aws) {
    try {
        out.emplace(std::tuple<task_handle<child_value_t<A>>...>{set.spawn(as_child(aws))...});
        return nullptr;
    } catch (...) {
        set.cancel(make_message(why));
        return std::current_exception();
    }
}

template <class T>
value_or_unit<T> take_value(task_state<T>* st) {
    if constexpr (std::is_void_v<T>) {
        return unit{};
    } else {
        return std::move(*st->value());
    }
}

template <class T>
uvasync::outcome<T> take_outcome(task_state<T>* st) {
    switch (st->result) {
    case outcome::value:
        return uvasync::outcome<T>(take_value(st));
    case outcome::error:
        return uvasync::outcome<T>(st->error);
    default:
        return uvasync::outcome<T>(cancelled_error(st->cancel_message, 0));
    }
}

/// After the wait: the first failure, raised in the awaiter (10.4, 10.6).
[[noreturn]] inline void raise_first_failure(gather_set& set, task_core* core) {
    if (set.first_error) {
        std::rethrow_exception(set.first_error);
    }
    if (core->current->cancelled()) {
        throw_cancelled(core); // a delivery in the awaiter, owner by D-3
    }
    throw cancelled_error(set.first_cancel_message, 0); // a child someone else cancelled
}

/// Gather's result when an enclosing scope is cancelled and a child ended cancelled (10.6):
/// the caller's own cancellation, not buried in a result list.
inline void raise_if_cancelled_from_outside(bool any_cancelled, task_core* core) {
    if (any_cancelled && core->current->cancelled()) {
        throw_cancelled(core);
    }
}

template <bool ReturnExceptions, class... A>
struct gather_fixed {
    using result =
        std::conditional_t<ReturnExceptions, std::tuple<uvasync::outcome<child_value_t<A>>...>,
                           std::tuple<value_or_unit<child_value_t<A>>...>>;

    static task<result> call(A&... aws) {
        task_core* core = require_task("gather");
        if constexpr (sizeof...(A) == 0) {
            co_return result{};
        } else {
            if (core->current->cancelled()) {
                throw_cancelled(core); // entry is a cancellation point; nothing starts (10.2)
            }
            gather_set set(!ReturnExceptions);
            set.enter(core);
            std::optional<std::tuple<task_handle<child_value_t<A>>...>> spawned;
            const std::exception_ptr spawn_error =
                spawn_children(set, "gather could not start every task", spawned, aws...);
            co_await set.wait_all(); // also when a spawn failed: the started ones finish first
            set.leave();
            if (spawn_error) {
                std::rethrow_exception(spawn_error);
            }
            auto& handles = *spawned;
            if constexpr (ReturnExceptions) {
                const bool any_cancelled =
                    std::apply([](auto&... h) { return (h.cancelled() || ...); }, handles);
                raise_if_cancelled_from_outside(any_cancelled, core);
                co_return std::apply([](auto&... h) { return result{take_outcome(h.state())...}; },
                                     handles);
            } else {
                if (set.failed) {
                    raise_first_failure(set, core);
                }
                co_return std::apply([](auto&... h) { return result{take_value(h.state())...}; },
                                     handles);
            }
        }
    }
};

template <bool ReturnExceptions, class T>
struct gather_range {
    using result = std::conditional_t<ReturnExceptions, std::vector<uvasync::outcome<T>>,
                                      std::vector<value_or_unit<T>>>;

    static task<result> call(std::vector<task<T>>& tasks) {
        task_core* core = require_task("gather");
        result out;
        if (tasks.empty()) {
            co_return out;
        }
        if (core->current->cancelled()) {
            throw_cancelled(core);
        }
        gather_set set(!ReturnExceptions);
        set.enter(core);
        std::vector<task_handle<T>> handles;
        handles.reserve(tasks.size());
        for (auto& t : tasks) {
            handles.push_back(set.spawn(std::move(t)));
        }
        co_await set.wait_all();
        set.leave();
        out.reserve(handles.size());
        if constexpr (ReturnExceptions) {
            bool any_cancelled = false;
            for (auto& h : handles) {
                any_cancelled = any_cancelled || h.cancelled();
            }
            raise_if_cancelled_from_outside(any_cancelled, core);
            for (auto& h : handles) {
                out.push_back(take_outcome(h.state()));
            }
        } else {
            if (set.failed) {
                raise_first_failure(set, core);
            }
            for (auto& h : handles) {
                out.push_back(take_value(h.state()));
            }
        }
        co_return out;
    }
};

} // namespace detail

/// Runs the awaitables concurrently, each as a child task inside a gather scope, and returns
/// their results in argument order (`void` ones as `unit`). Structured (SEMANTICS D-9, 10):
/// the first failure (an error, or a child that ended cancelled) cancels the others, gather
/// waits for all of them, cleanup included, then rethrows that first failure; no child
/// outlives the call. A `task_handle` argument is awaited with forwarding. With no arguments
/// it returns an empty tuple without suspending.
///
/// **Cancellation:** entering is a cancellation point (nothing starts in a cancelled scope).
/// A cancellation from outside reaches every child; gather still waits for all of them and
/// returns their values if they all produced one, else raises.
template <class... A>
auto gather(A&&... aws) {
    using impl = detail::gather_fixed<false, std::remove_cvref_t<A>...>;
    return detail::deferred_call<typename impl::result, impl, std::remove_cvref_t<A>...>(
        std::forward<A>(aws)...);
}

/// Like `gather`, but failures do not cancel the siblings and every child's `outcome` is
/// returned. If a scope around the gather is cancelled and some child ended cancelled, it
/// raises `cancelled_error` instead (asyncio bpo-32684).
template <class... A>
auto gather(return_exceptions_t, A&&... aws) {
    using impl = detail::gather_fixed<true, std::remove_cvref_t<A>...>;
    return detail::deferred_call<typename impl::result, impl, std::remove_cvref_t<A>...>(
        std::forward<A>(aws)...);
}

/// `gather` over a runtime-sized list of tasks: `std::vector<task<T>>` to `std::vector<T>`.
template <class T>
auto gather(std::vector<task<T>> tasks) {
    using impl = detail::gather_range<false, T>;
    return detail::deferred_call<typename impl::result, impl, std::vector<task<T>>>(
        std::move(tasks));
}

/// `gather(return_exceptions, ...)` over a runtime-sized list of tasks.
template <class T>
auto gather(return_exceptions_t, std::vector<task<T>> tasks) {
    using impl = detail::gather_range<true, T>;
    return detail::deferred_call<typename impl::result, impl, std::vector<task<T>>>(
        std::move(tasks));
}

} // namespace uvasync
