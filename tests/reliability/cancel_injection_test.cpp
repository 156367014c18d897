// SPDX-License-Identifier: MIT
// Systematic cancellation injection into the seed scenarios (examples/seed/scenarios.hpp): the
// scenario's task is cancelled after the k-th loop iteration, for every k from 0 until the
// scenario finishes on its own.
//
// The method: on the virtual clock every loop iteration runs the tasks that are ready until
// each one is parked again, so between two iterations every task of the scenario is suspended
// at a suspension point, and the set of those points is a deterministic function of k. Stepping
// the loop one iteration at a time (UV_RUN_ONCE) from outside and cancelling after k steps
// cancels the scenario at each state it rests in between iterations, with no hook in the
// runtime. The granularity is the loop iteration, not the single suspension: the virtual
// clock's autojump may run several deadline passes (and the resumptions they cause) within one
// iteration, so the points inside such a burst are not visited separately (tests/runtime/
// seed_test.cpp's injection every 50 ms of virtual time samples some of them).
//
// Each run must end with the scenario's task finished normally or cancelled (nothing else),
// nothing reported to the exception handler, each child's cleanup of scenario 7 done exactly
// once per start, and the fixture's teardown finding no live frame, no open handle and
// uv_loop_close == 0. The sanitizer passes add ASan (a double resume is a use after free).
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>

#include "../../examples/seed/scenarios.hpp"
#include "loop_fixture.hpp"

namespace {

using scenario_fn = uvasync::task<> (*)(seed::log&);
using uvasync::test::loop_fixture;

uvasync::task<> run_scenario(std::optional<seed::log>& out, scenario_fn s) {
    out.emplace(false);
    co_await s(*out);
}

/// Injects a cancellation after every iteration count; returns how many were injected.
int inject_everywhere(scenario_fn s) {
    for (int k = 0;; ++k) {
        CAPTURE(k);
        std::optional<seed::log> out; // outlives the runtime's shutdown
        bool finished_alone = false;
        {
            loop_fixture f;
            uvasync::task_handle<> h = f.rt->spawn(run_scenario(out, s));
            f.rt->keep_loop_alive(true);
            int steps = 0;
            while (!h.done() && steps < k) {
                uv_run(f.loop(), UV_RUN_ONCE);
                ++steps;
            }
            f.rt->keep_loop_alive(false);
            finished_alone = h.done();
            if (!finished_alone) {
                CHECK(h.cancel("injected"));
                f.run_until([&] { return h.done(); });
            }
            try {
                h.result();
            } catch (const uvasync::cancelled_error&) {
                CHECK_FALSE(finished_alone);
            } catch (...) {
                FAIL("the scenario ended with an error");
            }
            CHECK(f.reported.empty());
            if (!out.has_value()) { // cancelled before it first ran (k == 0): it never started
                CHECK_FALSE(finished_alone);
                continue;
            }
            int cleanups_started = 0;
            int cleanups_done = 0;
            for (const auto& [t, line] : out->lines) {
                cleanups_started += line.find("cleaning up") != std::string::npos ? 1 : 0;
                cleanups_done += line.find("cleanup done") != std::string::npos ? 1 : 0;
            }
            if (s == &seed::gather_timeout) {
                CHECK(cleanups_done == cleanups_started);
            }
        } // the fixture's checks run here
        if (finished_alone) {
            return k;
        }
        REQUIRE(k < 100000);
    }
}

} // namespace

TEST_CASE("cancel_injection_at_every_iteration_of_every_seed_scenario") {
    const std::vector<std::pair<const char*, scenario_fn>> scenarios = {
        {"basic_timeout", &seed::basic_timeout},
        {"nested_timeouts", &seed::nested_timeouts},
        {"rescheduled_envelope", &seed::rescheduled_envelope},
        {"cancel_worker", &seed::cancel_worker},
        {"wait_for_timeout", &seed::wait_for_timeout},
        {"deadline_tracking", &seed::deadline_tracking},
        {"server_pattern", &seed::server_pattern},
        {"gather_timeout", &seed::gather_timeout}};
    int total = 0;
    for (const auto& entry : scenarios) {
        const char* const name = entry.first; // not a structured binding: CAPTURE takes it
        const scenario_fn s = entry.second;
        CAPTURE(name);
        const int n = inject_everywhere(s);
        CHECK(n > 0);
        MESSAGE(std::string(name) << ": " << n << " injection points");
        total += n;
    }
    MESSAGE("cancellations injected: " << total);
}
