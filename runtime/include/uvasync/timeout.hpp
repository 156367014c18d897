// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <concepts>
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include <uvasync/clock.hpp>
#include <uvasync/detail/deadline_entry.hpp>
#include <uvasync/detail/deadline_queue.hpp>
#include <uvasync/detail/deferred.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/scope.hpp>
#include <uvasync/detail/scoped_body.hpp>
#include <uvasync/detail/trace_points.hpp>
#include <uvasync/error.hpp>
#include <uvasync/task.hpp>

namespace uvasync {

template <class T, bool MoveOn, class Factory>
class timeout_awaiter;
template <class A, bool MoveOn>
class timeout_inline_awaiter;

/// A timeout scope: a cancel scope with a deadline (SEMANTICS 5), like trio's `CancelScope`
/// with a deadline or asyncio's `Timeout`. The scope forms of `timeout`, `timeout_at`,
/// `move_on_after` and `move_on_at` hand one to their body.
///
/// When the deadline passes (or `cancel()` is called) the scope expires: every cancellation
/// point inside it raises `cancelled_error`, level-triggered, until the body ends. If that
/// cancellation leaves the body and this scope owns it (no enclosing scope up to the nearest
/// shield is cancelled, SEMANTICS 4.8), the scope converts it: `timeout` throws
/// `timeout_error`, `move_on_*` returns an empty optional. Any other exception passes.
///
/// **Thread:** loop thread only; use it only while the body runs.
class timeout_scope : private detail::deadline_entry {
public:
    timeout_scope(const timeout_scope&) = delete;
    timeout_scope& operator=(const timeout_scope&) = delete;
    timeout_scope& operator=(timeout_scope&&) = delete;

    /// A scope that is not active can be moved: its configuration and state go along, and
    /// the moved-from scope counts as used, so awaiting it (again) raises `invalid_state` on
    /// every compiler (g++ awaits a moved copy for `co_await std::move(aw)`, clang the object
    /// itself).
    timeout_scope(timeout_scope&& other) noexcept
        : deadline_entry(&on_fire)
        , relative_(other.relative_)
        , expired_(other.expired_)
        , caught_(other.caught_)
        , phase_(std::exchange(other.phase_, phase::exited)) {
        deadline_entry::when = other.deadline_entry::when;
    }

    ~timeout_scope() {
        if (phase_ == phase::active) { // the frame is destroyed while suspended inside
            leave();
        }
        // The exit event comes here, once the awaiter has decided whether the scope converted
        // the cancellation (trace.hpp). A moved-from or never-entered scope has no runtime.
        if (core_ != nullptr && core_->rt->tracing() != nullptr) [[unlikely]] {
            detail::trace_scope(detail::scope_trace::exit, scope_, *core_, expired_, caught_,
                                move_on_);
        }
    }

    /// The deadline, or `never`.
    [[nodiscard]] deadline when() const noexcept { return scope_.own_deadline; }

    /// True once the deadline passed or `cancel()` was called while the scope was active, even
    /// if nothing was delivered. Cancellation from an enclosing scope does not set it.
    [[nodiscard]] bool expired() const noexcept { return expired_; }

    /// True if this scope converted a cancellation (trio's `cancelled_caught`).
    [[nodiscard]] bool caught() const noexcept { return caught_; }

    /// Moves the deadline (earlier or later); `never` removes it; a deadline already due
    /// expires the scope at once (D-5). Only while active and not expired, else
    /// `invalid_state`. An inner scope never extends an outer one: the effective deadline is
    /// the minimum. `std::bad_alloc`, with the scope unchanged, when no memory is left for the
    /// deadline.
    void reschedule(deadline when) {
        if (phase_ != phase::active || expired_) {
            throw invalid_state("uvasync: reschedule() needs an active, unexpired timeout scope");
        }
        core_->rt->check_thread("timeout_scope::reschedule()");
        // A scope without a queued deadline (`never`) adds one: room first, since a bad_alloc
        // must come out here, with the scope unchanged, not in the noexcept add_deadline.
        core_->rt->reserve_deadline();
        detail::deadline_queue::leave(*this);
        set_deadline(when);
    }

