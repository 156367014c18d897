// SPDX-License-Identifier: MIT
// Cancellation points, delivery and ownership (SEMANTICS 4), exercised through sleeps, joins and
// timeout scopes.
//
// Every test runs on the fixture's virtual clock (autojump on unless a test needs to make
// several events fall into one iteration; those use `loop_fixture::manual_clock()` and `advance`),
// so the times asserted below are exact loop-clock differences.
//
// C++ forbids `co_await` inside a handler, so "cleanup that awaits in a catch block" is written
// the usual C++20 way: the handler keeps the exception_ptr, the cleanup awaits after the try
// statement, then the exception is rethrown.

#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
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

TEST_SUITE_BEGIN("cancellation points");

// =============================================================================================
// 4.1 The cancellation-point protocol

task<void> available_results_in_expired_scope(timeout_scope& s, task_handle<int>& finished,
                                              trace& tr) {
    tr.push_back(s.expired() ? "expired at entry" : "not expired at entry");
    const int a = co_await finished;
    tr.push_back("finished handle gave " + std::to_string(a));
    const int b = co_await value_now(8);
    tr.push_back("lazy task gave " + std::to_string(b));
    co_await checkpoint();
    tr.push_back("checkpoint passed");
}

task<void> await_available_results(task_handle<int>& finished, trace& tr) {
    auto body = [&](timeout_scope& s) {
        return available_results_in_expired_scope(s, finished, tr);
    };
    try {
        co_await timeout(0ms, body);
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
}

task<void> sleep_in_cancelled_scope(trace& tr) {
    try {
        co_await sleep(1h);
        tr.push_back("A: slept");
    } catch (const cancelled_error&) {
        tr.push_back("A: sleep raised");
        throw;
    }
}

task<void> first_point_in_expired_scope(trace& tr) {
    const deadline t0 = loop_clock::now();
    const auto r = co_await move_on_after(0ms, sleep_in_cancelled_scope(tr));
    tr.push_back(r ? std::string("A: value") : "A: nullopt at " + since(t0));
}

task<void> join_in_cancelled_scope(task_handle<int>& pending, trace& tr) {
    const auto r = co_await move_on_after(0ms, pending);
    tr.push_back(r ? "joined" : "join raised at once");
    tr.push_back(pending.done() ? "target done" : "target still pending");
}

task<void> yield_then_record(trace& tr, std::string name) {
    try {
        co_await yield();
        tr.push_back(name + ": yield passed");
    } catch (const cancelled_error&) {
        tr.push_back(name + ": yield raised on resumption");
        throw;
    }
}

task<void> yielder_in_scope(timeout_scope*& sp, trace& tr) {
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return yield_then_record(tr, "A");
    };
    const auto r = co_await move_on_after(1h, body);
    tr.push_back(r ? "A: value" : "A: nullopt");
}

task<void> cancel_scope_now(timeout_scope*& sp, trace& tr) {
    sp->cancel();
    tr.push_back("B: cancelled A's scope");
    co_return;
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.1 awaiting a result that is already available in a cancelled scope does not "
                  "raise; the next real cancellation point does") {
    task_handle<int> finished = rt->spawn(value_now(7));
    run_until([&] { return finished.done(); });
    trace tr;
    run(await_available_results(finished, tr));
    CHECK(tr ==
          trace{"expired at entry", "finished handle gave 7", "lazy task gave 8", "timeout_error"});
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.1 a sleep in a cancelled scope raises without starting: no suspension, no "
                  "deadline entry") {
    for (int round = 0; round < 2; ++round) {
        const deadline t0 = now();
        trace tr;
        auto a = rt->spawn(first_point_in_expired_scope(tr));
        auto b = rt->spawn(record(tr, "B ran"));
        run_until([&] { return a.done() && b.done(); });
        // A never suspended, so B (queued behind A) ran only after A had finished.
        CHECK(tr == trace{"A: sleep raised", "A: nullopt at +0", "B ran"});
        // No deadline entry was left behind: autojump has nothing to jump to.
        run_all();
        CHECK((now() - t0).count() == 0);
    }
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.1 awaiting a pending task in a cancelled scope raises at once and does not "
                  "touch the awaited task") {
    const deadline t0 = now();
    task_handle<int> pending = rt->spawn(value_after(10ms, 3));
    CHECK(run_traced(*this, [&](trace& tr) { return join_in_cancelled_scope(pending, tr); }) ==
          trace{"join raised at once", "target still pending"});
    CHECK(run(outcome_of(pending)) == "value 3");
    CHECK((now() - t0).count() == 10);
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.1 yield() checks again on resumption: a cancellation recorded while it was "
                  "queued raises") {
    timeout_scope* sp = nullptr;
    trace tr;
    auto a = rt->spawn(yielder_in_scope(sp, tr));
    auto b = rt->spawn(cancel_scope_now(sp, tr));
    run_until([&] { return a.done() && b.done(); });
    CHECK(tr == trace{"B: cancelled A's scope", "A: yield raised on resumption", "A: nullopt"});
}

