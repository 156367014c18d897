// SPDX-License-Identifier: MIT
// wait_for: SEMANTICS.md section 7, and 17.4 (wait_for around gather).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "counted.hpp"
#include "join.hpp"
#include "loop_fixture.hpp"
#include "string_makers.hpp"
#include "test_error.hpp"
#include "timed_tasks.hpp"
#include "trace.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using namespace uvasync::test;

/// Runs `aw` under wait_for and turns the outcome into a string, so each test can state it.
template <class A, class D>
task<std::string> outcome_of(trace& tr, A aw, D d) {
    std::string r;
    try {
        r = "value " + std::to_string(co_await wait_for(std::move(aw), d));
    } catch (const timeout_error& e) {
        r = "timeout_error";
        try {
            std::rethrow_if_nested(e);
        } catch (const cancelled_error&) {
            r += " (cancellation nested)";
        }
    } catch (const cancelled_error& e) {
        r = "cancelled_error: " + std::string(e.message());
    } catch (const my_error& e) {
        r = "my_error " + std::to_string(e.code);
    }
    tr.add(r);
    co_return r;
}

} // namespace

TEST_SUITE("wait_for") {

    // -----------------------------------------------------------------------------------------
    // 7.1 d == never

    namespace {
    task<int> probe_deadline(trace& tr, loop_clock::duration d) {
        tr.add(current_deadline() == never ? "no deadline" : "a deadline");
        co_await sleep(d);
        tr.add("probe done");
        co_return 5;
    }
    } // namespace

    TEST_CASE("7.1 a duration too large for the loop clock makes wait_for a plain await") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(outcome_of(tr, probe_deadline(tr, 1000ms), std::chrono::hours::max())) ==
              "value 5");
        CHECK(f.run(outcome_of(tr, probe_deadline(tr, 10ms),
                               std::chrono::duration<double>(
                                   std::numeric_limits<double>::infinity()))) == "value 5");
        CHECK(tr.events == std::vector<std::string>{"no deadline@0", "probe done@1000",
                                                    "value 5@1000", "no deadline@1000",
                                                    "probe done@1010", "value 5@1010"});
    }

    // -----------------------------------------------------------------------------------------
    // 7.2 d <= 0

    namespace {
    task<std::string> t_due_done(trace& tr, task_handle<int> h, loop_clock::duration d) {
        std::string r = co_await outcome_of(tr, h, d);
        co_await sleep(1ms); // no cancellation was left behind in the caller
        tr.add("caller slept");
        co_return r;
    }
    } // namespace

    TEST_CASE("7.2 with d <= 0 a handle that already completed gives its outcome, without any "
              "cancellation") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(value_after(tr, "h", 1ms, 5));
        auto e = f.rt->spawn(fail_after(tr, "e", 1ms, 9));
        f.run_until([&] { return h.done() && e.done(); });
        CHECK(f.run(t_due_done(tr, h, 0ms)) == "value 5");
        CHECK(f.run(t_due_done(tr, h, -5ms)) == "value 5");
        CHECK(f.run(t_due_done(tr, e, 0ms)) == "my_error 9");
        CHECK_FALSE(h.cancelled());
        CHECK(tr.events == std::vector<std::string>{"h done@1", "e fails@1", "value 5@1",
                                                    "caller slept@2", "value 5@2", "caller slept@3",
                                                    "my_error 9@3", "caller slept@4"});
    }

    namespace {
    task<std::string> t_due_future(trace& tr, future<int> fut) {
        co_return co_await outcome_of(tr, fut, 0ms);
    }
    } // namespace

    TEST_CASE("7.2 with d <= 0 an awaitable whose result is already there returns it") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        promise<int> p;
        p.set_value(11);
        CHECK(f.run(t_due_future(tr, p.get_future())) == "value 11");
    }

    TEST_CASE("7.2 with d <= 0 a lazy task never starts and timeout_error is raised") {
        trace tr;
        bool ran = false;
        loop_fixture f;
        tr.t0 = f.now();
        const auto base = counted::live().load();
        CHECK(f.run(outcome_of(tr, note_run(ran, counted{}), 0ms)) ==
              "timeout_error (cancellation nested)");
        CHECK(f.run(outcome_of(tr, note_run(ran, counted{}), -1s)) ==
              "timeout_error (cancellation nested)");
        CHECK(
            f.run(outcome_of(tr, note_run(ran, counted{}), std::chrono::duration<double>(-0.5))) ==
            "timeout_error (cancellation nested)");
        CHECK_FALSE(ran);
        CHECK(counted::live().load() == base);
        CHECK(tr.events.size() == 3);
        CHECK(tr.events.back() == "timeout_error (cancellation nested)@0");
    }

    namespace {
    task<std::string> t_due_lazy_cancelled_task(trace& tr, bool& ran) {
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            tr.add("swallowed"); // the task scope stays cancelled (D-1)
        }
        co_return co_await outcome_of(tr, note_run(ran, counted{}), 0ms);
    }

    task<std::string> t_due_lazy_outer_timeout(trace& tr, bool& ran) {
        auto r = co_await move_on_after(0ms, outcome_of(tr, note_run(ran, counted{}), 0ms));
        co_return r ? *r : std::string("outer scope moved on");
    }
    } // namespace

    TEST_CASE("7.2 with d <= 0 in a cancelled scope a lazy task never starts and cancelled_error "
              "is raised") {
        trace tr;
        bool ran = false;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(t_due_lazy_cancelled_task(tr, ran));
        auto k = f.rt->spawn(cancel_after(h, 2ms, "stop"));
        CHECK(f.run(join(h)) == "cancelled_error: stop");
        CHECK_FALSE(ran);

        // An enclosing timeout that is already expired owns the cancellation; the wait_for does
        // not convert it (the body catches it, so the outer scope returns normally).
        CHECK(f.run(t_due_lazy_outer_timeout(tr, ran)) == "cancelled_error: ");
        CHECK_FALSE(ran);
        CHECK(tr.events == std::vector<std::string>{"swallowed@2", "cancelled_error: stop@2",
                                                    "cancelled_error: @2"});
    }

    namespace {
    task<int> started_then_park(bool& started, trace& tr) {
        started = true;
        co_return co_await park(tr, "h", 4ms);
    }

    task<int> started_then_swallow(bool& started, trace& tr) {
        started = true;
        co_return co_await swallow_and_return(tr, "h", 2ms, 7);
    }

    task<std::string> t_due_running(trace& tr, task_handle<int> h, bool& started) {
        while (!started) {
            co_await yield();
        }
        co_return co_await outcome_of(tr, h, 0ms);
    }
    } // namespace

    TEST_CASE("7.2 7.4 with d <= 0 a running handle is cancelled and awaited: timeout_error "
              "when it ends cancelled, after its cleanup") {
        trace tr;
        bool started = false;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(started_then_park(started, tr));
        CHECK(f.run(t_due_running(tr, h, started)) == "timeout_error (cancellation nested)");
        CHECK(h.cancelled());
        CHECK(tr.events == std::vector<std::string>{"h cancelled@0", "h cleaned up@4",
                                                    "timeout_error (cancellation nested)@4"});
    }

    TEST_CASE("7.2 with d <= 0 a running handle that swallows the cancellation gives its value") {
        trace tr;
        bool started = false;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(started_then_swallow(started, tr));
        CHECK(f.run(t_due_running(tr, h, started)) == "value 7");
        CHECK_FALSE(h.cancelled());
        CHECK(tr.events == std::vector<std::string>{"h cancelled@0", "h returns@2", "value 7@2"});
    }

    // -----------------------------------------------------------------------------------------
    // 7.3 A timeout scope plus an await

    namespace {
    task<int> inline_probe(runtime& rt, trace& tr) {
        tr.add("tasks running: " + std::to_string(rt.task_count()));
        co_return co_await park(tr, "body", 3ms);
    }
    } // namespace

    TEST_CASE("7.3 7.4 a task argument runs inline in the caller's task; the timeout cancels it, "
              "its cleanup runs, then timeout_error") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(outcome_of(tr, inline_probe(*f.rt, tr), 10ms)) ==
              "timeout_error (cancellation nested)");
        CHECK(tr.events == std::vector<std::string>{"tasks running: 1@0", "body cancelled@10",
                                                    "body cleaned up@13",
                                                    "timeout_error (cancellation nested)@13"});
    }

    TEST_CASE("7.3 work that finishes before the deadline gives its value and leaves no deadline "
              "behind") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(outcome_of(tr, value_after(tr, "a", 5ms, 3), 10ms)) == "value 3");
        CHECK(f.run(outcome_of(tr, fail_after(tr, "b", 5ms, 4), 10ms)) == "my_error 4");
        f.run_all(); // returns at once: no pending deadline keeps the loop alive
        CHECK(tr.events ==
              std::vector<std::string>{"a done@5", "value 3@5", "b fails@10", "my_error 4@10"});
        CHECK(f.now() - tr.t0 == 10ms);
    }

    TEST_CASE("7.3 7.4 a task_handle argument receives the forwarded cancellation and wait_for "
              "returns after its cleanup") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(park(tr, "h", 6ms));
        CHECK(f.run(outcome_of(tr, h, 10ms)) == "timeout_error (cancellation nested)");
        CHECK(h.cancelled());
        CHECK(tr.events == std::vector<std::string>{"h cancelled@10", "h cleaned up@16",
                                                    "timeout_error (cancellation nested)@16"});
    }

    // -----------------------------------------------------------------------------------------
    // 7.5 Swallow and return

    namespace {
    task<std::string> t_swallow_then_sleep(trace& tr, task<int> t) {
        std::string r = co_await outcome_of(tr, std::move(t), 10ms);
        co_await sleep(1ms); // the wait_for scope's cancellation ended at its exit
        tr.add("caller slept");
        co_return r;
    }
    } // namespace

    TEST_CASE("7.5 if the work swallows the cancellation and returns a value, wait_for returns "
              "it") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_swallow_then_sleep(tr, swallow_and_return(tr, "a", 2ms, 42))) == "value 42");
        CHECK(tr.events == std::vector<std::string>{"a cancelled@10", "a returns@12", "value 42@12",
                                                    "caller slept@13"});

        tr.events.clear();
        tr.t0 = f.now();
        auto h = f.rt->spawn(swallow_and_return(tr, "h", {}, 43));
        CHECK(f.run(outcome_of(tr, h, 10ms)) == "value 43");
        CHECK_FALSE(h.cancelled());
        CHECK(tr.events ==
              std::vector<std::string>{"h cancelled@10", "h returns@10", "value 43@10"});
    }

    // -----------------------------------------------------------------------------------------
    // 7.6 Outer cancellation in the same iteration as the deadline

    namespace {
    task<std::string> t_same_iteration(trace& tr, bool& parked) {
        parked = true;
        try {
            co_await wait_for(sleep_until(never), 10ms);
            tr.add("returned");
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        } catch (const cancelled_error& e) {
            tr.add("cancelled_error: " + std::string(e.message()));
            throw;
        }
        co_return "not cancelled";
    }
    } // namespace

    TEST_CASE("7.6 the caller cancelled from outside in the same iteration as the deadline gets "
              "cancelled_error") {
        for (const bool cancel_first : {false, true}) {
            CAPTURE(cancel_first);
            trace tr;
            bool parked = false;
            loop_fixture f(loop_fixture::manual_clock());
            tr.t0 = f.now();
            auto h = f.rt->spawn(t_same_iteration(tr, parked));
            f.run_until([&] { return parked; });
            if (cancel_first) {
                h.cancel("outer");
                f.rt->advance(10ms);
            } else {
                f.rt->advance(10ms);
                h.cancel("outer");
            }
            f.run_until([&] { return h.done(); });
            CHECK(h.cancelled());
            CHECK(tr.events == std::vector<std::string>{"cancelled_error: outer@10"});
        }
    }

    namespace {
    task<std::string> t_nested_same_deadline(trace& tr) {
        auto r = co_await move_on_after(10ms, outcome_of(tr, park(tr, "a"), 10ms));
        co_return r ? *r : std::string("outer scope moved on");
    }
    } // namespace

    TEST_CASE("7.6 an enclosing timeout expiring in the same iteration owns the cancellation") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        // The outer scope owns it: wait_for lets cancelled_error through (and the body catches
        // it, so the outer scope returns normally).
        CHECK(f.run(t_nested_same_deadline(tr)) == "cancelled_error: ");
        CHECK(tr.events == std::vector<std::string>{"a cancelled@10", "cancelled_error: @10"});
    }

    // -----------------------------------------------------------------------------------------
    // 7.7 Completion in the same iteration as the deadline

    TEST_CASE("7.7 work that completes in the same iteration as the deadline gives its value") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        // The handles' sleeps are registered before the wait_for deadlines, so the completions
        // and the expiries are recorded in the same deadline pass.
        auto h = f.rt->spawn(value_after(tr, "h", 10ms, 5));
        auto h2 = f.rt->spawn(value_after(tr, "h2", 10ms, 6));
        auto a = f.rt->spawn(outcome_of(tr, h, 10ms));
        auto b = f.rt->spawn(outcome_of(tr, join(h2), 10ms)); // a lazy task awaiting it
        f.run_until([&] { return a.done() && b.done(); });
        CHECK(f.run(join(a)) == "value 5");
        CHECK(f.run(join(b)) == "value 6");
        CHECK(tr.has("value 5@10"));
        CHECK(tr.has("value 6@10"));
    }

    // -----------------------------------------------------------------------------------------
    // 17.4 wait_for(gather(...), N)

    namespace {
    task<std::string> t_gather_timeout(trace& tr) {
        try {
            co_await wait_for(
                gather(park(tr, "a", 2ms), park(tr, "b", 5ms), value_after(tr, "c", 3ms, 3)), 10ms);
            tr.add("returned");
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        }
        co_return "";
    }

    task<std::tuple<int, int>> t_gather_swallow(trace& tr) {
        co_return co_await wait_for(
            gather(swallow_and_return(tr, "a", 2ms, 1), swallow_and_return(tr, "b", {}, 2)), 10ms);
    }
    } // namespace

    TEST_CASE("17.4 wait_for(gather(...), N) cancels every child and raises only after their "
              "cleanup") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_gather_timeout(tr));
        REQUIRE(tr.events.size() == 6);
        CHECK(tr.events[0] == "c done@3");
        CHECK(tr.has("a cancelled@10"));
        CHECK(tr.has("b cancelled@10"));
        CHECK(tr.events[3] == "a cleaned up@12");
        CHECK(tr.events[4] == "b cleaned up@15");
        CHECK(tr.events[5] == "timeout_error@15");
    }

    TEST_CASE("17.4 when every gathered child swallows the cancellation and returns, wait_for "
              "returns the values") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_gather_swallow(tr)) == std::tuple<int, int>{1, 2});
        CHECK(tr.events.back() == "a returns@12");
    }

    // -----------------------------------------------------------------------------------------
    // 6.2 applies to wait_for

    TEST_CASE("6.2 a NaN duration throws std::invalid_argument before the work starts") {
        bool ran = false;
        loop_fixture f;
        CHECK_THROWS_AS(
            (void)wait_for(note_run(ran, counted{}), std::chrono::duration<double>(std::nan(""))),
            std::invalid_argument);
        CHECK_FALSE(ran);
    }
}
