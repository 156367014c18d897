// SPDX-License-Identifier: MIT
// timer: a periodic timer on the runtime's clock (docs/io/processes.md).
//
// Every test runs on the fixture's virtual clock, so tick times are asserted exactly.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/io.hpp>
#include <uvasync/timer.hpp>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "string_makers.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::loop_fixture;
using uvasync::test::ms_since;

using log_t = std::vector<std::string>;

std::string at(deadline t0) {
    return "+" + std::to_string(ms_since(t0));
}

task<> ticks(timer& t, int n, log_t& log) {
    const deadline t0 = loop_clock::now();
    for (int i = 0; i < n; ++i) {
        const std::uint64_t k = co_await t.tick();
        log.push_back(std::to_string(k) + " at " + at(t0));
    }
}

task<> tick_and_log(timer& t, log_t& log) {
    try {
        const std::uint64_t k = co_await t.tick();
        log.push_back("tick " + std::to_string(k));
    } catch (const cancelled_error& e) {
        log.push_back("cancelled (" + std::string(e.message()) + ")");
        throw;
    } catch (const invalid_state&) {
        log.push_back("invalid_state");
    }
}

/// Ticks, then reaches one more cancellation point.
task<> tick_then_checkpoint(timer& t, log_t& log) {
    const std::uint64_t k = co_await t.tick();
    log.push_back("tick " + std::to_string(k));
    co_await yield();
    log.push_back("passed the checkpoint");
}

task<> self_cancelled_tick(task_handle<>& self, timer& t, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        co_await t.tick();
        log.push_back("ticked");
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
}

task<std::string> tick_or_move_on(timer& t, loop_clock::duration d) {
    std::optional<std::uint64_t> r = co_await move_on_after(d, t.tick());
    co_return r ? "tick " + std::to_string(*r) : "moved on";
}

task<> shielded_tick(timer& t) {
    co_await shielded(t.tick());
}

task<> close_timer(timer& t) {
    co_await t.close();
}

} // namespace

