// SPDX-License-Identifier: MIT
// Introspection (docs/introspection.md): task names, runtime::tasks(), the task tree dump and
// its signal, and the tracer's events (trace.hpp), all on the virtual clock.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"

#include <unistd.h>

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::loop_fixture;

task<> nap(loop_clock::duration d) {
    co_await sleep(d);
}

task<> acquire_under_timeout(semaphore& s) {
    const semaphore::permit p = co_await timeout(5s, s.acquire());
}

task<> inner_wait(event& e) {
    co_await e.wait();
}

task<> outer_wait(event& e) {
    co_await inner_wait(e);
}

/// The lines of the golden dump's named spawns, taken where they are (the dump prints each
/// spawn site), so the expected text does not depend on where this file's lines fall.
struct golden_lines {
    int main = 0;
    int napper = 0;
    int acquirer = 0;
};

golden_lines golden_at;

/// The program of the golden dump: a named main task owning a task group with two named
/// children, one unnamed task it spawned on its own, and itself parked on an event two task
/// frames deep inside a move_on scope.
task<> golden_main(semaphore& sem, event& stop, task_handle<>& loose) {
    loose = spawn(nap(10s));
    auto body = [&](task_group& g) -> task<> {
        golden_at.napper = __LINE__ + 1;
        g.spawn(nap(2s), "napper");
        golden_at.acquirer = __LINE__ + 1;
        g.spawn(acquire_under_timeout(sem), "acquirer");
        co_await move_on_after(3s, outer_wait(stop));
        g.cancel();
    };
    co_await task_group::run(body);
    loose.cancel();
}

std::size_t parked(const runtime& rt) {
    std::size_t n = 0;
    for (const task_snapshot& t : rt.tasks()) {
        n += t.status == task_status::parked ? 1 : 0;
    }
    return n;
}

} // namespace

TEST_CASE("the dump of a known program (the example of docs/introspection.md)") {
    loop_fixture fx(loop_fixture::manual_clock());
    semaphore sem(0);
    event stop;
    task_handle<> loose;
    golden_at.main = __LINE__ + 1;
    task_handle<> main = fx.rt->spawn(golden_main(sem, stop, loose), "main");
    fx.run_until([&] { return parked(*fx.rt) == 4; });
    fx.rt->advance(1s);
    const std::string text = fx.rt->dump();
    const auto at = [](int line) { return "at introspection_test.cpp:" + std::to_string(line); };
    CHECK(text == R"(uvasync runtime: 4 tasks, virtual clock at 1000 ms
task #1 "main" parked, )" +
                      at(golden_at.main) + R"(
  scope timeout #6, deadline 3000 ms, remaining 2000 ms
  scope group #3
  parked on event, 5 task frames deep
  group #3
    task #4 "napper" parked, spawned by #1, )" +
                      at(golden_at.napper) + R"(
      parked on sleep until 2000 ms
    task #5 "acquirer" parked, spawned by #1, )" +
                      at(golden_at.acquirer) + R"(
      scope timeout #7, deadline 5000 ms, remaining 4000 ms
      parked on semaphore
task #2 parked, spawned by #1
  parked on sleep until 10000 ms
)");
    CHECK(golden_at.napper > 0); // the lines were taken where the spawns are
    stop.set();
    fx.run_until([&] { return main.done(); });
    main.result(); // the group absorbed its own cancel()
    CHECK(main.done());
}

namespace {

const task_snapshot& find(const std::vector<task_snapshot>& ts, std::uint64_t id) {
    for (const task_snapshot& t : ts) {
        if (t.id == id) {
            return t;
        }
    }
    FAIL("no task #" << id);
    throw std::logic_error("unreachable");
}

task<> lock_and_wait(mutex& m, event& e) {
    const mutex::guard g = co_await m.lock();
    co_await e.wait();
}

task<> lock_only(mutex& m) {
    const mutex::guard g = co_await m.lock();
}

task<> join_other(task_handle<> other) {
    co_await other;
}

task<> rename_self(std::string& seen) {
    CHECK(current_task_name().empty());
    set_current_task_name("renamed");
    seen = current_task_name();
    co_await sleep(1h);
}

task<> ask_status(const runtime& rt, std::vector<task_snapshot>& out) {
    out = rt.tasks();
    co_return;
}

} // namespace