// =============================================================================================
// D-2 / 4.9 Completion wins

task<int> sleep_then_return(timeout_scope& s, scope_slot& slot, trace& tr, bool checkpoint_after) {
    slot.s = &s;
    const deadline t0 = loop_clock::now();
    co_await sleep(10ms);
    tr.push_back("sleep returned at " + since(t0) + (s.expired() ? ", scope expired" : ""));
    if (checkpoint_after) {
        try {
            co_await checkpoint();
            tr.push_back("checkpoint passed");
        } catch (const cancelled_error&) {
            tr.push_back("checkpoint raised");
            throw;
        }
    }
    co_return 42;
}

task<void> completion_vs_expiry(scope_slot& slot, trace& tr, bool checkpoint_after) {
    auto body = [&](timeout_scope& s) { return sleep_then_return(s, slot, tr, checkpoint_after); };
    auto aw = timeout(1h, body);
    try {
        const int v = co_await aw;
        tr.push_back("value " + std::to_string(v));
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
    tr.push_back(flags(*slot.s));
}

// Re-registers A's scope deadline after A's sleep entry, at the same instant: one deadline pass
// then completes the sleep first and expires the scope second, before A runs.
task<void> reschedule_to_same_instant(scope_slot& slot, loop_clock::duration d) {
    slot.s->reschedule(loop_clock::now() + d);
    co_return;
}

task<int> sleep_then_maybe_checkpoint(trace& tr, bool checkpoint_after) {
    co_await sleep(10ms);
    tr.push_back("sleep returned");
    if (checkpoint_after) {
        co_await checkpoint();
        tr.push_back("checkpoint passed");
    }
    co_return 1;
}

TEST_CASE_FIXTURE(loop_fixture,
                  "D-2 a sleep that completes in the same deadline pass as the scope's expiry "
                  "returns its result, and the body's value is returned (5.8)") {
    for (int round = 0; round < 2; ++round) {
        scope_slot slot;
        trace tr;
        auto a = rt->spawn(completion_vs_expiry(slot, tr, false));
        auto b = rt->spawn(reschedule_to_same_instant(slot, 10ms));
        run_until([&] { return a.done() && b.done(); });
        CHECK(tr ==
              trace{"sleep returned at +10, scope expired", "value 42", "expired=1 caught=0"});
    }
}

TEST_CASE_FIXTURE(loop_fixture,
                  "D-2 after completion wins the scope stays cancelled: the next cancellation "
                  "point raises and the scope converts") {
    scope_slot slot;
    trace tr;
    auto a = rt->spawn(completion_vs_expiry(slot, tr, true));
    auto b = rt->spawn(reschedule_to_same_instant(slot, 10ms));
    run_until([&] { return a.done() && b.done(); });
    CHECK(tr == trace{"sleep returned at +10, scope expired", "checkpoint raised", "timeout_error",
                      "expired=1 caught=1"});
}

TEST_CASE_FIXTURE(loop_fixture,
                  "D-2 a scope cancel() that arrives after the sleep completed but before the task "
                  "resumed does not drop the result") {
    for (const bool checkpoint_after : {false, true}) {
        scope_slot slot;
        trace tr;
        // B is queued ahead of A: both wake in the pass at +10, B runs first and cancels A's
        // scope while A's completed sleep waits in the ready queue.
        auto b = rt->spawn(cancel_slot_after(10ms, slot));
        auto a = rt->spawn(completion_vs_expiry(slot, tr, checkpoint_after));
        run_until([&] { return a.done() && b.done(); });
        if (checkpoint_after) {
            CHECK(tr == trace{"sleep returned at +10, scope expired", "checkpoint raised",
                              "timeout_error", "expired=1 caught=1"});
        } else {
            CHECK(tr ==
                  trace{"sleep returned at +10, scope expired", "value 42", "expired=1 caught=0"});
        }
    }
}

TEST_CASE_FIXTURE(loop_fixture,
                  "D-2 a task cancel() between completion and resumption: the task resumes with "
                  "the result and ends with its value unless it reaches another point") {
    for (const bool checkpoint_after : {false, true}) {
        trace tr;
        task_handle<int> a;
        auto b = rt->spawn(cancel_after(a, 10ms, "late"));
        a = rt->spawn(sleep_then_maybe_checkpoint(tr, checkpoint_after));
        run_until([&] { return a.done() && b.done(); });
        CHECK(tr == trace{"sleep returned"});
        CHECK(a.cancelled() == checkpoint_after);
        CHECK(run(outcome_of(a)) == (checkpoint_after ? "cancelled(late)" : "value 1"));
    }
}

// =============================================================================================
// 4.2 / D-7 Type of the cancellation

static_assert(!std::is_base_of_v<std::exception, cancelled_error>,
              "D-7: cancelled_error must not derive from std::exception");

static_assert(std::is_base_of_v<std::exception, timeout_error>,
              "D-7: timeout_error derives from std::exception");

task<void> catch_std_exception_around_sleep(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (const std::exception&) {
        tr.push_back("swallowed by catch (const std::exception&)");
    }
}

task<void> catch_all_around_sleep(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (...) {
        tr.push_back("seen by catch (...)");
        throw;
    }
}

task<void> catch_clauses_and_cancellation(trace& tr) {
    try {
        co_await timeout(10ms, catch_std_exception_around_sleep(tr));
        tr.push_back("value");
    } catch (const std::exception& e) {
        tr.push_back(dynamic_cast<const timeout_error*>(&e) != nullptr ? "timeout_error"
                                                                       : "other error");
    }
    try {
        co_await timeout(10ms, catch_all_around_sleep(tr));
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
}

struct derived_cancelled : cancelled_error {
    using cancelled_error::cancelled_error;
};

task<void> rethrow_as_derived(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (const cancelled_error& e) {
        tr.push_back("rethrown as a derived type");
        throw derived_cancelled(e.shared_message(), e.owner());
    }
}

task<void> derived_delivery_in_timeout(trace& tr) {
    try {
        co_await timeout(10ms, rethrow_as_derived(tr));
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    } catch (const cancelled_error&) {
        tr.push_back("cancelled_error passed the scope");
    }
}

task<void> throw_derived_cancelled() {
    co_await yield();
    throw derived_cancelled();
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.2 catch (const std::exception&) cannot swallow cancelled_error; catch (...) "
                  "sees it; timeout_error is a std::exception") {
    CHECK(run_traced(*this, catch_clauses_and_cancellation) ==
          trace{"timeout_error", "seen by catch (...)", "timeout_error"});
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.2 scopes recognise types derived from cancelled_error: a timeout converts "
                  "one, a task ends cancelled by one") {
    CHECK(run_traced(*this, derived_delivery_in_timeout) ==
          trace{"rethrown as a derived type", "timeout_error"});

    auto h = rt->spawn(throw_derived_cancelled());
    run_until([&] { return h.done(); });
    CHECK(h.cancelled());
}

// =============================================================================================
// 4.3 / 4.6 Level triggering: swallowing does not un-cancel

task<int> swallow_at_every_point(task_handle<int>& pending, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("sleep raised at " + since(t0));
    }
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("sleep raised again at " + since(t0));
    }
    try {
        co_await yield();
    } catch (const cancelled_error&) {
        tr.push_back("yield raised");
    }
    try {
        co_await sleep(0ms);
    } catch (const cancelled_error&) {
        tr.push_back("sleep(0) raised");
    }
    try {
        co_await checkpoint();
    } catch (const cancelled_error&) {
        tr.push_back("checkpoint raised");
    }
    try {
        co_await sleep_until(never);
    } catch (const cancelled_error&) {
        tr.push_back("sleep_until(never) raised");
    }
    try {
        co_await pending;
    } catch (const cancelled_error&) {
        tr.push_back("join raised");
    }
    tr.push_back("returning at " + since(t0));
    co_return 5;
}

