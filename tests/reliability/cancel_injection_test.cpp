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

#include <doctest/doctest.h>
#include <uv.h>

#include "inject_each.hpp"
#include "injection.hpp"
#include "loop_fixture.hpp"

namespace {

using uvasync::test::loop_fixture;
using uvasync::test::scenario_fn;

uvasync::task<> run_scenario(std::optional<seed::log>& out, scenario_fn s) {
    out.emplace(false);
    co_await s(*out);
}

/// Injects a cancellation after every iteration count; returns how many were injected.
long inject_everywhere(scenario_fn s) {
    return uvasync::test::for_every_k(
        [s](long k) {
            std::optional<seed::log> out; // outlives the runtime's shutdown
            bool finished_alone = false;
            {
                loop_fixture f;
                uvasync::task_handle<> h = f.rt->spawn(run_scenario(out, s));
                f.rt->keep_loop_alive(true);
                long steps = 0;
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
                uvasync::test::check_injected_run(h, !finished_alone, f, out,
                                                  uvasync::test::logs_cleanups(s));
            } // the fixture's checks run here
            return finished_alone;
        },
        100000);
}

} // namespace

TEST_CASE("cancel_injection_at_every_iteration_of_every_seed_scenario") {
    const long total =
        uvasync::test::inject_into_each(uvasync::test::seed_scenarios, inject_everywhere);
    MESSAGE("cancellations injected: " << total);
}
