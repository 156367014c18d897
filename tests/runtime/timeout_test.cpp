// SPDX-License-Identifier: MIT
// Timeout scopes (SEMANTICS 5): what timeout / timeout_at / move_on_after / move_on_at give, entry,
// exit, conversion, durations, and awaiter bodies run in place.
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

TEST_SUITE_BEGIN("timeout");

// =============================================================================================
// 5 Timeout scope: results of timeout / timeout_at / move_on_after / move_on_at

static_assert(std::is_same_v<decltype(timeout(1ms, value_now(1)))::result_type, int>);

static_assert(std::is_same_v<decltype(timeout_at(never, value_now(1)))::result_type, int>);

static_assert(
    std::is_same_v<decltype(move_on_after(1ms, value_now(1)))::result_type, std::optional<int>>);

static_assert(
    std::is_same_v<decltype(move_on_at(never, value_now(1)))::result_type, std::optional<int>>);

static_assert(std::is_same_v<decltype(timeout(1ms, void_after(1ms)))::result_type, void>);

static_assert(std::is_same_v<decltype(move_on_after(1ms, void_after(1ms)))::result_type,
                             std::optional<unit>>);

task<void> all_result_forms(trace& tr) {
    const deadline t0 = loop_clock::now();
    const int a = co_await timeout(10ms, value_after(5ms, 1));
    tr.push_back("timeout value " + std::to_string(a) + " at " + since(t0));
    co_await timeout(10ms, void_after(5ms));
    tr.push_back("timeout void at " + since(t0));
    co_await timeout(10ms, sleep(5ms));
    tr.push_back("timeout around a sleep at " + since(t0));
    const std::unique_ptr<int> p = co_await timeout(10ms, ptr_after(5ms, 3));
    tr.push_back("timeout move-only " + std::to_string(*p) + " at " + since(t0));
    try {
        co_await timeout(10ms, value_after(1h, 0));
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
    const int b = co_await timeout_at(loop_clock::now() + 10ms, value_after(5ms, 4));
    tr.push_back("timeout_at value " + std::to_string(b) + " at " + since(t0));
    try {
        co_await timeout_at(loop_clock::now() + 10ms, void_after(1h));
    } catch (const timeout_error&) {
        tr.push_back("timeout_at timeout_error at " + since(t0));
    }
    const std::optional<int> c = co_await move_on_after(10ms, value_after(5ms, 5));
    tr.push_back("move_on_after " + (c ? std::to_string(*c) : "nullopt") + " at " + since(t0));
    const std::optional<int> d = co_await move_on_after(10ms, value_after(1h, 6));
    tr.push_back("move_on_after " + (d ? std::to_string(*d) : "nullopt") + " at " + since(t0));
    const std::optional<unit> e = co_await move_on_after(10ms, void_after(5ms));
    tr.push_back(std::string("move_on_after void ") + (e ? "unit" : "nullopt") + " at " +
                 since(t0));
    const std::optional<unit> g = co_await move_on_after(10ms, void_after(1h));
    tr.push_back(std::string("move_on_after void ") + (g ? "unit" : "nullopt") + " at " +
                 since(t0));
    const std::optional<int> h = co_await move_on_at(loop_clock::now() + 10ms, value_after(5ms, 7));
    tr.push_back("move_on_at " + (h ? std::to_string(*h) : "nullopt") + " at " + since(t0));
    const std::optional<int> i = co_await move_on_at(loop_clock::now() + 10ms, value_after(1h, 8));
    tr.push_back("move_on_at " + (i ? std::to_string(*i) : "nullopt") + " at " + since(t0));
    const std::optional<std::unique_ptr<int>> j = co_await move_on_after(10ms, ptr_after(1ms, 9));
    tr.push_back("move_on_after move-only " + (j ? std::to_string(**j) : "nullopt") + " at " +
                 since(t0));
    const int k = co_await timeout_at(never, value_after(50ms, 10));
    tr.push_back("timeout_at(never) " + std::to_string(k) + " at " + since(t0));
}

task<void> timeout_around_handle(task_handle<int>& h, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await timeout(10ms, h);
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
}

TEST_CASE_FIXTURE(loop_fixture, "5 timeout, timeout_at, move_on_after and move_on_at return the "
                                "body's result, or convert their own expiry exactly on time") {
    CHECK(run_traced(*this, all_result_forms) ==
          trace{"timeout value 1 at +5", "timeout void at +10", "timeout around a sleep at +15",
                "timeout move-only 3 at +20", "timeout_error at +30", "timeout_at value 4 at +35",
                "timeout_at timeout_error at +45", "move_on_after 5 at +50",
                "move_on_after nullopt at +60", "move_on_after void unit at +65",
                "move_on_after void nullopt at +75", "move_on_at 7 at +80",
                "move_on_at nullopt at +90", "move_on_after move-only 9 at +91",
                "timeout_at(never) 10 at +141"});
}

TEST_CASE_FIXTURE(loop_fixture, "5 a timeout around a task_handle cancels the task at the "
                                "deadline, waits for it and converts") {
    trace tr;
    task_handle<int> h = rt->spawn(value_after(1h, 1));
    run(timeout_around_handle(h, tr));
    CHECK(tr == trace{"timeout_error at +10"});
    CHECK(h.cancelled());
}

// =============================================================================================
// 5.1 Entry

task<void> enter_twice(trace& tr) {
    auto aw = timeout(10ms, value_after(1ms, 1));
    tr.push_back("first " + std::to_string(co_await aw));
    try {
        co_await aw;
        tr.push_back("second entry accepted");
    } catch (const invalid_state&) {
        tr.push_back("second entry: invalid_state");
    }
}

TEST_CASE_FIXTURE(loop_fixture, "5.1 entering a timeout scope outside a task is invalid_state") {
    auto aw = timeout(10ms, void_after(1ms));
    CHECK_THROWS_AS(aw.await_suspend(std::noop_coroutine()), invalid_state);
    auto factory = [](timeout_scope&) { return void_after(1ms); };
    auto aw2 = move_on_after(10ms, factory);
    CHECK_THROWS_AS(aw2.await_suspend(std::noop_coroutine()), invalid_state);
}

TEST_CASE_FIXTURE(loop_fixture, "5.1 entering one timeout scope twice is invalid_state") {
    CHECK(run_traced(*this, enter_twice) == trace{"first 1", "second entry: invalid_state"});
}

// =============================================================================================
// 5.2 / D-4 The relative deadline starts at entry

task<void> created_early_awaited_later(trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto aw = timeout(10ms, publishing_scope(sp, [&] { return void_after(1h); }));
    auto plain = move_on_after(10ms, void_after(1h));
    co_await sleep(50ms);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0) + ", when +" +
                     std::to_string((sp->when() - t0).count()));
    }
    const auto r = co_await plain;
    tr.push_back((r ? std::string("value") : std::string("nullopt")) + " at " + since(t0));
}