task<void> level_triggered_in_timeout(task_handle<int>& pending, scope_slot& slot, trace& tr) {
    auto body = [&](timeout_scope& s) {
        slot.s = &s;
        return swallow_at_every_point(pending, tr);
    };
    auto aw = timeout(10ms, body);
    const int v = co_await aw;
    tr.push_back("value " + std::to_string(v));
    tr.push_back(flags(*slot.s));
}

task<int> swallow_then_sleep(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("swallowed");
    }
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("raised again");
        throw;
    }
    co_return 0;
}

task<void> swallow_then_reach_point(trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await timeout(10ms, swallow_then_sleep(tr));
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
}

task<void> after_scope_left(trace& tr) {
    const deadline t0 = loop_clock::now();
    const auto r = co_await move_on_after(10ms, void_after(1h));
    tr.push_back(r ? "value" : "nullopt at " + since(t0));
    co_await sleep(5ms);
    tr.push_back("slept after the scope, at " + since(t0));
    const int v = co_await timeout(10ms, swallow_once_then_return(6));
    tr.push_back("swallowing body returned " + std::to_string(v) + " at " + since(t0));
    co_await yield();
    co_await sleep(5ms);
    tr.push_back("slept again at " + since(t0));
}

task<int> swallow_task_cancellation(trace& tr) {
    const deadline t0 = loop_clock::now();
    for (int i = 0; i < 3; ++i) {
        try {
            co_await sleep(1h);
        } catch (const cancelled_error& e) {
            tr.push_back("delivery " + std::to_string(i) + " (" + std::string(e.message()) +
                         ") at " + since(t0));
        }
    }
    co_return 9;
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.3 4.6 after a swallowed delivery every later cancellation point in the "
                  "expired scope raises again; returning without one yields the value (5.8)") {
    task_handle<int> pending = rt->spawn(value_after(1h, 3));
    scope_slot slot;
    CHECK(run_traced(*this,
                     [&](trace& tr) { return level_triggered_in_timeout(pending, slot, tr); }) ==
          trace{"sleep raised at +10", "sleep raised again at +10", "yield raised",
                "sleep(0) raised", "checkpoint raised", "sleep_until(never) raised", "join raised",
                "returning at +10", "value 5", "expired=1 caught=0"});
    // The join raised without touching the awaited task (4.1 step 2).
    CHECK_FALSE(pending.done());
    pending.cancel();
    run_until([&] { return pending.done(); });
}

