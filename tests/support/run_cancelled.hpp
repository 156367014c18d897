// SPDX-License-Identifier: MIT
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "timed_tasks.hpp"

namespace uvasync::test {

/// The scenario of most cancellation tests: spawns `t`, cancels it with `message` after `d` on
/// the loop clock (`cancel_after`), and runs the loop until both are done. Returns the task's
/// handle (done), for the test to check how it ended.
template <class T>
task_handle<T> run_cancelled_after(loop_fixture& f, task<T> t, loop_clock::duration d,
                                   std::string message = "stop") {
    task_handle<T> h = f.rt->spawn(std::move(t));
    auto canceller = f.rt->spawn(cancel_after(h, d, std::move(message)));
    f.run_until([&] { return h.done() && canceller.done(); });
    return h;
}

/// `run_cancelled_after` for a task `body(tr)` that records what happens in `tr`, cancelled with
/// "stop": checks that it ended cancelled and returns what it recorded.
template <class Body>
std::vector<std::string> run_traced_cancelled_after(loop_fixture& f, Body body,
                                                    loop_clock::duration d) {
    std::vector<std::string> tr;
    CHECK(run_cancelled_after(f, body(tr), d).cancelled());
    return tr;
}

} // namespace uvasync::test
