// SPDX-License-Identifier: MIT
// event: a level-triggered flag tasks can wait for (asyncio.Event).
// SEMANTICS 1 (cancellation points: waiting for an event; awaiting something already complete
// is not one), 4.1 (protocol of a cancellation point), 4.9 / D-2 (completion wins), D-1 (level
// triggering), D-11 (first message wins), D-14 (resumption from the ready queue only).
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "join.hpp"
#include "loop_fixture.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using namespace uvasync::test;

using log_t = std::vector<std::string>;

task<> wait_and_log(event& e, log_t& log, std::string name) {
    log.push_back(name + " waits");
    co_await e.wait();
    log.push_back(name + " woke");
}

/// Waits, then reaches one more cancellation point. A task cancelled after `set()` but before
/// it resumed wakes normally (D-2) and raises at the `yield()`.
task<> wait_then_checkpoint(event& e, log_t& log, std::string name) {
    log.push_back(name + " waits");
    co_await e.wait();
    log.push_back(name + " woke");
    co_await yield();
    log.push_back(name + " passed the checkpoint");
}

/// Cancels its own task (the test stores the handle in `self` right after spawning), then
/// waits: the scope is already cancelled when the wait starts.
task<> self_cancelled_wait(task_handle<>& self, event& e, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        co_await e.wait();
        log.push_back("woke");
    } catch (const cancelled_error& err) {
        log.push_back("raised " + std::string(err.message()));
        throw;
    }
    co_await yield();
    log.push_back("passed the checkpoint");
}

/// Catches the first delivery, then waits again in the same (still cancelled) task scope.
task<> swallow_and_wait_again(event& e, log_t& log) {
    try {
        co_await e.wait();
        log.push_back("woke");
    } catch (const cancelled_error& err) {
        log.push_back("first raised " + std::string(err.message()));
    }
    try {
        co_await e.wait();
        log.push_back("woke on retry");
    } catch (const cancelled_error& err) {
        log.push_back("retry raised " + std::string(err.message()));
        throw;
    }
}

task<std::string> wait_with_timeout(event& e, loop_clock::duration d) {
    try {
        co_await timeout(d, e.wait());
        co_return "woke";
    } catch (const timeout_error&) {
        co_return "timeout";
    }
}

task<std::string> wait_or_move_on(event& e, loop_clock::duration d) {
    std::optional<unit> r = co_await move_on_after(d, e.wait());
    co_return r ? "woke" : "moved on";
}

task<> set_after(event& e, loop_clock::duration d) {
    co_await sleep(d);
    e.set();
}

} // namespace