TEST_CASE_FIXTURE(loop_fixture, "4.6 a body that swallows and then reaches a cancellation point "
                                "is cancelled again, and the scope converts") {
    CHECK(run_traced(*this, swallow_then_reach_point) ==
          trace{"swallowed", "raised again", "timeout_error at +10"});
}

TEST_CASE_FIXTURE(loop_fixture, "4.3 once control leaves the cancelled scope, its cancellation "
                                "affects nothing") {
    CHECK(run_traced(*this, after_scope_left) ==
          trace{"nullopt at +10", "slept after the scope, at +15",
                "swallowing body returned 6 at +25", "slept again at +30"});
}

TEST_CASE_FIXTURE(loop_fixture, "4.3 a cancelled task scope delivers at every cancellation point "
                                "until the task ends") {
    trace tr;
    task_handle<int> a = run_cancelled_after(*this, swallow_task_cancellation(tr), 5ms);
    CHECK(tr ==
          trace{"delivery 0 (stop) at +5", "delivery 1 (stop) at +5", "delivery 2 (stop) at +5"});
    CHECK_FALSE(a.cancelled());
    CHECK(run(outcome_of(a)) == "value 9");
}

// =============================================================================================
// 4.4 Catching is for cleanup

task<void> hold_counted_and_sleep(trace& tr) {
    counted guard;
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("catch block ran");
        throw;
    }
}

task<void> destructors_run_at_delivery(std::ptrdiff_t baseline, trace& tr) {
    try {
        co_await timeout(10ms, hold_counted_and_sleep(tr));
    } catch (const timeout_error&) {
        tr.push_back(counted::live() == baseline ? "locals destroyed" : "locals alive");
    }
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.4 at a delivery, catch blocks and destructors of the body run normally") {
    CHECK(run_traced(*this, [&](trace& tr) {
              return destructors_run_at_delivery(counted::live().load(), tr);
          }) == trace{"catch block ran", "locals destroyed"});
}

// =============================================================================================
// 4.7 An error raised during cleanup replaces the cancellation

