// SPDX-License-Identifier: MIT
// The seed scenarios (examples/seed) on the virtual clock: every line, in order, at its exact
// loop-clock time; then each scenario again with a cancellation injected at every point in
// time where it is suspended.
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "../../examples/seed/scenarios.hpp"
#include "loop_fixture.hpp"

using namespace std::chrono_literals;
using uvasync::test::loop_fixture;

namespace {

using trace = std::vector<std::pair<long long, std::string>>;
using scenario_fn = uvasync::task<> (*)(seed::log&);

trace run_scenario(scenario_fn s) {
    std::optional<seed::log> out; // outlives the fixture: detached tasks may log at shutdown
    loop_fixture f;
    f.run([](std::optional<seed::log>& o, scenario_fn s) -> uvasync::task<> {
        o.emplace(false);
        co_await s(*o);
    }(out, s));
    return out->lines;
}

void check_trace(const trace& got, const trace& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        CHECK(got[i].second == want[i].second);
        CHECK_MESSAGE(got[i].first == want[i].first, "line: " << want[i].second);
    }
}

} // namespace

TEST_SUITE("seed") {
    TEST_CASE("1. a 2 s timeout around a 5 s operation times out at 2 s") {
        check_trace(run_scenario(&seed::basic_timeout),
                    {{0, "task starting, will take 5s"}, {2000, "Operation timed out!"}});
    }

    TEST_CASE("2. nested stage timeouts inside a 10 s envelope all complete at 6 s") {
        check_trace(run_scenario(&seed::nested_timeouts), {{0, "Stage 1: fetching"},
                                                           {2000, "Stage 1 done"},
                                                           {2000, "Stage 2: processing"},
                                                           {3000, "Stage 2 done"},
                                                           {3000, "Stage 3: saving"},
                                                           {6000, "Stage 3 done"}});
    }

    TEST_CASE("2b. an envelope rescheduled from inside lets all stages complete at 6 s") {
        check_trace(run_scenario(&seed::rescheduled_envelope), {{0, "Stage 1: fetching"},
                                                                {2000, "Stage 1 done"},
                                                                {2000, "envelope extended"},
                                                                {2000, "Stage 2: processing"},
                                                                {3000, "Stage 2 done"},
                                                                {3000, "Stage 3: saving"},
                                                                {6000, "Stage 3 done"},
                                                                {6000, "all stages completed"}});
    }

    TEST_CASE("3. a worker cancelled at 2.5 s cleans up and its awaiter sees it cancelled") {
        check_trace(run_scenario(&seed::cancel_worker),
                    {{0, "worker: step 0"},
                     {1000, "worker: step 1"},
                     {2000, "worker: step 2"},
                     {2500, "Cancelling task..."},
                     {2500, "worker: cancellation received, cleaning up"},
                     {2500, "Task was cancelled"}});
    }

    TEST_CASE("4. wait_for with a 2 s limit on a 5 s operation times out at 2 s") {
        check_trace(run_scenario(&seed::wait_for_timeout), {{2000, "wait_for timed out"}});
    }

    TEST_CASE("5. deadline tracking stops cleanly when the next step cannot finish in time") {
        check_trace(run_scenario(&seed::deadline_tracking),
                    {{0, "Step 0: doing work"},
                     {1000, "Step 1: doing work"},
                     {2000, "Step 2: doing work"},
                     {3000, "Step 3: doing work"},
                     {4000, "Out of time; aborting remaining steps"}});
    }

    TEST_CASE("6. per-request timeouts in a task group: 2 s, 3 s done, 6 s timed out at 5 s") {
        check_trace(run_scenario(&seed::server_pattern), {{0, "Request req1 starting"},
                                                          {0, "Request req2 starting"},
                                                          {0, "Request req3 starting"},
                                                          {2000, "Request req1 done"},
                                                          {3000, "Request req3 done"},
                                                          {5000, "Request req2 timed out"}});
    }

    TEST_CASE("7. wait_for(gather(...)) cancels every child and waits for their cleanup") {
        check_trace(run_scenario(&seed::gather_timeout),
                    {{1000, "child 1 finished"},
                     {3000, "child 2 cancelled, cleaning up"},
                     {3000, "child 3 cancelled, cleaning up"},
                     {3100, "child 2 cleanup done"},
                     {3100, "child 3 cleanup done"},
                     {3100, "gather timed out; every child has finished"}});
    }

    TEST_CASE(
        "a cancellation injected at every suspension point leaks nothing and cleans up once") {
        const std::vector<scenario_fn> scenarios = {
            &seed::basic_timeout,  &seed::nested_timeouts,  &seed::rescheduled_envelope,
            &seed::cancel_worker,  &seed::wait_for_timeout, &seed::deadline_tracking,
            &seed::server_pattern, &seed::gather_timeout};
        for (scenario_fn s : scenarios) {
            // Every 50 ms up to past the scenario's end: before, at and between its suspensions.
            for (long long at = 0; at <= 7000; at += 50) {
                CAPTURE(at);
                std::optional<seed::log> out; // outlives the runtime's shutdown
                loop_fixture f;               // checks no handle, no frame, uv_loop_close == 0
                auto h =
                    f.rt->spawn([](std::optional<seed::log>& o, scenario_fn sc) -> uvasync::task<> {
                        o.emplace(false);
                        co_await sc(*o);
                    }(out, s));
                auto killer =
                    f.rt->spawn([](uvasync::task_handle<> victim, long long ms) -> uvasync::task<> {
                        co_await uvasync::sleep(std::chrono::milliseconds(ms));
                        victim.cancel("injected");
                    }(h, at));
                f.run_until([&] { return h.done() && killer.done(); });
                REQUIRE(out.has_value());
                int cleanups_started = 0;
                int cleanups_done = 0;
                for (const auto& [t, line] : out->lines) {
                    cleanups_started += line.find("cleaning up") != std::string::npos ? 1 : 0;
                    cleanups_done += line.find("cleanup done") != std::string::npos ? 1 : 0;
                }
                if (s == &seed::gather_timeout) {
                    CHECK(cleanups_done == cleanups_started); // each child's cleanup ran once
                }
                CHECK(f.reported.empty());
            }
        }
    }
}