TEST_SUITE("timer") {

    TEST_CASE_FIXTURE(loop_fixture, "timer_ticks_every_interval_on_the_runtime_clock") {
        const deadline t0 = now();
        timer t(10ms);
        CHECK(t.interval() == 10ms);
        CHECK(t.running());
        log_t log;
        auto h = rt->spawn(ticks(t, 3, log));
        run_until([&] { return h.done(); });
        CHECK(log == log_t{"1 at +10", "1 at +20", "1 at +30"});
        CHECK(now() - t0 == 30ms);
    }

    TEST_CASE_FIXTURE(loop_fixture, "timer_missed_ticks_coalesce_and_the_rhythm_is_kept") {
        timer t(10ms);
        const deadline t0 = now();
        rt->advance(35ms); // nobody waits: nothing is armed, the ticks are counted later
        log_t log;
        auto h = rt->spawn(ticks(t, 2, log));
        run_until([&] { return h.done(); });
        // 3 ticks were due at +35 (at +10, +20, +30); the next one is at +40, not +45.
        CHECK(log == log_t{"3 at +0", "1 at +5"});
        CHECK(now() - t0 == 40ms);
    }

    TEST_CASE("timer_nobody_waiting_arms_nothing") {
        loop_fixture f(loop_fixture::manual_clock());
        const deadline t0 = f.now();
        timer t(10ms);
        f.run_all(); // returns: an idle timer keeps no loop alive and no deadline pending
        CHECK(f.now() == t0);
        CHECK(uv_loop_alive(f.loop()) == 0); // nothing armed keeps the loop running
        CHECK(t.running());
    }

    TEST_CASE_FIXTURE(loop_fixture, "timer_rejects_bad_intervals") {
        CHECK_THROWS_AS(timer{0ms}, std::invalid_argument);
        CHECK_THROWS_AS(timer{-5ms}, std::invalid_argument);
        CHECK_THROWS_AS(static_cast<void>(timer{std::chrono::milliseconds::max()}),
                        std::invalid_argument);
        CHECK_THROWS_AS(static_cast<void>(timer{std::chrono::hours(2000000000000LL)}),
                        std::invalid_argument);
    }

    TEST_CASE("timer_needs_a_runtime") {
        CHECK_THROWS_AS(timer{10ms}, invalid_state);
    }

    TEST_CASE_FIXTURE(loop_fixture, "timer_tick_fails_to_start_when_stopped_busy_or_moved_from") {
        timer t(10ms);
        log_t log;
        auto a = rt->spawn(tick_and_log(t, log));
        auto b = rt->spawn(tick_and_log(t, log)); // a second waiter is a misuse
        run_until([&] { return a.done() && b.done(); });
        CHECK(log == log_t{"invalid_state", "tick 1"});

        t.stop();
        CHECK_FALSE(t.running());
        auto c = rt->spawn(tick_and_log(t, log));
        run_until([&] { return c.done(); });
        CHECK(log.back() == "invalid_state");

        timer u(5ms);
        timer v(std::move(u));
        auto d = rt->spawn(tick_and_log(u, log)); // NOLINT(bugprone-use-after-move)
        run_until([&] { return d.done(); });
        CHECK(log.back() == "invalid_state");
        CHECK(v.running());
        CHECK_FALSE(u.running()); // NOLINT(bugprone-use-after-move)
    }

    TEST_CASE("timer_stop_wakes_a_pending_tick_with_invalid_state") {
        loop_fixture f(loop_fixture::manual_clock());
        for (int round = 0; round < 2; ++round) {
            timer t(10ms);
            log_t log;
            auto a = f.rt->spawn(tick_and_log(t, log));
            f.run_all(); // parked
            CHECK_FALSE(a.done());
            t.stop();
            f.run_until([&] { return a.done(); });
            CHECK(log == log_t{"invalid_state"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "timer_cancelled_before_start_does_not_wait") {
        timer t(10ms);
        for (int round = 0; round < 2; ++round) {
            const deadline t0 = now();
            log_t log;
            task_handle<> self;
            self = rt->spawn(self_cancelled_tick(self, t, log));
            run_until([&] { return self.done(); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"raised self"});
            CHECK(now() - t0 == 0ms);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "timer_cancelled_while_pending_keeps_the_schedule") {
        timer t(10ms);
        const deadline t0 = now();
        for (int round = 0; round < 2; ++round) {
            CHECK(run(tick_or_move_on(t, 4ms)) == "moved on");
        }
        CHECK(now() - t0 == 8ms);
        CHECK(run(tick_or_move_on(t, 100ms)) == "tick 1");
        CHECK(now() - t0 == 10ms);
        CHECK(run(tick_or_move_on(t, 100ms)) == "tick 1");
        CHECK(now() - t0 == 20ms);
    }

    TEST_CASE("timer_cancelled_after_the_tick_but_before_resumption_returns_the_tick") {
        loop_fixture f(loop_fixture::manual_clock());
        timer t(10ms);
        for (int round = 0; round < 2; ++round) {
            log_t log;
            auto a = f.rt->spawn(tick_then_checkpoint(t, log));
            f.run_all();
            f.rt->advance(10ms); // the tick is recorded
            CHECK(a.cancel("late"));
            f.run_until([&] { return a.done(); });
            CHECK(a.cancelled());
            CHECK(log == log_t{"tick 1"});
        }
    }

    TEST_CASE("timer_cancelled_twice_detaches_once") {
        loop_fixture f(loop_fixture::manual_clock());
        timer t(10ms);
        for (int round = 0; round < 2; ++round) {
            log_t log;
            auto a = f.rt->spawn(tick_and_log(t, log));
            f.run_all(); // parked
            CHECK(a.cancel("first"));
            CHECK_FALSE(a.cancel("second"));
            f.run_until([&] { return a.done(); });
            CHECK(log == log_t{"cancelled (first)"});
        }
        // The timer still works for a later waiter.
        log_t log;
        auto b = f.rt->spawn(tick_and_log(t, log));
        f.run_all();
        f.rt->advance(10ms);
        f.run_until([&] { return b.done(); });
        CHECK(log == log_t{"tick 1"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "timer_close_is_awaitable_and_stops_the_timer") {
        timer t(10ms);
        auto h = rt->spawn(close_timer(t));
        run_until([&] { return h.done(); });
        CHECK_FALSE(t.running());
        auto again = rt->spawn(close_timer(t)); // closing twice: nothing to wait for
        run_until([&] { return again.done(); });
    }

    TEST_CASE("timer_destroyed_while_a_task_waits_wakes_it") {
        loop_fixture f(loop_fixture::manual_clock());
        log_t log;
        auto t = std::make_unique<timer>(10ms);
        auto a = f.rt->spawn(tick_and_log(*t, log));
        f.run_all(); // parked
        CHECK_FALSE(a.done());
        t.reset();
        f.run_until([&] { return a.done(); });
        CHECK(log == log_t{"invalid_state"});
    }

    TEST_CASE("timer_frame_destroyed_while_parked_at_shutdown_leaves_no_deadline") {
        runtime_options o = loop_fixture::manual_clock();
        o.shutdown_grace = 0ms;
        loop_fixture f(o);
        timer t(10ms);
        // The shielded wait ignores the shutdown's cancellation, so the grace runs out and
        // the frames are destroyed while parked: the awaiter must take its deadline away.
        auto a = f.rt->spawn(shielded_tick(t));
        f.run_all();
        f.rt->shutdown();
        CHECK(f.reported.size() == 1); // the leaked task
        f.reported.clear();
    }

} // TEST_SUITE

namespace {

/// An awaiter made before its timer goes away (review M4): awaiting it must raise, not read
/// freed memory.
task<> tick_after_the_timer_is_gone(bool close_it, bool& raised) {
    std::optional<timer> t(std::in_place, 10ms);
    auto aw = t->tick();
    if (close_it) {
        co_await t->close();
    } else {
        t.reset();
    }
    try {
        co_await aw;
    } catch (const invalid_state&) {
        raised = true;
    }
}

} // namespace

TEST_SUITE("timer") {
    TEST_CASE_FIXTURE(loop_fixture, "timer_awaiter_outliving_its_timer_raises_invalid_state") {
        for (const bool close_it : {false, true}) {
            bool raised = false;
            run(tick_after_the_timer_is_gone(close_it, raised));
            CHECK(raised);
        }
    }

    TEST_CASE("timer_near_the_end_of_the_virtual_clock_saturates_without_overflow") {
        // advance(hours::max()) is allowed and stops the clock at `never`; the timer's schedule
        // must not overflow a signed integer (the UBSan passes run this).
        loop_fixture f(loop_fixture::manual_clock());
        timer t(7ms);
        log_t log;
        f.rt->advance(std::chrono::hours::max());
        CHECK(f.now() == never);
        auto h = f.rt->spawn(tick_and_log(t, log));
        f.run_until([&] { return !log.empty(); });
        REQUIRE(log.size() == 1);
        CHECK(log.front().rfind("tick ", 0) == 0);
        CHECK(log.front() != "tick 0");
        // Past the end of the clock no tick is due again: the next tick waits (no deadline)
        // until the timer is stopped.
        log.clear();
        auto h2 = f.rt->spawn(tick_and_log(t, log));
        uv_run(f.loop(), UV_RUN_NOWAIT);
        CHECK(log.empty());
        CHECK(f.rt->pending_deadlines() == 0);
        f.rt->advance(1h);
        uv_run(f.loop(), UV_RUN_NOWAIT);
        CHECK(log.empty());
        t.stop();
        f.run_until([&] { return h2.done(); });
        CHECK(log == log_t{"invalid_state"});
    }
} // TEST_SUITE