TEST_CASE_FIXTURE(loop_fixture, "5.2 D-4 a relative timeout created early and awaited later "
                                "counts from when it is awaited") {
    CHECK(run_traced(*this, created_early_awaited_later) ==
          trace{"timeout_error at +60, when +60", "nullopt at +70"});
}

// =============================================================================================
// 5.3 / D-5 Deadline already passed at entry

task<void> body_in_due_scope(timeout_scope& s, trace& tr) {
    tr.push_back(std::string("body started, expired=") + (s.expired() ? "1" : "0"));
    tr.push_back(current_token().cancel_requested() ? "scope cancelled" : "scope not cancelled");
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("first point raised");
        throw;
    }
}

template <class Make>
task<void> due_at_entry(Make make, trace& tr) {
    const deadline t0 = loop_clock::now();
    auto body = [&](timeout_scope& s) { return body_in_due_scope(s, tr); };
    auto aw = make(body);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
}

task<void> due_scope_without_points(trace& tr) {
    timeout_scope* sp = nullptr;
    auto aw = timeout(0ms, publishing_scope(sp, [&] { return value_now(3); }));
    const int v = co_await aw;
    tr.push_back("value " + std::to_string(v) + " " + flags(*sp));
    const auto r = co_await move_on_after(0ms, value_now(4));
    tr.push_back(r ? "move_on value " + std::to_string(*r) : std::string("nullopt"));
}

