// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <string>
#include <vector>

#include <uvasync/uvasync.hpp>

#include "test_error.hpp"

namespace uvasync::test {

/// Events with the loop-clock time (ms since `t0`) at which they happened: "name what@ms".
struct trace {
    deadline t0{};
    std::vector<std::string> events;

    void add(const std::string& what) {
        events.push_back(what + "@" + std::to_string((loop_clock::now() - t0).count()));
    }

    [[nodiscard]] bool has(const std::string& e) const {
        return std::find(events.begin(), events.end(), e) != events.end();
    }

    /// The position of `e` in `events` (`events.size()` if absent).
    [[nodiscard]] std::size_t index(const std::string& e) const {
        return static_cast<std::size_t>(std::find(events.begin(), events.end(), e) -
                                        events.begin());
    }
};

// Tasks that record what happens to them in a `trace`.

/// Returns `v` after `d`, recording "name done".
[[nodiscard]] inline task<int> value_after(trace& tr, std::string name, loop_clock::duration d,
                                           int v) {
    co_await sleep(d);
    tr.add(name + " done");
    co_return v;
}

/// Throws `my_error(code)` after `d`, recording "name fails".
[[nodiscard]] inline task<int> fail_after(trace& tr, std::string name, loop_clock::duration d,
                                          int code) {
    co_await sleep(d);
    tr.add(name + " fails");
    throw my_error(code);
}

/// Parks until cancelled, records "name cancelled", runs an optional shielded cleanup (recording
/// "name cleaned up"), then rethrows the cancellation.
[[nodiscard]] inline task<int> park(trace& tr, std::string name,
                                    loop_clock::duration cleanup = {}) {
    std::exception_ptr cancelled;
    try {
        co_await sleep_until(never);
    } catch (const cancelled_error&) {
        tr.add(name + " cancelled");
        cancelled = std::current_exception();
    }
    if (cleanup.count() > 0) {
        co_await shielded(sleep(cleanup));
        tr.add(name + " cleaned up");
    }
    std::rethrow_exception(cancelled);
}

/// Reaches one more cancellation point (a 1 ms sleep) and records what it did: "slept", or
/// "next cancellation point raised: <message>" before the cancellation goes on.
[[nodiscard]] inline task<> next_cancellation_point(trace& tr) {
    try {
        co_await sleep(std::chrono::milliseconds(1));
        tr.add("slept");
    } catch (const cancelled_error& e) {
        tr.add("next cancellation point raised: " + std::string(e.message()));
        throw;
    }
}

/// Parks until cancelled, records "name cancelled" and swallows the cancellation, then runs an
/// optional shielded cleanup (awaiting this task is a call, not a cancellation point).
[[nodiscard]] inline task<> swallow_cancel_then_clean_up(trace& tr, const std::string& name,
                                                         loop_clock::duration cleanup) {
    try {
        co_await sleep_until(never);
    } catch (const cancelled_error&) {
        tr.add(name + " cancelled");
    }
    if (cleanup.count() > 0) {
        co_await shielded(sleep(cleanup));
    }
}

/// Parks until cancelled, then (after an optional shielded cleanup) fails with `code`: an error
/// raised during cleanup replaces the cancellation (SEMANTICS 4.7).
[[nodiscard]] inline task<int> fail_on_cancel(trace& tr, std::string name,
                                              loop_clock::duration cleanup, int code) {
    co_await swallow_cancel_then_clean_up(tr, name, cleanup);
    tr.add(name + " fails");
    throw my_error(code);
}

/// Parks until cancelled, swallows the cancellation, and returns `v` after a shielded cleanup.
[[nodiscard]] inline task<int> swallow_and_return(trace& tr, std::string name,
                                                  loop_clock::duration cleanup, int v) {
    co_await swallow_cancel_then_clean_up(tr, name, cleanup);
    tr.add(name + " returns");
    co_return v;
}

} // namespace uvasync::test