TEST_CASE("tasks(): ids, names, spawned-by, groups, statuses and parked kinds") {
    loop_fixture fx(loop_fixture::manual_clock());
    semaphore sem(0);
    mutex m;
    event e;
    task_handle<> sleeper = fx.rt->spawn(nap(1h), "sleeper");
    task_handle<> acquirer = fx.rt->spawn(acquire_under_timeout(sem));
    task_handle<> holder = fx.rt->spawn(lock_and_wait(m, e), "holder");
    task_handle<> locker = fx.rt->spawn(lock_only(m), "locker");
    task_handle<> joiner = fx.rt->spawn(join_other(sleeper), "joiner");
    std::string seen;
    task_handle<> renamed = fx.rt->spawn(rename_self(seen));
    CHECK(sleeper.id() != 0);
    CHECK(renamed.id() == sleeper.id() + 5); // ids in spawn order

    {
        const std::vector<task_snapshot> before = fx.rt->tasks();
        REQUIRE(before.size() == 6);
        CHECK(find(before, sleeper.id()).status == task_status::ready); // not started yet
        CHECK(find(before, sleeper.id()).spawned_by == 0);              // from outside a task
    }
    fx.run_until([&] { return parked(*fx.rt) == 6; });

    const std::vector<task_snapshot> ts = fx.rt->tasks();
    REQUIRE(ts.size() == 6);
    CHECK(find(ts, sleeper.id()).name == "sleeper");
    CHECK(find(ts, sleeper.id()).parked_on == "sleep");
    CHECK(find(ts, acquirer.id()).name.empty());
    CHECK(find(ts, acquirer.id()).parked_on == "semaphore");
    CHECK(find(ts, holder.id()).parked_on == "event");
    CHECK(find(ts, locker.id()).parked_on == "mutex");
    CHECK(find(ts, joiner.id()).parked_on == "join");
    CHECK(find(ts, renamed.id()).name == "renamed");
    CHECK(seen == "renamed");
    for (const task_snapshot& t : ts) {
        CHECK(t.status == task_status::parked);
        CHECK(t.group == 0);
    }
    CHECK(fx.rt->dump().find("parked on join task #" + std::to_string(sleeper.id())) !=
          std::string::npos);

    // A cancelled task that has not finished yet is "finishing".
    CHECK(sleeper.cancel("stop"));
    const std::vector<task_snapshot> after_cancel = fx.rt->tasks();
    CHECK(find(after_cancel, sleeper.id()).status == task_status::finishing);
    CHECK(fx.rt->dump().find("  cancelled: stop\n") != std::string::npos);

    // The asking task sees itself running.
    std::vector<task_snapshot> from_inside;
    task_handle<> asker = fx.rt->spawn(ask_status(*fx.rt, from_inside));
    fx.run_until([&] { return asker.done(); });
    CHECK(find(from_inside, asker.id()).status == task_status::running);
    CHECK(find(from_inside, asker.id()).spawned_by == 0);

    fx.run_until([&] { return sleeper.done() && joiner.done(); });
    CHECK(fx.rt->tasks().size() == 4); // finished tasks are not listed
    e.set();
    fx.run_until([&] { return holder.done() && locker.done(); });
    acquirer.cancel();
    renamed.cancel();
    fx.run_until([&] { return acquirer.done() && renamed.done(); });
    CHECK(fx.rt->tasks().empty());
}

