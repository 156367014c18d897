// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>

#include <uvasync/detail/park.hpp>
#include <uvasync/error.hpp>
#include <uvasync/outcome.hpp>
#include <uvasync/task.hpp>

namespace uvasync {

namespace detail {

/// An awaiter that produces its whole outcome as a value (`task_handle`'s join).
template <class W, class T>
concept outcome_resuming = requires(W& w) {
    { w.await_resume_outcome() } -> std::same_as<::uvasync::outcome<T>>;
};

/// The awaiter of `as_outcome`. `A` is the awaitable as passed: a value (kept here) or an
/// lvalue reference (the caller keeps it alive until the await ends).
template <class A>
class [[nodiscard]] as_outcome_awaiter {
    using awaitable = std::remove_reference_t<A>;
    // A small leaf request (`sleep`'s) is not kept: its awaiter is built here at once, in place
    // of the request, so the awaiting frame holds one awaiter, not the request's copy and an
    // awaiter next to it (bench/NOTES.md, W3 memory).
    static constexpr bool builds_leaf = leaf_request<A>;
    static constexpr bool has_operator = !builds_leaf && requires(awaitable & a) {
        std::move(a).operator co_await();
    };

    template <class X, bool = has_operator>
    struct awaiter_of {
        using type = X&;
    };

    template <class X>
    struct awaiter_of<X, true> {
        using type = decltype(std::declval<X&&>().operator co_await());
    };

    template <class X, bool = builds_leaf>
    struct stored_of {
        using type = X;
    };

    template <class X>
    struct stored_of<X, true> {
        using type = typename awaitable::awaiter_type;
    };

    using awaiter_type =
        std::conditional_t<builds_leaf, typename stored_of<A>::type,
                           std::remove_reference_t<typename awaiter_of<awaitable>::type>>;
    using stored_type = typename stored_of<A>::type;

public:
    using value_type = decltype(std::declval<awaiter_type&>().await_resume());

    explicit as_outcome_awaiter(A aw) noexcept(std::is_nothrow_constructible_v<A, A&&>)
        : aw_(build(std::forward<A>(aw))) {}

    as_outcome_awaiter(const as_outcome_awaiter&) = delete;
    as_outcome_awaiter& operator=(const as_outcome_awaiter&) = delete;
    as_outcome_awaiter& operator=(as_outcome_awaiter&&) = delete;

    /// Only before it is awaited (for example into `timeout(d, as_outcome(aw))`).
    as_outcome_awaiter(as_outcome_awaiter&& other) noexcept(
        std::is_nothrow_constructible_v<stored_type, stored_type&&>)
        : aw_(std::forward<stored_type>(other.aw_)) {}

    ~as_outcome_awaiter() = default;

    bool await_ready() {
        if constexpr (has_operator) {
            // Built in place from the operator's result (no move of the awaiter needed).
            struct make {
                awaitable& a;

                operator awaiter_type() const { return std::move(a).operator co_await(); }
            };

            awaiter_.emplace(make{aw_});
        }
        return awaiter().await_ready();
    }

    template <class P>
    auto await_suspend(std::coroutine_handle<P> caller) {
        suspended_ = true;
        return awaiter().await_suspend(caller);
    }