    /// `reschedule(now() + d)`, with the duration rules of `sleep`.
    template <class Rep, class Period>
    void reschedule(std::chrono::duration<Rep, Period> d) {
        if (phase_ != phase::active) {
            throw invalid_state("uvasync: reschedule() needs an active, unexpired timeout scope");
        }
        reschedule(detail::deadline_after(core_->rt->fresh_now(), d));
    }

    /// Expires the scope now (as if its deadline had passed). No effect after it expired or
    /// ended; `invalid_state` before it was entered.
    void cancel() {
        if (phase_ == phase::created) {
            throw invalid_state("uvasync: cancel() on a timeout scope that was not entered");
        }
        core_->rt->check_thread("timeout_scope::cancel()");
        expire();
    }

private:
    template <class T, bool MoveOn, class Factory>
    friend class timeout_awaiter;
    template <class A, bool MoveOn>
    friend class timeout_inline_awaiter;
    template <class T, class Factory, class Scope>
    friend class detail::scoped_body;

    enum class phase : std::uint8_t { created, active, exited };

    // Either a relative delay (taken at entry, D-4) or an absolute deadline.
    timeout_scope(loop_clock::duration delay, bool relative, deadline at) noexcept
        : deadline_entry(&on_fire)
        , relative_(relative) {
        deadline_entry::when = relative ? deadline(delay) : at;
    }

    void enter(detail::task_core* core) {
        core->rt->reserve_deadline(); // may throw bad_alloc: before anything changes
        core_ = core;
        detail::runtime_state* rt = core->rt;
        scope_.id = rt->next_scope_id();
        scope_.parent = core->current;
        scope_.node.link_to(core->current->node);
        core->current = &scope_;
        phase_ = phase::active;
        if (core_->rt->tracing() != nullptr) [[unlikely]] {
            detail::trace_scope(detail::scope_trace::enter, scope_, *core_, false, false, false);
        }
        // A relative delay is measured from entry, not from the iteration's start (13.2).
        const deadline now = relative_ ? rt->fresh_now() : rt->now();
        const deadline at = deadline_entry::when; // the configuration, until it is queued
        deadline when = at;
        if (relative_) {
            when = detail::add_saturated(now, at.time_since_epoch());
        }
        set_deadline(when);
    }

    void leave() noexcept {
        detail::deadline_queue::leave(*this);
        core_->current = scope_.parent;
        scope_.node.unlink_from_parent();
        phase_ = phase::exited;
    }

    void set_deadline(deadline when) noexcept {
        scope_.own_deadline = when;
        if (when <= core_->rt->now()) {
            expire(); // already due: expires synchronously, the body still starts (D-5)
        } else if (when != never) {
            deadline_entry::when = when;
            core_->rt->add_deadline(*this);
        }
    }

    void expire() noexcept {
        if (phase_ != phase::active || expired_) {
            return;
        }
        expired_ = true;
        if (core_->rt->tracing() != nullptr) [[unlikely]] {
            detail::trace_scope(detail::scope_trace::expire, scope_, *core_, true, false, false);
        }
        detail::deadline_queue::leave(*this);
        scope_.node.request_cancel(nullptr);
    }

    static void on_fire(deadline_entry* e) noexcept { static_cast<timeout_scope*>(e)->expire(); }

    // The flags share the scope's tail padding (no_unique_address): 8 bytes less per scope.
    [[no_unique_address]] detail::scope scope_{detail::scope_kind::timeout};
    bool relative_;
    bool expired_ = false;
    bool caught_ = false;
    bool move_on_ = false; // the conversion gave an empty result, not timeout_error (trace)
    phase phase_ = phase::created;
    detail::task_core* core_ = nullptr; // (its runtime is core_->rt)
    // Until the scope is entered, the deadline entry's `when` holds its configuration: the
    // relative delay (as a time since the epoch, taken at entry, D-4) or the absolute deadline.
};

/// The awaiter of `timeout`, `timeout_at`, `move_on_after` and `move_on_at`: runs the body
/// inline in the awaiting task, inside a `timeout_scope`. Await it once.
template <class T, bool MoveOn, class Factory>
class [[nodiscard]] timeout_awaiter : private detail::scoped_body<T, Factory, timeout_scope> {
    using base = detail::scoped_body<T, Factory, timeout_scope>;

public:
    using result_type =
        std::conditional_t<MoveOn, std::optional<std::conditional_t<std::is_void_v<T>, unit, T>>,
                           T>;

