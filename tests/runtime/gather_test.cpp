// SPDX-License-Identifier: MIT
// gather: SEMANTICS.md section 10 and decision D-9 (gather is structured).
#include <algorithm>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "counted.hpp"
#include "loop_fixture.hpp"
#include "string_makers.hpp"
#include "test_error.hpp"
#include "timed_tasks.hpp"
#include "trace.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using namespace uvasync::test;

task<std::string> string_after(trace& tr, std::string name, loop_clock::duration d, std::string v) {
    co_await sleep(d);
    tr.add(name + " done");
    co_return v;
}

task<> void_after(trace& tr, std::string name, loop_clock::duration d) {
    co_await sleep(d);
    tr.add(name + " done");
}

int code_of(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const my_error& m) {
        return m.code;
    } catch (...) {
        return -1;
    }
}

} // namespace

TEST_SUITE("gather") {

    // -----------------------------------------------------------------------------------------
    // 10.1 Children, 10.3 argument order

    namespace {
    task<std::tuple<int, int, std::string>> t_order(trace& tr) {
        auto r = co_await gather(value_after(tr, "a", 30ms, 1), value_after(tr, "b", 10ms, 2),
                                 string_after(tr, "c", 20ms, "three"));
        tr.add("gathered");
        co_return r;
    }
    } // namespace

    TEST_CASE("10.1 10.3 children run concurrently and the results come in argument order") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_order(tr)) == std::tuple<int, int, std::string>{1, 2, "three"});
        CHECK(tr.events ==
              std::vector<std::string>{"b done@10", "c done@20", "a done@30", "gathered@30"});
    }

    namespace {
    task<std::tuple<unit, int, unit>> t_void(trace& tr) {
        auto r = co_await gather(void_after(tr, "a", 5ms), value_after(tr, "b", 3ms, 7),
                                 void_after(tr, "c", 1ms));
        static_assert(std::is_same_v<decltype(r), std::tuple<unit, int, unit>>);
        co_return r;
    }
    } // namespace

    TEST_CASE("10.1 void children give unit in their positions") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_void(tr)) == std::tuple<unit, int, unit>{unit{}, 7, unit{}});
        CHECK(tr.events == std::vector<std::string>{"c done@1", "b done@3", "a done@5"});
    }

    namespace {
    template <class T>
    task<std::tuple<int, int>> t_handle_arg(trace& tr, task_handle<T> h) {
        auto r = co_await gather(h, value_after(tr, "b", 10ms, 2));
        tr.add("gathered");
        co_return r;
    }
    } // namespace

    TEST_CASE("10.1 a task_handle argument is waited for and its value fills its position") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(value_after(tr, "h", 15ms, 4));
        CHECK(f.run(t_handle_arg(tr, h)) == std::tuple<int, int>{4, 2});
        CHECK(tr.events == std::vector<std::string>{"b done@10", "h done@15", "gathered@15"});
        CHECK_FALSE(h.cancelled());
    }

    namespace {
    task<> t_handle_forward(trace& tr, task_handle<int> h) {
        try {
            co_await timeout(10ms, gather(h, value_after(tr, "b", 20ms, 2)));
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        }
    }
    } // namespace

    TEST_CASE("10.1 a cancellation of the gather is forwarded to a task_handle argument") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(park(tr, "h", 3ms));
        f.run(t_handle_forward(tr, h));
        CHECK(h.cancelled());
        CHECK(tr.has("h cancelled@10"));
        CHECK(tr.events.back() == "timeout_error@13");
        CHECK_FALSE(tr.has("b done@20"));
    }

    namespace {
    task<std::tuple<int, int, int>> t_same_handle(trace& tr, task_handle<int> h) {
        co_return co_await gather(h, value_after(tr, "b", 2ms, 2), h);
    }

    task<std::string> t_same_handle_cancelled(task_handle<int> h) {
        try {
            co_await gather(h, h);
        } catch (const cancelled_error& e) {
            co_return std::string(e.message());
        }
        co_return "<no cancellation>";
    }
    } // namespace

    TEST_CASE("10.1 the same handle passed twice is one child whose result fills both positions") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(value_after(tr, "h", 5ms, 9));
        CHECK(f.run(t_same_handle(tr, h)) == std::tuple<int, int, int>{9, 2, 9});
        CHECK(tr.events == std::vector<std::string>{"b done@2", "h done@5"});

        auto p = f.rt->spawn(park(tr, "p"));
        auto k = f.rt->spawn(cancel_after(p, 3ms, "by k"));
        CHECK(f.run(t_same_handle_cancelled(p)) == "by k");
        CHECK(p.cancelled());
        CHECK(f.reported.empty());
    }

    namespace {
    task<> t_empty_a(std::vector<std::string>& log) {
        log.emplace_back("a1");
        static_assert(std::is_same_v<detail::await_result_t<decltype(gather())>, std::tuple<>>);
        (void)co_await gather();
        log.emplace_back("a2");
    }

    task<> t_empty_b(std::vector<std::string>& log) {
        log.emplace_back("b");
        co_return;
    }

    task<> t_empty_vector(std::vector<std::string>& log) {
        log.emplace_back("v1");
        auto r = co_await gather(std::vector<task<int>>{});
        log.emplace_back(r.empty() ? "v2 empty" : "v2 not empty");
    }
    } // namespace

    TEST_CASE("10.1 gather with no arguments returns an empty tuple without suspending") {
        std::vector<std::string> log;
        loop_fixture f;
        auto a = f.rt->spawn(t_empty_a(log));
        auto b = f.rt->spawn(t_empty_b(log));
        f.run_until([&] { return a.done() && b.done(); });
        CHECK(log == std::vector<std::string>{"a1", "a2", "b"});

        log.clear();
        auto v = f.rt->spawn(t_empty_vector(log));
        auto b2 = f.rt->spawn(t_empty_b(log));
        f.run_until([&] { return v.done() && b2.done(); });
        CHECK(log == std::vector<std::string>{"v1", "v2 empty", "b"});
    }

    // -----------------------------------------------------------------------------------------
    // 10.2 Entry is a cancellation point

    namespace {
    task<> t_entry(trace& tr, bool& ran, task_handle<int> other) {
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            tr.add("swallowed"); // the task scope stays cancelled (D-1)
        }
        try {
            co_await gather(note_run(ran, counted{}), other);
            tr.add("gather returned");
        } catch (const cancelled_error& e) {
            tr.add("gather raised: " + std::string(e.message()));
            tr.add(other.done() ? "other touched" : "other still running");
            throw;
        }
    }
    } // namespace

    TEST_CASE("10.2 gather in a cancelled scope raises at once: tasks never start and handles are "
              "not touched") {
        trace tr;
        bool ran = false;
        loop_fixture f;
        tr.t0 = f.now();
        const auto base = counted::live().load();
        auto other = f.rt->spawn(value_after(tr, "other", 10ms, 3));
        auto h = f.rt->spawn(t_entry(tr, ran, other));
        auto k = f.rt->spawn(cancel_after(h, 2ms, "stop"));
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK_FALSE(ran);
        CHECK(counted::live().load() == base); // the unstarted task's frame was destroyed
        f.run_until([&] { return other.done(); });
        CHECK_FALSE(other.cancelled());
        CHECK(tr.events == std::vector<std::string>{"swallowed@2", "gather raised: stop@2",
                                                    "other still running@2", "other done@10"});
    }

    // -----------------------------------------------------------------------------------------
    // 10.4 return_exceptions = false

    namespace {
    task<> t_first_failure(trace& tr, task_handle<int> h) {
        try {
            co_await gather(fail_after(tr, "a", 5ms, 1), park(tr, "b", 10ms), park(tr, "c", 3ms),
                            h);
            tr.add("gather returned");
        } catch (const my_error& e) {
            tr.add("gather raised " + std::to_string(e.code));
        }
    }
    } // namespace

    TEST_CASE("10.4 the first failure cancels the others, gather waits for their cleanup, then "
              "rethrows it") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(park(tr, "h"));
        f.run(t_first_failure(tr, h));
        CHECK(h.cancelled());
        REQUIRE(tr.events.size() == 7);
        CHECK(tr.events[0] == "a fails@5");
        CHECK(tr.has("b cancelled@5"));
        CHECK(tr.has("c cancelled@5"));
        CHECK(tr.has("h cancelled@5"));
        CHECK(tr.events[4] == "c cleaned up@8");
        CHECK(tr.events[5] == "b cleaned up@15");
        CHECK(tr.events[6] == "gather raised 1@15");
    }

    namespace {
    task<int> t_consumed(trace& tr) {
        try {
            co_await gather(fail_on_cancel(tr, "b", {}, 2), fail_after(tr, "a", 5ms, 1),
                            fail_on_cancel(tr, "c", 4ms, 3), fail_after(tr, "d", 20ms, 4));
        } catch (const my_error& e) {
            tr.add("gather raised");
            co_return e.code;
        }
        co_return 0;
    }
    } // namespace

    TEST_CASE("10.4 the other errors, cleanup errors included, are consumed: neither rethrown nor "
              "reported") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_consumed(tr)) == 1); // the first in completion order, not argument order
        CHECK(tr.events.front() == "a fails@5");
        CHECK(tr.has("b fails@5"));
        CHECK(tr.has("c fails@9"));
        CHECK_FALSE(tr.has("d fails@20"));
        CHECK(tr.events.back() == "gather raised@9");
        f.run_all();
        f.rt->shutdown();
        CHECK(f.reported.empty());
    }

    namespace {
    task<> t_cancelled_child(trace& tr, task_handle<int> h) {
        try {
            co_await gather(value_after(tr, "a", 10ms, 1), h, park(tr, "b", 2ms));
            tr.add("gather returned");
        } catch (const cancelled_error& e) {
            tr.add("gather raised cancelled: " + std::string(e.message()));
        }
        co_await sleep(1ms); // none of this task's scopes is cancelled
        tr.add("caller slept");
    }
    } // namespace

    TEST_CASE("10.4 a child cancelled by someone else is a failure: the rest are cancelled and "
              "cancelled_error is rethrown") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(park(tr, "h"));
        auto k = f.rt->spawn(cancel_after(h, 5ms, "by someone"));
        f.run(t_cancelled_child(tr, h));
        CHECK(h.cancelled());
        CHECK(tr.events ==
              std::vector<std::string>{"h cancelled@5", "b cancelled@5", "b cleaned up@7",
                                       "gather raised cancelled: by someone@7", "caller slept@8"});
    }

    // -----------------------------------------------------------------------------------------
    // 10.5 return_exceptions = true

    namespace {
    task<std::tuple<outcome<int>, outcome<int>, outcome<int>, outcome<void>>>
    t_outcomes(trace& tr, task_handle<int> h) {
        auto r = co_await gather(return_exceptions, value_after(tr, "a", 10ms, 1),
                                 fail_after(tr, "b", 5ms, 2), h, void_after(tr, "d", 7ms));
        tr.add("gathered");
        co_return r;
    }
    } // namespace

    TEST_CASE("10.5 return_exceptions puts a value, an error or a cancellation in each slot and "
              "cancels nothing") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(park(tr, "h"));
        auto k = f.rt->spawn(cancel_after(h, 3ms, "someone"));
        auto [a, b, c, d] = f.run(t_outcomes(tr, h));
        CHECK(tr.events == std::vector<std::string>{"h cancelled@3", "b fails@5", "d done@7",
                                                    "a done@10", "gathered@10"});
        REQUIRE(a.has_value());
        CHECK(a.value() == 1);
        CHECK_FALSE(a.has_error());
        REQUIRE(b.has_error());
        CHECK(code_of(b.error()) == 2);
        CHECK_THROWS_AS(b.value(), my_error);
        REQUIRE(c.cancelled());
        try {
            (void)c.value();
            FAIL("no cancellation");
        } catch (const cancelled_error& e) {
            CHECK(e.message() == "someone");
        }
        REQUIRE(d.has_value());
        CHECK(d.value() == unit{});
        CHECK(f.reported.empty());
    }

    // -----------------------------------------------------------------------------------------
    // 10.6 Cancelled from outside

    namespace {
    task<> t_outside_values(trace& tr) {
        auto r = co_await gather(swallow_and_return(tr, "a", 3ms, 1),
                                 swallow_and_return(tr, "b", {}, 2));
        tr.add("gathered " + std::to_string(std::get<0>(r)) + std::to_string(std::get<1>(r)));
        co_await next_cancellation_point(tr);
    }
    } // namespace

    TEST_CASE("10.6 cancelled from outside: when every child still produces a value, gather "
              "returns the values and the next cancellation point raises") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(t_outside_values(tr));
        auto k = f.rt->spawn(cancel_after(h, 5ms, "outer"));
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        REQUIRE(tr.events.size() == 6);
        CHECK(tr.has("a cancelled@5"));
        CHECK(tr.has("b cancelled@5"));
        CHECK(tr.has("b returns@5"));
        CHECK(tr.events[3] == "a returns@8");
        CHECK(tr.events[4] == "gathered 12@8");
        CHECK(tr.events[5] == "next cancellation point raised: outer@8");
    }

    namespace {
    task<> t_outside_timeout(trace& tr) {
        try {
            co_await timeout(10ms, gather(park(tr, "a", 4ms), park(tr, "b")));
            tr.add("returned");
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        }
    }

    task<> t_outside_handle(trace& tr) {
        try {
            co_await gather(park(tr, "a"), value_after(tr, "b", 20ms, 2));
            tr.add("returned");
        } catch (const cancelled_error& e) {
            tr.add("gather raised cancelled: " + std::string(e.message()));
            throw;
        }
    }
    } // namespace

    TEST_CASE("10.6 10.7 cancelled from outside: the cancellation is delivered in the awaiter "
              "with its owner, after every child finished") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_outside_timeout(tr)); // the timeout owns it and converts
        CHECK(tr.has("a cancelled@10"));
        CHECK(tr.has("b cancelled@10"));
        CHECK(tr.events.back() == "timeout_error@14");

        tr.events.clear();
        tr.t0 = f.now();
        auto h = f.rt->spawn(t_outside_handle(tr)); // the task scope owns it
        auto k = f.rt->spawn(cancel_after(h, 5ms, "outer"));
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(tr.events.back() == "gather raised cancelled: outer@5");
        CHECK_FALSE(tr.has("b done@20"));
    }

    namespace {
    task<int> t_outside_error(trace& tr) {
        try {
            co_await timeout(10ms, gather(fail_on_cancel(tr, "a", {}, 5), park(tr, "b", 2ms)));
        } catch (const my_error& e) {
            tr.add("gather raised");
            co_return e.code;
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        }
        co_return 0;
    }
    } // namespace

    TEST_CASE("10.6 cancelled from outside: an error raised by a child's cleanup is rethrown as "
              "the first failure") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_outside_error(tr)) == 5);
        CHECK(tr.events.back() == "gather raised@12");
    }

    namespace {
    task<> t_re_outside_timeout(trace& tr) {
        try {
            co_await timeout(
                10ms, gather(return_exceptions, park(tr, "a"), value_after(tr, "b", 5ms, 2)));
            tr.add("returned outcomes");
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        }
    }

    task<> t_re_outside_handle(trace& tr) {
        try {
            co_await gather(return_exceptions, park(tr, "a"), value_after(tr, "b", 2ms, 2));
            tr.add("returned outcomes");
        } catch (const cancelled_error& e) {
            tr.add("gather raised cancelled: " + std::string(e.message()));
            throw;
        }
    }
    } // namespace

    TEST_CASE("10.6 return_exceptions with an outside cancellation and a cancelled child raises "
              "cancelled_error, not a result list (bpo-32684)") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_re_outside_timeout(tr));
        CHECK(tr.events ==
              std::vector<std::string>{"b done@5", "a cancelled@10", "timeout_error@10"});

        tr.events.clear();
        tr.t0 = f.now();
        auto h = f.rt->spawn(t_re_outside_handle(tr));
        auto k = f.rt->spawn(cancel_after(h, 5ms, "outer"));
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(tr.events == std::vector<std::string>{"b done@2", "a cancelled@5",
                                                    "gather raised cancelled: outer@5"});
    }

    namespace {
    task<> t_re_outside_no_cancelled(trace& tr) {
        auto [a, b] = co_await gather(return_exceptions, swallow_and_return(tr, "a", {}, 1),
                                      fail_on_cancel(tr, "b", {}, 2));
        tr.add("outcomes " + std::to_string(a.value()) + " " + std::to_string(code_of(b.error())));
        co_await next_cancellation_point(tr);
    }
    } // namespace

    TEST_CASE("10.6 return_exceptions with an outside cancellation where no child ended cancelled "
              "returns the outcomes") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(t_re_outside_no_cancelled(tr));
        auto k = f.rt->spawn(cancel_after(h, 5ms, "outer"));
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        REQUIRE(tr.events.size() >= 2);
        CHECK(tr.events[tr.events.size() - 2] == "outcomes 1 2@5");
        CHECK(tr.events.back() == "next cancellation point raised: outer@5");
        CHECK(f.reported.empty());
    }

    // -----------------------------------------------------------------------------------------
    // The runtime-sized forms: std::vector<task<T>>

    namespace {
    task<std::vector<int>> t_vector(trace& tr) {
        std::vector<task<int>> tasks;
        tasks.push_back(value_after(tr, "a", 30ms, 1));
        tasks.push_back(value_after(tr, "b", 10ms, 2));
        tasks.push_back(value_after(tr, "c", 20ms, 3));
        auto r = co_await gather(std::move(tasks));
        static_assert(std::is_same_v<decltype(r), std::vector<int>>);
        tr.add("gathered");
        co_return r;
    }

    task<int> t_vector_failure(trace& tr) {
        std::vector<task<int>> tasks;
        tasks.push_back(park(tr, "a", 5ms));
        tasks.push_back(fail_after(tr, "b", 5ms, 7));
        tasks.push_back(fail_on_cancel(tr, "c", {}, 8));
        try {
            co_await gather(std::move(tasks));
        } catch (const my_error& e) {
            tr.add("gather raised");
            co_return e.code;
        }
        co_return 0;
    }

    task<std::vector<outcome<int>>> t_vector_outcomes(trace& tr) {
        std::vector<task<int>> tasks;
        tasks.push_back(value_after(tr, "a", 10ms, 1));
        tasks.push_back(fail_after(tr, "b", 5ms, 2));
        auto r = co_await gather(return_exceptions, std::move(tasks));
        tr.add("gathered");
        co_return r;
    }
    } // namespace

    TEST_CASE("10 gather over a std::vector<task<T>> returns the results in argument order") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_vector(tr)) == std::vector<int>{1, 2, 3});
        CHECK(tr.events ==
              std::vector<std::string>{"b done@10", "c done@20", "a done@30", "gathered@30"});
    }

    TEST_CASE("10.4 gather over a vector: the first failure cancels the rest, waits for them and "
              "is rethrown") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_vector_failure(tr)) == 7);
        CHECK(tr.events.front() == "b fails@5");
        CHECK(tr.has("a cleaned up@10"));
        CHECK(tr.has("c fails@5"));
        CHECK(tr.events.back() == "gather raised@10");
        f.run_all();
        f.rt->shutdown();
        CHECK(f.reported.empty());
    }

    TEST_CASE("10.5 gather(return_exceptions) over a vector returns every outcome") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto r = f.run(t_vector_outcomes(tr));
        REQUIRE(r.size() == 2);
        REQUIRE(r[0].has_value());
        CHECK(r[0].value() == 1);
        REQUIRE(r[1].has_error());
        CHECK(code_of(r[1].error()) == 2);
        CHECK(tr.events == std::vector<std::string>{"b fails@5", "a done@10", "gathered@10"});
    }
}
