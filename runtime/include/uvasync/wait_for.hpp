// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <type_traits>
#include <utility>

#include <uvasync/clock.hpp>
#include <uvasync/detail/deferred.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/error.hpp>
#include <uvasync/shield.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_handle.hpp>
#include <uvasync/timeout.hpp>

// **Thread:** everything in this header is loop-thread only: the awaitables are created and
// awaited inside a task of the runtime (a call from another thread throws `invalid_state`).
namespace uvasync {

namespace detail {

template <class B>
struct wait_for_impl {
    using T = typename decltype(as_task(std::declval<B>()))::value_type;

    static task<T> call(B& aw, loop_clock::duration delay) {
        if (delay == loop_clock::duration::max()) {
            co_return co_await std::move(aw); // d == never: a plain await (7.1)
        }
        if (delay.count() > 0) {
            co_return co_await make_timeout<false>(std::move(aw), delay, true, never); // 7.3
        }
        co_return co_await due(aw); // d <= 0 (7.2)
    }

    // d <= 0: a result that is already there is returned without any cancellation; a lazy
    // task never starts; a running task is cancelled and awaited.
    static task<T> due(B& aw) {
        if constexpr (is_task<B>::value) {
            aw.reset(); // never starts: its frame is destroyed without running
            raise_own_timeout();
        } else if constexpr (requires {
                                 aw.state();
                                 aw.cancel();
                             }) {
            if (!aw.done()) {
                aw.cancel();
                task_handle<T> h = aw;
                try {
                    co_return co_await shielded(join_until_done(h));
                } catch (const cancelled_error&) {
                    raise_own_timeout(); // it ended cancelled: a timeout, ownership as usual
                }
            }
            co_return co_await aw;
        } else {
            if (get_awaiter(aw).await_ready()) {
                co_return co_await std::move(aw);
            }
            co_return co_await make_timeout<false>(std::move(aw), loop_clock::duration(0), true,
                                                   never);
        }
    }

    static task<T> join_until_done(task_handle<T> h) { co_return co_await h; }

    // The scope of this wait_for expired at entry: a delivery owned by it is a timeout_error;
    // when an enclosing scope is cancelled, the cancellation goes on (SEMANTICS 4.8).
    [[noreturn]] static void raise_own_timeout() {
        task_core* core = require_task("wait_for");
        if (core->current->cancelled()) {
            throw_cancelled(core);
        }
        try {
            throw cancelled_error();
        } catch (const cancelled_error&) {
            std::throw_with_nested(timeout_error());
        }
    }
};

} // namespace detail

/// asyncio's spelling of `timeout(d, aw)` (SEMANTICS 7): returns `aw`'s result or throws
/// `timeout_error`, and returns only after the awaited work has finished or been cancelled
/// and unwound. `d` of `never` (or too large) is a plain await. For `d <= 0`: a result that is
/// already available is returned; a lazy `task` never starts and the call raises
/// `timeout_error` (or `cancelled_error` when an enclosing scope is cancelled); a running
/// `task_handle` is cancelled and awaited, and its value is returned if it still produces one.
template <class A, class Rep, class Period>
auto wait_for(A&& aw, std::chrono::duration<Rep, Period> d) {
    using B = std::remove_cvref_t<A>;
    using impl = detail::wait_for_impl<B>;
    const deadline origin{};
    const deadline rel = detail::deadline_after(origin, d); // NaN throws here
    const auto delay = rel == never ? loop_clock::duration::max() : rel - origin;
    return detail::deferred_call<typename impl::T, impl, B, loop_clock::duration>(
        std::forward<A>(aw), delay);
}

} // namespace uvasync
