// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <type_traits>
#include <utility>

#include <uvasync/detail/scope.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/task.hpp>

namespace uvasync::detail {

/// Marks "the body comes from a task given up front" in scope awaiters.
struct no_factory {};

/// Runs a lazy `task<T>` inline in the awaiting task, inside a scope that the derived awaiter
/// enters before the body starts and leaves after it ends (timeout scopes, shields). No extra
/// task and no allocation: the scope lives in the awaiter, which lives in the awaiting frame.
template <class T, class Factory, class Scope>
class scoped_body {
public:
    template <class... ScopeArgs>
    scoped_body(task<T> body, Factory factory, ScopeArgs&&... scope_args)
        : scope_(std::forward<ScopeArgs>(scope_args)...)
        , body_(std::move(body))
        , factory_(std::move(factory)) {}

    scoped_body(const scoped_body&) = delete;
    scoped_body& operator=(const scoped_body&) = delete;

    // Movable only before it is awaited (e.g. into shielded(timeout(...))): the scope is
    // rebuilt from its configuration; nothing is linked yet.
    scoped_body(scoped_body&& other) noexcept(std::is_nothrow_move_constructible_v<Factory>)
        : scope_(std::move(other.scope_))
        , body_(std::move(other.body_))
        , factory_(std::move(other.factory_)) {}

    scoped_body& operator=(scoped_body&&) = delete;
    ~scoped_body() = default;

protected:
    /// Starts the body (creating it from the factory now that the scope exists) and transfers
    /// to it; `leave()` must follow in await_resume. On a throwing factory the scope is left
    /// before the exception reaches the caller.
    std::coroutine_handle<> start(std::coroutine_handle<> caller) {
        if constexpr (!std::is_same_v<Factory, no_factory>) {
            try {
                body_ = factory_(scope_);
            } catch (...) {
                scope_.leave();
                throw;
            }
        }
        if (!body_.valid()) {
            scope_.leave();
            throw invalid_state("uvasync: the body of a scope is an empty or awaited task");
        }
        return body_.start_inline(caller);
    }

    /// The body's result, or its exception; the frame is destroyed either way.
    T take() { return body_.take_result(); }

    // The scope is declared first so that, when a suspended frame is destroyed, the body (whose
    // awaiters are registered on the scope) is destroyed before the scope.
    Scope scope_;
    task<T> body_;
    Factory factory_;
};

} // namespace uvasync::detail
