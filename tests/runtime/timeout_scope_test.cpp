// SPDX-License-Identifier: MIT
// The timeout_scope object (SEMANTICS 5): when(), expired(), caught(), reschedule(), cancel(),
// current_deadline() and remaining().
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
#include "string_makers.hpp"
#include "timed_tasks.hpp"
#include "timeout_support.hpp"

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;
using trace = std::vector<std::string>;

TEST_SUITE_BEGIN("timeout");

// =============================================================================================
// 5 API: when(), expired(), caught()

task<void> scope_api_body(timeout_scope& s, deadline t0, trace& tr) {
    tr.push_back("entry: when " + plus((s.when() - t0).count()) + " " + flags(s));
    co_await sleep(5ms);
    tr.push_back("at " + since(t0) + ": " + flags(s));
    try {
        co_await sleep(1h);
    } catch (const cancelled_error& e) {
        tr.push_back("delivery at " + since(t0) + " message='" + std::string(e.message()) + "' " +
                     flags(s));
        throw;
    }
}

task<void> scope_api(trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return scope_api_body(s, t0, tr);
    };
    auto aw = timeout(10ms, body);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
    tr.push_back("after exit: when " + plus((sp->when() - t0).count()) + " " + flags(*sp));
}

task<void> when_of_never(trace& tr) {
    auto body = [&](timeout_scope& s) {
        tr.push_back(s.when() == never ? "when never" : "when finite");
        return void_after(20ms);
    };
    co_await timeout_at(never, body);
    tr.push_back("done");
}

TEST_CASE_FIXTURE(loop_fixture, "5 when() is the deadline, expired() turns true at the deadline, "
                                "caught() only once the scope converted") {
    CHECK(run_traced(*this, scope_api) ==
          trace{"entry: when +10 expired=0 caught=0", "at +5: expired=0 caught=0",
                "delivery at +10 message='' expired=1 caught=0", "timeout_error",
                "after exit: when +10 expired=1 caught=1"});
}

TEST_CASE_FIXTURE(loop_fixture, "6.1 timeout_at(never) has when() == never and no deadline") {
    trace tr;
    const deadline t0 = now();
    run(when_of_never(tr));
    CHECK(tr == trace{"when never", "done"});
    CHECK((now() - t0).count() == 20);
}

// =============================================================================================
// 5.10 reschedule

task<void> reschedule_body(timeout_scope& s, deadline t0, loop_clock::duration first_sleep,
                           deadline to, trace& tr) {
    co_await sleep(first_sleep);
    s.reschedule(to);
    tr.push_back("rescheduled at " + since(t0) + ": when " +
                 (s.when() == never ? std::string("never") : plus((s.when() - t0).count())) +
                 (s.expired() ? " expired" : ""));
    try {
        co_await sleep(1h);
        tr.push_back("slept until " + since(t0));
    } catch (const cancelled_error&) {
        tr.push_back("raised at " + since(t0));
        throw;
    }
}

/// Enters timeout(initial), sleeps `first_sleep`, reschedules to t0 + `to_offset` (or `never`).
task<void> reschedule_case(loop_clock::duration initial, loop_clock::duration first_sleep,
                           std::optional<loop_clock::duration> to_offset, trace& tr) {
    const deadline t0 = loop_clock::now();
    const deadline to = to_offset ? t0 + *to_offset : never;
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return reschedule_body(s, t0, first_sleep, to, tr);
    };
    auto aw = timeout(initial, body);
    try {
        co_await aw;
        tr.push_back("value at " + since(t0));
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
    tr.push_back(flags(*sp));
}

task<void> reschedule_relative_body(timeout_scope& s, deadline t0, trace& tr) {
    co_await sleep(5ms);
    s.reschedule(20ms);
    tr.push_back("reschedule(20ms) at +5: when " + plus((s.when() - t0).count()));
    co_await sleep(10ms);
    s.reschedule(-1ms);
    tr.push_back(std::string("reschedule(-1ms) at +15: ") + (s.expired() ? "expired" : "pending"));
    co_await sleep(1h);
}

