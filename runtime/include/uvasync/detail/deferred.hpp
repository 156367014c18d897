// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <tuple>
#include <type_traits>
#include <utility>

#include <uvasync/error.hpp>
#include <uvasync/task.hpp>

namespace uvasync::detail {

/// An awaitable that keeps its arguments and only creates the coroutine when awaited, passing
/// the arguments by reference (they live in this awaiter, in the awaiting frame).
///
/// Why: the arguments must live exactly as long as the operation, and a coroutine taking them
/// by value inside a `co_await` expression is where g++ 12.2's double destruction of lambda
/// and aggregate temporaries was first met (docs/toolchain.md section 2). Entry points such as
/// `task_group::run(lambda)` and `gather(...)` are therefore plain functions returning this,
/// and the coroutine takes references. (On g++ 12 an inline owning temporary is destroyed
/// twice whatever the callee: docs/decisions/0023.)
template <class T, class Impl, class... Args>
class [[nodiscard]] deferred_call {
public:
    template <class... A>
    explicit deferred_call(A&&... args)
        : args_(std::forward<A>(args)...) {}

    deferred_call(const deferred_call&) = delete;
    deferred_call& operator=(const deferred_call&) = delete;
    deferred_call(deferred_call&&) noexcept = default; // only before it is awaited
    deferred_call& operator=(deferred_call&&) = delete;
    ~deferred_call() = default;

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) {
        if (body_.valid()) {
            throw invalid_state("uvasync: this awaitable was already awaited");
        }
        body_ = std::apply([](Args&... a) { return Impl::call(a...); }, args_);
        return body_.start_inline(caller);
    }

    T await_resume() { return body_.take_result(); }

private:
    std::tuple<Args...> args_;
    task<T> body_;
};

} // namespace uvasync::detail
