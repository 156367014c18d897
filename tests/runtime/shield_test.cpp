// SPDX-License-Identifier: MIT
// shielded(aw): the non-cancellable scope (SEMANTICS 8b, with 4.5 and the shield cases of 4.8).
//
// Every test runs on the fixture's virtual clock, so times are exact loop-clock differences.
//
// C++ forbids `co_await` inside a handler, so the cleanup pattern "catch the cancellation, then
// `co_await shielded(timeout(500ms, goodbye()))`" is written the usual C++20 way: the handler
// keeps the exception_ptr, the cleanup awaits after the try statement, then it is rethrown.

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "run_cancelled.hpp"
#include "string_makers.hpp"
#include "timed_tasks.hpp"
#include "timeout_support.hpp"

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;
using trace = std::vector<std::string>;

/// The farewell to a peer: takes `takes`, then records when it was sent.
task<void> goodbye(loop_clock::duration takes, deadline t0, trace& tr) {
    co_await sleep(takes);
    tr.push_back("goodbye sent at " + since(t0));
}

/// "deadline +N, remaining N" (or "never, max") at the current point.
void probe_deadline(deadline t0, trace& tr, const std::string& label) {
    const deadline d = current_deadline();
    tr.push_back(label + ": " +
                 (d == never ? std::string("never, remaining max")
                             : "deadline " + plus((d - t0).count()) + ", remaining " +
                                   std::to_string(remaining().count())));
}

// ---------------------------------------------------------------------------------------------
// 8b.1 Outer cancellation is invisible inside

task<void> shielded_sleep_then_point(loop_clock::duration d, trace& tr) {
    const deadline t0 = loop_clock::now();
    co_await shielded(sleep(d));
    tr.push_back("shielded sleep done at " + since(t0));
    tr.push_back(current_token().cancel_requested() ? "cancellation in effect after the shield"
                                                    : "no cancellation after the shield");
    try {
        co_await sleep(1h);
        tr.push_back("next point passed");
    } catch (const cancelled_error& e) {
        tr.push_back("next point raised at " + since(t0) + " (" + std::string(e.message()) + ")");
        throw;
    }
}

task<int> shielded_value_in_timeout_body(bool point_after, deadline t0, trace& tr) {
    const int v = co_await shielded(value_after(50ms, 3));
    tr.push_back("shielded value " + std::to_string(v) + " at " + since(t0));
    if (point_after) {
        co_await checkpoint();
        tr.push_back("checkpoint passed");
    }
    co_return v;
}