task<void> reschedule_relative(trace& tr) {
    const deadline t0 = loop_clock::now();
    auto body = [&](timeout_scope& s) { return reschedule_relative_body(s, t0, tr); };
    try {
        co_await timeout(10ms, body);
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
}

task<void> inner_rescheduled_later(deadline t0, trace& tr) {
    auto inner = [&](timeout_scope& s) {
        s.reschedule(loop_clock::now() + 1h);
        tr.push_back("inner when +" + std::to_string((s.when() - t0).count()) + ", effective +" +
                     std::to_string((current_deadline() - t0).count()));
        return void_after(1h);
    };
    co_await timeout(5ms, inner);
}

task<void> inner_cannot_extend_outer(trace& tr) {
    const deadline t0 = loop_clock::now();
    auto outer = [&](timeout_scope&) { return inner_rescheduled_later(t0, tr); };
    try {
        co_await timeout(10ms, outer);
    } catch (const timeout_error&) {
        tr.push_back("outer timeout_error at " + since(t0));
    }
}

task<void> reschedule_after_expiry_body(timeout_scope& s, trace& tr) {
    s.cancel();
    try {
        s.reschedule(loop_clock::now() + 1h);
        tr.push_back("reschedule(deadline) accepted");
    } catch (const invalid_state&) {
        tr.push_back("reschedule(deadline) after expiry: invalid_state");
    }
    try {
        s.reschedule(1h);
        tr.push_back("reschedule(duration) accepted");
    } catch (const invalid_state&) {
        tr.push_back("reschedule(duration) after expiry: invalid_state");
    }
    try {
        s.reschedule(never);
        tr.push_back("reschedule(never) accepted");
    } catch (const invalid_state&) {
        tr.push_back("reschedule(never) after expiry: invalid_state");
    }
    co_return;
}

task<void> reschedule_invalid_states(trace& tr) {
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return reschedule_after_expiry_body(s, tr);
    };
    auto aw = timeout(1h, body);
    co_await aw;
    try {
        sp->reschedule(loop_clock::now() + 1h);
        tr.push_back("reschedule(deadline) after exit accepted");
    } catch (const invalid_state&) {
        tr.push_back("reschedule(deadline) after exit: invalid_state");
    }
    try {
        sp->reschedule(1h);
        tr.push_back("reschedule(duration) after exit accepted");
    } catch (const invalid_state&) {
        tr.push_back("reschedule(duration) after exit: invalid_state");
    }

    // A scope that exited without expiring.
    auto quick = [&](timeout_scope& s) {
        sp = &s;
        return void_after(1ms);
    };
    auto aw2 = timeout(1h, quick);
    co_await aw2;
    try {
        sp->reschedule(loop_clock::now() + 1h);
        tr.push_back("unexpired: reschedule after exit accepted");
    } catch (const invalid_state&) {
        tr.push_back("unexpired: reschedule after exit: invalid_state");
    }
}

// Before entry cannot be reached: a timeout_scope has no public constructor, and a body only
// receives its scope after entry.
static_assert(!std::is_default_constructible_v<timeout_scope>);

static_assert(!std::is_copy_constructible_v<timeout_scope>);

TEST_CASE_FIXTURE(loop_fixture, "5.10 reschedule() to a later deadline extends the scope") {
    CHECK(run_traced(*this, [&](trace& tr) { return reschedule_case(10ms, 5ms, 25ms, tr); }) ==
          trace{"rescheduled at +5: when +25", "raised at +25", "timeout_error at +25",
                "expired=1 caught=1"});
}

TEST_CASE_FIXTURE(loop_fixture, "5.10 reschedule() to an earlier deadline shortens the scope") {
    CHECK(run_traced(*this, [&](trace& tr) { return reschedule_case(1h, 5ms, 10ms, tr); }) ==
          trace{"rescheduled at +5: when +10", "raised at +10", "timeout_error at +10",
                "expired=1 caught=1"});
}

TEST_CASE_FIXTURE(loop_fixture,
                  "5.10 reschedule(never) removes the deadline: the scope does not expire") {
    trace tr;
    const deadline t0 = now();
    run(reschedule_case(10ms, 5ms, std::nullopt, tr));
    CHECK(tr == trace{"rescheduled at +5: when never", "slept until +3600005", "value at +3600005",
                      "expired=0 caught=0"});
    CHECK((now() - t0).count() == 3600005);
}

TEST_CASE_FIXTURE(loop_fixture, "5.10 D-5 reschedule() to a deadline already passed expires the "
                                "scope synchronously") {
    for (const auto to : {5ms, 2ms}) { // exactly now, and in the past
        CHECK(run_traced(*this, [&](trace& tr) { return reschedule_case(1h, 5ms, to, tr); }) ==
              trace{"rescheduled at +5: when " + plus(to.count()) + " expired", "raised at +5",
                    "timeout_error at +5", "expired=1 caught=1"});
    }
}

