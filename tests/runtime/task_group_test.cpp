// SPDX-License-Identifier: MIT
// task_group and exception_group: SEMANTICS.md section 9.
#include <algorithm>
#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
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

/// A second, unrelated error type.
struct other_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::vector<int> codes_of(const std::vector<std::exception_ptr>& errors) {
    std::vector<int> out;
    for (const auto& e : errors) {
        try {
            std::rethrow_exception(e);
        } catch (const my_error& m) {
            out.push_back(m.code);
        } catch (...) {
            out.push_back(-1);
        }
    }
    return out;
}

task<> note_run_void(bool& ran, counted /*param*/) {
    ran = true;
    co_return;
}

task<> fail_now(trace& tr, std::string name, int code) {
    tr.add(name + " fails");
    throw my_error(code);
    co_return;
}

task<> cancel_group_after(task_group& g, trace& tr, loop_clock::duration d) {
    co_await sleep(d);
    tr.add("child calls g.cancel()");
    g.cancel();
}

} // namespace

TEST_SUITE("task_group") {

    // -----------------------------------------------------------------------------------------
    // 9.1 Scope

    namespace {
    task<> t_bounded_body(task_group& g, trace& tr) {
        g.spawn(park(tr, "a"));
        g.spawn(park(tr, "b", 4ms));
        co_await park(tr, "body");
    }

    task<> t_bounded(trace& tr) {
        auto body = [&tr](task_group& g) { return t_bounded_body(g, tr); };
        try {
            co_await timeout(10ms, task_group::run(body));
            tr.add("run returned");
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        }
    }
    } // namespace

    TEST_CASE("9.1 a timeout around the group cancels the body and every child at once") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_bounded(tr));
        CHECK(tr.has("a cancelled@10"));
        CHECK(tr.has("b cancelled@10"));
        CHECK(tr.has("body cancelled@10"));
        CHECK(tr.has("b cleaned up@14"));
        CHECK(tr.events.back() == "timeout_error@14");
        CHECK(tr.events.size() == 5);
    }

    namespace {
    task<> spawn_then_wait(task_group& g, trace& tr, task_handle<int>& child) {
        child = g.spawn(value_after(tr, "child", 20ms, 1));
        co_await sleep(100ms);
    }

    task<> t_spawn_timeout_body(task_group& g, trace& tr, task_handle<int>& child) {
        auto r = co_await move_on_after(5ms, spawn_then_wait(g, tr, child));
        tr.add(r ? "scope completed" : "scope moved on");
    }

    task<> t_spawn_timeout(trace& tr, task_handle<int>& child) {
        auto body = [&tr, &child](task_group& g) { return t_spawn_timeout_body(g, tr, child); };
        co_await task_group::run(body);
        tr.add("group exited");
    }
    } // namespace

    TEST_CASE("9.1 a timeout around a single g.spawn call bounds nothing") {
        trace tr;
        loop_fixture f;
        task_handle<int> child;
        tr.t0 = f.now();
        f.run(t_spawn_timeout(tr, child));
        CHECK(tr.events ==
              std::vector<std::string>{"scope moved on@5", "child done@20", "group exited@20"});
        REQUIRE(child.done());
        CHECK_FALSE(child.cancelled());
    }

    // -----------------------------------------------------------------------------------------
    // 9.2 g.spawn

    namespace {
    /// The group object exists only inside `task_group::run` in this API, so "spawn before the
    /// group runs" can only be written against a shape where a group can be created first (as
    /// asyncio's `TaskGroup()` is created before `async with`).
    template <class G>
    void spawn_before_run(bool& ran) {
        if constexpr (std::is_default_constructible_v<G>) {
            G g;
            CHECK_THROWS_AS(g.spawn(note_run_void(ran, counted{})), invalid_state);
        } else {
            FAIL_CHECK("API missing: a task_group cannot be reached before it runs or after it "
                       "finished (it lives only inside task_group::run), so SEMANTICS 9.2 "
                       "'spawn before run / after finish is invalid_state' is untestable");
        }
    }
    } // namespace

    TEST_CASE("9.2 a group exists only inside run(), and spawning into a set that is not "
              "running is invalid_state and the task never runs") {
        // The public API cannot name a group before run() or after it: no public constructor,
        // no copy, no move (docs/decisions/0006-task-group-lifetime.md).
        static_assert(!std::is_default_constructible_v<task_group>);
        static_assert(!std::is_copy_constructible_v<task_group>);
        static_assert(!std::is_move_constructible_v<task_group>);
        // The guard underneath, on the structured core that task_group and gather share.
        bool ran = false;
        loop_fixture f;
        f.run([](bool& r) -> task<> {
            detail::gather_set before(true);
            CHECK_THROWS_AS(before.spawn(note_run_void(r, counted{})), invalid_state);
            detail::gather_set after(true);
            after.enter(detail::current_task());
            after.leave();
            CHECK_THROWS_AS(after.spawn(note_run_void(r, counted{})), invalid_state);
            co_return;
        }(ran));
        CHECK_FALSE(ran);
    }

    namespace {
    task<int> t_cancelled_spawn_body(task_group& g, bool& ran, task_handle<>& late) {
        CHECK_FALSE(g.cancelled());
        g.cancel();
        CHECK(g.cancelled());
        late = g.spawn(note_run_void(ran, counted{}));
        co_return 7;
    }
    } // namespace

    TEST_CASE("9.2 a child spawned after g.cancel() is born cancelled, never runs and is "
              "ignored") {
        bool ran = false;
        loop_fixture f;
        task_handle<> late;
        auto body = [&ran, &late](task_group& g) { return t_cancelled_spawn_body(g, ran, late); };
        auto scenario = [](decltype(body)& b) -> task<int> {
            co_return co_await task_group::run(b);
        };
        CHECK(f.run(scenario(body)) == 7);
        CHECK_FALSE(ran);
        REQUIRE(late.done());
        CHECK(late.cancelled());
    }

    namespace {
    task<> t_spawn_after_failure_body(task_group& g, trace& tr, bool& ran, task_handle<>& late) {
        g.spawn(fail_after(tr, "a", 5ms, 1));
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            tr.add("body cancelled");
            late = g.spawn(note_run_void(ran, counted{}));
            throw;
        }
    }

    task<std::vector<int>> t_spawn_after_failure(trace& tr, bool& ran, task_handle<>& late) {
        auto body = [&](task_group& g) { return t_spawn_after_failure_body(g, tr, ran, late); };
        try {
            co_await task_group::run(body);
        } catch (const exception_group& eg) {
            co_return codes_of(eg.exceptions());
        }
        co_return std::vector<int>{};
    }
    } // namespace

    TEST_CASE("9.2 a child spawned after a failure cancelled the group never runs and is not an "
              "error") {
        trace tr;
        bool ran = false;
        loop_fixture f;
        task_handle<> late;
        tr.t0 = f.now();
        CHECK(f.run(t_spawn_after_failure(tr, ran, late)) == std::vector<int>{1});
        CHECK(tr.events == std::vector<std::string>{"a fails@5", "body cancelled@5"});
        CHECK_FALSE(ran);
        REQUIRE(late.done());
        CHECK(late.cancelled());
    }

    namespace {
    task<> t_spawn_enclosing_body(task_group& g, trace& tr, bool& ran, task_handle<>& late) {
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            tr.add("body cancelled");
            CHECK(g.cancelled()); // the enclosing cancellation reaches the group scope
            late = g.spawn(note_run_void(ran, counted{}));
            throw;
        }
    }

    task<> t_spawn_enclosing(trace& tr, bool& ran, task_handle<>& late) {
        auto body = [&](task_group& g) { return t_spawn_enclosing_body(g, tr, ran, late); };
        auto r = co_await move_on_after(5ms, task_group::run(body));
        tr.add(r ? "completed" : "moved on");
    }
    } // namespace

    TEST_CASE("9.2 a child spawned while an enclosing scope is cancelled is born cancelled and "
              "never runs") {
        trace tr;
        bool ran = false;
        loop_fixture f;
        task_handle<> late;
        tr.t0 = f.now();
        f.run(t_spawn_enclosing(tr, ran, late));
        CHECK(tr.events == std::vector<std::string>{"body cancelled@5", "moved on@5"});
        CHECK_FALSE(ran);
        REQUIRE(late.done());
        CHECK(late.cancelled());
    }

    namespace {
    task<> t_born_cancelled_body(task_group& g, bool& ran, task_handle<>& late) {
        late = g.spawn(note_run_void(ran, counted{}));
        co_return; // returns normally: no cancellation point in the body
    }

    task<> t_born_cancelled(trace& tr, bool& ran, task_handle<>& late) {
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            tr.add("swallowed"); // the task scope stays cancelled (D-1)
        }
        auto body = [&](task_group& g) { return t_born_cancelled_body(g, ran, late); };
        try {
            co_await task_group::run(body);
            tr.add("run returned");
        } catch (const cancelled_error& e) {
            tr.add("run raised cancelled: " + std::string(e.message()));
            throw;
        }
    }
    } // namespace

    TEST_CASE("9.2 9.8.4 a group opened in a cancelled task: its children are born cancelled and "
              "its exit raises") {
        trace tr;
        bool ran = false;
        loop_fixture f;
        task_handle<> late;
        tr.t0 = f.now();
        auto h = f.rt->spawn(t_born_cancelled(tr, ran, late));
        auto k = f.rt->spawn(cancel_after(h, 3ms, "stop"));
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(tr.events == std::vector<std::string>{"swallowed@3", "run raised cancelled: stop@3"});
        CHECK_FALSE(ran);
        REQUIRE(late.done());
        CHECK(late.cancelled());
    }

    namespace {
    task<> spawner_child(task_group& g, trace& tr) {
        co_await sleep(5ms);
        g.spawn(value_after(tr, "grandchild", 20ms, 2));
        tr.add("child spawned grandchild");
    }

    task<> outsider(task_group& g, trace& tr) {
        co_await sleep(10ms); // the group is still waiting for the grandchild until 25
        g.spawn(value_after(tr, "outsider's child", 5ms, 3));
        tr.add("outsider spawned");
    }

    task<> t_spawn_at_exit_body(task_group& g, runtime& rt, trace& tr, task_handle<>& outside) {
        g.spawn(spawner_child(g, tr));
        outside = rt.spawn(outsider(g, tr));
        tr.add("body returns");
        co_return;
    }

    task<> t_spawn_at_exit(runtime& rt, trace& tr, task_handle<>& outside) {
        auto body = [&](task_group& g) { return t_spawn_at_exit_body(g, rt, tr, outside); };
        co_await task_group::run(body);
        tr.add("group exited");
    }
    } // namespace

    TEST_CASE("9.2 9.3 children and other tasks may spawn while the group waits at its exit, and "
              "the exit waits for them") {
        trace tr;
        loop_fixture f;
        task_handle<> outside;
        tr.t0 = f.now();
        f.run(t_spawn_at_exit(*f.rt, tr, outside));
        CHECK(tr.events == std::vector<std::string>{"body returns@0", "child spawned grandchild@5",
                                                    "outsider spawned@10",
                                                    "outsider's child done@15",
                                                    "grandchild done@25", "group exited@25"});
        CHECK(outside.done());
    }

    // -----------------------------------------------------------------------------------------
    // 9.3 Exit waits for all children

    namespace {
    task<> t_exit_cleanup_body(task_group& g, trace& tr) {
        g.spawn(park(tr, "a", 20ms));
        g.spawn(park(tr, "b", 5ms));
        tr.add("body returns");
        co_return;
    }

    task<> t_exit_cleanup(trace& tr) {
        auto body = [&tr](task_group& g) { return t_exit_cleanup_body(g, tr); };
        try {
            co_await timeout(10ms, task_group::run(body));
            tr.add("run returned");
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        }
    }
    } // namespace

    TEST_CASE("9.3 the exit waits for children doing slow shielded cleanup") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_exit_cleanup(tr));
        REQUIRE(tr.events.size() == 6);
        CHECK(tr.events[0] == "body returns@0");
        CHECK(tr.has("a cancelled@10"));
        CHECK(tr.has("b cancelled@10"));
        CHECK(tr.events[3] == "b cleaned up@15");
        CHECK(tr.events[4] == "a cleaned up@30");
        CHECK(tr.events[5] == "timeout_error@30");
    }

    namespace {
    task<> t_exit_uninterruptible_body(task_group& g, trace& tr) {
        g.spawn(park(tr, "a", 20ms));
        co_return;
    }

    task<> t_exit_uninterruptible(trace& tr) {
        auto body = [&tr](task_group& g) { return t_exit_uninterruptible_body(g, tr); };
        try {
            co_await task_group::run(body);
            tr.add("run returned");
        } catch (const cancelled_error& e) {
            tr.add("run raised cancelled: " + std::string(e.message()));
            throw;
        }
    }
    } // namespace

    TEST_CASE("9.3 cancelling the parent while the group waits at its exit reaches the children "
              "and the exit keeps waiting") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(t_exit_uninterruptible(tr));
        auto k = f.rt->spawn(cancel_after(h, 5ms, "stop"));
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(tr.events == std::vector<std::string>{"a cancelled@5", "a cleaned up@25",
                                                    "run raised cancelled: stop@25"});
    }

    // -----------------------------------------------------------------------------------------
    // 9.4 First failure, 9.5 cancelled children, 9.6 later failures, 9.7 the body's error

    namespace {
    task<> t_first_failure_body(task_group& g, trace& tr) {
        g.spawn(fail_after(tr, "a", 5ms, 1));
        g.spawn(park(tr, "b"));
        co_await park(tr, "body");
    }

    task<std::vector<int>> t_first_failure(trace& tr) {
        auto body = [&tr](task_group& g) { return t_first_failure_body(g, tr); };
        try {
            co_await task_group::run(body);
        } catch (const exception_group& eg) {
            tr.add("exception_group");
            co_return codes_of(eg.exceptions());
        }
        co_return std::vector<int>{};
    }
    } // namespace

    TEST_CASE("9.4 the first child failure cancels the siblings and the body") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_first_failure(tr)) == std::vector<int>{1});
        REQUIRE(tr.events.size() == 4);
        CHECK(tr.events[0] == "a fails@5");
        CHECK(tr.has("b cancelled@5"));
        CHECK(tr.has("body cancelled@5"));
        CHECK(tr.events[3] == "exception_group@5");
    }

    namespace {
    task<int> t_cancelled_child_body(task_group& g, trace& tr, bool& group_cancelled) {
        auto a = g.spawn(park(tr, "a"));
        g.spawn(value_after(tr, "b", 10ms, 2));
        co_await sleep(2ms);
        a.cancel("just a");
        co_await sleep(13ms);
        group_cancelled = g.cancelled();
        tr.add("body done");
        co_return 3;
    }

    task<int> t_cancelled_child(trace& tr, bool& group_cancelled) {
        auto body = [&](task_group& g) { return t_cancelled_child_body(g, tr, group_cancelled); };
        co_return co_await task_group::run(body);
    }
    } // namespace

    TEST_CASE("9.5 a child that ends cancelled is not an error and cancels nothing") {
        trace tr;
        bool group_cancelled = true;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_cancelled_child(tr, group_cancelled)) == 3);
        CHECK_FALSE(group_cancelled);
        CHECK(tr.events == std::vector<std::string>{"a cancelled@2", "b done@10", "body done@15"});
        CHECK(f.reported.empty());
    }

    namespace {
    task<> t_later_failures_body(task_group& g, trace& tr) {
        g.spawn(fail_on_cancel(tr, "c", 5ms, 3)); // spawn order is not completion order
        g.spawn(fail_after(tr, "a", 5ms, 1));
        g.spawn(fail_on_cancel(tr, "b", {}, 2));
        co_await park(tr, "body");
    }

    task<std::vector<int>> t_later_failures(trace& tr) {
        auto body = [&tr](task_group& g) { return t_later_failures_body(g, tr); };
        try {
            co_await task_group::run(body);
        } catch (const exception_group& eg) {
            tr.add("exception_group");
            co_return codes_of(eg.exceptions());
        }
        co_return std::vector<int>{};
    }
    } // namespace

    TEST_CASE("9.6 9.8.2 later failures, including errors raised by cleanup after the abort, are "
              "recorded in completion order") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_later_failures(tr)) == std::vector<int>{1, 2, 3});
        CHECK(tr.events.front() == "a fails@5");
        CHECK(tr.has("b fails@5"));
        CHECK(tr.has("c fails@10"));
        CHECK(tr.events.back() == "exception_group@10");
        CHECK(f.reported.empty());
    }

    namespace {
    task<> t_body_error_body(task_group& g, trace& tr) {
        g.spawn(fail_on_cancel(tr, "a", 5ms, 1));
        co_await sleep(2ms);
        tr.add("body fails");
        throw my_error(100);
    }

    task<std::vector<int>> t_body_error(trace& tr) {
        auto body = [&tr](task_group& g) { return t_body_error_body(g, tr); };
        try {
            co_await task_group::run(body);
        } catch (const exception_group& eg) {
            tr.add("exception_group");
            co_return codes_of(eg.exceptions());
        }
        co_return std::vector<int>{};
    }
    } // namespace

    TEST_CASE("9.7 the body's error cancels the children and is recorded after their errors") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_body_error(tr)) == std::vector<int>{1, 100});
        CHECK(tr.events == std::vector<std::string>{"body fails@2", "a cancelled@2", "a fails@7",
                                                    "exception_group@7"});
    }

    // -----------------------------------------------------------------------------------------
    // 9.8 Result of the exit

    namespace {
    task<> t_dropped_cancel_body(task_group& g, trace& tr) {
        g.spawn(fail_on_cancel(tr, "a", {}, 1));
        co_await park(tr, "body");
    }

    task<> t_dropped_cancel(trace& tr) {
        auto body = [&tr](task_group& g) { return t_dropped_cancel_body(g, tr); };
        try {
            co_await task_group::run(body);
        } catch (const exception_group& eg) {
            tr.add("exception_group of " + std::to_string(eg.size()));
            CHECK_FALSE(eg.contains<cancelled_error>());
            CHECK(codes_of(eg.exceptions()) == std::vector<int>{1});
        }
        co_await next_cancellation_point(tr);
    }
    } // namespace

    TEST_CASE("9.8.2 a cancelled_error leaving the body beside recorded errors is dropped, and the "
              "enclosing cancellation still raises at the next cancellation point") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(t_dropped_cancel(tr));
        auto k = f.rt->spawn(cancel_after(h, 5ms, "outer"));
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        REQUIRE(tr.events.size() == 5);
        CHECK(tr.has("a cancelled@5"));
        CHECK(tr.has("body cancelled@5"));
        CHECK(tr.has("a fails@5"));
        CHECK(tr.events[3] == "exception_group of 1@5");
        CHECK(tr.events[4] == "next cancellation point raised: outer@5");
    }

    namespace {
    task<> t_owned_cancel_body(task_group& g, trace& tr) {
        g.spawn(cancel_group_after(g, tr, 5ms));
        g.spawn(park(tr, "b"));
        co_await park(tr, "body");
    }

    task<> t_owned_cancel(trace& tr) {
        auto body = [&tr](task_group& g) { return t_owned_cancel_body(g, tr); };
        co_await task_group::run(body);
        tr.add("run returned");
        co_await sleep(1ms);
        tr.add("parent slept");
    }
    } // namespace

    TEST_CASE("9.8.3 9.11 a cancellation the group owns (g.cancel() from a child) is absorbed") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_owned_cancel(tr));
        REQUIRE(tr.events.size() == 5);
        CHECK(tr.events[0] == "child calls g.cancel()@5");
        CHECK(tr.has("b cancelled@5"));
        CHECK(tr.has("body cancelled@5"));
        CHECK(tr.events[3] == "run returned@5");
        CHECK(tr.events[4] == "parent slept@6");
    }

    namespace {
    task<> t_foreign_cancel_body(task_group& g, trace& tr) {
        g.spawn(park(tr, "a"));
        co_await park(tr, "body");
    }

    task<> t_foreign_cancel(trace& tr) {
        auto body = [&tr](task_group& g) { return t_foreign_cancel_body(g, tr); };
        try {
            co_await task_group::run(body);
            tr.add("run returned");
        } catch (const cancelled_error& e) {
            tr.add("run raised cancelled: " + std::string(e.message()));
            throw;
        }
    }
    } // namespace

    TEST_CASE("9.8.3 a cancellation the group does not own is rethrown toward its owner") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto h = f.rt->spawn(t_foreign_cancel(tr));
        auto k = f.rt->spawn(cancel_after(h, 5ms, "outer"));
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        REQUIRE(tr.events.size() == 3);
        CHECK(tr.has("a cancelled@5"));
        CHECK(tr.has("body cancelled@5"));
        CHECK(tr.events[2] == "run raised cancelled: outer@5");
    }

    namespace {
    task<> t_enclosing_at_exit_body(task_group& g, trace& tr) {
        g.spawn(park(tr, "a"));
        tr.add("body returns");
        co_return;
    }

    task<> t_enclosing_at_exit(trace& tr) {
        auto body = [&tr](task_group& g) { return t_enclosing_at_exit_body(g, tr); };
        try {
            co_await timeout(10ms, task_group::run(body));
            tr.add("timeout returned normally");
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        }
    }
    } // namespace

    TEST_CASE("9.8.4 the body returned normally but an enclosing timeout expired: the exit raises "
              "and the timeout converts") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_enclosing_at_exit(tr));
        CHECK(tr.events ==
              std::vector<std::string>{"body returns@0", "a cancelled@10", "timeout_error@10"});
    }

    namespace {
    task<> t_cancel_vs_timeout_body(task_group& g, trace& tr) {
        g.spawn(park(tr, "a"));
        co_await sleep(1ms);
        g.cancel();                     // the group's own cancellation ...
        co_await shielded(sleep(20ms)); // ... while the enclosing timeout expires at 10
        tr.add("body returns");
    }

    task<> t_cancel_vs_timeout(trace& tr) {
        auto body = [&tr](task_group& g) { return t_cancel_vs_timeout_body(g, tr); };
        try {
            co_await timeout(10ms, task_group::run(body));
            tr.add("timeout returned normally");
        } catch (const timeout_error&) {
            tr.add("timeout_error");
        }
    }
    } // namespace

    TEST_CASE("9.8.4 g.cancel() does not eat an enclosing timeout (gh-155433)") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_cancel_vs_timeout(tr));
        CHECK(tr.events ==
              std::vector<std::string>{"a cancelled@1", "body returns@21", "timeout_error@21"});
    }

    TEST_CASE("9.8.5 with no error and no cancellation the group returns the body's value after "
              "its children") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        auto scenario = [](trace& t) -> task<int> {
            auto body = [&t](task_group& g) -> task<int> {
                g.spawn(value_after(t, "a", 10ms, 1));
                return [](trace& t2) -> task<int> {
                    t2.add("body returns");
                    co_return 42;
                }(t);
            };
            const int v = co_await task_group::run(body);
            t.add("run returned");
            co_return v;
        };
        CHECK(f.run(scenario(tr)) == 42);
        CHECK(tr.events ==
              std::vector<std::string>{"body returns@0", "a done@10", "run returned@10"});
    }

    // -----------------------------------------------------------------------------------------
    // 9.9 The group's own cancellation ends at its exit

    namespace {
    task<> t_cancel_ends_body(task_group& g, trace& tr) {
        g.spawn(park(tr, "a"));
        co_await sleep(5ms);
        g.cancel();
        co_await park(tr, "body");
    }

    task<> t_cancel_ends(trace& tr, bool& token_cancelled) {
        auto body = [&tr](task_group& g) { return t_cancel_ends_body(g, tr); };
        co_await task_group::run(body);
        token_cancelled = current_token().cancel_requested();
        tr.add("run returned");
        co_await sleep(5ms);
        co_await yield();
        tr.add("parent slept");
    }
    } // namespace

    TEST_CASE("9.9 the group's own cancellation ends at its exit and does not affect the parent") {
        trace tr;
        bool token_cancelled = true;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_cancel_ends(tr, token_cancelled));
        CHECK_FALSE(token_cancelled);
        CHECK(tr.events.size() == 4);
        CHECK(tr.events[2] == "run returned@5");
        CHECK(tr.events[3] == "parent slept@10");
    }

    // -----------------------------------------------------------------------------------------
    // 9.10 Nested groups failing at the same time

    namespace {
    task<> t_nested_inner_body(task_group& g, trace& tr) {
        g.spawn(fail_after(tr, "inner child", 5ms, 2));
        co_await park(tr, "inner body");
    }

    task<> t_nested_outer_body(task_group& g, trace& tr) {
        g.spawn(fail_after(tr, "outer child", 5ms, 1));
        auto inner = [&tr](task_group& g2) { return t_nested_inner_body(g2, tr); };
        co_await task_group::run(inner);
        tr.add("after inner group");
    }

    task<std::optional<exception_group>> t_nested(trace& tr) {
        auto outer = [&tr](task_group& g) { return t_nested_outer_body(g, tr); };
        try {
            co_await task_group::run(outer);
        } catch (const exception_group& eg) {
            co_return eg;
        }
        co_return std::nullopt;
    }
    } // namespace

    TEST_CASE("9.10 nested groups failing at once: the inner exception_group is the outer body's "
              "error") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        const std::optional<exception_group> eg = f.run(t_nested(tr));
        REQUIRE(eg.has_value());
        REQUIRE(eg->size() == 2);
        CHECK(codes_of({eg->exceptions()[0]}) == std::vector<int>{1});
        try {
            std::rethrow_exception(eg->exceptions()[1]); // the body's error comes last
        } catch (const exception_group& inner) {
            CHECK(codes_of(inner.exceptions()) == std::vector<int>{2});
        } catch (...) {
            FAIL("the outer body's error is not the inner exception_group");
        }
        CHECK(eg->matching<my_error>().size() == 2);
        CHECK_FALSE(tr.has("after inner group@5"));
        CHECK(tr.has("outer child fails@5"));
        CHECK(tr.has("inner child fails@5"));
    }

    namespace {
    task<> t_swallow_inner_body(task_group& g, trace& tr) {
        g.spawn(park(tr, "inner child"));
        co_await park(tr, "inner body");
    }

    task<> t_swallow_outer_body(task_group& g, trace& tr) {
        g.spawn(fail_after(tr, "outer child", 5ms, 1));
        auto inner = [&tr](task_group& g2) { return t_swallow_inner_body(g2, tr); };
        try {
            co_await task_group::run(inner);
            tr.add("inner group returned");
        } catch (const cancelled_error&) {
            tr.add("inner group raised cancelled");
            throw;
        }
        co_await sleep(100ms); // would be reached only if the inner group swallowed the cancel
    }

    task<std::vector<int>> t_swallow(trace& tr) {
        auto outer = [&tr](task_group& g) { return t_swallow_outer_body(g, tr); };
        try {
            co_await task_group::run(outer);
        } catch (const exception_group& eg) {
            tr.add("outer exception_group");
            co_return codes_of(eg.exceptions());
        }
        co_return std::vector<int>{};
    }
    } // namespace

    TEST_CASE("9.10 an inner group does not swallow the outer group's cancellation (gh-116720)") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_swallow(tr)) == std::vector<int>{1});
        REQUIRE(tr.events.size() == 5);
        CHECK(tr.events[0] == "outer child fails@5");
        CHECK(tr.has("inner child cancelled@5"));
        CHECK(tr.has("inner body cancelled@5"));
        CHECK(tr.events[3] == "inner group raised cancelled@5");
        CHECK(tr.events[4] == "outer exception_group@5");
    }

    // -----------------------------------------------------------------------------------------
    // 9.11 g.cancel()

    namespace {
    task<> t_cancel_idempotent_body(task_group& g, trace& tr, std::vector<bool>& seen) {
        g.spawn(park(tr, "a"));
        g.spawn(park(tr, "b"));
        co_await sleep(5ms);
        seen.push_back(g.cancelled());
        g.cancel();
        seen.push_back(g.cancelled());
        g.cancel();
        seen.push_back(g.cancelled());
        co_await park(tr, "body");
    }

    task<> t_cancel_idempotent(trace& tr, std::vector<bool>& seen) {
        auto body = [&](task_group& g) { return t_cancel_idempotent_body(g, tr, seen); };
        co_await task_group::run(body);
        tr.add("run returned");
    }
    } // namespace

    TEST_CASE("9.11 g.cancel() cancels the body and every child, is idempotent, and the group "
              "exits without error") {
        trace tr;
        std::vector<bool> seen;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_cancel_idempotent(tr, seen));
        CHECK(seen == std::vector<bool>{false, true, true});
        REQUIRE(tr.events.size() == 4);
        CHECK(tr.has("a cancelled@5"));
        CHECK(tr.has("b cancelled@5"));
        CHECK(tr.has("body cancelled@5"));
        CHECK(tr.events[3] == "run returned@5");
        CHECK(f.reported.empty());
    }

    namespace {
    task<> t_cancel_with_errors_body(task_group& g, trace& tr) {
        g.spawn(fail_on_cancel(tr, "a", 3ms, 1));
        co_await sleep(2ms);
        g.cancel();
        co_await park(tr, "body");
    }

    task<std::vector<int>> t_cancel_with_errors(trace& tr) {
        auto body = [&tr](task_group& g) { return t_cancel_with_errors_body(g, tr); };
        try {
            co_await task_group::run(body);
        } catch (const exception_group& eg) {
            tr.add("exception_group");
            co_return codes_of(eg.exceptions());
        }
        co_return std::vector<int>{};
    }
    } // namespace

    TEST_CASE("9.11 after g.cancel() an error raised by a child's cleanup is still reported as an "
              "exception_group") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        CHECK(f.run(t_cancel_with_errors(tr)) == std::vector<int>{1});
        CHECK(tr.has("a fails@5"));
        CHECK(tr.events.back() == "exception_group@5");
    }

    // -----------------------------------------------------------------------------------------
    // 9.12 Children that fail at once

    namespace {
    task<> t_fail_first_step_body(task_group& g, trace& tr) {
        g.spawn(fail_now(tr, "a", 1));
        g.spawn(park(tr, "b"));
        co_await park(tr, "body");
    }

    task<> t_fail_first_step(trace& tr) {
        auto body = [&tr](task_group& g) { return t_fail_first_step_body(g, tr); };
        try {
            co_await task_group::run(body);
        } catch (const exception_group& eg) {
            tr.add("exception_group " + std::to_string(codes_of(eg.exceptions()).at(0)));
        }
        co_await sleep(3ms); // the parent itself was never cancelled
        tr.add("parent slept");
    }
    } // namespace

    TEST_CASE("9.12 a child that fails in its very first step is recorded, and the parent task is "
              "not cancelled") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        f.run(t_fail_first_step(tr));
        // b was cancelled before its first step, so it never ran (SEMANTICS 2.7).
        CHECK(tr.events == std::vector<std::string>{"a fails@0", "body cancelled@0",
                                                    "exception_group 1@0", "parent slept@3"});
    }

    // -----------------------------------------------------------------------------------------
    // exception_group queries

    namespace {
    exception_group sample_group() {
        exception_group inner(
            {std::make_exception_ptr(my_error(2)), std::make_exception_ptr(other_error("b"))});
        return exception_group({std::make_exception_ptr(my_error(1)),
                                std::make_exception_ptr(inner),
                                std::make_exception_ptr(std::logic_error("c"))});
    }
    } // namespace

    TEST_CASE("exception_group keeps its errors in order and contains() searches nested groups") {
        loop_fixture f;
        const exception_group eg = sample_group();
        REQUIRE(eg.size() == 3);
        CHECK(codes_of({eg.exceptions()[0]}) == std::vector<int>{1});
        CHECK(eg.contains<my_error>());
        CHECK(eg.contains<other_error>()); // only inside the nested group
        CHECK(eg.contains<std::logic_error>());
        CHECK(eg.contains<std::runtime_error>());
        CHECK_FALSE(eg.contains<std::out_of_range>());
        CHECK_FALSE(eg.contains<cancelled_error>());
    }

    TEST_CASE("exception_group matching() and for_each() visit every error of a type, depth "
              "first") {
        loop_fixture f;
        const exception_group eg = sample_group();
        CHECK(codes_of(eg.matching<my_error>()) == std::vector<int>{1, 2});
        CHECK(eg.matching<other_error>().size() == 1);
        CHECK(eg.matching<std::out_of_range>().empty());
        std::vector<int> visited;
        eg.for_each<my_error>([&](const my_error& e) { visited.push_back(e.code); });
        CHECK(visited == std::vector<int>{1, 2});
        std::vector<std::string> others;
        eg.for_each<other_error>([&](const other_error& e) { others.emplace_back(e.what()); });
        CHECK(others == std::vector<std::string>{"b"});
    }

    TEST_CASE("exception_group split() separates the errors of a type from the rest") {
        loop_fixture f;
        const exception_group eg = sample_group();
        auto [mine, rest] = eg.split<my_error>();
        REQUIRE(mine.has_value());
        REQUIRE(rest.has_value());
        CHECK(codes_of(mine->exceptions()) == std::vector<int>{1, 2});
        CHECK(rest->size() == 2);
        CHECK(rest->contains<other_error>());
        CHECK(rest->contains<std::logic_error>());
        CHECK_FALSE(rest->contains<my_error>());

        auto [none, all] = eg.split<std::out_of_range>();
        CHECK_FALSE(none.has_value());
        REQUIRE(all.has_value());
        CHECK(all->size() == 4);

        auto [runtime_errors, logic] = eg.split<std::runtime_error>();
        REQUIRE(runtime_errors.has_value());
        CHECK(runtime_errors->size() == 3);
        REQUIRE(logic.has_value());
        CHECK(logic->size() == 1);
    }

    namespace {
    task<> t_query_inner_body(task_group& g, trace& tr) {
        g.spawn(fail_after(tr, "c", 5ms, 2));
        g.spawn([](trace& t) -> task<> {
            try {
                co_await sleep_until(never);
            } catch (const cancelled_error&) {
                t.add("d cancelled");
            }
            throw other_error("d");
        }(tr));
        co_await park(tr, "inner body");
    }

    task<> t_query_outer_body(task_group& g, trace& tr) {
        g.spawn(fail_after(tr, "a", 5ms, 1));
        auto inner = [&tr](task_group& g2) { return t_query_inner_body(g2, tr); };
        co_await task_group::run(inner);
    }

    task<std::optional<exception_group>> t_query(trace& tr) {
        auto outer = [&tr](task_group& g) { return t_query_outer_body(g, tr); };
        try {
            co_await task_group::run(outer);
        } catch (const exception_group& eg) {
            co_return eg;
        }
        co_return std::nullopt;
    }
    } // namespace

    TEST_CASE("exception_group queries work on the errors of real nested groups") {
        trace tr;
        loop_fixture f;
        tr.t0 = f.now();
        const std::optional<exception_group> eg = f.run(t_query(tr));
        REQUIRE(eg.has_value());
        CHECK(eg->contains<my_error>());
        CHECK(eg->contains<other_error>());
        auto codes = codes_of(eg->matching<my_error>());
        std::sort(codes.begin(), codes.end());
        CHECK(codes == std::vector<int>{1, 2});
        int others = 0;
        eg->for_each<other_error>([&](const other_error&) { ++others; });
        CHECK(others == 1);
        auto [mine, rest] = eg->split<my_error>();
        REQUIRE(mine.has_value());
        CHECK(mine->size() == 2);
        REQUIRE(rest.has_value());
        CHECK(rest->size() == 1);
        CHECK(f.reported.empty());
    }
}
