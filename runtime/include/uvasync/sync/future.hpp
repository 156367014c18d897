// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include <uvasync/detail/cancel_node.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/list_waiter.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/error.hpp>
#include <uvasync/outcome.hpp>
#include <uvasync/task.hpp>

namespace uvasync {

namespace detail {

/// `std::future_error(std::future_errc::broken_promise)`, made where <future> is included.
UVASYNC_API std::exception_ptr broken_promise_error();

} // namespace detail

template <class T = void>
class promise;

namespace detail {

template <class T>
struct future_state {
    using value_type = std::conditional_t<std::is_void_v<T>, unit, T>;

    class [[nodiscard]] waiter;

    // Empty while pending; then a value, an error, or an explicit cancellation.
    std::variant<std::monostate, value_type, std::exception_ptr, cancelled_error> result;
    waiter_list<waiter> waiters;

    [[nodiscard]] bool done() const noexcept { return result.index() != 0; }

    template <std::size_t I, class... A>
    bool settle(A&&... args) {
        if (done()) {
            return false;
        }
        result.template emplace<I>(std::forward<A>(args)...);
        while (waiter* w = waiters.front()) {
            w->wake();
        }
        return true;
    }
};

template <class T>
class future_state<T>::waiter : public list_waiter {
public:
    explicit waiter(std::shared_ptr<future_state> st) noexcept
        : state_(std::move(st)) {
        static constexpr detail::wait_kind kind{"future"};
        describe_as(kind);
    }

    [[nodiscard]] bool await_ready() const noexcept { return state_ == nullptr || state_->done(); }

    bool await_suspend(std::coroutine_handle<> caller) {
        return park_in(state_->waiters, caller, "awaiting a future");
    }

    T await_resume() {
        if (state_ == nullptr) {
            throw invalid_state("uvasync: awaiting an empty future");
        }
        if (current_state() == state::aborted || !state_->done()) {
            finish(); // raises: this waiter was cancelled (the future is untouched, D-13)
        }
        switch (state_->result.index()) {
        case 2:
            std::rethrow_exception(std::get<2>(state_->result));
        case 3:
            throw std::get<3>(state_->result);
        default:
            break;
        }
        if constexpr (!std::is_void_v<T>) {
            return std::get<1>(state_->result); // every consumer gets a copy
        }
    }

    /// `await_resume` for `as_outcome` (SEMANTICS 19.2): the same outcome as a value, without
    /// raising the delivery or rethrowing the stored error. Awaiting an empty future is
    /// misuse and still throws `invalid_state`, as a plain `co_await` does.
    ::uvasync::outcome<T> await_resume_outcome() {
        using out = ::uvasync::outcome<T>;
        if (state_ == nullptr) {
            throw invalid_state("uvasync: awaiting an empty future");
        }
        if (current_state() == state::aborted || !state_->done()) {
            return out(make_delivery(core())); // this waiter was cancelled (D-13)
        }
        switch (state_->result.index()) {
        case 2:
            return out(std::get<2>(state_->result));
        case 3:
            return out(std::get<3>(state_->result));
        default:
            break;
        }
        if constexpr (std::is_void_v<T>) {
            return out(unit{});
        } else {
            return out(std::get<1>(state_->result)); // every consumer gets a copy
        }
    }

private:
    std::shared_ptr<future_state> state_;
};

} // namespace detail

/// The consuming side of a one-shot value: any number of tasks may await it, before or after
/// it is set; each gets a copy of the value, or the error rethrown.
///
/// **Cancellation:** awaiting is a cancellation point; cancelling a waiter detaches only that
/// waiter (SEMANTICS D-13): the future stays pending and a later `set_value` reaches the
/// remaining waiters. **Thread:** loop thread only.
template <class T = void>
class future {
public:
    future() noexcept = default;

    [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

    [[nodiscard]] bool done() const noexcept { return state_ != nullptr && state_->done(); }

    auto operator co_await() const noexcept {
        return typename detail::future_state<T>::waiter(state_);
    }

private:
    friend class promise<T>;

    explicit future(std::shared_ptr<detail::future_state<T>> st) noexcept
        : state_(std::move(st)) {}

    std::shared_ptr<detail::future_state<T>> state_;
};

/// The producing side. Setting never fails because consumers were cancelled (SEMANTICS 4.11):
/// `set_*` returns false only if the future was already completed or cancelled. A promise
/// destroyed without being completed completes its future with `std::future_error`
/// (`broken_promise`), so no consumer waits forever.
template <class T>
class promise {
public:
    promise()
        : state_(std::make_shared<detail::future_state<T>>()) {}

    promise(promise&&) noexcept = default;
    promise& operator=(promise&&) noexcept = default;
    promise(const promise&) = delete;
    promise& operator=(const promise&) = delete;

    ~promise() {
        if (state_ != nullptr && !state_->done()) {
            state_->template settle<2>(detail::broken_promise_error());
        }
    }

    [[nodiscard]] future<T> get_future() const { return future<T>(state_); }

    template <class U = T>

    requires(!std::is_void_v<U>) bool set_value(U&& value) {
        return state_->template settle<1>(std::forward<U>(value));
    }

    template <class U = T>
    requires std::is_void_v<U>

    bool set_value() { return state_->template settle<1>(unit{}); }

    bool set_exception(std::exception_ptr e) { return state_->template settle<2>(std::move(e)); }

    /// Completes the future as cancelled: its waiters raise `cancelled_error` with `message`.
    bool cancel(std::string_view message = {}) {
        return state_->template settle<3>(cancelled_error(message));
    }

    [[nodiscard]] bool done() const noexcept { return state_->done(); }

private:
    std::shared_ptr<detail::future_state<T>> state_;
};

} // namespace uvasync