namespace {

task<> spawn_children(std::vector<std::uint64_t>& ids) {
    task_handle<> a = spawn(nap(1s));
    task_handle<> b = spawn(nap(1s), "b");
    ids = {current_task_id(), a.id(), b.id()};
    auto body = [&](task_group& g) -> task<> {
        task_handle<> c = g.spawn(nap(1s));
        ids.push_back(c.id());
        co_return;
    };
    co_await task_group::run(body);
    co_await a;
    co_await b;
}

} // namespace

TEST_CASE("spawned-by and group membership") {
    loop_fixture fx;
    std::vector<std::uint64_t> ids;
    std::vector<task_snapshot> seen;
    task_handle<> parent = fx.rt->spawn(spawn_children(ids));
    fx.run_until([&] {
        if (ids.size() == 4 && seen.empty()) {
            seen = fx.rt->tasks();
        }
        return parent.done();
    });
    REQUIRE(ids.size() == 4);
    REQUIRE(seen.size() == 4);
    CHECK(find(seen, ids[1]).spawned_by == ids[0]);
    CHECK(find(seen, ids[1]).group == 0);
    CHECK(find(seen, ids[2]).spawned_by == ids[0]);
    CHECK(find(seen, ids[2]).name == "b");
    CHECK(find(seen, ids[3]).spawned_by == ids[0]);
    CHECK(find(seen, ids[3]).group != 0);
    CHECK(find(seen, ids[0]).parked_on == "group exit");
}

TEST_CASE("names need a task; a bad dump_signal is refused") {
    loop_fixture fx;
    CHECK_THROWS_AS(set_current_task_name("x"), invalid_state);
    CHECK_THROWS_AS((void)current_task_name(), invalid_state);
    CHECK_THROWS_AS((void)current_task_id(), invalid_state);
    runtime_options bad;
    bad.dump_signal = -1;
    CHECK_THROWS_AS(runtime{bad}, std::invalid_argument);
    bad.dump_signal = 100000;
    CHECK_THROWS_AS(runtime{bad}, std::invalid_argument);
    bad.dump_signal = SIGKILL; // cannot be caught
    CHECK_THROWS_AS(runtime{bad}, std::invalid_argument);
}

TEST_CASE("dump_signal prints the dump to stderr from the loop thread") {
    std::FILE* capture = std::tmpfile();
    REQUIRE(capture != nullptr);
    const int saved = dup(STDERR_FILENO);
    REQUIRE(dup2(fileno(capture), STDERR_FILENO) >= 0);
    {
        runtime_options o = loop_fixture::manual_clock();
        o.dump_signal = SIGUSR1;
        loop_fixture fx(o);
        task_handle<> t = fx.rt->spawn(nap(1h), "signalled");
        fx.run_until([&] { return parked(*fx.rt) == 1; });
        std::raise(SIGUSR1);
        // The signal handle is unreferenced: run one iteration that polls for it.
        fx.rt->keep_loop_alive(true);
        for (int i = 0; i < 100; ++i) {
            uv_run(fx.loop(), UV_RUN_NOWAIT);
        }
        fx.rt->keep_loop_alive(false);
        t.cancel();
        fx.run_until([&] { return t.done(); });
    } // the fixture checks that the signal handle was closed and the loop closes with 0
    std::fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    std::rewind(capture);
    std::string text;
    char buf[512];
    while (std::fgets(buf, sizeof buf, capture) != nullptr) {
        text += buf;
    }
    std::fclose(capture);
    CHECK(text.find("task #1 \"signalled\" parked") != std::string::npos);
    CHECK(text.find("parked on sleep until 3600000 ms") != std::string::npos);
}

namespace {

/// Records every event as a line, with the virtual time since the runtime started.
class recording_tracer : public tracer {
public:
    explicit recording_tracer(deadline origin)
        : origin_(origin) {}

    void task_spawned(const task_event& t) noexcept override { add("spawned", t); }

    void task_started(const task_event& t) noexcept override { add("started", t); }

