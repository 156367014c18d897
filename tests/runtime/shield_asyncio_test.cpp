// SPDX-License-Identifier: MIT
// shield(aw), the asyncio flavour of shielding: SEMANTICS.md section 8a.
#include <algorithm>
#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "string_makers.hpp"
#include "test_error.hpp"
#include "timed_tasks.hpp"
#include "trace.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using namespace uvasync::test;

/// Awaits `shield(aw)` and records how the caller left.
template <class A>
task<int> shield_and_record(trace& tr, A aw) {
    try {
        const int v = co_await shield(std::move(aw));
        tr.add("caller got " + std::to_string(v));
        co_return v;
    } catch (const cancelled_error& e) {
        tr.add("caller raised cancelled: " + std::string(e.message()));
        throw;
    } catch (const my_error& e) {
        tr.add("caller got my_error " + std::to_string(e.code));
        throw;
    }
}

/// The fixture of these tests: a loop on the virtual clock, and a trace timed from its start
/// that outlives the loop (a base constructed first), since the loop's shutdown may still
/// record into it.
struct with_trace {
    trace tr;
};

struct traced_loop : with_trace, loop_fixture {
    traced_loop() { tr.t0 = now(); }

    /// Spawns a caller that awaits `shield(work)` (shield_and_record), cancels it ("stop")
    /// after 5 ms, runs the loop until both are done and checks that the caller ended
    /// cancelled. The shielded work may still run: the test runs the loop on as far as it
    /// needs.
    template <class A>
    void cancel_shielding_caller(A work) {
        auto p = rt->spawn(shield_and_record(tr, std::move(work)));
        auto k = rt->spawn(cancel_after(p, 5ms, "stop"));
        run_until([&] { return p.done() && k.done(); });
        CHECK(p.cancelled());
    }

    /// 8a.3: the caller of `shield(work)` is cancelled at +5 and raises at once; the work,
    /// which ends at +20 recording `work_end`, runs on to its end.
    template <class A>
    void check_work_outlives_its_caller(A work, const std::string& work_end) {
        cancel_shielding_caller(std::move(work));
        run_all();
        CHECK(tr.events == std::vector<std::string>{"caller raised cancelled: stop@5", work_end});
    }
};

} // namespace

