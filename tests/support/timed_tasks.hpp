// SPDX-License-Identifier: MIT
#pragma once

#include <exception>
#include <string>
#include <vector>

#include <uvasync/uvasync.hpp>

#include "test_error.hpp"

namespace uvasync::test {

/// Small tasks that finish after a delay on the loop clock (a virtual clock in most tests, so
/// the delays cost no real time). Each sleep is a cancellation point.

/// Returns `v` after `d`.
[[nodiscard]] inline task<int> value_after(loop_clock::duration d, int v) {
    co_await sleep(d);
    co_return v;
}

/// Returns after `d`.
[[nodiscard]] inline task<void> void_after(loop_clock::duration d) {
    co_await sleep(d);
}

/// Sleeps `d`. When cancelled, cleans up for `cleanup` first (shielded; none when zero),
/// records "<name> cleaned up" in `log`, and raises the cancellation again.
[[nodiscard]] inline task<void> sleep_or_clean_up(std::vector<std::string>& log, std::string name,
                                                  loop_clock::duration d,
                                                  loop_clock::duration cleanup) {
    std::exception_ptr cancelled;
    try {
        co_await sleep(d);
    } catch (const cancelled_error&) {
        cancelled = std::current_exception();
    }
    if (cancelled) {
        if (cleanup > loop_clock::duration(0)) {
            co_await shielded(sleep(cleanup));
        }
        log.push_back(name + " cleaned up");
        std::rethrow_exception(cancelled);
    }
}

/// Throws `my_error(code)` after `d`.
[[nodiscard]] inline task<int> fail_after(loop_clock::duration d, int code) {
    co_await sleep(d);
    throw my_error(code);
}

/// Cancels `target` with `message` after `d`. The handle is taken by reference and read when
/// the delay ends, so it may be assigned after this task was spawned; it must outlive this task.
template <class T>
[[nodiscard]] task<void> cancel_after(task_handle<T>& target, loop_clock::duration d,
                                      std::string message) {
    co_await sleep(d);
    target.cancel(message);
}

} // namespace uvasync::test
