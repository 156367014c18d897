// SPDX-License-Identifier: MIT
// sleep, sleep_until, yield and checkpoint (SEMANTICS 4.1, 6.2, 6.5, D-6, D-14).
//
// Every test runs on the fixture's virtual clock unless it says otherwise, so wake times are
// asserted exactly as loop-clock differences.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io.hpp>
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

/// Sleeps for `d` and returns how many loop-clock milliseconds passed.
template <class Rep, class Period>
task<long long> measure_sleep(std::chrono::duration<Rep, Period> d) {
    const deadline t0 = loop_clock::now();
    co_await sleep(d);
    co_return ms_since(t0);
}

// ---------------------------------------------------------------------------------------------
// Wake times

task<void> sleeps_in_a_row(trace& tr) {
    const deadline t0 = loop_clock::now();
    co_await sleep(10ms);
    tr.push_back("sleep(10ms) woke at " + since(t0));
    co_await sleep(1s);
    tr.push_back("sleep(1s) woke at " + since(t0));
    co_await sleep(2min);
    tr.push_back("sleep(2min) woke at " + since(t0));
    co_await sleep_until(t0 + 200s);
    tr.push_back("sleep_until(t0 + 200s) woke at " + since(t0));
    co_await sleep_until(loop_clock::now() + 1ms);
    tr.push_back("sleep_until(now + 1ms) woke at " + since(t0));
}

task<void> sleep_created_early(trace& tr) {
    const deadline t0 = loop_clock::now();
    auto early = sleep(10ms);
    co_await sleep(50ms);
    co_await early;
    tr.push_back("early sleep(10ms) woke at " + since(t0));
}

task<void> concurrent_sleeper(loop_clock::duration d, const std::string& name, deadline t0,
                              trace& tr) {
    co_await sleep(d);
    tr.push_back(name + " at " + since(t0));
}

// ---------------------------------------------------------------------------------------------
// yield, sleep(0) and negative sleeps

task<void> yielding_task(std::string name, int rounds, trace& tr) {
    for (int i = 0; i < rounds; ++i) {
        tr.push_back(name + std::to_string(i));
        co_await yield();
    }
    tr.push_back(name + " done");
}

task<void> zero_and_negative_sleeps(trace& tr) {
    const deadline t0 = loop_clock::now();
    tr.push_back("A: start");
    co_await sleep(0ms);
    tr.push_back("A: after sleep(0ms) at " + since(t0));
    co_await sleep(-5ms);
    tr.push_back("A: after sleep(-5ms) at " + since(t0));
    co_await sleep(std::chrono::duration<double>(-1.5));
    tr.push_back("A: after sleep(-1.5s) at " + since(t0));
    co_await sleep(std::chrono::duration<double>(-std::numeric_limits<double>::infinity()));
    tr.push_back("A: after sleep(-inf) at " + since(t0));
    co_await sleep_until(t0 - 10ms);
    tr.push_back("A: after sleep_until(past) at " + since(t0));
    co_await sleep_until(loop_clock::now());
    tr.push_back("A: after sleep_until(now) at " + since(t0));
}

task<void> yield_while_sleeper_due(trace& tr) {
    const deadline t0 = loop_clock::now();
    for (int i = 0; i < 3; ++i) {
        co_await yield();
    }
    tr.push_back("yielder done at " + since(t0));
}

struct timer_flag {
    uv_timer_t timer{};
    bool fired = false;
};