task<void> cleanup_throws(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("cleanup");
        throw std::runtime_error("cleanup failed");
    }
}

task<void> cleanup_error_in_timeout(scope_record& rec, trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto aw = timeout(10ms, publishing_scope(sp, [&] { return cleanup_throws(tr); }));
    co_await await_and_record(aw, sp, rec, t0, false); // rethrows the error
}

task<void> cleanup_error_caught_inside(trace& tr) {
    try {
        try {
            co_await sleep(1h);
        } catch (const cancelled_error&) {
            throw std::runtime_error("cleanup failed");
        }
    } catch (const std::runtime_error&) {
        tr.push_back("cleanup error caught inside the scope");
    }
    try {
        co_await yield();
        tr.push_back("yield passed");
    } catch (const cancelled_error&) {
        tr.push_back("yield raised");
        throw;
    }
}

task<void> cleanup_error_caught_inside_timeout(trace& tr) {
    try {
        co_await timeout(10ms, cleanup_error_caught_inside(tr));
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
}

TEST_CASE_FIXTURE(loop_fixture, "4.7 5.9 an error raised while handling the delivery replaces the "
                                "cancellation and passes the timeout scope unchanged") {
    trace tr;
    scope_record rec;
    CHECK_THROWS_AS(run(cleanup_error_in_timeout(rec, tr)), std::runtime_error);
    CHECK(tr == trace{"cleanup"});
    CHECK(rec.escaped == "error(cleanup failed)");
    CHECK(rec.at == 10);
    CHECK(rec.expired);
    CHECK_FALSE(rec.caught);
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.7 a task whose cleanup raises an error ends with that error, not cancelled") {
    trace tr;
    task_handle<void> a = run_cancelled_after(*this, cleanup_throws(tr), 5ms);
    CHECK(tr == trace{"cleanup"});
    CHECK_FALSE(a.cancelled());
    CHECK(run(outcome_of(a)) == "error(cleanup failed)");
}

TEST_CASE_FIXTURE(loop_fixture, "4.7 after a cleanup error is caught inside the scope, the scope "
                                "is still cancelled and the next point raises") {
    CHECK(run_traced(*this, cleanup_error_caught_inside_timeout) ==
          trace{"cleanup error caught inside the scope", "yield raised", "timeout_error"});
}

// =============================================================================================
// 4.8 / D-3 Ownership

task<void> self_cancel_then_timeout(task_handle<void>& self, loop_clock::duration d,
                                    scope_record& rec) {
    self.cancel("earlier");
    co_await timeout_around_sleep(d, rec);
}

task<void> self_cancel_then_move_on(task_handle<void>& self, trace& tr) {
    self.cancel("earlier");
    try {
        const auto r = co_await move_on_after(0ms, void_after(1s));
        tr.push_back(r ? "value" : "nullopt");
    } catch (const cancelled_error& e) {
        tr.push_back("cancelled_error(" + std::string(e.message()) + ")");
        throw;
    }
}

task<void> swallow_then_timeout(scope_record& rec, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("swallowed at " + since(t0));
    }
    co_await timeout_around_sleep(10ms, rec);
}

task<void> goodbye_timeout_in_task_cleanup(trace& tr) {
    const deadline t0 = loop_clock::now();
    const std::exception_ptr delivery = co_await sleep_until_cancelled(t0, tr);
    try {
        co_await shielded(timeout(500ms, void_after(1h)));
        tr.push_back("goodbye done");
    } catch (const timeout_error&) {
        tr.push_back("shielded timeout converted its own expiry at " + since(t0));
    }
    try {
        co_await checkpoint();
        tr.push_back("checkpoint passed");
    } catch (const cancelled_error& e) {
        tr.push_back("outer cancellation raised at " + since(t0) + " (" + std::string(e.message()) +
                     ")");
    }
    std::rethrow_exception(delivery);
}

task<void> inner_cleanup_outlives_outer(trace& tr, deadline t0) {
    const std::exception_ptr delivery = co_await sleep_until_cancelled(t0, tr, "inner delivery");
    co_await shielded(sleep(200ms)); // the outer deadline (+100) passes meanwhile
    tr.push_back("cleanup done at " + since(t0));
    std::rethrow_exception(delivery);
}