    timeout_awaiter(task<T> body, Factory factory, loop_clock::duration delay, bool relative,
                    deadline at)
        : base(std::move(body), std::move(factory), delay, relative, at) {}

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    /// The scope, for reading `expired()` and `caught()` after a named awaiter was awaited:
    /// `auto t = timeout(1s, work()); co_await t; bool late = t.scope().expired();`
    [[nodiscard]] const timeout_scope& scope() const noexcept { return this->scope_; }

    std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) {
        if (this->scope_.phase_ != timeout_scope::phase::created) {
            throw invalid_state("uvasync: a timeout scope can be entered once");
        }
        this->scope_.enter(detail::require_task("entering a timeout scope"));
        return this->start(caller);
    }

    result_type await_resume() {
        timeout_scope& s = this->scope_;
        s.leave();
        try {
            if constexpr (std::is_void_v<T>) {
                this->take();
                if constexpr (MoveOn) {
                    return result_type(unit{});
                }
            } else {
                return this->take();
            }
        } catch (const cancelled_error& e) {
            if (e.owner() != s.scope_.id) {
                throw; // not ours: an enclosing scope, the task, or nobody owns it
            }
            s.caught_ = true;
            s.move_on_ = MoveOn;
            if constexpr (MoveOn) {
                return std::nullopt;
            } else {
                std::throw_with_nested(timeout_error());
            }
        }
    }
};

/// The awaiter of `timeout` and friends when the body is itself an awaiter (a `sleep`, a
/// `task_handle`'s join, another scope, ...): the body is awaited in place, inside the scope,
/// without wrapping it in a coroutine frame. Same behaviour as `timeout_awaiter`; one
/// allocation, one resumption and one rethrow fewer per use (bench/NOTES.md, W2).
template <class A, bool MoveOn>
class [[nodiscard]] timeout_inline_awaiter {
    using T = decltype(std::declval<A&>().await_resume());

public:
    using result_type =
        std::conditional_t<MoveOn, std::optional<std::conditional_t<std::is_void_v<T>, unit, T>>,
                           T>;

    timeout_inline_awaiter(A body, loop_clock::duration delay, bool relative, deadline at)
        : scope_(delay, relative, at)
        , body_(std::move(body)) {}

    /// The body built here from a small request (`detail::leaf_request`, such as `sleep`'s):
    /// the awaiting frame then holds the request, not a second, moved-from awaiter.
    template <detail::leaf_request R>
    timeout_inline_awaiter(R&& request, loop_clock::duration delay, bool relative, deadline at)
        : scope_(delay, relative, at)
        , body_(std::forward<R>(request).operator co_await()) {}

    timeout_inline_awaiter(const timeout_inline_awaiter&) = delete;
    timeout_inline_awaiter& operator=(const timeout_inline_awaiter&) = delete;

    // Only before it is awaited.
    timeout_inline_awaiter(timeout_inline_awaiter&& other) noexcept(
        std::is_nothrow_move_constructible_v<A>)
        : scope_(std::move(other.scope_))
        , body_(std::move(other.body_)) {}

    timeout_inline_awaiter& operator=(timeout_inline_awaiter&&) = delete;

    // body_ is declared after scope_, so a frame destroyed while suspended destroys the body
    // (which unregisters from the scope's node) before the scope leaves.
    ~timeout_inline_awaiter() = default;

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    /// See `timeout_awaiter::scope`.
    [[nodiscard]] const timeout_scope& scope() const noexcept { return scope_; }