task<void> yield_until_flag(timer_flag& flag, int& yields) {
    while (!flag.fired && yields < 100) {
        co_await yield();
        ++yields;
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

task<void> points_in_cancelled_task(task_handle<void>& self, trace& tr) {
    self.cancel("stop");
    const deadline t0 = loop_clock::now();
    try {
        co_await yield();
        tr.push_back("A: yield passed");
    } catch (const cancelled_error& e) {
        tr.push_back("A: yield raised (" + std::string(e.message()) + ")");
    }
    try {
        co_await sleep(0ms);
        tr.push_back("A: sleep(0) passed");
    } catch (const cancelled_error&) {
        tr.push_back("A: sleep(0) raised");
    }
    try {
        co_await sleep(-1ms);
        tr.push_back("A: sleep(-1ms) passed");
    } catch (const cancelled_error&) {
        tr.push_back("A: sleep(-1ms) raised");
    }
    try {
        co_await sleep_until(t0 - 1ms);
        tr.push_back("A: sleep_until(past) passed");
    } catch (const cancelled_error&) {
        tr.push_back("A: sleep_until(past) raised");
    }
    try {
        co_await checkpoint();
        tr.push_back("A: checkpoint passed");
    } catch (const cancelled_error&) {
        tr.push_back("A: checkpoint raised");
    }
    try {
        co_await sleep(1h);
        tr.push_back("A: sleep(1h) passed");
    } catch (const cancelled_error&) {
        tr.push_back("A: sleep(1h) raised");
    }
    tr.push_back("A: done at " + since(t0));
}

task<void> yield_in_scope(trace& tr) {
    try {
        co_await yield();
        tr.push_back("A: yield passed");
    } catch (const cancelled_error& e) {
        tr.push_back("A: yield raised on resumption (" + std::string(e.message()) + ")");
        throw;
    }
}

task<void> checkpoint_without_cancellation(trace& tr) {
    tr.push_back("A1");
    co_await checkpoint();
    tr.push_back("A2");
    co_await checkpoint();
    tr.push_back("A3");
}

// ---------------------------------------------------------------------------------------------
// Cancellation of a sleep (house style: completes, fails to start, cancelled before start,
// while pending, after completion, twice)

task<void> sleep_and_report(loop_clock::duration d, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await sleep(d);
        tr.push_back("woke at " + since(t0));
    } catch (const cancelled_error& e) {
        tr.push_back("cancelled at " + since(t0) + " (" + std::string(e.message()) + ")");
        throw;
    }
}

task<void> cancel_twice(task_handle<void>& target, trace& tr) {
    tr.push_back(std::string("first cancel() ") + (target.cancel("first") ? "true" : "false"));
    tr.push_back(std::string("second cancel() ") + (target.cancel("second") ? "true" : "false"));
    co_return;
}

// ---------------------------------------------------------------------------------------------
// 6.5 / D-14 Ordering of due entries

task<void> wait_then_sleep_until(loop_clock::duration first, deadline at, const std::string& name,
                                 trace& tr) {
    if (first > 0ms) {
        co_await sleep(first);
    }
    tr.push_back(name + " registered");
    co_await sleep_until(at);
    tr.push_back(name + " woke");
}

struct pair_state {
    task_handle<void> first;
    task_handle<void> second;
    trace tr;
};

task<void> wake_and_cancel_other(deadline at, pair_state& st) {
    co_await sleep_until(at);
    st.tr.push_back(std::string("first woke; cancel(second) returned ") +
                    (st.second.cancel("from first") ? "true" : "false"));
}

task<void> wake_then_checkpoint(deadline at, pair_state& st) {
    co_await sleep_until(at);
    st.tr.push_back("second: sleep returned");
    try {
        co_await checkpoint();
        st.tr.push_back("second: checkpoint passed");
    } catch (const cancelled_error& e) {
        st.tr.push_back("second: checkpoint raised (" + std::string(e.message()) + ")");
        throw;
    }
}

// ---------------------------------------------------------------------------------------------
// 6.2 / D-6 Durations

task<void> nan_sleeps(trace& tr) {
    try {
        co_await sleep(std::chrono::duration<double>(std::nan("")));
        tr.push_back("double NaN slept");
    } catch (const std::invalid_argument&) {
        tr.push_back("double NaN: invalid_argument");
    }
    try {
        co_await sleep(std::chrono::duration<float, std::milli>(std::nanf("")));
        tr.push_back("float NaN slept");
    } catch (const std::invalid_argument&) {
        tr.push_back("float NaN: invalid_argument");
    }
}

task<void> nan_sleep_in_cancelled_task(task_handle<void>& self, trace& tr) {
    self.cancel();
    try {
        co_await sleep(std::chrono::duration<long double, std::micro>(std::nanl("")));
        tr.push_back("A: slept");
    } catch (const std::invalid_argument&) {
        tr.push_back("A: invalid_argument");
    } catch (const cancelled_error&) {
        tr.push_back("A: cancelled_error");
    }
}

/// Sleeps `d` (expected to be unbounded) and reports how it ended.
template <class D>
task<void> unbounded_sleep(D d, trace& tr) {
    try {
        co_await sleep(d);
        tr.push_back("woke");
    } catch (const cancelled_error&) {
        tr.push_back("cancelled");
        throw;
    }
}

task<void> never_sleep(trace& tr) {
    try {
        co_await sleep_until(never);
        tr.push_back("woke");
    } catch (const cancelled_error&) {
        tr.push_back("cancelled");
        throw;
    }
}

template <class MakeTask>
void check_sleeps_until_cancelled(loop_fixture& f, MakeTask make) {
    trace tr;
    const deadline t0 = f.now();
    task_handle<void> a = f.rt->spawn(make(tr));
    f.run_all(); // returns: no timer, no pending virtual deadline keeps the loop alive
    CHECK_FALSE(a.done());
    const bool exact = f.rt->uses_virtual_clock(); // real time passes on the real clock
    if (exact) {
        CHECK((f.now() - t0).count() == 0);
    }
    CHECK(uv_loop_alive(f.loop()) == 0);
    CHECK(a.cancel());
    f.run_until([&] { return a.done(); });
    CHECK(tr == trace{"cancelled"});
    CHECK(a.cancelled());
    if (exact) {
        CHECK((f.now() - t0).count() == 0);
    }
}

task<void> rounding(trace& tr) {
    using namespace std::chrono;
    auto ms = [](long long v) { return std::to_string(v); };
    tr.push_back("300us " + ms(co_await measure_sleep(microseconds(300))));
    tr.push_back("1.2ms " + ms(co_await measure_sleep(duration<double, std::milli>(1.2))));
    tr.push_back("1200us " + ms(co_await measure_sleep(microseconds(1200))));
    tr.push_back("1ns " + ms(co_await measure_sleep(nanoseconds(1))));
    tr.push_back("999us " + ms(co_await measure_sleep(microseconds(999))));
    tr.push_back("1000us " + ms(co_await measure_sleep(microseconds(1000))));
    tr.push_back("1001us " + ms(co_await measure_sleep(microseconds(1001))));
    tr.push_back("0.1us " + ms(co_await measure_sleep(duration<double, std::micro>(0.1))));
    tr.push_back("1e-9s " + ms(co_await measure_sleep(duration<double>(1e-9))));
}

task<void> all_duration_types(trace& tr) {
    using namespace std::chrono;
    auto add = [&](const char* what, long long v) {
        tr.push_back(what + (" " + std::to_string(v)));
    };
    add("nanoseconds(5'000'000)", co_await measure_sleep(nanoseconds(5'000'000)));
    add("microseconds(7000)", co_await measure_sleep(microseconds(7000)));
    add("milliseconds(3)", co_await measure_sleep(milliseconds(3)));
    add("seconds(2)", co_await measure_sleep(seconds(2)));
    add("minutes(1)", co_await measure_sleep(minutes(1)));
    add("hours(1)", co_await measure_sleep(hours(1)));
    add("days(1)", co_await measure_sleep(days(1)));
    add("weeks(1)", co_await measure_sleep(weeks(1)));
    add("duration<int, 1/3>(1)", co_await measure_sleep(duration<int, std::ratio<1, 3>>(1)));
    add("duration<short, milli>(4)", co_await measure_sleep(duration<short, std::milli>(4)));
    add("duration<unsigned, micro>(2500)",
        co_await measure_sleep(duration<unsigned, std::micro>(2500u)));
    add("duration<int8_t>(1)", co_await measure_sleep(duration<std::int8_t>(1)));
    add("duration<uint64_t, nano>(1'500'000)",
        co_await measure_sleep(duration<std::uint64_t, std::nano>(1'500'000u)));
    add("duration<double>(0.25)", co_await measure_sleep(duration<double>(0.25)));
    add("duration<float, milli>(2.5)", co_await measure_sleep(duration<float, std::milli>(2.5f)));
    add("duration<long double, micro>(1500)",
        co_await measure_sleep(duration<long double, std::micro>(1500.0L)));
    add("duration<double, ratio<60>>(0.5)",
        co_await measure_sleep(duration<double, std::ratio<60>>(0.5)));
    add("duration<double, ratio<3600>>(0.5)",
        co_await measure_sleep(duration<double, std::ratio<3600>>(0.5)));
}

TEST_SUITE("sleep") {

    // ---------------------------------------------------------------------------------------------
    // Wake times

    TEST_CASE_FIXTURE(loop_fixture,
                      "sleep and sleep_until wake exactly at their deadline on the loop clock") {
        for (int round = 0; round < 2; ++round) {
            trace tr;
            const deadline t0 = now();
            run(sleeps_in_a_row(tr));
            CHECK(tr == trace{"sleep(10ms) woke at +10", "sleep(1s) woke at +1010",
                              "sleep(2min) woke at +121010",
                              "sleep_until(t0 + 200s) woke at +200000",
                              "sleep_until(now + 1ms) woke at +200001"});
            CHECK((now() - t0).count() == 200001);
        }
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "a relative sleep takes its deadline when it is awaited, not when it is created") {
        CHECK(run_traced(*this, sleep_created_early) == trace{"early sleep(10ms) woke at +60"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "concurrent sleeps wake in deadline order at their own times") {
        trace tr;
        const deadline t0 = now();
        const std::string a = "A", b = "B", c = "C";
        auto ha = rt->spawn(concurrent_sleeper(30ms, a, t0, tr));
        auto hb = rt->spawn(concurrent_sleeper(10ms, b, t0, tr));
        auto hc = rt->spawn(concurrent_sleeper(20ms, c, t0, tr));
        run_until([&] { return ha.done() && hb.done() && hc.done(); });
        CHECK(tr == trace{"B at +10", "C at +20", "A at +30"});
    }

    // ---------------------------------------------------------------------------------------------
    // yield, sleep(0) and negative sleeps

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.1 yield() lets every other ready task run first, in FIFO order") {
        for (int round = 0; round < 2; ++round) {
            trace tr;
            const deadline t0 = now();
            auto a = rt->spawn(yielding_task("A", 3, tr));
            auto b = rt->spawn(yielding_task("B", 3, tr));
            auto c = rt->spawn(yielding_task("C", 3, tr));
            run_until([&] { return a.done() && b.done() && c.done(); });
            CHECK(tr == trace{"A0", "B0", "C0", "A1", "B1", "C1", "A2", "B2", "C2", "A done",
                              "B done", "C done"});
            CHECK((now() - t0).count() == 0);
        }
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.1 6.2 sleep(0), negative sleeps and sleep_until(now or past) take no time and "
        "behave as yield(): other ready tasks run first") {
        trace tr;
        auto a = rt->spawn(zero_and_negative_sleeps(tr));
        auto b = rt->spawn(yielding_task("B", 6, tr));
        run_until([&] { return a.done() && b.done(); });
        CHECK(tr == trace{"A: start", "B0", "A: after sleep(0ms) at +0", "B1",
                          "A: after sleep(-5ms) at +0", "B2", "A: after sleep(-1.5s) at +0", "B3",
                          "A: after sleep(-inf) at +0", "B4", "A: after sleep_until(past) at +0",
                          "B5", "A: after sleep_until(now) at +0", "B done"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "18.7 a yielding task keeps virtual time still; yield() does not "
                      "wait for pending deadlines") {
        trace tr;
        const deadline t0 = now();
        const std::string s = "sleeper";
        auto sleeper = rt->spawn(concurrent_sleeper(10ms, s, t0, tr));
        auto y = rt->spawn(yield_while_sleeper_due(tr));
        run_until([&] { return sleeper.done() && y.done(); });
        CHECK(tr == trace{"yielder done at +0", "sleeper at +10"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "yield() lets the loop run an iteration: a libuv timer started "
                                    "by the program fires while a task only yields") {
        timer_flag flag;
        REQUIRE(uv_timer_init(loop(), &flag.timer) == 0);
        flag.timer.data = &flag;
        REQUIRE(uv_timer_start(
                    &flag.timer,
                    [](uv_timer_t* t) { static_cast<timer_flag*>(t->data)->fired = true; }, 0,
                    0) == 0);
        int yields = 0;
        run(yield_until_flag(flag, yields));
        CHECK(flag.fired);
        CHECK(yields < 10);
        uv_close(reinterpret_cast<uv_handle_t*>(&flag.timer), nullptr);
        run_all();
    }

    // ---------------------------------------------------------------------------------------------
    // Checkpoints

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.1 in a cancelled scope yield(), sleep(0), negative sleeps, checkpoint() and "
        "sleep() raise on entry, without letting other tasks run") {
        trace tr;
        task_handle<void> a;
        a = rt->spawn(points_in_cancelled_task(a, tr));
        auto b = rt->spawn(record(tr, "B ran"));
        run_until([&] { return a.done() && b.done(); });
        CHECK(tr == trace{"A: yield raised (stop)", "A: sleep(0) raised", "A: sleep(-1ms) raised",
                          "A: sleep_until(past) raised", "A: checkpoint raised",
                          "A: sleep(1h) raised", "A: done at +0", "B ran"});
        CHECK_FALSE(a.cancelled()); // it swallowed every delivery and returned (2.3)
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.1 yield() checks again on resumption: a cancellation recorded "
                      "while the task was queued raises") {
        trace tr;
        task_handle<void> a = rt->spawn(yield_in_scope(tr));
        task_handle<void> b = rt->spawn([](task_handle<void>& target, trace& t) -> task<void> {
            t.push_back(target.cancel("while queued") ? "B: cancelled A" : "B: cancel refused");
            co_return;
        }(a, tr));
        run_until([&] { return a.done() && b.done(); });
        CHECK(tr == trace{"B: cancelled A", "A: yield raised on resumption (while queued)"});
        CHECK(a.cancelled());
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "checkpoint() outside a cancellation continues at once, without "
                      "letting other ready tasks run") {
        trace tr;
        auto a = rt->spawn(checkpoint_without_cancellation(tr));
        auto b = rt->spawn(record(tr, "B"));
        run_until([&] { return a.done() && b.done(); });
        CHECK(tr == trace{"A1", "A2", "A3", "B"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.1 sleep, yield and checkpoint outside a task are invalid_state") {
        auto s = sleep(1ms).operator co_await(); // sleep() is a request; this is its awaiter
        CHECK_THROWS_AS(s.await_suspend(std::noop_coroutine()), invalid_state);
        auto y = yield();
        CHECK_THROWS_AS(y.await_suspend(std::noop_coroutine()), invalid_state);
        auto c = checkpoint();
        CHECK_THROWS_AS(c.await_resume(), invalid_state);
    }

    // ---------------------------------------------------------------------------------------------
    // Cancellation of a sleep (house style: completes, fails to start, cancelled before start,
    // while pending, after completion, twice)

    TEST_CASE_FIXTURE(loop_fixture, "a sleep cancelled while pending raises at the moment of the "
                                    "cancellation and leaves no deadline behind") {
        for (int round = 0; round < 2; ++round) {
            trace tr;
            const deadline t0 = now();
            task_handle<void> a = run_cancelled_after(*this, sleep_and_report(1h, tr), 5ms);
            CHECK(tr == trace{"cancelled at +5 (stop)"});
            CHECK(a.cancelled());
            run_all();
            CHECK((now() - t0).count() == 5); // the 1 h entry is gone: nothing to jump to
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "3.2 D-11 a sleep cancelled twice gets one delivery with the first "
                      "message; the second cancel() returns false") {
        for (int round = 0; round < 2; ++round) {
            trace tr;
            task_handle<void> a = rt->spawn(sleep_and_report(1h, tr)); // parks first
            auto b = rt->spawn(cancel_twice(a, tr));
            run_until([&] { return a.done() && b.done(); });
            CHECK(tr ==
                  trace{"first cancel() true", "second cancel() false", "cancelled at +0 (first)"});
            CHECK(a.cancelled());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "a task cancelled before its first step never starts its sleep") {
        trace tr;
        const deadline t0 = now();
        task_handle<void> a = rt->spawn(sleep_and_report(1h, tr));
        CHECK(a.cancel("early"));
        run_until([&] { return a.done(); });
        CHECK(tr.empty());
        CHECK(a.cancelled());
        run_all();
        CHECK((now() - t0).count() == 0);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-2 a cancel() after the sleep woke but before the task resumed "
                      "returns true, and the sleep still returns normally") {
        trace tr;
        task_handle<void> a;
        auto b = rt->spawn(cancel_after(a, 10ms, "late")); // wakes first in the same pass
        a = rt->spawn(sleep_and_report(10ms, tr));
        run_until([&] { return a.done() && b.done(); });
        CHECK(tr == trace{"woke at +10"});
        CHECK_FALSE(a.cancelled()); // returned without reaching another cancellation point (2.3)
    }

    TEST_CASE_FIXTURE(loop_fixture, "cancel() after a sleeping task finished returns false") {
        trace tr;
        task_handle<void> a = rt->spawn(sleep_and_report(3ms, tr));
        run_until([&] { return a.done(); });
        CHECK_FALSE(a.cancel("too late"));
        CHECK_FALSE(a.cancelled());
        CHECK(tr == trace{"woke at +3"});
    }

    // ---------------------------------------------------------------------------------------------
    // 6.5 / D-14 Ordering of due entries

    TEST_CASE_FIXTURE(loop_fixture, "6.5 sleeps with equal deadlines wake in registration order") {
        trace tr;
        const deadline at = now() + 30ms;
        const std::string a = "A", b = "B", c = "C";
        // Spawned A, B, C; registered C (at +0), B (at +10), A (at +20).
        auto ha = rt->spawn(wait_then_sleep_until(20ms, at, a, tr));
        auto hb = rt->spawn(wait_then_sleep_until(10ms, at, b, tr));
        auto hc = rt->spawn(wait_then_sleep_until(0ms, at, c, tr));
        run_until([&] { return ha.done() && hb.done() && hc.done(); });
        CHECK(tr ==
              trace{"C registered", "B registered", "A registered", "C woke", "B woke", "A woke"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-14 6.5 every entry due in one pass is processed before any task it woke "
                      "runs") {
        pair_state st;
        const deadline at = now() + 10ms;
        st.first = rt->spawn(wake_and_cancel_other(at, st));
        st.second = rt->spawn(wake_then_checkpoint(at, st));
        run_until([&] { return st.first.done() && st.second.done(); });
        // The second sleep was already complete when the first task ran and cancelled it.
        CHECK(st.tr == trace{"first woke; cancel(second) returned true", "second: sleep returned",
                             "second: checkpoint raised (from first)"});
        CHECK(st.second.cancelled());
    }

    TEST_CASE("D-14 6.5 entries with different deadlines that are due in one pass all complete "
              "before any woken task runs") {
        loop_fixture f(loop_fixture::manual_clock());
        pair_state st;
        const deadline t0 = f.now();
        st.first = f.rt->spawn(wake_and_cancel_other(t0 + 5ms, st));
        st.second = f.rt->spawn(wake_then_checkpoint(t0 + 10ms, st));
        f.run_all();
        f.rt->advance(20ms); // both are due in this one pass
        f.run_all();
        REQUIRE(st.first.done());
        REQUIRE(st.second.done());
        CHECK(st.tr == trace{"first woke; cancel(second) returned true", "second: sleep returned",
                             "second: checkpoint raised (from first)"});
    }

    // ---------------------------------------------------------------------------------------------
    // 6.2 / D-6 Durations

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2 a NaN sleep throws std::invalid_argument before anything happens") {
        // At the call, even outside a task: nothing is created or registered.
        CHECK_THROWS_AS((void)sleep(std::chrono::duration<double>(std::nan(""))),
                        std::invalid_argument);
        CHECK_THROWS_AS((void)sleep(std::chrono::duration<float>(-std::nanf(""))),
                        std::invalid_argument);

        trace tr;
        const deadline t0 = now();
        auto a = rt->spawn(nan_sleeps(tr));
        auto b = rt->spawn(record(tr, "B ran"));
        run_until([&] { return a.done() && b.done(); });
        // No suspension: B, queued behind A, ran only after A had finished.
        CHECK(tr == trace{"double NaN: invalid_argument", "float NaN: invalid_argument", "B ran"});
        CHECK((now() - t0).count() == 0);

        // Before the cancellation check too.
        trace tr2;
        task_handle<void> c;
        c = rt->spawn(nan_sleep_in_cancelled_task(c, tr2));
        run_until([&] { return c.done(); });
        CHECK(tr2 == trace{"A: invalid_argument"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2 D-6 +infinity, hours::max() and other unrepresentable delays "
                      "sleep until cancelled, with no deadline armed") {
        using namespace std::chrono;
        check_sleeps_until_cancelled(*this,
                                     [](trace& tr) { return unbounded_sleep(hours::max(), tr); });
        check_sleeps_until_cancelled(*this, [](trace& tr) {
            return unbounded_sleep(duration<double>(std::numeric_limits<double>::infinity()), tr);
        });
        check_sleeps_until_cancelled(*this, [](trace& tr) {
            return unbounded_sleep(
                duration<float, std::milli>(std::numeric_limits<float>::infinity()), tr);
        });
        check_sleeps_until_cancelled(*this,
                                     [](trace& tr) { return unbounded_sleep(seconds::max(), tr); });
        check_sleeps_until_cancelled(
            *this, [](trace& tr) { return unbounded_sleep(milliseconds::max(), tr); });
        check_sleeps_until_cancelled(
            *this, [](trace& tr) { return unbounded_sleep(duration<double>(1e300), tr); });
        check_sleeps_until_cancelled(*this, [](trace& tr) { return never_sleep(tr); });
    }

    TEST_CASE("6.2 13.5 an unbounded sleep arms no libuv timer (real clock)") {
        loop_fixture f(loop_fixture::real_clock());
        check_sleeps_until_cancelled(
            f, [](trace& tr) { return unbounded_sleep(std::chrono::hours::max(), tr); });
        check_sleeps_until_cancelled(f, [](trace& tr) {
            return unbounded_sleep(
                std::chrono::duration<double>(std::numeric_limits<double>::infinity()), tr);
        });
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2 positive delays round up to whole milliseconds (300 us -> 1 "
                      "ms, 1.2 ms -> 2 ms)") {
        CHECK(run_traced(*this, rounding) == trace{"300us 1", "1.2ms 2", "1200us 2", "1ns 1",
                                                   "999us 1", "1000us 1", "1001us 2", "0.1us 1",
                                                   "1e-9s 1"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-6 sleep accepts every std::chrono duration type, integral and "
                      "floating-point, with exact wake times") {
        CHECK(run_traced(*this, all_duration_types) ==
              trace{"nanoseconds(5'000'000) 5", "microseconds(7000) 7", "milliseconds(3) 3",
                    "seconds(2) 2000", "minutes(1) 60000", "hours(1) 3600000", "days(1) 86400000",
                    "weeks(1) 604800000", "duration<int, 1/3>(1) 334",
                    "duration<short, milli>(4) 4", "duration<unsigned, micro>(2500) 3",
                    "duration<int8_t>(1) 1000", "duration<uint64_t, nano>(1'500'000) 2",
                    "duration<double>(0.25) 250", "duration<float, milli>(2.5) 3",
                    "duration<long double, micro>(1500) 2",
                    "duration<double, ratio<60>>(0.5) 30000",
                    "duration<double, ratio<3600>>(0.5) 1800000"});
    }

} // TEST_SUITE

} // namespace
} // namespace uvasync::test