TEST_CASE_FIXTURE(loop_fixture, "5.10 reschedule(duration) counts from now; a negative one "
                                "expires synchronously") {
    CHECK(run_traced(*this, reschedule_relative) == trace{"reschedule(20ms) at +5: when +25",
                                                          "reschedule(-1ms) at +15: expired",
                                                          "timeout_error at +15"});
}

TEST_CASE_FIXTURE(loop_fixture, "5.10 5.11 rescheduling an inner scope later never extends the "
                                "outer one") {
    CHECK(run_traced(*this, inner_cannot_extend_outer) ==
          trace{"inner when +3600000, effective +10", "outer timeout_error at +10"});
}

TEST_CASE_FIXTURE(loop_fixture, "5.10 reschedule() after expiry or after exit is invalid_state") {
    CHECK(run_traced(*this, reschedule_invalid_states) ==
          trace{"reschedule(deadline) after expiry: invalid_state",
                "reschedule(duration) after expiry: invalid_state",
                "reschedule(never) after expiry: invalid_state",
                "reschedule(deadline) after exit: invalid_state",
                "reschedule(duration) after exit: invalid_state",
                "unexpired: reschedule after exit: invalid_state"});
}

// =============================================================================================
// 5.4 cancel()

task<void> cancel_inside_body(timeout_scope& s, trace& tr) {
    s.cancel();
    tr.push_back(std::string("after cancel(): ") + flags(s));
    s.cancel(); // expires at most once; a second call changes nothing
    tr.push_back("synchronous code still runs");
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("first point raised");
        throw;
    }
}

task<void> own_cancel(trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return cancel_inside_body(s, tr);
    };
    auto aw = timeout(1h, body);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
    tr.push_back(flags(*sp));
    sp->cancel(); // after exit: no effect, no error
    tr.push_back("after exit: " + flags(*sp));
}

task<void> parked_in_scope(scope_slot& slot, trace& tr) {
    const deadline t0 = loop_clock::now();
    auto body = [&](timeout_scope& s) {
        slot.s = &s;
        return void_after(1h);
    };
    auto aw = timeout(1h, body);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0) + " " + flags(*slot.s));
    }
}

TEST_CASE_FIXTURE(loop_fixture, "5.4 cancel() expires the scope at once; it converts like its own "
                                "deadline; later calls have no effect") {
    trace tr;
    const deadline t0 = now();
    run(own_cancel(tr));
    CHECK(tr == trace{"after cancel(): expired=1 caught=0", "synchronous code still runs",
                      "first point raised", "timeout_error at +0", "expired=1 caught=1",
                      "after exit: expired=1 caught=1"});
    // The 1 h deadline entry went away with the expiry: nothing is left to jump to.
    run_all();
    CHECK((now() - t0).count() == 0);
}

TEST_CASE_FIXTURE(loop_fixture,
                  "5.4 cancel() from another task aborts the parked body and the scope converts") {
    scope_slot slot;
    trace tr;
    auto a = rt->spawn(parked_in_scope(slot, tr));
    auto b = rt->spawn(cancel_slot_after(7ms, slot));
    run_until([&] { return a.done() && b.done(); });
    CHECK(tr == trace{"timeout_error at +7 expired=1 caught=1"});
}

// =============================================================================================
// 5.11 current_deadline() and remaining()

task<void> deadline_probe(deadline t0, trace& tr, std::string label) {
    const deadline d = current_deadline();
    tr.push_back(label + ": deadline " +
                 (d == never ? std::string("never") : plus((d - t0).count())) + ", remaining " +
                 (d == never ? std::string("max") : std::to_string(remaining().count())));
    co_return;
}

task<void> deadlines_in_outer(deadline t0, trace& tr) {
    co_await deadline_probe(t0, tr, "outer");
    co_await sleep(30ms);
    co_await deadline_probe(t0, tr, "outer at +30");
    auto shorter = [&](timeout_scope&) { return deadline_probe(t0, tr, "inner 20ms"); };
    co_await timeout(20ms, shorter);
    auto longer = [&](timeout_scope&) { return deadline_probe(t0, tr, "inner 500ms"); };
    co_await timeout(500ms, longer);
    auto none = [&](timeout_scope&) { return deadline_probe(t0, tr, "inner never"); };
    co_await timeout_at(never, none);
    co_await deadline_probe(t0, tr, "outer after inner scopes");
}

