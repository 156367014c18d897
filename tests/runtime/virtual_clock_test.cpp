// SPDX-License-Identifier: MIT
// The deterministic virtual clock: SEMANTICS section 18 (D-15).
//
// Only virtual times are asserted exactly. Where real time must pass (18.3, 18.6, a positive
// autojump threshold), the test waits for a libuv timer of its own and asserts nothing about
// wall-clock durations beyond libuv's own lower bound.
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

#include "lap_timer.hpp"
#include "loop_fixture.hpp"
#include "string_makers.hpp"

using namespace std::chrono_literals;
using namespace uvasync;
using uvasync::test::active_handles;
using uvasync::test::loop_fixture;

namespace {

using std::chrono::duration;

runtime_options virtual_opts(bool autojump = true, std::chrono::milliseconds threshold = 0ms) {
    runtime_options o = loop_fixture::virtual_clock();
    o.autojump = autojump;
    o.autojump_threshold = threshold;
    return o;
}

std::int64_t ms_between(deadline from, deadline to) {
    return (to - from).count();
}

/// A plain libuv timer owned by the test (real time), closed before the fixture checks.
class own_timer {
public:
    explicit own_timer(uv_loop_t* loop)
        : loop_(loop) {
        REQUIRE(uv_timer_init(loop, &timer_) == 0);
        timer_.data = this;
    }

    own_timer(const own_timer&) = delete;
    own_timer& operator=(const own_timer&) = delete;
    own_timer(own_timer&&) = delete;
    own_timer& operator=(own_timer&&) = delete;

    ~own_timer() {
        uv_close(reinterpret_cast<uv_handle_t*>(&timer_),
                 [](uv_handle_t* h) { static_cast<own_timer*>(h->data)->closed_ = true; });
        while (!closed_) {
            uv_run(loop_, UV_RUN_NOWAIT);
        }
    }

    void start(std::uint64_t ms) {
        started_at_ = uv_now(loop_);
        REQUIRE(uv_timer_start(
                    &timer_,
                    [](uv_timer_t* t) {
                        auto* self = static_cast<own_timer*>(t->data);
                        self->fired_ = true;
                        self->fired_at_ = uv_now(t->loop);
                    },
                    ms, 0) == 0);
    }

    [[nodiscard]] bool fired() const noexcept { return fired_; }

    [[nodiscard]] std::uint64_t started_at() const noexcept { return started_at_; }

    [[nodiscard]] std::uint64_t fired_at() const noexcept { return fired_at_; }

private:
    uv_loop_t* loop_;
    uv_timer_t timer_{};
    bool fired_ = false;
    bool closed_ = false;
    std::uint64_t started_at_ = 0;
    std::uint64_t fired_at_ = 0;
};

template <class Rep, class Period>
task<void> sleep_for(duration<Rep, Period> d) {
    co_await uvasync::sleep(d);
}

/// Sleeps for `d` and records the virtual time at which it woke.
template <class Rep, class Period>
task<void> sleep_and_note(duration<Rep, Period> d, deadline& woke, bool& parked) {
    parked = true;
    co_await uvasync::sleep(d);
    woke = loop_clock::now();
}

template <class H>
bool all_done(const std::vector<H>& hs) {
    for (const auto& h : hs) {
        if (!h.done()) {
            return false;
        }
    }
    return true;
}

} // namespace