    std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) {
        if (scope_.phase_ != timeout_scope::phase::created) {
            throw invalid_state("uvasync: a timeout scope can be entered once");
        }
        scope_.enter(detail::require_task("entering a timeout scope"));
        try {
            if (body_.await_ready()) {
                return caller; // await_resume runs the body's await_resume, still inside
            }
            using R = decltype(body_.await_suspend(caller));
            if constexpr (std::is_void_v<R>) {
                body_.await_suspend(caller);
                return std::noop_coroutine();
            } else if constexpr (std::is_same_v<R, bool>) {
                return body_.await_suspend(caller) ? std::noop_coroutine() : caller;
            } else {
                return body_.await_suspend(caller);
            }
        } catch (...) {
            scope_.leave();
            throw;
        }
    }

    // Forced inline, and the body's part kept apart: the `timeout_error` thrown here then
    // starts its unwind in the awaiting coroutine's own frame. From a frame of its own (which
    // GCC made of this function once the body's inline delivery grew it), the unwinder also
    // interpreted that frame's long CFA program, twice: 11,000 instructions more per throw
    // (bench/NOTES.md, fourth pass).
    [[gnu::always_inline]] result_type await_resume() {
        if constexpr (detail::delivery_reporting<A>) {
            if (body_.delivery_pending()) {
                // A leaf that would only raise its delivery: decide the owner without the
                // throw (SEMANTICS 19.4). Ours: move_on returns empty, timeout throws once.
                detail::task_core* core = scope_.core_;
                const bool ours = detail::owner_of(core->current) == &scope_.scope_;
                scope_.leave();
                if (!ours) {
                    detail::throw_cancelled_out_of_line(core); // an enclosing scope owns it (D-3)
                }
                scope_.caught_ = true;
                scope_.move_on_ = MoveOn;
                if constexpr (MoveOn) {
                    return std::nullopt;
                } else {
                    throw timeout_error(); // nothing unwound the body, so nothing is nested
                }
            }
        }
        return resume_body();
    }

private:
    // The body's await_resume runs inside the scope: a delivery it raises is owned by the
    // scope when no enclosing scope is cancelled (SEMANTICS 4.8).
    result_type resume_body() {
        try {
            if constexpr (std::is_void_v<T>) {
                body_.await_resume();
                scope_.leave();
                if constexpr (MoveOn) {
                    return result_type(unit{});
                }
            } else {
                result_type r(body_.await_resume());
                scope_.leave();
                return r;
            }
        } catch (const cancelled_error& e) {
            leave_if_active();
            if (e.owner() != scope_.scope_.id) {
                throw;
            }
            scope_.caught_ = true;
            scope_.move_on_ = MoveOn;
            if constexpr (MoveOn) {
                return std::nullopt;
            } else {
                std::throw_with_nested(timeout_error());
            }
        } catch (...) {
            leave_if_active();
            throw;
        }
    }

    void leave_if_active() noexcept {
        if (scope_.phase_ == timeout_scope::phase::active) {
            scope_.leave();
        }
    }

    timeout_scope scope_;
    A body_;
};

namespace detail {

/// A body that `timeout` can await in place: an awaiter object itself (not a `task`, not an
/// awaitable that only has `operator co_await`), whose `await_suspend` takes any handle.
template <class A>
concept inline_scope_body = !is_task<A>::value && std::is_move_constructible_v<A> &&
                            requires(A & a, std::coroutine_handle<> h) {
    { a.await_ready() } -> std::convertible_to<bool>;
    a.await_suspend(h);
    a.await_resume();
};

template <class F>
concept scope_body_factory =
    std::invocable<F&, timeout_scope&> && is_task<std::invoke_result_t<F&, timeout_scope&>>::value;

template <class Body>
struct body_traits {
    using task_type = decltype(as_task(std::declval<Body>()));
    using value_type = typename task_type::value_type;
};

template <class F>
requires scope_body_factory<F>

struct body_traits<F> {
    using value_type = typename std::invoke_result_t<F&, timeout_scope&>::value_type;
};

template <bool MoveOn, class Body>
auto make_timeout(Body&& body, loop_clock::duration delay, bool relative, deadline at) {
    using B = std::decay_t<Body>; // a function name becomes a function pointer
    using T = typename body_traits<B>::value_type;
    if constexpr (scope_body_factory<B>) {
        return timeout_awaiter<T, MoveOn, B>(task<T>(), std::forward<Body>(body), delay, relative,
                                             at);
    } else if constexpr (leaf_request<Body>) {
        return timeout_inline_awaiter<typename B::awaiter_type, MoveOn>(std::forward<Body>(body),
                                                                        delay, relative, at);
    } else if constexpr (inline_scope_body<B>) {
        return timeout_inline_awaiter<B, MoveOn>(std::forward<Body>(body), delay, relative, at);
    } else {
        return timeout_awaiter<T, MoveOn, no_factory>(as_task(std::forward<Body>(body)),
                                                      no_factory{}, delay, relative, at);
    }
}

template <bool MoveOn, class Rep, class Period, class Body>
auto make_relative_timeout(std::chrono::duration<Rep, Period> d, Body&& body) {
    const deadline origin{};
    const deadline rel = deadline_after(origin, d); // NaN throws here, before anything runs
    const auto delay = rel == never ? loop_clock::duration::max() : rel - origin;
    return make_timeout<MoveOn>(std::forward<Body>(body), delay, true, never);
}

} // namespace detail