TEST_SUITE("event") {

    // -----------------------------------------------------------------------------------------
    // Completes

    TEST_CASE_FIXTURE(loop_fixture, "an event starts clear; set and clear change is_set") {
        event e;
        for (int round = 0; round < 2; ++round) {
            CHECK_FALSE(e.is_set());
            e.set();
            CHECK(e.is_set());
            e.set(); // idempotent
            CHECK(e.is_set());
            e.clear();
            CHECK_FALSE(e.is_set());
            e.clear();
            CHECK_FALSE(e.is_set());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "1 waiting on a set event completes without suspending") {
        event e;
        e.set();
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> a = rt->spawn(wait_and_log(e, log, "a"));
            task_handle<> b = rt->spawn(wait_and_log(e, log, "b"));
            run_all();
            CHECK(a.done());
            CHECK(b.done());
            // a ran to its end before b started: its wait did not suspend.
            CHECK(log == log_t{"a waits", "a woke", "b waits", "b woke"});
            CHECK(e.is_set()); // level-triggered: waiting does not consume the flag
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-14 set wakes every waiter, which resume later from the "
                                    "ready queue in FIFO order") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> a = rt->spawn(wait_and_log(e, log, "a"));
            task_handle<> b = rt->spawn(wait_and_log(e, log, "b"));
            task_handle<> c = rt->spawn(wait_and_log(e, log, "c"));
            run_all();
            CHECK(log == log_t{"a waits", "b waits", "c waits"});
            CHECK_FALSE(a.done());

            e.set();
            CHECK(log == log_t{"a waits", "b waits", "c waits"}); // nothing ran inside set()
            run_all();
            CHECK(a.done());
            CHECK(b.done());
            CHECK(c.done());
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a woke", "b woke", "c woke"});
            e.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "after clear, a wait suspends again until the next set") {
        event e;
        for (int round = 0; round < 2; ++round) {
            e.set();
            e.clear();
            log_t log;
            task_handle<> a = rt->spawn(wait_and_log(e, log, "a"));
            run_all();
            CHECK_FALSE(a.done());
            CHECK(log == log_t{"a waits"});
            e.set();
            run_all();
            CHECK(a.done());
            CHECK(log == log_t{"a waits", "a woke"});
            e.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-2 clear right after set does not take back the wake-ups "
                                    "already recorded") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> a = rt->spawn(wait_and_log(e, log, "a"));
            task_handle<> b = rt->spawn(wait_and_log(e, log, "b"));
            run_all();
            e.set();
            e.clear();
            run_all();
            CHECK(a.done());
            CHECK(b.done());
            CHECK(log == log_t{"a waits", "b waits", "a woke", "b woke"});
            CHECK_FALSE(e.is_set());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a task that sets the event wakes the waiters after it "
                                    "yields the loop") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            const deadline start = now();
            task_handle<> a = rt->spawn(wait_and_log(e, log, "a"));
            task_handle<> setter = rt->spawn(set_after(e, 4ms));
            run_until([&] { return a.done() && setter.done(); });
            CHECK(now() - start == 4ms);
            CHECK(log == log_t{"a waits", "a woke"});
            e.clear();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled before start

    TEST_CASE_FIXTURE(loop_fixture, "4.1 waiting on a clear event in an already cancelled scope "
                                    "raises and does not become a waiter") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> self = run_given_own_handle(
                [&](task_handle<>& h) { return self_cancelled_wait(h, e, log); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"raised self"});
            CHECK(run(cancel_message_of(self)) == "self");

            // A later set finds no waiter left behind (the frame is gone).
            log_t other;
            task_handle<> b = rt->spawn(wait_and_log(e, other, "b"));
            run_all();
            e.set();
            run_all();
            CHECK(b.done());
            CHECK(other == log_t{"b waits", "b woke"});
            e.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "1 waiting on a set event is not a cancellation point, even in "
                                    "a cancelled scope; the next one raises") {
        event e;
        e.set();
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> self = run_given_own_handle(
                [&](task_handle<>& h) { return self_cancelled_wait(h, e, log); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"woke"}); // the yield() raised
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-5 move_on_after(0ms) around a wait on a set event returns "
                                    "normally, on a clear event moves on at once") {
        event e;
        for (int round = 0; round < 2; ++round) {
            const deadline start = now();
            CHECK(run(wait_or_move_on(e, 0ms)) == "moved on");
            e.set();
            CHECK(run(wait_or_move_on(e, 0ms)) == "woke");
            CHECK(now() - start == 0ms);
            e.clear();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled while pending

    TEST_CASE_FIXTURE(loop_fixture,
                      "cancelling a parked waiter detaches only it; a later set wakes "
                      "the others in FIFO order") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> a = rt->spawn(wait_and_log(e, log, "a"));
            task_handle<> b = rt->spawn(wait_and_log(e, log, "b"));
            task_handle<> c = rt->spawn(wait_and_log(e, log, "c"));
            run_all();

            CHECK(b.cancel("stop b"));
            CHECK(log == log_t{"a waits", "b waits", "c waits"}); // D-14
            run_all();
            CHECK(b.cancelled());
            CHECK(run(cancel_message_of(b)) == "stop b");
            CHECK_FALSE(a.done());
            CHECK_FALSE(c.done());
            CHECK_FALSE(e.is_set()); // the event itself is untouched

            e.set();
            run_all();
            CHECK(a.done());
            CHECK(c.done());
            CHECK_FALSE(a.cancelled());
            CHECK_FALSE(c.cancelled());
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a woke", "c woke"});
            e.clear();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled after completion, before resumption

    TEST_CASE_FIXTURE(loop_fixture, "D-2 4.9 a waiter cancelled after set but before it resumed "
                                    "wakes normally and raises at its next cancellation point") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> a = rt->spawn(wait_then_checkpoint(e, log, "a"));
            run_all();
            e.set();
            CHECK(a.cancel("late"));
            run_all();
            CHECK(a.cancelled());
            CHECK(log == log_t{"a waits", "a woke"});
            CHECK(run(cancel_message_of(a)) == "late");
            e.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 a waiter cancelled while parked raises even if the event "
                                    "is set before it resumes") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> a = rt->spawn(wait_and_log(e, log, "a"));
            run_all();
            CHECK(a.cancel("stop")); // the abort is recorded first
            e.set();
            run_all();
            CHECK(a.cancelled());
            CHECK(log == log_t{"a waits"});
            CHECK(run(cancel_message_of(a)) == "stop");
            e.clear();
        }
    }

    TEST_CASE("D-2 4.9 a set and a deadline recorded in the same iteration: the wait completes") {
        loop_fixture f(loop_fixture::manual_clock());
        event e;
        for (int round = 0; round < 2; ++round) {
            const deadline start = f.now();
            task_handle<std::string> h = f.rt->spawn(wait_or_move_on(e, 10ms));
            f.run_all();
            CHECK_FALSE(h.done());
            e.set();             // recorded first
            f.rt->advance(10ms); // then the deadline, before the waiter resumes
            f.run_until([&] { return h.done(); });
            CHECK(f.now() - start == 10ms);
            CHECK(f.run(join(h)) == "woke");
            e.clear();
        }
    }

    TEST_CASE("4.9 a deadline recorded before the set detaches the waiter") {
        loop_fixture f(loop_fixture::manual_clock());
        event e;
        for (int round = 0; round < 2; ++round) {
            task_handle<std::string> h = f.rt->spawn(wait_or_move_on(e, 10ms));
            f.run_all();
            f.rt->advance(10ms);
            e.set();
            f.run_until([&] { return h.done(); });
            CHECK(f.run(join(h)) == "moved on");
            e.clear();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled twice

    TEST_CASE_FIXTURE(loop_fixture, "D-11 cancelling a parked waiter twice detaches it once and "
                                    "keeps the first message") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> a = rt->spawn(wait_and_log(e, log, "a"));
            task_handle<> b = rt->spawn(wait_and_log(e, log, "b"));
            run_all();
            CHECK(a.cancel("first"));
            CHECK_FALSE(a.cancel("second"));
            run_all();
            CHECK(a.cancelled());
            CHECK(run(cancel_message_of(a)) == "first");
            CHECK_FALSE(a.cancel("third"));

            e.set();
            run_all();
            CHECK(b.done());
            CHECK(log == log_t{"a waits", "b waits", "b woke"});
            e.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-1 a waiter that swallows its cancellation and waits again "
                                    "raises again") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> h = rt->spawn(swallow_and_wait_again(e, log));
            run_all();
            CHECK(h.cancel("stop"));
            run_all();
            CHECK(h.cancelled());
            CHECK(log == log_t{"first raised stop", "retry raised stop"});
            e.set(); // no waiter is left behind
            e.clear();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Inside timeout / move_on_after

    TEST_CASE_FIXTURE(loop_fixture, "5.6 a timeout around a wait throws timeout_error at its "
                                    "deadline and leaves no waiter behind") {
        event e;
        for (int round = 0; round < 2; ++round) {
            const deadline start = now();
            CHECK(run(wait_with_timeout(e, 5ms)) == "timeout");
            CHECK(now() - start == 5ms);
            e.set();
            CHECK(run(wait_with_timeout(e, 5ms)) == "woke"); // set: no suspension at all
            CHECK(now() - start == 5ms);
            e.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "move_on_after around a wait returns when the event is set "
                                    "before the deadline and moves on otherwise") {
        event e;
        for (int round = 0; round < 2; ++round) {
            deadline start = now();
            task_handle<std::string> w = rt->spawn(wait_or_move_on(e, 10ms));
            task_handle<> setter = rt->spawn(set_after(e, 3ms));
            run_until([&] { return w.done() && setter.done(); });
            CHECK(now() - start == 3ms);
            CHECK(run(join(w)) == "woke");
            e.clear();

            start = now();
            CHECK(run(wait_or_move_on(e, 10ms)) == "moved on");
            CHECK(now() - start == 10ms);
        }
    }

    TEST_CASE("4.8 a task cancellation passes through a timeout around a wait as "
              "cancelled_error") {
        loop_fixture f(loop_fixture::manual_clock());
        event e;
        for (int round = 0; round < 2; ++round) {
            task_handle<std::string> h = f.rt->spawn(wait_with_timeout(e, 1h));
            f.run_all();
            CHECK_FALSE(h.done());
            CHECK(h.cancel("outer"));
            f.run_until([&] { return h.done(); });
            CHECK(h.cancelled());
        }
    }
}