    void task_finished(const task_event& t, task_end how) noexcept override {
        add(how == task_end::value   ? "finished value"
            : how == task_end::error ? "finished error"
                                     : "finished cancelled",
            t);
    }

    void task_cancel_requested(const task_event& t, const cancel_event& why) noexcept override {
        add(std::string("cancel ") + to_string(why.cause) + " from #" + std::to_string(why.origin),
            t);
    }

    void scope_entered(const scope_event& s) noexcept override { add("enter", s); }

    void scope_expired(const scope_event& s) noexcept override { add("expire", s); }

    void scope_exited(const scope_event& s) noexcept override {
        add(!s.converted                    ? "exit"
            : s.kind != scope_type::timeout ? "exit converted"
            : s.move_on                     ? "exit moved on"
                                            : "exit timed out",
            s);
    }

    void slow_wait(const task_event& t, const slow_wait_event& w) noexcept override {
        add(std::string("slow ") + w.kind + " " +
                std::to_string(
                    std::chrono::duration_cast<std::chrono::milliseconds>(w.waited).count()) +
                " ms" + (w.aborted ? " aborted" : ""),
            t);
    }

    std::vector<std::string> lines;
    deadline origin_;

private:
    long long ms(deadline at) const {
        return std::chrono::duration_cast<std::chrono::milliseconds>(at - origin_).count();
    }

    void add(const std::string& what, const task_event& t) {
        lines.push_back(std::to_string(ms(t.at)) + " " + what + " #" + std::to_string(t.id) +
                        (t.name.empty() ? "" : " " + std::string(t.name)));
    }

    void add(const std::string& what, const scope_event& s) {
        static constexpr const char* kinds[] = {"", "shield ", "group ", "token "};
        lines.push_back(std::to_string(ms(s.at)) + " " + what + " " +
                        kinds[static_cast<int>(s.kind)] + "scope #" + std::to_string(s.scope) +
                        " in #" + std::to_string(s.task));
    }
};

task<> timed_out_sleep() {
    try {
        co_await timeout(100ms, sleep(1s));
    } catch (const timeout_error&) {
    }
    co_await move_on_after(50ms, sleep(1s));
    co_await timeout(1s, sleep(10ms));
    co_await sleep(300ms);
}

} // namespace

TEST_CASE("the tracer sees spawn, first step, scopes, slow waits, cancel and finish") {
    runtime_options o = loop_fixture::virtual_clock();
    auto rec = std::make_shared<recording_tracer>(deadline{});
    o.tracer = rec;
    o.slow_wait_threshold = 200ms;
    loop_fixture fx(o);
    rec->origin_ = fx.rt->now();
    task_handle<> t = fx.rt->spawn(timed_out_sleep(), "worker");
    task_handle<> parked = fx.rt->spawn(nap(1h));
    fx.run_until([&] { return t.done(); });
    parked.cancel();
    fx.run_until([&] { return parked.done(); });
    std::string all;
    for (const std::string& l : rec->lines) {
        all += l + "\n";
    }
    INFO(all);
    CHECK(rec->lines == std::vector<std::string>{
                            "0 spawned #1 worker",
                            "0 spawned #2",
                            "0 started #1 worker",
                            "0 enter scope #3 in #1",
                            "0 started #2",
                            "100 expire scope #3 in #1",
                            "100 cancel deadline from #3 #1 worker",
                            "100 exit timed out scope #3 in #1",
                            "100 enter scope #4 in #1",
                            "150 expire scope #4 in #1",
                            "150 cancel deadline from #4 #1 worker",
                            "150 exit moved on scope #4 in #1",
                            "150 enter scope #5 in #1",
                            "160 exit scope #5 in #1",
                            "460 slow sleep 300 ms #1 worker",
                            "460 finished value #1 worker",
                            "460 cancel handle from #2 #2",
                            "460 slow sleep 460 ms aborted #2",
                            "460 finished cancelled #2",
                        });
}

