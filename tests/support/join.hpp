// SPDX-License-Identifier: MIT
#pragma once

#include <string>

#include <uvasync/uvasync.hpp>

namespace uvasync::test {

/// Tasks that await a spawned task's handle, to observe it from another task (awaiting is a
/// cancellation point with forwarding, SEMANTICS 2.6).

/// Awaits `h` and returns its value (or rethrows what it ended with).
template <class T>
[[nodiscard]] task<T> join(task_handle<T> h) {
    co_return co_await h;
}

/// Awaits `h` and returns the message of the `cancelled_error` it raises, or "<not cancelled>".
template <class T>
[[nodiscard]] task<std::string> cancel_message_of(task_handle<T> h) {
    try {
        co_await h;
    } catch (const cancelled_error& e) {
        co_return std::string(e.message());
    }
    co_return "<not cancelled>";
}

} // namespace uvasync::test