task<void> deadlines_nesting(trace& tr) {
    const deadline t0 = loop_clock::now();
    co_await deadline_probe(t0, tr, "no scope");
    tr.push_back(remaining() == loop_clock::duration::max() ? "remaining() is max"
                                                            : "remaining() is finite");
    auto outer = [&](timeout_scope&) { return deadlines_in_outer(t0, tr); };
    co_await timeout(100ms, outer);
    co_await deadline_probe(t0, tr, "after the scope");
}

task<void> deadline_when_cancelled(timeout_scope& s, trace& tr) {
    s.cancel();
    const deadline now = loop_clock::now();
    tr.push_back(current_deadline() <= now ? "deadline <= now" : "deadline in the future");
    tr.push_back("remaining " + std::to_string(remaining().count()));
    auto inner = [&](timeout_scope&) {
        const deadline d = current_deadline();
        tr.push_back(d <= loop_clock::now() ? "inner: deadline <= now"
                                            : "inner: deadline in the future");
        return value_now(0);
    };
    co_await timeout(1h, inner);
}

task<void> task_cancelled_deadline(task_handle<void>& self, trace& tr) {
    self.cancel();
    tr.push_back(current_deadline() <= loop_clock::now() ? "task: deadline <= now"
                                                         : "task: deadline in the future");
    tr.push_back("task: remaining " + std::to_string(remaining().count()));
    co_return;
}

TEST_CASE_FIXTURE(loop_fixture, "5.11 current_deadline() is the minimum over the enclosing scopes "
                                "and remaining() counts down to it") {
    CHECK(run_traced(*this, deadlines_nesting) ==
          trace{"no scope: deadline never, remaining max", "remaining() is max",
                "outer: deadline +100, remaining 100", "outer at +30: deadline +100, remaining 70",
                "inner 20ms: deadline +50, remaining 20",
                "inner 500ms: deadline +100, remaining 70",
                "inner never: deadline +100, remaining 70",
                "outer after inner scopes: deadline +100, remaining 70",
                "after the scope: deadline never, remaining max"});
}

TEST_CASE_FIXTURE(loop_fixture, "5.11 where a cancellation is in effect, current_deadline() is no "
                                "later than now and remaining() is 0") {
    trace tr;
    auto body = [&](timeout_scope& s) { return deadline_when_cancelled(s, tr); };
    run([](decltype(body)& b) -> task<void> { co_await move_on_after(1h, b); }(body));
    CHECK(tr == trace{"deadline <= now", "remaining 0", "inner: deadline <= now"});

    trace tr2;
    task_handle<void> a;
    a = rt->spawn(task_cancelled_deadline(a, tr2));
    run_until([&] { return a.done(); });
    CHECK(tr2 == trace{"task: deadline <= now", "task: remaining 0"});
}

TEST_SUITE_END();

task<void> await_moved_twice(int& runs, int& refused) {
    auto count = [&runs](timeout_scope&) -> task<int> {
        ++runs;
        co_return runs;
    };
    auto aw = move_on_after(1s, count);
    CHECK(co_await std::move(aw) == std::optional<int>(1));
    try {
        // NOLINTNEXTLINE(bugprone-use-after-move): the second entry is the point of the test
        (void)co_await std::move(aw); // g++ awaits a moved copy; clang the object itself
    } catch (const invalid_state&) {
        ++refused;
    }
    auto tw = timeout(1s, count);
    auto moved = std::move(tw); // moved before entry: the copy works, the source is used up
    CHECK(co_await std::move(moved) == 2);
    try {
        (void)co_await std::move(tw); // NOLINT(bugprone-use-after-move): the used-up source
    } catch (const invalid_state&) {
        ++refused;
    }
}

TEST_CASE_FIXTURE(loop_fixture, "5.2 a scope awaiter awaited twice through std::move runs its "
                                "body once and then raises invalid_state, on every compiler") {
    int runs = 0;
    int refused = 0;
    run(await_moved_twice(runs, refused));
    CHECK(runs == 2);
    CHECK(refused == 2);
}

} // namespace
} // namespace uvasync::test