TEST_CASE_FIXTURE(loop_fixture,
                  "5.3 D-5 a deadline already passed at entry: expired() at once, the body "
                  "starts, the first cancellation point raises, the scope converts") {
    const trace expected{"body started, expired=1", "scope cancelled", "first point raised",
                         "timeout_error at +0"};
    {
        trace tr;
        auto make = [](auto& b) { return timeout(0ms, b); };
        run(due_at_entry(make, tr));
        CHECK(tr == expected);
    }
    {
        trace tr;
        auto make = [](auto& b) { return timeout(-5ms, b); };
        run(due_at_entry(make, tr));
        CHECK(tr == expected);
    }
    {
        trace tr;
        auto make = [](auto& b) {
            return timeout(-std::numeric_limits<double>::infinity() * 1s, b);
        };
        run(due_at_entry(make, tr));
        CHECK(tr == expected);
    }
    {
        trace tr;
        auto make = [](auto& b) { return timeout_at(loop_clock::now(), b); };
        run(due_at_entry(make, tr));
        CHECK(tr == expected);
    }
    {
        trace tr;
        auto make = [](auto& b) { return timeout_at(loop_clock::now() - 10ms, b); };
        run(due_at_entry(make, tr));
        CHECK(tr == expected);
    }
}

TEST_CASE_FIXTURE(loop_fixture,
                  "5.3 5.8 a body that reaches no cancellation point in an already expired scope "
                  "returns its value") {
    CHECK(run_traced(*this, due_scope_without_points) ==
          trace{"value 3 expired=1 caught=0", "move_on value 4"});
}

// =============================================================================================
// 5.8 / 5.9 Exit after expiry

task<int> outlive_deadline_in_shield(loop_clock::duration d, bool fail) {
    co_await shielded(sleep(d));
    if (fail) {
        throw std::logic_error("late failure");
    }
    co_return 4;
}

