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
#include "sync_waiters.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using namespace uvasync::test;

/// Waiting on an event, for the shared waiters of sync_waiters.hpp.
struct waits_for {
    event& e;

    [[nodiscard]] auto wait() const { return e.wait(); }

    [[nodiscard]] static std::string got() { return "woke"; }
};

/// One waiter parks on the clear event `e`; set() wakes it, and no other. Clears `e` after.
void park_one_and_set(loop_fixture& f, event& e) {
    log_t log;
    std::vector<task_handle<>> hs = park_waiters(f, log, waits_for{e});
    e.set();
    f.run_all();
    CHECK(hs[0].done());
    CHECK(log == log_t{"a waits", "a woke"});
    e.clear();
}

/// 4.9, twice on a manual clock: a set and a deadline recorded in the same iteration, the set
/// first if `set_first`; the waiter returns `expected`.
void set_and_deadline_twice(bool set_first, const std::string& expected) {
    loop_fixture f(loop_fixture::manual_clock());
    event e;
    for (int round = 0; round < 2; ++round) {
        CHECK(complete_and_deadline(
                  f, waits_for{e}, [&] { e.set(); }, set_first) == expected);
        e.clear();
    }
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
            // a ran to its end before b started: its wait did not suspend.
            CHECK(wait_in_a_row(*this, waits_for{e}, waits_for{e}) ==
                  log_t{"a waits", "a woke", "b waits", "b woke"});
            CHECK(e.is_set()); // level-triggered: waiting does not consume the flag
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-14 set wakes every waiter, which resume later from the "
                                    "ready queue in FIFO order") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            std::vector<task_handle<>> hs =
                park_waiters(*this, log, waits_for{e}, waits_for{e}, waits_for{e});

            e.set();
            CHECK(log == log_t{"a waits", "b waits", "c waits"}); // nothing ran inside set()
            run_all();
            for (const task_handle<>& h : hs) {
                CHECK(h.done());
            }
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a woke", "b woke", "c woke"});
            e.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "after clear, a wait suspends again until the next set") {
        event e;
        for (int round = 0; round < 2; ++round) {
            e.set();
            e.clear();
            park_one_and_set(*this, e);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-2 clear right after set does not take back the wake-ups "
                                    "already recorded") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            std::vector<task_handle<>> hs = park_waiters(*this, log, waits_for{e}, waits_for{e});
            e.set();
            e.clear();
            run_all();
            CHECK(hs[0].done());
            CHECK(hs[1].done());
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
            task_handle<> a = rt->spawn(wait_and_log(waits_for{e}, log, "a"));
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
            CHECK(self_cancelled_log(*this, waits_for{e}) == log_t{"raised self"});

            // A later set finds no waiter left behind (the frame is gone).
            park_one_and_set(*this, e);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "1 waiting on a set event is not a cancellation point, even in "
                                    "a cancelled scope; the next one raises") {
        event e;
        e.set();
        for (int round = 0; round < 2; ++round) {
            // the yield() raised
            CHECK(self_cancelled_log(*this, waits_for{e}) == log_t{"woke"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-5 move_on_after(0ms) around a wait on a set event returns "
                                    "normally, on a clear event moves on at once") {
        event e;
        for (int round = 0; round < 2; ++round) {
            const deadline start = now();
            CHECK(run(wait_or_move_on(waits_for{e}, 0ms)) == "moved on");
            e.set();
            CHECK(run(wait_or_move_on(waits_for{e}, 0ms)) == "woke");
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
            std::vector<task_handle<>> hs =
                park_waiters(*this, log, waits_for{e}, waits_for{e}, waits_for{e});
            cancel_and_check(*this, hs[1], "stop b", log); // D-14: b did not run yet
            CHECK_FALSE(hs[0].done());
            CHECK_FALSE(hs[2].done());
            CHECK_FALSE(e.is_set()); // the event itself is untouched

            e.set();
            run_all();
            CHECK(hs[0].done());
            CHECK(hs[2].done());
            CHECK_FALSE(hs[0].cancelled());
            CHECK_FALSE(hs[2].cancelled());
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
            CHECK(late_cancel_log(*this, waits_for{e}, [&] { e.set(); }) ==
                  log_t{"a waits", "a woke"});
            e.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 a waiter cancelled while parked raises even if the event "
                                    "is set before it resumes") {
        event e;
        for (int round = 0; round < 2; ++round) {
            CHECK(cancel_first_then_complete(
                      *this, [&] { e.set(); }, waits_for{e}) == log_t{"a waits"});
            e.clear();
        }
    }

    TEST_CASE("D-2 4.9 a set and a deadline recorded in the same iteration: the wait completes") {
        set_and_deadline_twice(true, "woke");
    }

    TEST_CASE("4.9 a deadline recorded before the set detaches the waiter") {
        set_and_deadline_twice(false, "moved on");
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled twice

    TEST_CASE_FIXTURE(loop_fixture, "D-11 cancelling a parked waiter twice detaches it once and "
                                    "keeps the first message") {
        event e;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            std::vector<task_handle<>> hs = park_waiters(*this, log, waits_for{e}, waits_for{e});
            cancel_twice_and_check(*this, hs[0]);

            e.set();
            run_all();
            CHECK(hs[1].done());
            CHECK(log == log_t{"a waits", "b waits", "b woke"});
            e.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-1 a waiter that swallows its cancellation and waits again "
                                    "raises again") {
        event e;
        for (int round = 0; round < 2; ++round) {
            swallow_and_wait_again_raises(*this, waits_for{e});
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
            times_out(*this, waits_for{e});
            e.set();
            CHECK(run(wait_with_timeout(waits_for{e}, 5ms)) == "woke"); // set: no suspension
            CHECK(now() - start == 5ms);
            e.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "move_on_after around a wait returns when the event is set "
                                    "before the deadline and moves on otherwise") {
        event e;
        for (int round = 0; round < 2; ++round) {
            deadline start = now();
            task_handle<std::string> w = rt->spawn(wait_or_move_on(waits_for{e}, 10ms));
            task_handle<> setter = rt->spawn(set_after(e, 3ms));
            run_until([&] { return w.done() && setter.done(); });
            CHECK(now() - start == 3ms);
            CHECK(run(join(w)) == "woke");
            e.clear();

            start = now();
            CHECK(run(wait_or_move_on(waits_for{e}, 10ms)) == "moved on");
            CHECK(now() - start == 10ms);
        }
    }

    TEST_CASE("4.8 a task cancellation passes through a timeout around a wait as "
              "cancelled_error") {
        loop_fixture f(loop_fixture::manual_clock());
        event e;
        for (int round = 0; round < 2; ++round) {
            cancel_through_timeout(f, waits_for{e});
        }
    }
}
