// SPDX-License-Identifier: MIT
// Cancelling a task once or twice and logging what each cancel() returned: the "cancelled
// twice" rows of the contract tests (docs/reliability.md).
#pragma once

#include <string>
#include <vector>

#include <uvasync/uvasync.hpp>

namespace uvasync::test {

/// Cancels `h` `times` times, with the messages "first" then "second", and logs what each
/// `cancel()` returned ("cancel true" / "cancel false"): the second returns false.
inline void cancel_and_log(task_handle<>& h, std::vector<std::string>& log, int times) {
    for (int i = 0; i < times; ++i) {
        log.push_back(h.cancel(i == 0 ? "first" : "second") ? "cancel true" : "cancel false");
    }
}

/// `cancel_and_log` from a task (spawned right after the target, it runs in the same drain).
inline task<> cancel_now(task_handle<>& h, std::vector<std::string>& log, int times) {
    cancel_and_log(h, log, times);
    co_return;
}

} // namespace uvasync::test
