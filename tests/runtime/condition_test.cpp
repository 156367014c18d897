// SPDX-License-Identifier: MIT
// condition: a condition variable tied to a mutex (asyncio.Condition). SEMANTICS 24
// (docs/semantics.md), 4.1 (protocol of a cancellation point), D-2 (completion wins:
// a notification handed over is consumed, never lost), D-14.
#include <chrono>
#include <cstddef>
#include <deque>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::loop_fixture;

using log_t = std::vector<std::string>;

/// Locks, waits once for a notification, logs whether the lock is held on each exit path.
task<> wait_once(mutex& m, condition& cv, log_t& log, std::string name) {
    mutex::guard g = co_await m.lock();
    log.push_back(name + " waits");
    try {
        co_await cv.wait(g);
    } catch (const cancelled_error& e) {
        log.push_back(name + " raised " + std::string(e.message()) +
                      (g.owns_lock() && m.locked() ? " holding the lock" : " WITHOUT the lock"));
        throw;
    }
    log.push_back(name + (g.owns_lock() ? " woke holding the lock" : " woke WITHOUT the lock"));
    co_await yield(); // a cancellation point with the lock held
    log.push_back(name + " passed the checkpoint");
}

/// Waits until the queue has an item, then pops it.
task<int> consume(mutex& m, condition& cv, std::deque<int>& q) {
    mutex::guard g = co_await m.lock();
    auto not_empty = [&q] { return !q.empty(); };
    co_await cv.wait(g, not_empty);
    int v = q.front();
    q.pop_front();
    co_return v;
}

task<> produce(mutex& m, condition& cv, std::deque<int>& q, int v, loop_clock::duration after) {
    co_await sleep(after);
    mutex::guard g = co_await m.lock();
    q.push_back(v);
    cv.notify_one();
}

/// Cancels itself, then waits: raises at once, still holding the lock.
task<> self_cancelled_wait(task_handle<>& self, mutex& m, condition& cv, log_t& log) {
    mutex::guard g = co_await m.lock();
    CHECK(self.cancel("self"));
    try {
        co_await cv.wait(g);
    } catch (const cancelled_error&) {
        log.push_back(g.owns_lock() ? "raised holding the lock" : "raised WITHOUT the lock");
        throw;
    }
}

task<std::string> wait_with_timeout(mutex& m, condition& cv, loop_clock::duration d) {
    mutex::guard g = co_await m.lock();
    try {
        co_await timeout(d, cv.wait(g));
    } catch (const timeout_error&) {
        co_return g.owns_lock() && m.locked() ? "timeout holding the lock" : "timeout WITHOUT";
    }
    co_return "notified";
}

task<> wrong_guard(mutex& m, condition& cv, log_t& log) {
    mutex::guard empty;
    try {
        co_await cv.wait(empty);
    } catch (const invalid_state&) {
        log.push_back("empty guard rejected");
    }
    mutex other;
    mutex::guard g = co_await other.lock();
    try {
        co_await cv.wait(g);
    } catch (const invalid_state&) {
        log.push_back("other mutex rejected");
    }
    mutex::guard mine = co_await m.lock();
    condition::waiter w = cv.wait(mine);
    mine.unlock(); // no longer held when the wait starts
    try {
        co_await w;
    } catch (const invalid_state&) {
        log.push_back("unlocked guard rejected");
    }
    CHECK_FALSE(m.locked());
}

/// What the tests share, constructed before the loop fixture and destroyed after it: frames
/// that shutdown destroys may still hold a guard on `m`.
struct condition_parts {
    mutex m;
    condition cv{m};
    log_t log;
};

/// A mutex, a condition on it and the waiters' log, on a loop.
struct condition_fixture : condition_parts, loop_fixture {
    /// Spawns `wait_once` for each of `names` and runs the loop: each has locked, released the
    /// lock to wait, and logged "<name> waits"; none is done.
    std::vector<task_handle<>> waiting(std::initializer_list<const char*> names) {
        std::vector<task_handle<>> hs;
        for (const char* n : names) {
            hs.push_back(rt->spawn(wait_once(m, cv, log, n)));
        }
        run_all();
        for (const task_handle<>& h : hs) {
            REQUIRE_FALSE(h.done());
        }
        return hs;
    }