/// Runs `body` (an awaitable, or a callable `(timeout_scope&) -> task<T>`) inside a timeout
/// scope whose deadline is `d` after entry. Returns the body's result, or throws
/// `timeout_error` (with the `cancelled_error` nested) when the scope's own expiry ended it.
///
/// Durations follow `sleep`: zero or negative means already expired (the body starts and is
/// cancelled at its first cancellation point), sub-millisecond rounds up, too large means no
/// deadline, NaN throws `std::invalid_argument` before the body runs.
///
/// **Cancellation:** an enclosing cancellation (the task's, an outer timeout's, a bound
/// token's) passes through as `cancelled_error`, also when it coincides with this deadline
/// (SEMANTICS 4.8). If the body completes in the same iteration as the deadline, or swallows
/// the delivery and returns, its result is returned (D-2, 5.8).
template <class Rep, class Period, class Body>
auto timeout(std::chrono::duration<Rep, Period> d, Body&& body) {
    return detail::make_relative_timeout<false>(d, std::forward<Body>(body));
}

/// `timeout` with an absolute deadline on the loop clock; `never` adds no deadline.
template <class Body>
auto timeout_at(deadline at, Body&& body) {
    return detail::make_timeout<false>(std::forward<Body>(body), loop_clock::duration(0), false,
                                       at);
}

/// Like `timeout`, but the scope's own expiry yields an empty `std::optional` instead of an
/// exception (trio's `move_on_after`). A `void` body gives `std::optional<unit>`.
template <class Rep, class Period, class Body>
auto move_on_after(std::chrono::duration<Rep, Period> d, Body&& body) {
    return detail::make_relative_timeout<true>(d, std::forward<Body>(body));
}

/// `move_on_after` with an absolute deadline.
template <class Body>
auto move_on_at(deadline at, Body&& body) {
    return detail::make_timeout<true>(std::forward<Body>(body), loop_clock::duration(0), false, at);
}

} // namespace uvasync

#include <uvasync/cancel.hpp>

namespace uvasync {

namespace detail {

template <class B>
struct run_until_cancelled_impl {
    using T = typename decltype(as_task(std::declval<B>()))::value_type;
    using result = std::optional<std::conditional_t<std::is_void_v<T>, unit, T>>;

    static task<result> call(cancel_token& token, B& aw) {
        auto body = as_task(std::move(aw));
        if (token.cancel_requested()) {
            co_return std::nullopt; // never starts
        }
        co_return co_await move_on_at(never,
                                      [&](timeout_scope& s) { return bound(s, token, body); });
    }

    static task<T> bound(timeout_scope& s, const cancel_token& token, task<T>& body) {
        auto on_cancel = token.on_cancel([&s]() noexcept { s.cancel(); });
        co_return co_await body;
    }
};

} // namespace detail

/// Runs `aw` until it completes or `token` is cancelled (tokio's `run_until_cancelled`,
/// SEMANTICS 11.10). Returns the result, or an empty optional when the token's cancellation
/// ended it. A token already cancelled means `aw` never starts. If completion and the token's
/// cancellation are recorded in the same iteration, the result wins (D-2). The arguments are
/// kept by value until awaited.
template <class A>
auto run_until_cancelled(cancel_token token, A&& aw) {
    using B = std::remove_cvref_t<A>;
    using impl = detail::run_until_cancelled_impl<B>;
    return detail::deferred_call<typename impl::result, impl, cancel_token, B>(std::move(token),
                                                                               std::forward<A>(aw));
}

} // namespace uvasync