task<void> exit_after_expiry(bool fail, trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto aw =
        timeout(10ms, publishing_scope(sp, [&] { return outlive_deadline_in_shield(20ms, fail); }));
    try {
        const int v = co_await aw;
        tr.push_back("value " + std::to_string(v) + " at " + since(t0));
    } catch (const std::logic_error& e) {
        tr.push_back(std::string("logic_error '") + e.what() + "' at " + since(t0));
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
    tr.push_back(flags(*sp));
}

TEST_CASE_FIXTURE(loop_fixture,
                  "5.8 a body that ends normally after the deadline passed, with nothing "
                  "delivered, returns its value with expired() true and caught() false") {
    CHECK(run_traced(*this, [&](trace& tr) { return exit_after_expiry(false, tr); }) ==
          trace{"value 4 at +20", "expired=1 caught=0"});
}

TEST_CASE_FIXTURE(loop_fixture, "5.9 a different error after expiry propagates unchanged and "
                                "expired() records the timeout") {
    CHECK(run_traced(*this, [&](trace& tr) { return exit_after_expiry(true, tr); }) ==
          trace{"logic_error 'late failure' at +20", "expired=1 caught=0"});
}

// =============================================================================================
// 5.6 Conversion

task<void> body_sees_cancelled_error(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (const timeout_error&) {
        tr.push_back("body saw timeout_error");
        throw;
    } catch (const cancelled_error&) {
        tr.push_back("body saw cancelled_error");
        throw;
    }
}

task<void> nested_cancelled_error(trace& tr) {
    try {
        co_await timeout(10ms, body_sees_cancelled_error(tr));
    } catch (const timeout_error& e) {
        tr.push_back(std::string("timeout_error: ") + e.what());
        tr.push_back(dynamic_cast<const std::nested_exception*>(&e) != nullptr
                         ? "is a nested_exception"
                         : "is not a nested_exception");
        try {
            std::rethrow_if_nested(e);
            tr.push_back("nothing nested");
        } catch (const cancelled_error& c) {
            tr.push_back("nested cancelled_error, message='" + std::string(c.message()) + "'");
        } catch (...) {
            tr.push_back("something else nested");
        }
    }
}

task<void> task_cancel_through_timeouts(trace& tr) {
    const std::vector<loop_clock::duration> ds{1h, 30min};
    std::vector<scope_record> rec(ds.size());
    const deadline t0 = loop_clock::now();
    std::exception_ptr ep;
    try {
        co_await nested_timeouts(0, ds, rec, t0);
    } catch (const cancelled_error&) {
        ep = std::current_exception();
    }
    for (const auto& r : rec) {
        tr.push_back(r.escaped + " at " + plus(r.at) + (r.expired ? " expired=1" : " expired=0") +
                     (r.caught ? " caught=1" : " caught=0"));
    }
    if (ep) {
        std::rethrow_exception(ep);
    }
}

TEST_CASE_FIXTURE(loop_fixture,
                  "5.6 the body sees cancelled_error; outside, timeout_error carries it nested "
                  "(std::rethrow_if_nested)") {
    trace tr;
    run(nested_cancelled_error(tr));
    REQUIRE(tr.size() == 4);
    CHECK(tr[0] == "body saw cancelled_error");
    CHECK(tr[2] == "is a nested_exception");
    CHECK(tr[3] == "nested cancelled_error, message=''");
}

TEST_CASE_FIXTURE(loop_fixture, "5.7 a task cancellation passes through every timeout unchanged, "
                                "with its message") {
    trace tr;
    task_handle<void> a = run_cancelled_after(*this, task_cancel_through_timeouts(tr), 5ms);
    CHECK(tr == trace{"cancelled_error(stop) at +5 expired=0 caught=0",
                      "cancelled_error(stop) at +5 expired=0 caught=0"});
    CHECK(a.cancelled());
    CHECK(run(outcome_of(a)) == "cancelled(stop)");
}

// =============================================================================================
// 5.5 / 5.13 Exit leaves nothing armed; no handle per scope

task<void> quick_ops_in_long_timeouts() {
    co_await timeout(10s, sleep(1ms));
    co_await timeout(10s, value_now(1));
    co_await move_on_after(10s, sleep(1ms));
    co_await timeout_at(loop_clock::now() + 10s, sleep(1ms));
    auto failing = [](timeout_scope&) -> task<void> {
        co_await sleep(1ms);
        throw std::runtime_error("body failed");
    };
    try {
        co_await timeout(10s, failing);
    } catch (const std::runtime_error&) {
    }
    co_await move_on_after(2ms, sleep(10s)); // one that expires
}

TEST_CASE("5.5 after 10 s timeouts around quick operations complete, the loop has no active "
          "handle (real clock)") {
    loop_fixture f(loop_fixture::real_clock());
    f.run(quick_ops_in_long_timeouts());
    CHECK(uv_loop_alive(f.loop()) == 0);
    CHECK(uv_run(f.loop(), UV_RUN_NOWAIT) == 0);
}

TEST_CASE_FIXTURE(loop_fixture, "5.5 after 10 s timeouts around quick operations complete, no "
                                "deadline is left (virtual clock)") {
    const deadline t0 = now();
    run(quick_ops_in_long_timeouts());
    CHECK((now() - t0).count() == 6);
    CHECK(uv_loop_alive(loop()) == 0);
    CHECK(uv_run(loop(), UV_RUN_NOWAIT) == 0);
    run_all();
    CHECK((now() - t0).count() == 6); // nothing to jump to
}

TEST_CASE("5.13 timeout scopes open no libuv handle, however many are active") {
    loop_fixture f(loop_fixture::manual_clock());
    const int before = count_handles(f.loop());
    const std::vector<loop_clock::duration> deep(50, 1h);
    std::vector<scope_record> rec(deep.size());
    std::vector<task_handle<void>> tasks;
    tasks.push_back(f.rt->spawn(nested_timeouts(0, deep, rec, f.now())));
    std::vector<scope_record> single(100);
    for (auto& r : single) {
        tasks.push_back(f.rt->spawn(timeout_around_sleep(1h, r)));
    }
    f.run_all(); // all parked inside their scopes
    CHECK(count_handles(f.loop()) == before);
    for (auto& t : tasks) {
        t.cancel();
    }
    f.run_all();
    for (auto& t : tasks) {
        CHECK(t.cancelled());
    }
    CHECK(count_handles(f.loop()) == before);
}

// =============================================================================================
// 5.2 / 6.2 Durations of relative timeouts

task<void> rounding_when(trace& tr) {
    const deadline t0 = loop_clock::now();
    auto probe = [&](timeout_scope& s) {
        tr.push_back(s.when() == never ? std::string("never") : plus((s.when() - t0).count()));
        return value_now(0);
    };
    co_await timeout(std::chrono::microseconds(300), probe);
    co_await timeout(std::chrono::microseconds(1200), probe);
    co_await timeout(std::chrono::duration<double, std::milli>(1.2), probe);
    co_await timeout(std::chrono::nanoseconds(1), probe);
    co_await timeout(std::chrono::seconds(2), probe);
    co_await timeout(std::chrono::hours::max(), probe);
    co_await timeout(std::chrono::duration<double>(std::numeric_limits<double>::infinity()), probe);
    co_await move_on_after(std::chrono::seconds::max(), probe);
}

task<void> expiry_after_rounding(trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await timeout(std::chrono::microseconds(300), sleep(1h));
    } catch (const timeout_error&) {
        tr.push_back("300us expired at " + since(t0));
    }
    const auto r = co_await move_on_after(std::chrono::hours::max(), sleep(25ms));
    tr.push_back(std::string(r ? "hours::max() body finished" : "nullopt") + " at " + since(t0));
}

