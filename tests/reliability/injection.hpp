// SPDX-License-Identifier: MIT
// What the two cancellation-injection tests share (docs/reliability.md): the seed scenarios
// they inject into, the loop over k (cancel after the k-th iteration or step, for every k until
// the program finishes on its own), and the checks every injected run must pass.
#pragma once

#include <array>
#include <optional>
#include <string>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "../../examples/seed/scenarios.hpp"
#include "loop_fixture.hpp"

namespace uvasync::test {

using scenario_fn = task<> (*)(seed::log&);

struct named_scenario {
    const char* name;
    scenario_fn fn;
};

/// The eight seed scenarios of examples/seed/scenarios.hpp.
inline const std::array<named_scenario, 8> seed_scenarios = {{
    {"basic_timeout", &seed::basic_timeout},
    {"nested_timeouts", &seed::nested_timeouts},
    {"rescheduled_envelope", &seed::rescheduled_envelope},
    {"cancel_worker", &seed::cancel_worker},
    {"wait_for_timeout", &seed::wait_for_timeout},
    {"deadline_tracking", &seed::deadline_tracking},
    {"server_pattern", &seed::server_pattern},
    {"gather_timeout", &seed::gather_timeout},
}};

/// Seed scenario 7 (gather_timeout) logs each child's cleanup start and end: checked per run.
inline bool logs_cleanups(scenario_fn s) {
    return s == &seed::gather_timeout;
}

/// The checks on one run, made before the fixture's own teardown checks (no live frame, no
/// open handle, uv_loop_close == 0): the root ended normally or, only if a cancellation was
/// injected, cancelled; nothing was reported to the exception handler; and, when asked, every
/// cleanup the seed log shows as started also shows as done.
inline void check_injected_run(task_handle<>& root, bool injected, const loop_fixture& f,
                               const std::optional<seed::log>& log, bool check_cleanups) {
    try {
        root.result();
    } catch (const cancelled_error&) {
        CHECK(injected);
    } catch (...) {
        FAIL("the program ended with an error");
    }
    CHECK(f.reported.empty());
    if (check_cleanups && log.has_value()) { // no log: cancelled before it first ran
        int started = 0;
        int done = 0;
        for (const auto& [t, line] : log->lines) {
            started += line.find("cleaning up") != std::string::npos ? 1 : 0;
            done += line.find("cleanup done") != std::string::npos ? 1 : 0;
        }
        CHECK(done == started);
    }
}

/// Calls `run_with(k)` for k = 0, 1, 2, ... until it returns true (the program finished before
/// the k-th point, so every earlier k was visited); returns that k. `limit` turns a program that
/// never finishes into a failure.
template <class RunWith>
long for_every_k(RunWith run_with, long limit) {
    for (long k = 0;; ++k) {
        CAPTURE(k);
        if (run_with(k)) {
            return k;
        }
        REQUIRE(k < limit);
    }
}

} // namespace uvasync::test
