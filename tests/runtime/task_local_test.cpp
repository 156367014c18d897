// SPDX-License-Identifier: MIT
// task_local<T>: a value per task, copied into the tasks it spawns (asyncio contextvars).
// SEMANTICS 26 (docs/semantics.md).
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using namespace uvasync::test;

using log_t = std::vector<std::string>;

task_local<std::string> request_id{"none"};
task_local<int> depth; // no default

std::string seen() {
    return request_id.get();
}

/// Logs what this task sees, after `d`.
task<std::string> report(loop_clock::duration d) {
    co_await sleep(d);
    co_return seen();
}

task<std::string> report_now() {
    co_return seen();
}

task<> set_inline(std::string v) {
    request_id.set(std::move(v));
    co_return;
}

/// The spawner changes its value after spawning; the child changes its own.
task<log_t> copied_at_spawn() {
    log_t log;
    request_id.set("parent");
    task_handle<log_t> child = spawn([]() -> task<log_t> {
        log_t l{"child starts with " + seen()};
        co_await sleep(1ms);
        l.push_back("child still sees " + seen());
        request_id.set("child");
        l.push_back("child set " + seen());
        co_return l;
    }());
    request_id.set("parent, later");
    log_t from_child = co_await child;
    log.insert(log.end(), from_child.begin(), from_child.end());
    log.push_back("parent sees " + seen());
    co_return log;
}

task<log_t> inline_tasks_share_values() {
    log_t log;
    request_id.set("a");
    log.push_back(co_await report_now()); // an awaited task is a call: same task
    co_await set_inline("b");
    log.push_back(seen());
    co_return log;
}

task<log_t> scoped_values() {
    log_t log;
    log.push_back(seen());
    {
        auto outer = request_id.scoped("outer");
        log.push_back(seen());
        {
            auto inner = request_id.scoped("inner");
            depth.set(2); // another variable set meanwhile stays after the guard ends
            log.push_back(seen());
        }
        log.push_back(seen());
        co_await sleep(1ms); // the guard lives across suspensions
        log.push_back(seen());
    }
    log.push_back(seen());
    log.push_back("depth " + std::to_string(depth.get()));
    co_return log;
}

task<log_t> structured_children() {
    log_t log;
    auto id = request_id.scoped("req-7");
    co_await task_group::run([&log](task_group& g) -> task<> {
        task_handle<std::string> a = g.spawn(report(1ms));
        request_id.set("req-7, changed in the body"); // the body is the spawner here
        task_handle<std::string> b = g.spawn(report(1ms));
        log.push_back("group " + co_await a);
        log.push_back("group " + co_await b);
    });
    request_id.set("req-8");
    auto [x, y] = co_await gather(report(1ms), report_now());
    log.push_back("gather " + x + " " + y);
    completion<std::string> w = co_await wait_any(report(2ms), report(1ms));
    log.push_back("wait_any " + std::to_string(w.index) + " " + w.result.value());
    std::vector<task<std::string>> ts;
    ts.push_back(report(1ms));
    co_await as_completed(std::move(ts), [&log](completions<std::string>& c) -> task<> {
        while (auto r = co_await c.next()) {
            log.push_back("as_completed " + r->result.value());
        }
    });
    co_return log;
}

task<> holds_counted(task_local<counted>& v) {
    v.set(counted{});
    task_handle<> child = spawn([]() -> task<> { co_await sleep(5ms); }());
    co_await sleep(1ms);
    co_await child;
}

task<bool> shares_the_map() {
    depth.set(1);
    detail::task_core* self = detail::current_task();
    task_handle<> child = spawn([]() -> task<> { co_return; }());
    const bool shared = child.state()->locals == self->locals;
    co_await child;
    co_return shared;
}

/// Spawns onto another runtime (on this thread) from a task with values.
task<bool> spawn_elsewhere(runtime& other) {
    request_id.set("here");
    task_handle<std::string> h = other.spawn(report_now());
    const bool none = h.state()->locals == nullptr;
    h.cancel();
    co_return none;
}

} // namespace

TEST_SUITE("task_local") {

    TEST_CASE_FIXTURE(loop_fixture, "outside a task: the default, no value, and set() is "
                                    "invalid_state") {
        CHECK(request_id.get() == "none");
        CHECK(request_id.find() == nullptr);
        CHECK(depth.find() == nullptr);
        CHECK_THROWS_AS((void)depth.get(), invalid_state);
        CHECK_THROWS_AS(request_id.set("x"), invalid_state);
        CHECK_THROWS_AS((void)request_id.scoped("x"), invalid_state);
    }

    TEST_CASE_FIXTURE(loop_fixture, "a task's value is its own; a task<T> it awaits shares it") {
        CHECK(run(inline_tasks_share_values()) == log_t{"a", "b"});
        CHECK(run(report_now()) == "none"); // a new top-level task starts without values
    }

    TEST_CASE_FIXTURE(loop_fixture, "spawn copies the spawner's values at the spawn; later "
                                    "changes on either side are not seen by the other") {
        CHECK(run(copied_at_spawn()) == log_t{"child starts with parent", "child still sees parent",
                                              "child set child", "parent sees parent, later"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "scoped() restores the previous value (or none) when the "
                                    "guard ends, and only its own variable") {
        CHECK(run(scoped_values()) ==
              log_t{"none", "outer", "inner", "outer", "outer", "none", "depth 2"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "task group, gather, wait_any and as_completed children "
                                    "inherit the values of the task that spawns them") {
        CHECK(run(structured_children()) == log_t{"group req-7", "group req-7, changed in the body",
                                                  "gather req-8 req-8", "wait_any 1 req-8",
                                                  "as_completed req-8"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "no values: nothing is allocated per spawn; with values, a "
                                    "child shares the spawner's map until one of them changes") {
        task_handle<std::string> plain = rt->spawn(report_now());
        CHECK(plain.state()->locals == nullptr);
        run_all();
        CHECK(run(shares_the_map()));
    }

    TEST_CASE("a task spawned onto another runtime starts without values") {
        loop_fixture f;
        loop_fixture other; // destroyed first, with the task spawned onto it
        CHECK(f.run(spawn_elsewhere(*other.rt)));
    }

    TEST_CASE_FIXTURE(loop_fixture, "values live as long as the last task state that holds them") {
        task_local<counted> v;
        const auto before = counted::live().load();
        task_handle<> h = rt->spawn(holds_counted(v));
        run_until([&] { return h.done(); });
        CHECK(counted::live().load() == before + 1); // the handle keeps the task's state
        h.detach();
        CHECK(counted::live().load() == before); // both tasks gone: so is the value
    }
}