namespace {

task<> fails_after(loop_clock::duration d) {
    co_await sleep(d);
    throw std::runtime_error("boom");
}

task<> group_that_fails() {
    auto body = [](task_group& g) -> task<> {
        g.spawn(nap(1h), "sibling");
        g.spawn(fails_after(10ms), "failing");
        co_return;
    };
    try {
        co_await task_group::run(body);
    } catch (...) {
    }
}

task<> race_two() {
    task<> quick = nap(5ms);
    task<> long_one = nap(1h);
    co_await wait_any(std::move(quick), std::move(long_one));
}

task<> scope_cancelled_by_code() {
    auto body = [](task_group& g) -> task<> {
        g.spawn(nap(1h), "child");
        co_await sleep(1ms);
        g.cancel();
    };
    co_await task_group::run(body);
}

std::vector<std::string> cancel_lines(const std::vector<std::string>& lines) {
    std::vector<std::string> out;
    for (const std::string& l : lines) {
        if (l.find(" cancel ") != std::string::npos) {
            out.push_back(l);
        }
    }
    return out;
}

} // namespace

TEST_CASE("cancel requested: every source reaches the tracer once per task, with its cause") {
    runtime_options o = loop_fixture::virtual_clock();
    auto rec = std::make_shared<recording_tracer>(deadline{});
    o.tracer = rec;
    std::vector<std::string> got;
    {
        loop_fixture fx(o);
        rec->origin_ = fx.rt->now();
        // #1 owns group #2 with children #3 "sibling" and #4 "failing": the failure cancels
        // the group's scope, which reaches the owner (its own scope) and the sibling.
        fx.run(group_that_fails());
        // #5 races #7 (5 ms) and #8 (1 h) in group #6: cancelling the loser cancels the
        // group's scope, which #5 (waiting in it) and the loser #8 hear of.
        fx.run(race_two());
        // #9's group #10 cancelled by task_group::cancel(): its child #11 and the owner.
        fx.run(scope_cancelled_by_code());
        // #12 bound to a cancel source, cancelled on the loop thread (#13 is its token scope).
        cancel_source src;
        event never;
        task_handle<> bound = fx.rt->spawn(inner_wait(never), src.token());
        fx.run_until([&] { return parked(*fx.rt) == 1; });
        src.request_cancel("stop");
        fx.run_until([&] { return bound.done(); });
        // #14 still parked at shutdown.
        task_handle<> left = fx.rt->spawn(inner_wait(never), "left");
        fx.run_until([&] { return parked(*fx.rt) == 1; });
        fx.rt->shutdown();
        got = cancel_lines(rec->lines);
    }
    std::string all;
    for (const std::string& l : got) {
        all += l + "\n";
    }
    INFO(all);
    CHECK(got == std::vector<std::string>{
                     "10 cancel scope from #2 #1",
                     "10 cancel parent from #2 #3 sibling",
                     "15 cancel scope from #6 #5",
                     "15 cancel parent from #6 #8",
                     "16 cancel scope from #10 #9",
                     "16 cancel parent from #10 #11 child",
                     "16 cancel token from #0 #12",
                     "16 cancel shutdown from #14 #14 left",
                 });
}

namespace {

task<> every_scope_kind() {
    co_await shielded(nap(1ms));
    auto cancels_itself = [](task_group& g) -> task<> {
        g.spawn(nap(1h));
        co_await sleep(1ms);
        g.cancel();
    };
    co_await task_group::run(cancels_itself);
    auto ends = [](task_group& g) -> task<> {
        g.spawn(nap(1ms));
        co_return;
    };
    co_await task_group::run(ends);
}

std::vector<std::string> scope_lines(const std::vector<std::string>& lines) {
    std::vector<std::string> out;
    for (const std::string& l : lines) {
        if (l.find("scope #") != std::string::npos) {
            out.push_back(l);
        }
    }
    return out;
}

} // namespace