task<void> owner_fixed_middle(timeout_scope& outer, trace& tr, deadline t0) {
    timeout_scope* inner = nullptr;
    auto iaw = timeout(
        10ms, publishing_scope(inner, [&] { return inner_cleanup_outlives_outer(tr, t0); }));
    scope_record rec;
    co_await await_and_record(iaw, inner, rec, t0, false);
    tr.push_back("inner: " + rec.escaped + (rec.caught ? " caught=1" : " caught=0"));
    tr.push_back(outer.expired() ? "outer expired" : "outer not expired");
    try {
        co_await checkpoint();
        tr.push_back("checkpoint passed");
    } catch (const cancelled_error&) {
        tr.push_back("checkpoint raised at " + since(t0));
        throw;
    }
}

task<void> owner_fixed_at_raise(trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* outer = nullptr;
    auto ob = [&](timeout_scope& s) {
        outer = &s;
        return owner_fixed_middle(s, tr, t0);
    };
    auto aw = timeout(100ms, ob);
    scope_record rec;
    co_await await_and_record(aw, outer, rec, t0, false);
    tr.push_back("outer: " + rec.escaped + " at " + plus(rec.at) +
                 (rec.caught ? " caught=1" : " caught=0"));
}

task<void> cancelled_elsewhere() {
    co_await sleep(1h);
}

task<void> foreign_cancellation_in_timeout(task_handle<void>& other, trace& tr) {
    try {
        co_await timeout(1h, other);
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    } catch (const cancelled_error& e) {
        tr.push_back("cancelled_error owner=" + std::to_string(e.owner()));
    }
    co_await sleep(1ms); // none of our scopes is cancelled: this is no cancellation
    tr.push_back("kept running");
}

/// One timeout(10ms) around sleep(1h) on the manual clock, whose expiry and a cancellation of
/// the task are recorded in the same iteration, the cancellation first if `cancel_first`. The
/// cancellation is `cancel("stop")` on the task's handle, or with `src` the request
/// "token" on that source, whose token the task was spawned with. Checks that the
/// cancellation escapes the expired timeout unconverted and the task ends cancelled.
void check_cancelled_in_the_expiry_iteration(bool cancel_first, cancel_source* src) {
    loop_fixture f(loop_fixture::manual_clock());
    scope_record rec;
    task_handle<void> h = src != nullptr
                              ? f.rt->spawn(timeout_around_sleep(10ms, rec), src->token())
                              : f.rt->spawn(timeout_around_sleep(10ms, rec));
    f.run_all(); // the body is parked on sleep(1h)
    auto cancel = [&] {
        if (src != nullptr) {
            src->request_cancel("token");
        } else {
            h.cancel("stop");
        }
    };
    if (cancel_first) {
        cancel();
        f.rt->advance(10ms);
    } else {
        f.rt->advance(10ms);
        cancel();
    }
    f.run_all();
    REQUIRE(h.done());
    CHECK(rec.escaped == (src != nullptr ? "cancelled_error(token)" : "cancelled_error(stop)"));
    CHECK(rec.expired);
    CHECK_FALSE(rec.caught);
    CHECK(h.cancelled());
}

TEST_CASE("4.8 nested timeouts that expire in the same iteration: only the outermost converts") {
    loop_fixture f(loop_fixture::manual_clock());
    const std::vector<loop_clock::duration> ds{10ms, 5ms};
    std::vector<scope_record> rec(ds.size());
    const deadline t0 = f.now();
    auto h = f.rt->spawn(nested_timeouts(0, ds, rec, t0));
    f.run_all();         // the body is parked on sleep(1h)
    f.rt->advance(20ms); // both deadlines (+5 inner, +10 outer) are due in one pass
    f.run_all();
    REQUIRE(h.done());
    CHECK(rec[1].escaped == "cancelled_error()");
    CHECK(rec[1].expired);
    CHECK_FALSE(rec[1].caught);
    CHECK(rec[0].escaped == "timeout_error");
    CHECK(rec[0].expired);
    CHECK(rec[0].caught);
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.8 16.1 nested timeouts with equal deadlines: the outermost converts, every "
                  "scope reports expired()") {
    const std::vector<loop_clock::duration> ds{10ms, 10ms, 10ms};
    std::vector<scope_record> rec(ds.size());
    const deadline t0 = now();
    run(nested_timeouts(0, ds, rec, t0));
    for (std::size_t i = 0; i < ds.size(); ++i) {
        CAPTURE(i);
        CHECK(rec[i].expired);
        CHECK(rec[i].at == 10);
        CHECK(rec[i].caught == (i == 0));
        CHECK(rec[i].escaped == (i == 0 ? "timeout_error" : "cancelled_error()"));
    }
}