task<void> nan_timeout(trace& tr) {
    try {
        co_await timeout(std::chrono::duration<double>(std::nan("")), record(tr, "body ran"));
    } catch (const std::invalid_argument&) {
        tr.push_back("timeout: invalid_argument");
    }
    try {
        co_await move_on_after(std::chrono::duration<float, std::milli>(std::nanf("")),
                               record(tr, "body ran"));
    } catch (const std::invalid_argument&) {
        tr.push_back("move_on_after: invalid_argument");
    }
}

TEST_CASE_FIXTURE(loop_fixture, "5.2 6.2 a relative timeout's deadline rounds up to whole "
                                "milliseconds and saturates to never") {
    CHECK(run_traced(*this, rounding_when) ==
          trace{"+1", "+2", "+2", "+1", "+2000", "never", "never", "never"});
}

TEST_CASE_FIXTURE(loop_fixture,
                  "6.2 a 300 us timeout expires after 1 ms; an unrepresentable one never does") {
    CHECK(run_traced(*this, expiry_after_rounding) ==
          trace{"300us expired at +1", "hours::max() body finished at +26"});
}

TEST_CASE_FIXTURE(loop_fixture,
                  "6.2 a NaN timeout throws std::invalid_argument before the body runs") {
    CHECK(run_traced(*this, nan_timeout) ==
          trace{"timeout: invalid_argument", "move_on_after: invalid_argument"});
}

TEST_CASE_FIXTURE(loop_fixture,
                  "4.6 a task that swallows 1000 deliveries without suspending is reported") {
    auto h = rt->spawn([]() -> task<int> {
        int swallowed = 0;
        while (swallowed < 1500) {
            try {
                co_await sleep(1s); // raises at once: the scope is cancelled
            } catch (const cancelled_error&) {
                ++swallowed;
            }
        }
        co_return swallowed;
    }());
    // Cancelled once it has started (before its first step the body would never run).
    CHECK(run([](task_handle<int> t) -> task<int> {
              co_await sleep(1ms);
              t.cancel("stop");
              co_return co_await t;
          }(h)) == 1500);
    REQUIRE(reported.size() == 1);
    CHECK_THROWS_AS(std::rethrow_exception(reported.front()), invalid_state);
}

// =============================================================================================
// A body that is an awaiter runs in place, without a coroutine frame (bench/NOTES.md, W2)

/// Records the number of live frames when it suspends; completes without suspending.
struct frame_probe {
    std::ptrdiff_t* seen;

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    [[nodiscard]] bool await_suspend(std::coroutine_handle<>) const noexcept {
        *seen = detail::live_frame_counter().load();
        return false; // resume at once
    }

    [[nodiscard]] int await_resume() const noexcept { return 7; }
};