TEST_CASE("scope events: shields enter and exit, groups and token scopes also expire") {
    runtime_options o = loop_fixture::virtual_clock();
    auto rec = std::make_shared<recording_tracer>(deadline{});
    o.tracer = rec;
    loop_fixture fx(o);
    rec->origin_ = fx.rt->now();
    // #1: shield #2; group #3 (child #4) cancelled by its own cancel(): converted; group #5
    // (child #6) left normally.
    fx.run(every_scope_kind());
    // #7 in token scope #8, cancelled through its source: the token scope expires and is left
    // when the task ends.
    cancel_source src;
    event never;
    task_handle<> bound = fx.rt->spawn(inner_wait(never), src.token());
    fx.run_until([&] { return parked(*fx.rt) == 1; });
    src.request_cancel();
    fx.run_until([&] { return bound.done(); });
    const std::vector<std::string> got = scope_lines(rec->lines);
    std::string all;
    for (const std::string& l : got) {
        all += l + "\n";
    }
    INFO(all);
    CHECK(got == std::vector<std::string>{
                     "0 enter shield scope #2 in #1",
                     "1 exit shield scope #2 in #1",
                     "1 enter group scope #3 in #1",
                     "2 expire group scope #3 in #1",
                     "2 exit converted group scope #3 in #1",
                     "2 enter group scope #5 in #1",
                     "3 exit group scope #5 in #1",
                     "3 enter token scope #8 in #7",
                     "3 expire token scope #8 in #7",
                     "3 exit token scope #8 in #7",
                 });
}

namespace {

task<> ticks(loop_clock::duration every) {
    timer t(std::chrono::duration_cast<std::chrono::milliseconds>(every));
    co_await t.tick();
}

task<> waits_for_token(cancel_token token) {
    co_await token.cancelled();
}

task<> first_of(const task_handle<>& a, const task_handle<>& b) {
    co_await first_done(a, b);
}

task<> races() {
    task<> a = nap(1h);
    task<> b = nap(2h);
    co_await wait_any(std::move(a), std::move(b));
}

task<> takes_in_order() {
    std::vector<task<>> naps;
    naps.push_back(nap(1h));
    naps.push_back(nap(2h));
    naps.push_back(nap(3h));
    auto body = [](completions<void>& done) -> task<> { (void)co_await done.next(); };
    co_await as_completed(std::move(naps), body);
}

} // namespace

TEST_CASE("every parked wait of the library names itself in the dump") {
    loop_fixture fx(loop_fixture::manual_clock());
    cancel_source src;
    task_handle<> a = fx.rt->spawn(nap(1h));
    task_handle<> b = fx.rt->spawn(nap(1h));
    std::vector<task_handle<>> hs;
    hs.push_back(fx.rt->spawn(ticks(250ms), "ticker"));
    hs.push_back(fx.rt->spawn(waits_for_token(src.token()), "token"));
    hs.push_back(fx.rt->spawn(first_of(a, b), "first"));
    hs.push_back(fx.rt->spawn(races(), "racer"));
    hs.push_back(fx.rt->spawn(takes_in_order(), "in order"));
    fx.run_until([&] { return parked(*fx.rt) == 12; });
    const std::string text = fx.rt->dump();
    INFO(text);
    CHECK(text.find("parked on timer tick at 250 ms\n") != std::string::npos);
    CHECK(text.find("parked on token\n") != std::string::npos);
    CHECK(text.find("parked on first_done over 2 tasks\n") != std::string::npos);
    CHECK(text.find("parked on wait_any exit, 2 tasks left\n") != std::string::npos);
    CHECK(text.find("parked on as_completed next 0 of 3 tasks done, 3 task frames deep\n") !=
          std::string::npos);
    hs.push_back(a);
    hs.push_back(b);
    for (task_handle<>& h : hs) {
        h.cancel();
    }
    fx.run_until([&] {
        for (const task_handle<>& h : hs) {
            if (!h.done()) {
                return false;
            }
        }
        return true;
    });
}