TEST_CASE_FIXTURE(loop_fixture, "5.7 a nested timeout that expires alone converts its own expiry; "
                                "the outer scope lets the timeout_error pass") {
    const std::vector<loop_clock::duration> ds{10ms, 5ms};
    std::vector<scope_record> rec(ds.size());
    run(nested_timeouts(0, ds, rec, now()));
    CHECK(rec[1].escaped == "timeout_error");
    CHECK(rec[1].caught);
    CHECK(rec[1].at == 5);
    CHECK(rec[0].escaped == "timeout_error");
    CHECK_FALSE(rec[0].expired);
    CHECK_FALSE(rec[0].caught);
}

TEST_CASE_FIXTURE(loop_fixture, "5.7 an outer timeout's expiry passes through an inner timeout "
                                "that is not expired") {
    const std::vector<loop_clock::duration> ds{10ms, 1h};
    std::vector<scope_record> rec(ds.size());
    run(nested_timeouts(0, ds, rec, now()));
    CHECK(rec[1].escaped == "cancelled_error()");
    CHECK_FALSE(rec[1].expired);
    CHECK_FALSE(rec[1].caught);
    CHECK(rec[0].escaped == "timeout_error");
    CHECK(rec[0].caught);
    CHECK(rec[0].at == 10);
}

TEST_CASE("4.8 a task cancel() recorded before the timeout's expiry in the same iteration escapes "
          "the timeout as cancelled_error") {
    check_cancelled_in_the_expiry_iteration(true, nullptr);
}

TEST_CASE("4.8 a task cancel() recorded after the timeout's expiry in the same iteration escapes "
          "the timeout as cancelled_error") {
    check_cancelled_in_the_expiry_iteration(false, nullptr);
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.8 a task woken in the same deadline pass that cancels the timed-out task "
                  "before it runs: cancelled_error escapes the timeout") {
    scope_record rec;
    task_handle<void> a;
    auto b = rt->spawn(cancel_after(a, 10ms, "stop")); // its sleep is registered first
    a = rt->spawn(timeout_around_sleep(10ms, rec));
    run_until([&] { return a.done() && b.done(); });
    CHECK(rec.escaped == "cancelled_error(stop)");
    CHECK(rec.expired);
    CHECK_FALSE(rec.caught);
    CHECK(a.cancelled());
}

TEST_CASE("4.8 a bound token cancelled in the same iteration as the deadline, in either order: "
          "cancelled_error escapes the timeout") {
    for (const bool token_first : {true, false}) {
        CAPTURE(token_first);
        cancel_source src;
        check_cancelled_in_the_expiry_iteration(token_first, &src);
    }
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.8 gh-134471: a task whose scope is cancelled gets cancelled_error, never "
                  "timeout_error, from a timeout it enters afterwards") {
    for (const auto d : {0ms, 10ms}) {
        CAPTURE(d.count());
        scope_record rec;
        task_handle<void> a;
        a = rt->spawn(self_cancel_then_timeout(a, d, rec));
        run_until([&] { return a.done(); });
        CHECK(rec.escaped == "cancelled_error(earlier)");
        CHECK(rec.at == 0);
        CHECK_FALSE(rec.caught);
        CHECK(rec.expired == (d == 0ms)); // timeout(0) expires at entry (D-5)
        CHECK(a.cancelled());
    }
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.8 a move_on_after(0) entered by a cancelled task does not swallow the task's "
                  "cancellation") {
    trace tr;
    task_handle<void> a;
    a = rt->spawn(self_cancel_then_move_on(a, tr));
    run_until([&] { return a.done(); });
    CHECK(tr == trace{"cancelled_error(earlier)"});
    CHECK(a.cancelled());
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.8 a task that swallowed a delivery still gets cancelled_error from a later "
                  "timeout: its own cancellation is outer and still in effect") {
    scope_record rec;
    trace tr;
    task_handle<void> a = run_cancelled_after(*this, swallow_then_timeout(rec, tr), 5ms);
    CHECK(tr == trace{"swallowed at +5"});
    CHECK(rec.escaped == "cancelled_error(stop)");
    CHECK(rec.at == 0);
    CHECK_FALSE(rec.caught);
    CHECK(a.cancelled());
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.8 8b.2 inside shielded(), a nested timeout owns its own expiry while the "
                  "task's cancellation waits outside") {
    CHECK(run_traced_cancelled_after(*this, goodbye_timeout_in_task_cleanup, 5ms) ==
          trace{"cancelled at +5", "shielded timeout converted its own expiry at +505",
                "outer cancellation raised at +505 (stop)"});
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.8 the owner is fixed at raise time: an enclosing scope cancelled while the "
                  "delivery propagates does not take it, and raises at the next point") {
    CHECK(run_traced(*this, owner_fixed_at_raise) ==
          trace{"inner delivery at +10", "cleanup done at +210", "inner: timeout_error caught=1",
                "outer expired", "checkpoint raised at +210",
                "outer: timeout_error at +210 caught=1"});
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.8 a cancelled_error from a task someone else cancelled has no owner here and "
                  "passes every timeout") {
    trace tr;
    task_handle<void> other = rt->spawn(cancelled_elsewhere());
    auto c = rt->spawn(cancel_after(other, 5ms, "elsewhere"));
    run(foreign_cancellation_in_timeout(other, tr));
    CHECK(tr == trace{"cancelled_error owner=0", "kept running"});
}