task<void> enclosing_timeout_around_shield(bool point_after, trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto aw = timeout(10ms, publishing_scope(sp, [&] {
                          return shielded_value_in_timeout_body(point_after, t0, tr);
                      }));
    try {
        const int v = co_await aw;
        tr.push_back("timeout returned " + std::to_string(v) + " at " + since(t0));
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
    tr.push_back(flags(*sp));
}

task<void> inside_shield_probe(deadline t0, trace& tr) {
    tr.push_back(current_token().cancel_requested() ? "inside: token cancelled"
                                                    : "inside: token not cancelled");
    co_await yield();
    co_await checkpoint();
    co_await sleep(0ms);
    co_await sleep(10ms);
    const std::optional<int> r = co_await move_on_after(1h, value_after(5ms, 1));
    tr.push_back("inside: every point passed, at " + since(t0) +
                 (r ? ", nested scope gave 1" : ""));
}

task<void> cancelled_before_the_shield(task_handle<void>& self, trace& tr) {
    const deadline t0 = loop_clock::now();
    self.cancel("stop");
    tr.push_back(current_token().cancel_requested() ? "outside: token cancelled"
                                                    : "outside: token not cancelled");
    co_await shielded(inside_shield_probe(t0, tr));
    try {
        co_await checkpoint();
        tr.push_back("after: checkpoint passed");
    } catch (const cancelled_error& e) {
        tr.push_back("after: checkpoint raised (" + std::string(e.message()) + ")");
        throw;
    }
}

task<int> join_in_shield(task_handle<int>& child, trace& tr) {
    const deadline t0 = loop_clock::now();
    const int v = co_await shielded(child);
    tr.push_back("joined " + std::to_string(v) + " at " + since(t0));
    co_return v;
}

// ---------------------------------------------------------------------------------------------
// 4.5 / 8b.2 Cleanup that awaits: shielded(timeout(500ms, goodbye()))

task<void> serve_then_say_goodbye(loop_clock::duration goodbye_takes, trace& tr) {
    const deadline t0 = loop_clock::now();
    const std::exception_ptr cancelled = co_await sleep_until_cancelled(t0, tr); // serving the peer
    if (cancelled) {
        try {
            co_await shielded(timeout(500ms, goodbye(goodbye_takes, t0, tr)));
        } catch (const timeout_error&) {
            tr.push_back("goodbye timed out at " + since(t0));
        }
        std::rethrow_exception(cancelled);
    }
}

task<void> serve_then_unshielded_goodbye(trace& tr) {
    const deadline t0 = loop_clock::now();
    const std::exception_ptr cancelled = co_await sleep_until_cancelled(t0, tr);
    try {
        co_await timeout(500ms, goodbye(100ms, t0, tr));
    } catch (const timeout_error&) {
        tr.push_back("goodbye: timeout_error");
    } catch (const cancelled_error& e) {
        tr.push_back("goodbye raised at " + since(t0) + " (" + std::string(e.message()) + ")");
    }
    std::rethrow_exception(cancelled);
}

task<void> scopes_inside_shield(deadline t0, trace& tr) {
    const auto r = co_await move_on_after(10ms, value_after(1h, 1));
    tr.push_back((r ? std::string("move_on value") : std::string("move_on nullopt")) + " at " +
                 since(t0));
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        s.cancel();
        return void_after(1h);
    };
    auto aw = timeout(1h, body);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("own cancel() converted at " + since(t0) + " " + flags(*sp));
    }
    const int v = co_await timeout(50ms, value_after(5ms, 2));
    tr.push_back("timeout value " + std::to_string(v) + " at " + since(t0));
}

task<void> nested_scopes_while_cancelled(task_handle<void>& self, trace& tr) {
    const deadline t0 = loop_clock::now();
    self.cancel("stop");
    co_await shielded(scopes_inside_shield(t0, tr));
    tr.push_back("shield done at " + since(t0));
}

task<void> inner_shield_in_middle_timeout(deadline t0, trace& tr) {
    co_await shielded(sleep(50ms)); // the middle timeout (+15) expires meanwhile
    tr.push_back("inner shield done at " + since(t0));
    try {
        co_await checkpoint();
        tr.push_back("checkpoint passed");
    } catch (const cancelled_error&) {
        tr.push_back("checkpoint raised at " + since(t0));
        throw;
    }
}

task<void> middle_timeout(deadline t0, trace& tr) {
    timeout_scope* sp = nullptr;
    auto aw =
        timeout(10ms, publishing_scope(sp, [&] { return inner_shield_in_middle_timeout(t0, tr); }));
    try {
        co_await aw;
        tr.push_back("middle timeout: value");
    } catch (const timeout_error&) {
        tr.push_back("middle timeout converted at " + since(t0) + " " + flags(*sp));
    } catch (const cancelled_error&) {
        tr.push_back("middle timeout: cancelled_error passed");
        throw;
    }
}

task<void> shield_timeout_shield(trace& tr) {
    const deadline t0 = loop_clock::now();
    const std::exception_ptr cancelled = co_await sleep_until_cancelled(t0, tr);
    co_await shielded(middle_timeout(t0, tr));
    try {
        co_await checkpoint();
    } catch (const cancelled_error& e) {
        tr.push_back("after the outer shield: raised (" + std::string(e.message()) + ")");
    }
    std::rethrow_exception(cancelled);
}

// ---------------------------------------------------------------------------------------------
// 8b.3 current_deadline() inside a shield