    /// Takes the mutex for the test; it must be free.
    mutex::guard hold() {
        mutex::guard g = m.try_lock();
        REQUIRE(g);
        return g;
    }

    /// Runs `round` twice, each time with an empty log; the mutex is free after each.
    template <class Round>
    void twice(Round round) {
        for (int i = 0; i < 2; ++i) {
            log.clear();
            round();
            CHECK_FALSE(m.locked());
        }
    }
};

} // namespace

TEST_SUITE("condition") {

    TEST_CASE_FIXTURE(condition_fixture, "wait releases the lock; notify_one wakes the waiters "
                                         "in FIFO order, each resuming with the lock held") {
        twice([&] {
            std::vector<task_handle<>> hs = waiting({"a", "b"});
            CHECK(log == log_t{"a waits", "b waits"});
            CHECK_FALSE(m.locked()); // both released it while waiting

            mutex::guard mine = hold();
            cv.notify_one(); // a queues for the mutex, which the test holds
            run_all();
            CHECK(log == log_t{"a waits", "b waits"});
            mine.unlock(); // to a
            run_all();
            CHECK(hs[0].done());
            CHECK_FALSE(hs[1].done());
            cv.notify_one();
            run_all();
            CHECK(hs[1].done());
            CHECK(log == log_t{"a waits", "b waits", "a woke holding the lock",
                               "a passed the checkpoint", "b woke holding the lock",
                               "b passed the checkpoint"});
        });
    }

    TEST_CASE_FIXTURE(condition_fixture, "notify_all and notify(n) move the waiters to the mutex "
                                         "in order; nothing is woken without waiters") {
        cv.notify_all(); // no effect, not remembered
        cv.notify_one();
        std::vector<task_handle<>> hs = waiting({"a", "b", "c"});
        CHECK(log.size() == 3);
        cv.notify(2);
        run_all();
        CHECK(hs[0].done());
        CHECK(hs[1].done());
        CHECK_FALSE(hs[2].done());
        cv.notify_all();
        run_all();
        CHECK(hs[2].done());
        CHECK(log == log_t{"a waits", "b waits", "c waits", "a woke holding the lock",
                           "a passed the checkpoint", "b woke holding the lock",
                           "b passed the checkpoint", "c woke holding the lock",
                           "c passed the checkpoint"});
    }

    TEST_CASE_FIXTURE(condition_fixture, "wait with a predicate: producers and consumers") {
        std::deque<int> q;
        q.push_back(0); // the first consumer does not suspend
        std::vector<task_handle<int>> consumers;
        consumers.reserve(4);
        for (int i = 0; i < 4; ++i) {
            consumers.push_back(rt->spawn(consume(m, cv, q)));
        }
        std::vector<task_handle<>> producers;
        producers.reserve(3);
        for (int i = 1; i < 4; ++i) {
            producers.push_back(rt->spawn(produce(m, cv, q, i, std::chrono::milliseconds(i))));
        }
        const deadline start = now();
        run_until([&] { return consumers.back().done(); });
        CHECK(now() - start == 3ms);
        std::vector<int> got;
        got.reserve(consumers.size());
        for (auto& c : consumers) {
            got.push_back(*c.state()->value());
        }
        CHECK(got == std::vector<int>{0, 1, 2, 3});
        CHECK(q.empty());
        CHECK_FALSE(m.locked());
    }

    TEST_CASE_FIXTURE(condition_fixture, "wait with a guard that does not hold the condition's "
                                         "mutex is invalid_state") {
        run(wrong_guard(m, cv, log));
        CHECK(log ==
              log_t{"empty guard rejected", "other mutex rejected", "unlocked guard rejected"});
    }

    // -----------------------------------------------------------------------------------------
    // Cancellation

    TEST_CASE_FIXTURE(condition_fixture, "4.1 cancelled before it waits: raises at once without "
                                         "releasing the lock") {
        twice([&] {
            task_handle<> self = run_given_own_handle(
                [&](task_handle<>& h) { return self_cancelled_wait(h, m, cv, log); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"raised holding the lock"});
        });
    }

    TEST_CASE_FIXTURE(condition_fixture, "cancelled while waiting with the mutex free: takes the "
                                         "lock back, then raises; the guard releases it "
                                         "unwinding") {
        twice([&] {
            std::vector<task_handle<>> hs = waiting({"a"});
            CHECK(hs[0].cancel("stop"));
            run_all();
            CHECK(hs[0].cancelled());
            CHECK(log == log_t{"a waits", "a raised stop holding the lock"});
        });
    }

    TEST_CASE_FIXTURE(condition_fixture, "cancelled while waiting with the mutex held: stays "
                                         "parked until the lock comes back, then raises holding "
                                         "it") {
        twice([&] {
            std::vector<task_handle<>> hs = waiting({"a"});
            mutex::guard mine = hold();
            CHECK(hs[0].cancel("stop"));
            run_all();
            CHECK_FALSE(hs[0].done()); // waits for the mutex (cannot be aborted)
            CHECK(log == log_t{"a waits"});
            mine.unlock(); // to a
            run_all();
            CHECK(hs[0].cancelled());
            CHECK(log == log_t{"a waits", "a raised stop holding the lock"});
        });
    }

    TEST_CASE_FIXTURE(condition_fixture, "D-2 notified before its cancellation took effect: "
                                         "returns normally holding the lock, raises at its next "
                                         "cancellation point; the notification is not lost") {
        twice([&] {
            std::vector<task_handle<>> hs = waiting({"a", "b"});
            cv.notify_one();             // a is handed the notification (and the free mutex)
            CHECK(hs[0].cancel("late")); // then cancelled, before it resumes
            run_all();
            CHECK(hs[0].cancelled());
            CHECK_FALSE(hs[1].done()); // b was not woken in a's place
            CHECK(log == log_t{"a waits", "b waits", "a woke holding the lock"});
            CHECK_FALSE(m.locked());
            cv.notify_one();
            run_all();
            CHECK(hs[1].done());
        });
    }

    TEST_CASE_FIXTURE(condition_fixture, "D-2 notified while the mutex is held, then cancelled "
                                         "while queued for the mutex: still returns normally once "
                                         "it has the lock") {
        twice([&] {
            std::vector<task_handle<>> hs = waiting({"a"});
            mutex::guard mine = hold();
            cv.notify_one(); // a moves to the mutex's queue
            CHECK(hs[0].cancel("late"));
            run_all();
            CHECK_FALSE(hs[0].done()); // the lock must come back first
            mine.unlock();
            run_all();
            CHECK(hs[0].cancelled());
            CHECK(log == log_t{"a waits", "a woke holding the lock"});
        });
    }

    TEST_CASE_FIXTURE(condition_fixture, "a waiter cancelled before the notification leaves the "
                                         "queue: notify_one reaches the next waiter") {
        twice([&] {
            std::vector<task_handle<>> hs = waiting({"a", "b"});
            CHECK(hs[0].cancel("first"));
            cv.notify_one(); // a already left the condition's queue
            run_all();
            CHECK(hs[0].cancelled());
            CHECK(hs[1].done());
            CHECK(log == log_t{"a waits", "b waits", "a raised first holding the lock",
                               "b woke holding the lock", "b passed the checkpoint"});
        });
    }

    TEST_CASE_FIXTURE(condition_fixture, "a timeout around wait raises timeout_error with the "
                                         "lock held again") {
        twice([&] {
            const deadline start = now();
            CHECK(run(wait_with_timeout(m, cv, 5ms)) == "timeout holding the lock");
            CHECK(now() - start == 5ms);
        });
    }

    TEST_CASE("a waiter handed the lock after a notification whose frame is destroyed before it "
              "resumes gives the lock back") {
        mutex m;
        condition cv(m);
        std::size_t leaked = 0;
        {
            runtime_options o = loop_fixture::virtual_clock();
            o.shutdown_grace = 0ms;
            loop_fixture f(o);
            log_t log;
            task_handle<> ha = f.rt->spawn(wait_once(m, cv, log, "a"));
            f.run_all();
            cv.notify_one(); // a holds the lock now, but has not resumed
            CHECK(m.locked());
            f.rt->shutdown();
            leaked = f.reported.size();
            CHECK(log == log_t{"a waits"});
            CHECK_FALSE(m.locked());
            f.reported.clear();
        }
        CHECK(leaked == 1);
    }
}