TEST_SUITE("shield_asyncio") {

    // -----------------------------------------------------------------------------------------
    // 8a.1 Already complete

    namespace {
    template <class A>
    task<> shield_in_order(std::vector<std::string>& log, A aw) {
        log.emplace_back("a1");
        const int v = co_await shield(std::move(aw));
        log.emplace_back("a2 " + std::to_string(v));
    }

    task<> log_b(std::vector<std::string>& log) {
        log.emplace_back("b");
        co_return;
    }
    } // namespace

    TEST_CASE("8a.1 shielding a handle that already completed returns its value at once, without "
              "suspending") {
        trace tr;
        std::vector<std::string> log;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(value_after(tr, "h", 1ms, 5));
        f.run_until([&] { return h.done(); });
        auto a = f.rt->spawn(shield_in_order(log, h));
        auto b = f.rt->spawn(log_b(log));
        f.run_until([&] { return a.done() && b.done(); });
        CHECK(log == std::vector<std::string>{"a1", "a2 5", "b"});
    }

    TEST_CASE_FIXTURE(traced_loop,
                      "8a.1 shielding a handle that already failed rethrows its error at once") {
        auto h = rt->spawn(fail_after(tr, "h", 1ms, 3));
        run_until([&] { return h.done(); });
        CHECK_THROWS_AS(run(shield_and_record(tr, h)), my_error);
        CHECK(tr.events == std::vector<std::string>{"h fails@1", "caller got my_error 3@1"});
    }

    TEST_CASE("8a.1 shielding a future that is already set returns its value at once, without "
              "suspending") {
        std::vector<std::string> log;
        loop_fixture f;
        promise<int> p;
        p.set_value(3);
        auto a = f.rt->spawn(shield_in_order(log, p.get_future()));
        auto b = f.rt->spawn(log_b(log));
        f.run_until([&] { return a.done() && b.done(); });
        CHECK(log == std::vector<std::string>{"a1", "a2 3", "b"});
    }

    namespace {
    task<> t_done_in_cancelled(trace& tr, task_handle<int> done) {
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            tr.add("swallowed"); // the task scope stays cancelled (D-1)
        }
        const int v = co_await shield(done); // not a cancellation point: the result is there
        tr.add("got " + std::to_string(v));
        try {
            co_await yield();
        } catch (const cancelled_error&) {
            tr.add("next cancellation point raised");
            throw;
        }
    }
    } // namespace

    TEST_CASE_FIXTURE(traced_loop,
                      "8a.1 shielding a completed handle is not a cancellation point") {
        auto done = rt->spawn(value_after(tr, "h", 1ms, 5));
        auto p = rt->spawn(t_done_in_cancelled(tr, done));
        auto k = rt->spawn(cancel_after(p, 2ms, "stop"));
        run_until([&] { return p.done(); });
        CHECK(p.cancelled());
        CHECK(tr.events == std::vector<std::string>{"h done@1", "swallowed@2", "got 5@2",
                                                    "next cancellation point raised@2"});
    }

    // -----------------------------------------------------------------------------------------
    // 8a.2 The work runs as its own task, outside the caller's scopes

    namespace {
    task<int> probe(runtime& rt, trace& tr) {
        tr.add("inner: tasks " + std::to_string(rt.task_count()) +
               (current_deadline() == never ? ", no deadline" : ", a deadline"));
        co_await sleep(1ms);
        co_return 1;
    }

    task<int> t_outside_scopes(runtime& rt, trace& tr) {
        co_return co_await timeout(100ms, shield(probe(rt, tr)));
    }
    } // namespace

    TEST_CASE_FIXTURE(traced_loop,
                      "8a.2 a shielded task runs as its own task, outside the caller's scopes") {
        CHECK(run(t_outside_scopes(*rt, tr)) == 1);
        CHECK(tr.events == std::vector<std::string>{"inner: tasks 2, no deadline@0"});
    }

    // -----------------------------------------------------------------------------------------
    // 8a.3 The caller raises at once; the work keeps running

    TEST_CASE_FIXTURE(traced_loop,
                      "8a.3 a cancelled caller raises at once while the shielded task runs on to "
                      "completion") {
        check_work_outlives_its_caller(value_after(tr, "inner", 20ms, 5), "inner done@20");
        CHECK(reported.empty());
    }

    TEST_CASE_FIXTURE(
        traced_loop, "8a.3 a shielded handle is not cancelled when its caller is (no forwarding)") {
        auto h = rt->spawn(value_after(tr, "h", 20ms, 5));
        cancel_shielding_caller(h);
        run_until([&] { return h.done(); });
        CHECK_FALSE(h.cancelled());
        CHECK(tr.events ==
              std::vector<std::string>{"caller raised cancelled: stop@5", "h done@20"});
    }

    namespace {
    task<> t_already_cancelled(trace& tr) {
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            tr.add("swallowed");
        }
        // A cleanup that would need awaiting cannot be awaited through shield (8a.8).
        co_await shield_and_record(tr, value_after(tr, "cleanup", 10ms, 1));
        tr.add("after shield");
    }
    } // namespace

    TEST_CASE_FIXTURE(
        traced_loop,
        "8a.3 8a.8 a caller whose scope is already cancelled raises at once; the work still "
        "runs") {
        auto p = rt->spawn(t_already_cancelled(tr));
        auto k = rt->spawn(cancel_after(p, 2ms, "stop"));
        run_all();
        CHECK(p.cancelled());
        CHECK(tr.events == std::vector<std::string>{"swallowed@2",
                                                    "caller raised cancelled: stop@2",
                                                    "cleanup done@12"});
    }

    // -----------------------------------------------------------------------------------------
    // 8a.4 Someone else cancels the work

    namespace {
    task<> t_inner_cancelled(trace& tr, task_handle<int> h) {
        try {
            co_await shield(h);
            tr.add("returned");
        } catch (const cancelled_error& e) {
            tr.add("caller got cancelled: " + std::string(e.message()));
        }
        co_await sleep(1ms); // none of the caller's own scopes is cancelled
        tr.add("caller slept");
    }
    } // namespace

    TEST_CASE_FIXTURE(traced_loop,
                      "8a.4 if someone else cancels the shielded work, the caller receives "
                      "cancelled_error") {
        auto h = rt->spawn(park(tr, "h"));
        auto k = rt->spawn(cancel_after(h, 5ms, "by k"));
        run(t_inner_cancelled(tr, h));
        CHECK(h.cancelled());
        CHECK(tr.events == std::vector<std::string>{"h cancelled@5", "caller got cancelled: by k@5",
                                                    "caller slept@6"});
    }

    // -----------------------------------------------------------------------------------------
    // 8a.5 Failure after the caller left

    TEST_CASE_FIXTURE(
        traced_loop,
        "8a.5 a failure of the shielded work after the caller left goes to the exception "
        "handler") {
        check_work_outlives_its_caller(fail_after(tr, "inner", 20ms, 7), "inner fails@20");
        REQUIRE(reported.size() == 1);
        CHECK_THROWS_AS(std::rethrow_exception(reported[0]), my_error);
    }

    TEST_CASE_FIXTURE(traced_loop,
                      "8a.5 a failure the caller awaited is rethrown to it and not reported") {
        CHECK_THROWS_AS(run(shield_and_record(tr, fail_after(tr, "inner", 5ms, 7))), my_error);
        run_all();
        CHECK(tr.events == std::vector<std::string>{"inner fails@5", "caller got my_error 7@5"});
        rt->shutdown();
        CHECK(reported.empty());
    }

    // -----------------------------------------------------------------------------------------
    // 8a.6 The runtime keeps the work alive; shutdown cancels it

    TEST_CASE_FIXTURE(
        traced_loop,
        "8a.6 the runtime keeps the shielded task alive after the caller left, and shutdown "
        "cancels it") {
        cancel_shielding_caller(park(tr, "inner"));
        CHECK(rt->task_count() == 1); // the shielded task, still parked
        CHECK(tr.events == std::vector<std::string>{"caller raised cancelled: stop@5"});
        rt->shutdown();
        CHECK(tr.events ==
              std::vector<std::string>{"caller raised cancelled: stop@5", "inner cancelled@5"});
        CHECK(reported.empty());
    }

    // -----------------------------------------------------------------------------------------
    // 8a.7 timeout(d, shield(t))

    namespace {
    task<> t_timeout_shield(trace& tr) {
        try {
            co_await timeout(10ms, shield(value_after(tr, "inner", 30ms, 5)));
            tr.add("returned");
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        }
        co_await sleep(1ms); // the caller itself is not cancelled
        tr.add("caller slept");
    }
    } // namespace

    TEST_CASE_FIXTURE(traced_loop,
                      "8a.7 timeout(d, shield(t)) throws timeout_error at d while t continues") {
        run(t_timeout_shield(tr));
        CHECK(tr.events == std::vector<std::string>{"timeout_error@10", "caller slept@11"});
        run_all();
        CHECK(tr.events ==
              std::vector<std::string>{"timeout_error@10", "caller slept@11", "inner done@30"});
    }
}