    ::uvasync::outcome<value_type> await_resume() {
        using out = ::uvasync::outcome<value_type>;
        awaiter_type& w = awaiter();
        if constexpr (is_task<awaitable>::value) {
            if (suspended_) {
                return take_task();
            }
            // Not started (awaited twice, or empty): misuse, which the task's awaiter reports.
        } else if constexpr (outcome_resuming<awaiter_type, value_type>) {
            return w.await_resume_outcome();
        } else if constexpr (delivery_reporting<awaiter_type>) {
            if (w.delivery_pending()) {
                return out(make_delivery(current_task())); // no throw (SEMANTICS 19.2)
            }
        }
        try {
            if constexpr (std::is_void_v<value_type>) {
                w.await_resume();
                return out(unit{});
            } else {
                return out(w.await_resume());
            }
        } catch (const cancelled_error& e) {
            return out(e);
        } catch (const invalid_state&) {
            if constexpr (is_task<awaitable>::value) {
                throw; // the task was not awaitable: misuse (SEMANTICS 19.1)
            } else {
                return out(std::current_exception());
            }
        } catch (...) {
            return out(std::current_exception());
        }
    }

private:
    static stored_type build(A&& aw) {
        if constexpr (builds_leaf) {
            return std::forward<A>(aw).operator co_await();
        } else {
            return std::forward<A>(aw);
        }
    }

    awaiter_type& awaiter() noexcept {
        if constexpr (has_operator) {
            return *awaiter_;
        } else {
            return aw_;
        }
    }

    // A task that ran: its result, or its error taken from the promise without a rethrow. A
    // body that ended with the cancellation the runtime delivered in this task (the very
    // object) is reported as cancelled without unwinding again: one throw in all (19.2).
    ::uvasync::outcome<value_type> take_task() {
        using out = ::uvasync::outcome<value_type>;
        task<value_type>& t = aw_;
        std::exception_ptr e = t.handle().promise().error_;
        if (e == nullptr) {
            if constexpr (std::is_void_v<value_type>) {
                t.take_result();
                return out(unit{});
            } else {
                return out(t.take_result());
            }
        }
        t.reset();
        task_core* core = current_task();
        if (core != nullptr && e == core->last_delivery()) {
            out r(cancelled_error(std::move(core->cancel_message), owner_of(core->current)->id));
            core->clear_last_delivery();
            return r;
        }
#if defined(__GLIBCXX__)
        // libstdc++ names the type of the object without rethrowing it.
        const std::type_info* type = e.__cxa_exception_type();
        if (type != nullptr && *type != typeid(cancelled_error)) {
            return out(std::move(e));
        }
#endif
        try {
            std::rethrow_exception(e);
        } catch (const cancelled_error& c) {
            return out(c);
        } catch (...) {
            return out(std::current_exception());
        }
    }

    stored_type aw_;
    [[no_unique_address]] std::conditional_t<has_operator, std::optional<awaiter_type>,
                                             std::monostate>
        awaiter_;
    bool suspended_ = false;
};

} // namespace detail

/// `co_await as_outcome(aw)` awaits `aw` exactly as `co_await aw` would and returns how it
/// ended as an `outcome<T>`: the value, the error (`std::exception_ptr`), or cancelled with
/// the owner's message (SEMANTICS 19). It never throws what `aw` would have thrown; misuse
/// detected before the wait starts (`invalid_argument`, `invalid_state`) still throws.
///
/// **Cost:** around a leaf awaitable of the library (sleep, yield, checkpoint, the sync
/// primitives, every I/O operation, `token.cancelled()`, a `task_handle`) a cancellation is
/// reported without any C++ throw. Around a `task<T>` whose body ended by the delivered
/// `cancelled_error`, the one throw inside the body is caught at the boundary and not
/// rethrown; its errors are taken without a rethrow too.
///
/// **Cancellation:** level-triggered as everywhere (19.3): a cancelled outcome does not leave
/// the cancelled scope, and the next cancellation point outside `as_outcome` raises. The
/// outcome names the scope that owns the cancellation (D-3). A task that observed its
/// cancellation only through `as_outcome` and then returns normally has returned normally
/// (19.5).
///
/// `aw` is kept by value when it is an rvalue, by reference when it is an lvalue.
template <class A>
[[nodiscard]] detail::as_outcome_awaiter<A>
as_outcome(A&& aw) noexcept(std::is_nothrow_constructible_v<A, A&&>) {
    return detail::as_outcome_awaiter<A>(std::forward<A>(aw));
}

} // namespace uvasync