task<void> deadlines_in_shield(deadline t0, trace& tr) {
    probe_deadline(t0, tr, "in shield");
    auto longer = [&](timeout_scope&) -> task<void> {
        probe_deadline(t0, tr, "timeout 500ms in shield");
        return void_after(0ms);
    };
    co_await timeout(500ms, longer);
    auto shorter = [&](timeout_scope&) -> task<void> {
        probe_deadline(t0, tr, "timeout 30ms in shield");
        return void_after(0ms);
    };
    co_await timeout(30ms, shorter);
    probe_deadline(t0, tr, "in shield after its scopes");
}

task<void> outer_body_with_shield(deadline t0, trace& tr) {
    probe_deadline(t0, tr, "outer");
    co_await shielded(deadlines_in_shield(t0, tr));
    probe_deadline(t0, tr, "after the shield");
}

task<void> deadline_ignored_in_shield(trace& tr) {
    const deadline t0 = loop_clock::now();
    auto outer = [&](timeout_scope&) { return outer_body_with_shield(t0, tr); };
    co_await timeout(100ms, outer);
}

task<void> probe_after_outer_expired(deadline t0, trace& tr) {
    co_await sleep(20ms); // the enclosing 10 ms timeout expires meanwhile
    probe_deadline(t0, tr, "in shield after the outer expiry");
}

task<void> expired_outer_body(deadline t0, trace& tr) {
    co_await shielded(probe_after_outer_expired(t0, tr));
    tr.push_back(current_deadline() <= loop_clock::now() ? "after the shield: deadline <= now"
                                                         : "after the shield: deadline later");
    tr.push_back("after the shield: remaining " + std::to_string(remaining().count()));
}

task<void> expired_outer_and_shield(trace& tr) {
    const deadline t0 = loop_clock::now();
    auto outer = [&](timeout_scope&) { return expired_outer_body(t0, tr); };
    co_await timeout(10ms, outer);
}

// ---------------------------------------------------------------------------------------------
// 8b.5 No cancellation of its own: results and errors pass through

task<int> throws_after(loop_clock::duration d) {
    co_await sleep(d);
    throw std::runtime_error("inner failure");
}

task<std::unique_ptr<int>> make_ptr(int v) {
    co_await yield();
    co_return std::make_unique<int>(v);
}

task<void> results_through_shield(task_handle<int>& h, trace& tr) {
    const deadline t0 = loop_clock::now();
    const int a = co_await shielded(value_after(5ms, 3));
    tr.push_back("task value " + std::to_string(a) + " at " + since(t0));
    co_await shielded(sleep(5ms));
    tr.push_back("sleep at " + since(t0));
    const int b = co_await shielded(h);
    tr.push_back("handle value " + std::to_string(b) + " at " + since(t0));
    const std::unique_ptr<int> p = co_await shielded(make_ptr(4));
    tr.push_back("move-only value " + std::to_string(*p));
    try {
        co_await shielded(throws_after(5ms));
    } catch (const std::runtime_error& e) {
        tr.push_back(std::string("error passed: ") + e.what() + " at " + since(t0));
    }
}

task<void> enter_shield_twice(trace& tr) {
    auto sh = shielded(value_after(1ms, 1));
    tr.push_back("first " + std::to_string(co_await sh));
    try {
        co_await sh;
        tr.push_back("second entry accepted");
    } catch (const invalid_state&) {
        tr.push_back("second entry: invalid_state");
    }
}

// ---------------------------------------------------------------------------------------------
// 8b.6 A task group opened inside a shield is inside the shield

task<void> group_child(loop_clock::duration d, std::string name, deadline t0, trace& tr) {
    try {
        co_await sleep(d);
        tr.push_back(name + " done at " + since(t0));
    } catch (const cancelled_error&) {
        tr.push_back(name + " cancelled at " + since(t0));
        throw;
    }
}

task<void> group_body(task_group& g, deadline t0, trace& tr) {
    g.spawn(group_child(10ms, "child 1", t0, tr));
    g.spawn(group_child(20ms, "child 2", t0, tr));
    co_await sleep(5ms);
    tr.push_back("body done at " + since(t0));
}