TEST_SUITE("virtual_clock") {

    // ---------------------------------------------------------------------------------------------
    // 18.1 opt-in

    TEST_CASE("18.1 the virtual clock is opt-in, chosen at creation, owned or borrowed loop") {
        CHECK_FALSE(runtime_options{}.virtual_clock);
        CHECK(runtime_options{}.autojump);
        CHECK(runtime_options{}.autojump_threshold == 0ms);
        {
            loop_fixture f{loop_fixture::real_clock()};
            CHECK_FALSE(f.rt->uses_virtual_clock());
            // runtime::now() refreshes the loop's time first (13.2): read it before uv_now (the
            // two sides of == are unsequenced).
            const deadline t = f.now();
            CHECK(t.time_since_epoch().count() == static_cast<std::int64_t>(uv_now(f.loop())));
            runtime owned; // default: the loop clock
            CHECK_FALSE(owned.uses_virtual_clock());
        }
        {
            loop_fixture f; // borrowed loop, virtual clock
            CHECK(f.rt->uses_virtual_clock());
            const deadline start = f.now();
            f.run(sleep_for(10s));
            CHECK(ms_between(start, f.now()) == 10'000);
            CHECK(f.rt->uses_virtual_clock()); // fixed for the runtime's lifetime

            runtime owned(virtual_opts()); // owned loop, virtual clock
            CHECK(owned.uses_virtual_clock());
            const deadline owned_start = owned.now();
            owned.run(sleep_for(1h));
            CHECK(ms_between(owned_start, owned.now()) == 3'600'000);
            CHECK(f.now() == start + 10s); // the other runtime's clock did not move
        }
    }

    // ---------------------------------------------------------------------------------------------
    // 18.2 type, resolution, monotonic

    namespace {

    task<void> rounded_laps(std::vector<std::int64_t>& laps) {
        test::lap_timer lap(laps);
        co_await test::sub_millisecond_sleeps(lap); // 1, 2, 1
        co_await uvasync::sleep(999us);
        lap(); // 1
        co_await uvasync::sleep(1001us);
        lap(); // 2
        co_await uvasync::sleep(duration<double, std::milli>(2.5));
        lap(); // 3
        co_await uvasync::sleep(duration<std::int64_t, std::ratio<1, 3>>(1));
        lap(); // 334
        co_await sleep_until(lap.mark() + 17ms);
        lap(); // 17
        try {
            co_await timeout(duration<float, std::milli>(1.5F), uvasync::sleep(1h));
        } catch (const timeout_error&) {
        }
        lap(); // 2
        co_await yield();
        lap(); // 0
    }

    } // namespace

    TEST_CASE_FIXTURE(
        loop_fixture,
        "18.2 virtual time has the loop clock's type and millisecond resolution: every "
        "delay takes exactly its rounded-up time") {
        static_assert(std::is_same_v<decltype(rt->now()), loop_clock::time_point>);
        std::vector<std::int64_t> laps;
        run(rounded_laps(laps));
        CHECK(laps == std::vector<std::int64_t>{1, 2, 1, 1, 2, 3, 334, 17, 2, 0});
    }

    namespace {

    task<void> stamp_steps(std::vector<deadline>& stamps, int id) {
        for (int i = 0; i < 6; ++i) {
            stamps.push_back(loop_clock::now());
            if ((i + id) % 3 == 0) {
                co_await yield();
            } else {
                co_await uvasync::sleep(std::chrono::milliseconds(id * 3 + i));
            }
        }
        stamps.push_back(loop_clock::now());
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture, "18.2 virtual time never moves backwards") {
        std::vector<deadline> stamps;
        std::vector<task_handle<>> hs;
        hs.reserve(4);
        for (int id = 0; id < 4; ++id) {
            hs.push_back(rt->spawn(stamp_steps(stamps, id)));
        }
        run_until([&] { return all_done(hs); });
        REQUIRE(stamps.size() == 28);
        int backwards = 0;
        for (std::size_t i = 1; i < stamps.size(); ++i) {
            backwards += stamps[i] < stamps[i - 1];
        }
        CHECK(backwards == 0);
    }

    // ---------------------------------------------------------------------------------------------
    // 18.3 no flow by itself

    namespace {

    task<void> yield_while_real_time_passes(const own_timer& timer, std::vector<deadline>& seen,
                                            long limit) {
        // At least one sample, also when the real timer fired before the task first ran (a
        // slow start, valgrind); the last one is taken after it fired.
        for (long i = 0; i < limit; ++i) {
            seen.push_back(loop_clock::now());
            if (timer.fired()) {
                break;
            }
            co_await yield();
        }
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture,
                      "18.3 virtual time does not flow by itself: real time passes, virtual time "
                      "stays") {
        const deadline v0 = now();
        const std::uint64_t r0 = uv_now(loop());
        own_timer timer(loop());
        timer.start(5);
        std::vector<deadline> seen;
        auto h = rt->spawn(yield_while_real_time_passes(timer, seen, 10'000'000));
        run_until([&] { return h.done() && timer.fired(); });
        CHECK(timer.fired_at() >= r0 + 5); // libuv's real clock moved on (lower bound only)
        CHECK(now() == v0);
        CHECK(loop_clock::now() == v0);
        REQUIRE_FALSE(seen.empty());
        CHECK(seen.front() == v0);
        CHECK(seen.back() == v0);
    }

    // ---------------------------------------------------------------------------------------------
    // 18.4 autojump

    namespace {

    struct timeout_record {
        deadline start{};
        deadline fired{};
        bool timed_out = false;
    };

    task<void> ten_second_timeout(timeout_record& r) {
        r.start = loop_clock::now();
        try {
            co_await timeout(10s, uvasync::sleep(1h));
        } catch (const timeout_error&) {
            r.timed_out = true;
            r.fired = loop_clock::now();
        }
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture,
                      "18.4 autojump: a 10 s timeout runs at once, within a bounded number of loop "
                      "iterations, with exact virtual times") {
        timeout_record r;
        auto h = rt->spawn(ten_second_timeout(r));
        int iterations = 0;
        while (!h.done() && iterations < 100) {
            uv_run(loop(), UV_RUN_NOWAIT);
            ++iterations;
        }
        CHECK(h.done());
        CHECK(iterations <= 5);
        CHECK(r.timed_out);
        CHECK(ms_between(r.start, r.fired) == 10'000);

        deadline woke{};
        bool parked = false;
        const deadline start = now();
        auto s = rt->spawn(sleep_and_note(std::chrono::hours(24), woke, parked));
        iterations = 0;
        while (!s.done() && iterations < 100) {
            uv_run(loop(), UV_RUN_NOWAIT);
            ++iterations;
        }
        CHECK(s.done());
        CHECK(iterations <= 5);
        CHECK(ms_between(start, woke) == 86'400'000);
    }

    namespace {

    struct jump_probe {
        deadline start{};
        std::vector<deadline> while_yielding;
        deadline b_woke{};
        deadline a_woke{};
        std::string order;
    };

    task<void> long_sleeper(jump_probe& p) {
        co_await uvasync::sleep(100ms);
        p.a_woke = loop_clock::now();
        p.order.push_back('A');
    }

    task<void> yield_then_short_sleep(jump_probe& p) {
        for (int i = 0; i < 50; ++i) {
            p.while_yielding.push_back(loop_clock::now());
            co_await yield();
        }
        co_await uvasync::sleep(10ms);
        p.b_woke = loop_clock::now();
        p.order.push_back('B');
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture,
                      "18.4 autojump waits while any task is ready, then jumps to the earliest "
                      "pending deadline") {
        jump_probe p;
        p.start = now();
        auto a = rt->spawn(long_sleeper(p));
        auto b = rt->spawn(yield_then_short_sleep(p));
        run_until([&] { return a.done() && b.done(); });
        REQUIRE(p.while_yielding.size() == 50);
        CHECK(p.while_yielding.front() == p.start);
        CHECK(p.while_yielding.back() == p.start); // A's deadline was pending, but B was ready
        CHECK(ms_between(p.start, p.b_woke) == 10);
        CHECK(ms_between(p.start, p.a_woke) == 100);
        CHECK(p.order == "BA");
    }

    namespace {

    struct same_time_probe {
        deadline at{};
        std::string order;
        std::vector<deadline> woke;
        timeout_scope* d_scope = nullptr;
        bool d_expired_when_b_ran = false;
    };

    task<void> until_then_log(same_time_probe& p, char name, loop_clock::duration first) {
        if (first > 0ms) {
            co_await uvasync::sleep(first);
        }
        co_await sleep_until(p.at);
        if (name == 'B') {
            REQUIRE(p.d_scope != nullptr);
            p.d_expired_when_b_ran = p.d_scope->expired();
        }
        p.order.push_back(name);
        p.woke.push_back(loop_clock::now());
    }

    task<void> scope_body_forever(timeout_scope& s, same_time_probe& p) {
        p.d_scope = &s;
        co_await uvasync::sleep(1h);
    }

    task<void> scope_then_log(same_time_probe& p) {
        auto body = [&p](timeout_scope& s) { return scope_body_forever(s, p); };
        try {
            co_await timeout_at(p.at, body);
        } catch (const timeout_error&) {
            p.order.push_back('D');
            p.woke.push_back(loop_clock::now());
        }
        p.d_scope = nullptr;
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture,
                      "18.4 D-14 a jump runs every entry due at the new time in deadline and "
                      "registration order, before any task it woke runs") {
        same_time_probe p;
        p.at = now() + 20ms;
        // A registers its deadline last (after a 1 ms sleep), D's scope third, B and C first.
        auto a = rt->spawn(until_then_log(p, 'A', 1ms));
        auto b = rt->spawn(until_then_log(p, 'B', 0ms));
        auto c = rt->spawn(until_then_log(p, 'C', 0ms));
        auto d = rt->spawn(scope_then_log(p));
        run_until([&] { return a.done() && b.done() && c.done() && d.done(); });
        CHECK(p.order == "BCDA");
        CHECK(p.d_expired_when_b_ran);
        REQUIRE(p.woke.size() == 4);
        for (const deadline w : p.woke) {
            CHECK(w == p.at);
        }
    }

    // The same-iteration race of 18.4, used on both clocks below: V's sleep and W's scope are due
    // at the same time, V's entry first. W's scope expires and forwards the cancellation to V, but
    // V's sleep already completed, so V returns its value (D-2), W receives it (D-2b), and W's
    // scope exits normally, expired and not caught (5.8).
    namespace {

    struct race_result {
        deadline at{};
        int value = 0;
        bool expired = false;
        bool caught = true;
        bool w_threw = false;
    };

    // The shared deadline is taken from the loop's cached time in v's first step, and w enters
    // its scope in the same drain: the absolute forms compare with that cached time, so both
    // register before the deadline whatever the real clock does meanwhile (a fixed offset from
    // the test's own now() raced the first steps at valgrind's speed).
    task<int> v_sleeps_until(race_result& r, detail::runtime_state& rt, loop_clock::duration in) {
        r.at = rt.now() + in;
        co_await sleep_until(r.at);
        co_return 42;
    }

    task<int> w_body(timeout_scope& s, task_handle<int> v, timeout_scope*& out) {
        out = &s;
        co_return co_await v;
    }

    task<void> w_awaits_v_in_scope(race_result& r, task_handle<int> v) {
        timeout_scope* scope = nullptr;
        auto body = [&scope, v](timeout_scope& s) { return w_body(s, v, scope); };
        auto aw = timeout_at(r.at, body);
        try {
            r.value = co_await aw;
        } catch (...) {
            r.w_threw = true;
        }
        REQUIRE(scope != nullptr);
        r.expired = scope->expired();
        r.caught = scope->caught();
    }

    race_result run_race(loop_fixture& f, loop_clock::duration in) {
        race_result r;
        auto v = f.rt->spawn(v_sleeps_until(r, f.rt->state(), in)); // runs first, sets r.at
        auto w = f.rt->spawn(w_awaits_v_in_scope(r, v));
        f.run_until([&] { return v.done() && w.done(); });
        return r;
    }

    } // namespace

    TEST_CASE("18.4 D-2 same-iteration races resolve as on the real clock: completion and deadline "
              "in one pass") {
        race_result real;
        race_result virt;
        {
            loop_fixture f{loop_fixture::real_clock()};
            real = run_race(f, 5ms);
        }
        {
            loop_fixture f;
            virt = run_race(f, 5ms);
        }
        for (const race_result& r : {real, virt}) {
            CHECK_FALSE(r.w_threw);
            CHECK(r.value == 42);
            CHECK(r.expired);
            CHECK_FALSE(r.caught);
        }
    }

    namespace {

    task<void> threshold_program(std::vector<std::int64_t>& laps) {
        const deadline start = loop_clock::now();
        co_await uvasync::sleep(10s);
        laps.push_back(ms_between(start, loop_clock::now()));
        try {
            co_await timeout(5s, uvasync::sleep(1h));
        } catch (const timeout_error&) {
            laps.push_back(ms_between(start, loop_clock::now()));
        }
        co_await uvasync::sleep(300us);
        laps.push_back(ms_between(start, loop_clock::now()));
    }

    } // namespace

    TEST_CASE("18.4 a positive autojump threshold still jumps, and virtual times stay exact") {
        loop_fixture f{virtual_opts(true, 3ms)};
        std::vector<std::int64_t> laps;
        std::vector<deadline> woke(2);
        const deadline start = f.now();
        auto main = f.rt->spawn(threshold_program(laps));
        bool p0 = false;
        bool p1 = false;
        auto s1 = f.rt->spawn(sleep_and_note(7ms, woke[0], p0));
        auto s2 = f.rt->spawn(sleep_and_note(7s, woke[1], p1));
        f.run_until([&] { return main.done() && s1.done() && s2.done(); });
        CHECK(laps == std::vector<std::int64_t>{10'000, 15'000, 15'001});
        CHECK(ms_between(start, woke[0]) == 7);
        CHECK(ms_between(start, woke[1]) == 7'000);
        CHECK(uv_loop_alive(f.loop()) == 0);
    }

    namespace {

    task<void> yield_then_sleep(loop_clock::duration d, deadline& woke) {
        co_await uvasync::yield();  // ready again: the check callback runs this task
        co_await uvasync::sleep(d); // ...which then blocks with only a deadline pending
        woke = loop_clock::now();
    }

    } // namespace

    TEST_CASE("18.4 with a threshold, tasks that block during the check callback's drain still "
              "let the clock jump") {
        // Regression: the threshold timer used to be armed before the drain only, so when the
        // last ready task blocked inside that drain nothing woke the poll again (a hang).
        loop_fixture f{virtual_opts(true, 3ms)};
        deadline woke{};
        const deadline start = f.now();
        auto h = f.rt->spawn(yield_then_sleep(1s, woke));
        f.run_until([&] { return h.done(); });
        CHECK(ms_between(start, woke) == 1'000);
    }

    // ---------------------------------------------------------------------------------------------
    // 18.5 advance

    namespace {

    struct stepper {
        deadline woke{};
        bool parked = false;
        bool done = false;
    };

    task<void> step_sleep(stepper& s, loop_clock::duration d) {
        s.parked = true;
        co_await uvasync::sleep(d);
        s.woke = loop_clock::now();
        s.done = true;
    }

    } // namespace

    TEST_CASE(
        "18.5 advance(d) with autojump off fires exactly what is due, and no task runs inside "
        "advance") {
        loop_fixture f{virtual_opts(false)};
        const deadline start = f.now();
        stepper s10;
        stepper s20;
        stepper s30;
        auto h10 = f.rt->spawn(step_sleep(s10, 10ms));
        auto h20 = f.rt->spawn(step_sleep(s20, 20ms));
        auto h30 = f.rt->spawn(step_sleep(s30, 30ms));
        for (int i = 0; i < 3; ++i) {
            uv_run(f.loop(), UV_RUN_NOWAIT);
        }
        REQUIRE(s10.parked);
        REQUIRE(s20.parked);
        REQUIRE(s30.parked);
        auto settle = [&f] {
            for (int i = 0; i < 3; ++i) {
                uv_run(f.loop(), UV_RUN_NOWAIT);
            }
        };

        f.rt->advance(9ms);
        settle();
        CHECK(ms_between(start, f.now()) == 9);
        CHECK_FALSE(s10.done);

        f.rt->advance(1ms);
        CHECK_FALSE(s10.done); // fired, but it runs from the ready queue, not inside advance (D-14)
        settle();
        CHECK(s10.done);
        CHECK(ms_between(start, s10.woke) == 10);
        CHECK_FALSE(s20.done);

        f.rt->advance(15ms); // past 20, short of 30
        settle();
        CHECK(s20.done);
        CHECK(ms_between(start, s20.woke) == 25); // it wakes at the time advance moved to
        CHECK_FALSE(s30.done);

        f.rt->advance(5ms);
        settle();
        CHECK(s30.done);
        CHECK(ms_between(start, s30.woke) == 30);
        CHECK(h10.done());
        CHECK(h20.done());
        CHECK(h30.done());
    }

    TEST_CASE(
        "18.5 18.3 with autojump off, virtual time stands still while every task is blocked") {
        loop_fixture f{virtual_opts(false)};
        const deadline start = f.now();
        stepper s;
        auto h = f.rt->spawn(step_sleep(s, 10s));
        for (int i = 0; i < 20; ++i) {
            uv_run(f.loop(), UV_RUN_NOWAIT);
        }
        CHECK(s.parked);
        CHECK_FALSE(s.done);
        CHECK(f.now() == start);
        f.rt->advance(10s);
        f.run_until([&] { return h.done(); });
        CHECK(ms_between(start, s.woke) == 10'000);
    }

    TEST_CASE(
        "18.5 18.2 advance rounds like the loop clock, never moves time backwards, and rejects "
        "NaN") {
        loop_fixture f{virtual_opts(false)};
        const deadline start = f.now();
        f.rt->advance(300us);
        CHECK(ms_between(start, f.now()) == 1);
        f.rt->advance(duration<double, std::milli>(1.2));
        CHECK(ms_between(start, f.now()) == 3);
        f.rt->advance(1ns);
        CHECK(ms_between(start, f.now()) == 4);
        f.rt->advance(0ms);
        CHECK(ms_between(start, f.now()) == 4);
        f.rt->advance(-1s);
        CHECK(ms_between(start, f.now()) == 4);
        f.rt->advance(duration<double>(-std::numeric_limits<double>::infinity()));
        CHECK(ms_between(start, f.now()) == 4);
        CHECK_THROWS_AS(f.rt->advance(duration<double>(std::numeric_limits<double>::quiet_NaN())),
                        std::invalid_argument);
        CHECK(ms_between(start, f.now()) == 4);
        f.rt->advance(std::chrono::hours(1000));
        CHECK(ms_between(start, f.now()) == 3'600'000'004);
    }

    TEST_CASE("18.5 advance on a real-clock runtime throws invalid_state") {
        loop_fixture f{loop_fixture::real_clock()};
        stepper s;
        auto h = f.rt->spawn(step_sleep(s, 1h));
        uv_run(f.loop(), UV_RUN_NOWAIT);
        REQUIRE(s.parked);
        CHECK_THROWS_AS(f.rt->advance(1ms), invalid_state);
        CHECK_THROWS_AS(f.rt->advance(2h), invalid_state);
        uv_run(f.loop(), UV_RUN_NOWAIT);
        CHECK_FALSE(s.done);        // nothing fired
        const deadline t = f.now(); // refreshes the loop's time: read before uv_now
        CHECK(t.time_since_epoch().count() == static_cast<std::int64_t>(uv_now(f.loop())));
        h.cancel();
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
    }

    TEST_CASE("18.5 advance also works with autojump on: time moves by d, then jumps the rest") {
        loop_fixture f;
        const deadline start = f.now();
        stepper s;
        auto h = f.rt->spawn(step_sleep(s, 10ms));
        // Run the first step by hand: one iteration could also jump, so advance before it parks.
        f.rt->advance(4ms);
        CHECK(ms_between(start, f.now()) == 4);
        f.run_until([&] { return h.done(); });
        CHECK(ms_between(start, s.woke) == 14); // the sleep started at +4, after the advance
    }

    // ---------------------------------------------------------------------------------------------
    // 18.6 what stays real

    TEST_CASE_FIXTURE(loop_fixture,
                      "18.6 a libuv timer the program starts itself keeps real time while the "
                      "runtime's deadlines are virtual") {
        const deadline v0 = now();
        own_timer timer(loop());
        timer.start(5);
        deadline woke{};
        bool parked = false;
        auto h = rt->spawn(sleep_and_note(10s, woke, parked));
        run_until([&] { return h.done() && timer.fired(); });
        CHECK(ms_between(v0, woke) == 10'000);             // virtual and exact
        CHECK(timer.fired_at() >= timer.started_at() + 5); // real, lower bound only
    }

    namespace {

    task<void> ignore_cancellation_forever(bool& parked) {
        parked = true;
        co_await shielded(sleep_until(never));
    }

    } // namespace

    TEST_CASE("18.6 15.3 the shutdown grace period runs on the virtual clock") {
        runtime_options o = loop_fixture::virtual_clock();
        o.shutdown_grace = 250ms;
        loop_fixture f{o};
        bool parked = false;
        auto h = f.rt->spawn(ignore_cancellation_forever(parked));
        f.run_until([&] { return parked; });
        uv_run(f.loop(), UV_RUN_NOWAIT);
        const deadline start = f.now();
        f.rt->shutdown();
        CHECK(ms_between(start, f.now()) == 250);
        CHECK(h.done());
        REQUIRE(f.reported.size() == 1);
        CHECK_THROWS_AS(std::rethrow_exception(f.reported.front()), leaked_task_error);
    }

    // ---------------------------------------------------------------------------------------------
    // 18.7 a task that never blocks stops virtual time

    namespace {

    struct busy_probe {
        deadline start{};
        long yields = 0;
        bool busy_done = false;
        int moved_while_busy = 0;
        bool busy_done_when_sleeper_woke = false;
        deadline sleeper_woke{};
    };

    task<void> busy_yielder(busy_probe& p, long count) {
        for (long i = 0; i < count; ++i) {
            co_await yield();
            ++p.yields;
            p.moved_while_busy += loop_clock::now() != p.start;
        }
        p.busy_done = true;
    }

    task<void> short_sleeper(busy_probe& p) {
        co_await uvasync::sleep(1ms);
        p.sleeper_woke = loop_clock::now();
        p.busy_done_when_sleeper_woke = p.busy_done;
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture, "18.7 a task looping on yield() stops virtual time") {
        busy_probe p;
        p.start = now();
        auto busy = rt->spawn(busy_yielder(p, 2000));
        auto sleeper = rt->spawn(short_sleeper(p));
        run_until([&] { return busy.done() && sleeper.done(); });
        CHECK(p.yields == 2000);
        CHECK(p.moved_while_busy == 0);
        CHECK(p.busy_done_when_sleeper_woke); // no jump while a task was ready
        CHECK(ms_between(p.start, p.sleeper_woke) == 1);
    }

    // ---------------------------------------------------------------------------------------------
    // 18.8 / 18.9 nothing kept alive without deadlines; no uv_timer_t for virtual deadlines

    namespace {

    task<int> quick(int v) {
        co_await yield();
        co_return v;
    }

    task<int> early_exit_scopes() {
        int sum = co_await timeout(10s, quick(1));
        sum += (co_await move_on_after(1h, quick(2))).value_or(0);
        co_return sum;
    }

    task<void> park_without_deadline(bool& parked) {
        parked = true;
        co_await sleep_until(never);
    }

    } // namespace

    TEST_CASE("18.8 with no pending deadline the virtual clock keeps nothing alive") {
        for (const auto threshold : {0ms, 2ms}) {
            CAPTURE(threshold.count());
            loop_fixture f{virtual_opts(true, threshold)};
            const deadline start = f.now();

            f.run(sleep_for(10s));
            CHECK(ms_between(start, f.now()) == 10'000);
            CHECK(uv_loop_alive(f.loop()) == 0);
            CHECK(uv_run(f.loop(), UV_RUN_NOWAIT) == 0);

            // Scopes left early remove their deadlines: nothing jumps to them afterwards.
            const deadline before = f.now();
            CHECK(f.run(early_exit_scopes()) == 3);
            CHECK(uv_run(f.loop(), UV_RUN_DEFAULT) == 0);
            CHECK(f.now() == before);

            // A task parked with no deadline: uv_run returns while it waits, time unchanged.
            bool parked = false;
            auto h = f.rt->spawn(park_without_deadline(parked));
            CHECK(uv_run(f.loop(), UV_RUN_DEFAULT) == 0);
            CHECK(parked);
            CHECK_FALSE(h.done());
            CHECK(f.now() == before);
            h.cancel();
            f.run_until([&] { return h.done(); });
            CHECK(h.cancelled());
            CHECK(uv_loop_alive(f.loop()) == 0);
        }
    }

    namespace {

    task<void> three_long_sleeps(int& woken) {
        for (int i = 0; i < 3; ++i) {
            co_await uvasync::sleep(10s);
            ++woken;
        }
    }

    } // namespace

    TEST_CASE_FIXTURE(
        loop_fixture,
        "18.9 18.8 with autojump, virtual deadlines arm no uv_timer_t, and the loop stays "
        "alive only while one is pending") {
        const deadline start = now();
        int woken = 0;
        auto h = rt->spawn(three_long_sleeps(woken));
        int checked = 0;
        for (int i = 0; i < 20 && !h.done(); ++i) {
            uv_run(loop(), UV_RUN_NOWAIT);
            if (!h.done()) { // a sleep is pending between iterations
                CHECK(active_handles(loop(), UV_TIMER) == 0);
                CHECK(uv_loop_alive(loop()) != 0); // kept polling without blocking, so it can jump
                ++checked;
            }
        }
        CHECK(h.done());
        CHECK(checked >= 1);
        CHECK(woken == 3);
        CHECK(ms_between(start, now()) == 30'000);
        CHECK(active_handles(loop(), UV_TIMER) == 0);
        CHECK(uv_loop_alive(loop()) == 0);
    }

    TEST_CASE("18.9 with autojump off, a pending virtual deadline arms no uv_timer_t") {
        loop_fixture f{virtual_opts(false)};
        stepper s;
        auto h = f.rt->spawn(step_sleep(s, 10s));
        uv_run(f.loop(), UV_RUN_NOWAIT);
        REQUIRE(s.parked);
        CHECK(active_handles(f.loop(), UV_TIMER) == 0);
        f.rt->advance(10s);
        f.run_until([&] { return h.done(); });
        CHECK(s.done);
        CHECK(uv_loop_alive(f.loop()) == 0);
    }

    // ---------------------------------------------------------------------------------------------
    // 18.10 determinism

    namespace {

    struct trace_log {
        deadline start{};
        std::vector<std::pair<std::string, std::int64_t>> events;

        void add(std::string what) {
            events.emplace_back(std::move(what), ms_between(start, loop_clock::now()));
        }
    };

    task<void> inner_two_ms() {
        co_await timeout(2ms, uvasync::sleep(1h));
    }

    task<void> worker_a(trace_log& t) {
        t.add("a:start");
        co_await uvasync::sleep(300us);
        t.add("a:300us");
        co_await uvasync::sleep(duration<double, std::milli>(1.2));
        t.add("a:1.2ms");
        try {
            co_await timeout(5ms, uvasync::sleep(1h));
        } catch (const timeout_error&) {
            t.add("a:timeout");
        }
        const auto r = co_await move_on_after(10ms, uvasync::sleep(3ms));
        t.add(r.has_value() ? "a:move_on-value" : "a:move_on-empty");
    }

    task<void> worker_b(trace_log& t) {
        t.add("b:start");
        for (int i = 0; i < 3; ++i) {
            co_await yield();
            t.add("b:yield");
        }
        co_await sleep_until(t.start + 4ms);
        t.add("b:until-4");
        try {
            co_await timeout(2ms, inner_two_ms()); // equal deadlines: the outer one converts
        } catch (const timeout_error&) {
            t.add("b:outer-timeout");
        } catch (const cancelled_error&) {
            t.add("b:cancelled?");
        }
    }

    task<void> victim(trace_log& t) {
        t.add("v:start");
        try {
            co_await uvasync::sleep(1h);
        } catch (const cancelled_error& e) {
            t.add(std::string("v:cancelled:") + std::string(e.message()));
            throw;
        }
    }

    task<void> canceller(trace_log& t, task_handle<> v) {
        co_await uvasync::sleep(7ms);
        t.add("c:cancel");
        v.cancel("stop");
        co_await uvasync::sleep(1ms);
        t.add(v.cancelled() ? "c:victim-cancelled" : "c:victim-pending");
    }

    std::vector<std::pair<std::string, std::int64_t>> run_program() {
        loop_fixture f;
        trace_log t;
        t.start = f.now();
        std::vector<task_handle<>> hs;
        hs.push_back(f.rt->spawn(worker_a(t)));
        hs.push_back(f.rt->spawn(worker_b(t)));
        auto v = f.rt->spawn(victim(t));
        hs.push_back(v);
        hs.push_back(f.rt->spawn(canceller(t, v)));
        f.run_until([&] { return all_done(hs); });
        return t.events;
    }

    } // namespace

    TEST_CASE("18.10 determinism: the same program gives the same trace and virtual times twice") {
        const auto first = run_program();
        const auto second = run_program();
        CHECK(first == second);

        const std::vector<std::pair<std::string, std::int64_t>> expected{
            {"a:start", 0},         {"b:start", 0},
            {"v:start", 0},         {"b:yield", 0},
            {"b:yield", 0},         {"b:yield", 0},
            {"a:300us", 1},         {"a:1.2ms", 3},
            {"b:until-4", 4},       {"b:outer-timeout", 6},
            {"c:cancel", 7},        {"v:cancelled:stop", 7},
            {"a:timeout", 8},       {"c:victim-cancelled", 8},
            {"a:move_on-value", 11}};
        CHECK(first == expected);
    }

    namespace {

    struct order_trace {
        std::string order;
        std::vector<std::pair<char, std::int64_t>> times;
        deadline start{};
    };

    task<void> delayed_mark(order_trace& t, char name, loop_clock::duration d) {
        co_await uvasync::sleep(d);
        t.order.push_back(name);
        t.times.emplace_back(name, ms_between(t.start, loop_clock::now()));
    }

    order_trace run_marks(loop_fixture& f) {
        order_trace t;
        t.start = f.now();
        std::vector<task_handle<>> hs;
        const std::vector<std::pair<char, loop_clock::duration>> plan{
            {'a', 30ms}, {'b', 10ms}, {'c', 20ms}, {'d', 10ms}, {'e', 0ms}, {'f', 1ms}};
        hs.reserve(plan.size());
        for (const auto& [name, d] : plan) {
            hs.push_back(f.rt->spawn(delayed_mark(t, name, d)));
        }
        f.run_until([&] { return all_done(hs); });
        return t;
    }

    } // namespace

    TEST_CASE("18.10 the virtual trace is the real-clock trace with zero lateness") {
        order_trace real;
        order_trace virt;
        {
            loop_fixture f{loop_fixture::real_clock()};
            real = run_marks(f);
        }
        {
            loop_fixture f;
            virt = run_marks(f);
        }
        CHECK(virt.order == "efbdca");
        CHECK(real.order == virt.order);
        const std::vector<std::pair<char, std::int64_t>> exact{{'e', 0},  {'f', 1},  {'b', 10},
                                                               {'d', 10}, {'c', 20}, {'a', 30}};
        CHECK(virt.times == exact);
        REQUIRE(real.times.size() == exact.size());
        for (std::size_t i = 0; i < exact.size(); ++i) {
            CHECK(real.times[i].second >= exact[i].second); // real: never early, maybe late
        }
    }

} // TEST_SUITE