// =============================================================================================
// 4.10 A wait that cannot be aborted delivers the real result

task<int> shielded_work(loop_clock::duration d, int v) {
    co_await shielded(sleep(d));
    co_return v;
}

task<void> join_then_checkpoint(task_handle<int>& child, trace& tr, deadline t0) {
    const int v = co_await child;
    tr.push_back("joined " + std::to_string(v) + " at " + since(t0));
    co_await checkpoint();
    tr.push_back("checkpoint passed");
}

task<void> wait_on_unabortable(task_handle<int>& child, trace& tr) {
    const deadline t0 = loop_clock::now();
    auto body = [&](timeout_scope&) { return join_then_checkpoint(child, tr, t0); };
    try {
        co_await timeout(10ms, body);
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.10 D-2b a wait whose abort only forwards keeps waiting; the real result is "
                  "delivered and the next point raises") {
    trace tr;
    task_handle<int> child = rt->spawn(shielded_work(50ms, 5));
    run(wait_on_unabortable(child, tr));
    CHECK(tr == trace{"joined 5 at +50", "timeout_error at +50"});
    CHECK_FALSE(child.cancelled());
}

// =============================================================================================
// 4.11 / D-13 Producers never get an error

task<void> wait_future_in_timeout(future<int> f, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        const int v = co_await timeout(10ms, f);
        tr.push_back("A got " + std::to_string(v));
    } catch (const timeout_error&) {
        tr.push_back("A: timeout_error at " + since(t0));
    }
}

task<void> wait_future(future<int> f, std::string name, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        const int v = co_await f;
        tr.push_back(name + " got " + std::to_string(v) + " at " + since(t0));
    } catch (const cancelled_error& e) {
        tr.push_back(name + " cancelled at " + since(t0) + " (" + std::string(e.message()) + ")");
        throw;
    }
}

task<void> produce_after(loop_clock::duration d, promise<int>& p, trace& tr) {
    co_await sleep(d);
    tr.push_back(std::string("set_value returned ") + (p.set_value(5) ? "true" : "false"));
    tr.push_back(std::string("second set_value returned ") + (p.set_value(6) ? "true" : "false"));
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.11 D-13 waiters of a future that time out or are cancelled detach alone: "
                  "a later set_value() succeeds and reaches the remaining waiter") {
    trace tr;
    promise<int> p;
    const future<int> fut = p.get_future();
    auto a = rt->spawn(wait_future_in_timeout(fut, tr));
    auto b = rt->spawn(wait_future(fut, "B", tr));
    task_handle<void> c = rt->spawn(wait_future(fut, "C", tr));
    auto cc = rt->spawn(cancel_after(c, 5ms, "stop"));
    auto producer = rt->spawn(produce_after(20ms, p, tr));
    run_until([&] { return a.done() && b.done() && c.done() && cc.done() && producer.done(); });
    CHECK(tr == trace{"C cancelled at +5 (stop)", "A: timeout_error at +10",
                      "set_value returned true", "second set_value returned false",
                      "B got 5 at +20"});
    CHECK(c.cancelled());
    CHECK(fut.done());
}

TEST_SUITE_END();

} // namespace
} // namespace uvasync::test