task<void> group_in_shield(deadline t0, trace& tr) {
    auto body = [&](task_group& g) { return group_body(g, t0, tr); };
    co_await task_group::run(body);
    tr.push_back("group exited at " + since(t0));
}

task<void> shielded_group(trace& tr) {
    const deadline t0 = loop_clock::now();
    co_await shielded(group_in_shield(t0, tr));
    try {
        co_await checkpoint();
        tr.push_back("after the shield: checkpoint passed");
    } catch (const cancelled_error& e) {
        tr.push_back("after the shield: raised at " + since(t0) + " (" + std::string(e.message()) +
                     ")");
        throw;
    }
}

TEST_SUITE("shield") {

    // ---------------------------------------------------------------------------------------------
    // 8b.1 Outer cancellation is invisible inside

    TEST_CASE_FIXTURE(loop_fixture,
                      "8b.1 8b.4 a task cancelled while inside shielded() is not interrupted; the "
                      "cancellation raises at the first cancellation point after the shield") {
        for (int round = 0; round < 2; ++round) {
            trace tr;
            task_handle<void> a =
                run_cancelled_after(*this, shielded_sleep_then_point(50ms, tr), 5ms);
            CHECK(tr == trace{"shielded sleep done at +50",
                              "cancellation in effect after the shield",
                              "next point raised at +50 (stop)"});
            CHECK(a.cancelled());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "8b.1 an enclosing timeout that expires while the body is shielded does not "
                      "interrupt it; with no point afterwards the value is returned (5.8)") {
        trace tr;
        run(enclosing_timeout_around_shield(false, tr));
        CHECK(tr ==
              trace{"shielded value 3 at +50", "timeout returned 3 at +50", "expired=1 caught=0"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "8b.4 after the shield, the enclosing timeout's expiry raises at "
                      "the next cancellation point and the timeout converts it") {
        CHECK(run_traced(*this, [&](trace& tr) {
                  return enclosing_timeout_around_shield(true, tr);
              }) == trace{"shielded value 3 at +50", "timeout_error at +50", "expired=1 caught=1"});
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "8b.1 a shield entered by an already cancelled task: current_token() inside is "
        "not cancelled and no cancellation point raises") {
        trace tr;
        task_handle<void> a;
        a = rt->spawn(cancelled_before_the_shield(a, tr));
        run_until([&] { return a.done(); });
        CHECK(tr == trace{"outside: token cancelled", "inside: token not cancelled",
                          "inside: every point passed, at +15, nested scope gave 1",
                          "after: checkpoint raised (stop)"});
        CHECK(a.cancelled());
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "8b.1 abort hooks are not triggered through a shield: a task awaited inside is "
        "not cancelled by forwarding") {
        trace tr;
        task_handle<int> child = rt->spawn(value_after(20ms, 7));
        task_handle<int> a = run_cancelled_after(*this, join_in_shield(child, tr), 5ms);
        CHECK(tr == trace{"joined 7 at +20"});
        CHECK_FALSE(child.cancelled());
        CHECK_FALSE(a.cancelled()); // returned its value without reaching another point (2.3)
    }

    // ---------------------------------------------------------------------------------------------
    // 4.5 / 8b.2 Cleanup that awaits: shielded(timeout(500ms, goodbye()))

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.5 8b.2 cleanup after a cancellation: shielded(timeout(500ms, goodbye())) "
                      "completes the goodbye, then the task ends cancelled") {
        CHECK(run_traced_cancelled_after(
                  *this, [&](trace& tr) { return serve_then_say_goodbye(100ms, tr); }, 5ms) ==
              trace{"cancelled at +5", "goodbye sent at +105"});
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.5 8b.2 cleanup after a cancellation: the timeout inside the shield bounds an "
        "unresponsive peer and converts its own expiry") {
        CHECK(run_traced_cancelled_after(
                  *this, [&](trace& tr) { return serve_then_say_goodbye(1h, tr); }, 5ms) ==
              trace{"cancelled at +5", "goodbye timed out at +505"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.5 without the shield, the cleanup's first cancellation point raises again "
                      "and its timeout does not convert") {
        CHECK(run_traced_cancelled_after(*this, serve_then_unshielded_goodbye, 5ms) ==
              trace{"cancelled at +5", "goodbye raised at +5 (stop)"});
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "8b.2 scopes nested inside a shield work normally while an outer cancellation "
        "waits") {
        trace tr;
        task_handle<void> a;
        a = rt->spawn(nested_scopes_while_cancelled(a, tr));
        run_until([&] { return a.done(); });
        CHECK(tr == trace{"move_on nullopt at +10",
                          "own cancel() converted at +10 expired=1 caught=1",
                          "timeout value 2 at +15", "shield done at +15"});
        CHECK_FALSE(a.cancelled()); // returned without another cancellation point (2.3)
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "8b.2 4.8 shield, timeout, shield: the middle timeout's expiry waits for the "
        "inner shield, then the middle timeout owns it despite the task's cancellation") {
        CHECK(run_traced_cancelled_after(*this, shield_timeout_shield, 5ms) ==
              trace{"cancelled at +5", "inner shield done at +55", "checkpoint raised at +55",
                    "middle timeout converted at +55 expired=1 caught=1",
                    "after the outer shield: raised (stop)"});
    }

    // ---------------------------------------------------------------------------------------------
    // 8b.3 current_deadline() inside a shield

    TEST_CASE_FIXTURE(loop_fixture,
                      "8b.3 current_deadline() inside a shield ignores the enclosing deadlines") {
        CHECK(run_traced(*this, deadline_ignored_in_shield) ==
              trace{"outer: deadline +100, remaining 100", "in shield: never, remaining max",
                    "timeout 500ms in shield: deadline +500, remaining 500",
                    "timeout 30ms in shield: deadline +30, remaining 30",
                    "in shield after its scopes: never, remaining max",
                    "after the shield: deadline +100, remaining 100"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "8b.3 5.11 an expired enclosing scope does not show in current_deadline() "
                      "inside the shield, and does again after it") {
        CHECK(run_traced(*this, expired_outer_and_shield) ==
              trace{"in shield after the outer expiry: never, remaining max",
                    "after the shield: deadline <= now", "after the shield: remaining 0"});
    }

    // ---------------------------------------------------------------------------------------------
    // 8b.5 No cancellation of its own: results and errors pass through

    TEST_CASE_FIXTURE(loop_fixture,
                      "8b.5 a shielded scope has no cancellation of its own: results and errors of "
                      "the body pass through unchanged") {
        trace tr;
        task_handle<int> h = rt->spawn(value_after(20ms, 5));
        run(results_through_shield(h, tr));
        CHECK(tr == trace{"task value 3 at +5", "sleep at +10", "handle value 5 at +20",
                          "move-only value 4", "error passed: inner failure at +25"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "8b entering a shielded scope outside a task is invalid_state") {
        auto sh = shielded(void_after(1ms));
        CHECK_THROWS_AS(sh.await_suspend(std::noop_coroutine()), invalid_state);
    }

    TEST_CASE_FIXTURE(loop_fixture, "8b entering one shielded scope twice is invalid_state") {
        CHECK(run_traced(*this, enter_shield_twice) ==
              trace{"first 1", "second entry: invalid_state"});
    }

    // ---------------------------------------------------------------------------------------------
    // 8b.6 A task group opened inside a shield is inside the shield

    TEST_CASE_FIXTURE(loop_fixture,
                      "8b.6 children of a task group opened inside a shield are not reached by a "
                      "cancellation outside it") {
        CHECK(run_traced_cancelled_after(*this, shielded_group, 3ms) ==
              trace{"body done at +5", "child 1 done at +10", "child 2 done at +20",
                    "group exited at +20", "after the shield: raised at +20 (stop)"});
    }

} // TEST_SUITE

} // namespace
} // namespace uvasync::test