TEST_CASE_FIXTURE(loop_fixture, "5 a timeout around an awaiter awaits it in place, without "
                                "a frame, and returns its result") {
    const int r = run([]() -> task<int> {
        const std::ptrdiff_t before = detail::live_frame_counter().load();
        std::ptrdiff_t seen = -1;
        const int v = co_await timeout(1s, frame_probe{&seen});
        CHECK(seen == before);
        auto m = co_await move_on_after(1s, frame_probe{&seen});
        CHECK(seen == before);
        REQUIRE(m.has_value());
        co_return v + *m;
    }());
    CHECK(r == 14);
}

TEST_CASE_FIXTURE(loop_fixture, "5.3 D-5 a body awaiter that is ready at once still runs "
                                "inside the scope: an expired scope makes checkpoint() raise") {
    trace tr;
    run([](trace& tr) -> task<> {
        auto m = co_await move_on_after(0ms, checkpoint());
        tr.push_back(m.has_value() ? "value" : "nullopt");
        auto t = timeout(-1ms, checkpoint());
        try {
            co_await t;
            tr.push_back("returned");
        } catch (const timeout_error& e) {
            // Around a leaf nothing unwound the body: the timeout_error is the only throw and
            // nests nothing (SEMANTICS 19.4).
            const auto* nested = dynamic_cast<const std::nested_exception*>(&e);
            tr.push_back(std::string("timeout_error, nested ") +
                         (nested != nullptr && nested->nested_ptr() != nullptr ? "yes" : "no"));
        }
        tr.push_back(flags(t.scope()));
        co_await checkpoint(); // the scope was left: nothing is cancelled here
        tr.push_back("after");
    }(tr));
    CHECK(tr == trace{"nullopt", "timeout_error, nested no", "expired=1 caught=1", "after"});
}

TEST_CASE_FIXTURE(loop_fixture, "5.7 nested timeouts around a sleep, awaited in place: the "
                                "scope whose deadline passed owns the cancellation") {
    trace tr;
    run([](trace& tr) -> task<> {
        const deadline t0 = loop_clock::now();
        try {
            co_await timeout(1s, timeout(5ms, sleep(1h)));
        } catch (const timeout_error&) {
            tr.push_back("inner timeout_error at " + since(t0));
        }
        auto outer = timeout(5ms, timeout(1s, sleep(1h)));
        try {
            co_await outer;
        } catch (const timeout_error&) {
            tr.push_back("outer timeout_error at " + since(t0) + " " + flags(outer.scope()));
        }
        auto m = co_await move_on_after(1s, move_on_after(5ms, sleep(1h)));
        tr.push_back(m.has_value() && !m->has_value() ? "inner nullopt" : "?");
    }(tr));
    CHECK(tr == trace{"inner timeout_error at +5", "outer timeout_error at +10 expired=1 caught=1",
                      "inner nullopt"});
}

TEST_CASE_FIXTURE(loop_fixture, "4.8 a timeout around a sleep in a cancelled task passes the "
                                "task's cancellation through, with its message") {
    auto h = rt->spawn([]() -> task<> { co_await timeout(1s, sleep(1h)); }());
    const std::string message = run([](task_handle<> h) -> task<std::string> {
        co_await sleep(2ms);
        h.cancel("stop");
        try {
            co_await h;
        } catch (const cancelled_error& e) {
            co_return std::string(e.message());
        }
        co_return "not cancelled";
    }(h));
    CHECK(h.cancelled());
    CHECK(message == "stop");
}

TEST_CASE("a frame destroyed while parked in a timeout around a sleep leaves the deadline "
          "heap and the token tree clean") {
    runtime_options o = loop_fixture::virtual_clock();
    o.shutdown_grace = 0ms; // shutdown destroys the parked frame without resuming it
    loop_fixture f(o);
    f.rt->spawn([]() -> task<> { co_await timeout(1h, sleep(2h)); }()).detach();
    f.run([]() -> task<> { co_await sleep(1ms); }());
    f.rt->shutdown();
    REQUIRE(f.reported.size() == 1);
    CHECK_THROWS_AS(std::rethrow_exception(f.reported.front()), leaked_task_error);
}

TEST_SUITE_END();

} // namespace
} // namespace uvasync::test
