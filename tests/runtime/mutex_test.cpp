// SPDX-License-Identifier: MIT
// mutex: a non-recursive lock for tasks with FIFO hand-off and a scoped guard (asyncio.Lock).
// SEMANTICS 23 (docs/semantics.md), 4.1 (protocol of a cancellation point), D-2
// (completion wins: a lock handed over is never dropped), D-14 (resumption from the ready
// queue only).
#include <algorithm>
#include <chrono>
#include <cstddef>
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
using guard_slot = std::optional<mutex::guard>;

/// Locks and moves the guard into `slot`, which the test owns.
task<> lock_into(mutex& m, guard_slot& slot, log_t& log, std::string name) {
    log.push_back(name + " waits");
    slot.emplace(co_await m.lock());
    log.push_back(name + " got");
}

/// Locks, then reaches one more cancellation point while holding the lock.
task<> lock_then_checkpoint(mutex& m, log_t& log, std::string name) {
    log.push_back(name + " waits");
    mutex::guard g = co_await m.lock();
    log.push_back(name + (g.owns_lock() ? " got" : " got an empty guard"));
    co_await yield();
    log.push_back(name + " passed the checkpoint");
}

/// Cancels its own task (the test stores the handle in `self` first), then locks.
task<> self_cancelled_lock(task_handle<>& self, mutex& m, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        mutex::guard g = co_await m.lock();
        log.push_back(g.owns_lock() ? "got" : "got an empty guard");
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
    co_await yield();
    log.push_back("passed the checkpoint");
}

task<std::string> lock_with_timeout(mutex& m, loop_clock::duration d, guard_slot& slot) {
    try {
        mutex::guard g = co_await timeout(d, m.lock());
        slot.emplace(std::move(g));
        co_return "got";
    } catch (const timeout_error&) {
        co_return "timeout";
    }
}

task<> unlock_after(mutex::guard& g, loop_clock::duration d) {
    co_await sleep(d);
    g.unlock();
}

/// Holds the lock for `hold` around an increment that must never interleave.
task<> critical(mutex& m, int& inside, int& max_inside, loop_clock::duration hold) {
    mutex::guard g = co_await m.lock();
    ++inside;
    max_inside = std::max(max_inside, inside);
    co_await sleep(hold);
    --inside;
}

} // namespace

TEST_SUITE("mutex") {

    TEST_CASE_FIXTURE(loop_fixture, "lock on a free mutex completes without suspending; the "
                                    "guard releases on destruction, unlock() and move") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            guard_slot a;
            task_handle<> ha = rt->spawn(lock_into(m, a, log, "a"));
            run_all();
            REQUIRE(ha.done());
            CHECK(log == log_t{"a waits", "a got"});
            REQUIRE(a.has_value());
            CHECK(a->owns_lock());
            CHECK(a->mutex() == &m);
            CHECK(m.locked());

            mutex::guard moved = std::move(*a);
            CHECK_FALSE(a->owns_lock());
            CHECK(moved.owns_lock());
            a.reset(); // the moved-from guard releases nothing
            CHECK(m.locked());
            moved.unlock();
            CHECK_FALSE(m.locked());
            moved.unlock(); // no effect the second time
            CHECK_FALSE(m.locked());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "try_lock takes a free mutex, never suspends, and gives an "
                                    "empty guard when the mutex is held or handed over") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            mutex::guard g = m.try_lock(); // outside any task
            REQUIRE(g);
            CHECK_FALSE(m.try_lock());

            log_t log;
            guard_slot a;
            task_handle<> ha = rt->spawn(lock_into(m, a, log, "a"));
            run_all();
            CHECK_FALSE(ha.done());
            g.unlock(); // handed to a, which has not run yet
            CHECK(m.locked());
            CHECK_FALSE(m.try_lock()); // no barging
            run_all();
            CHECK(ha.done());
            a.reset();
            CHECK_FALSE(m.locked());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-14 waiters are served in FIFO order, one per unlock, and "
                                    "resume later from the ready queue") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            mutex::guard mine = m.try_lock();
            log_t log;
            guard_slot a;
            guard_slot b;
            guard_slot c;
            task_handle<> ha = rt->spawn(lock_into(m, a, log, "a"));
            task_handle<> hb = rt->spawn(lock_into(m, b, log, "b"));
            task_handle<> hc = rt->spawn(lock_into(m, c, log, "c"));
            run_all();
            CHECK(log == log_t{"a waits", "b waits", "c waits"});

            mine.unlock();
            CHECK(log == log_t{"a waits", "b waits", "c waits"}); // not resumed inside unlock
            run_all();
            CHECK(ha.done());
            CHECK_FALSE(hb.done());
            a.reset();
            run_all();
            CHECK(hb.done());
            CHECK_FALSE(hc.done());
            b.reset();
            run_all();
            CHECK(hc.done());
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a got", "b got", "c got"});
            c.reset();
            CHECK_FALSE(m.locked());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "mutual exclusion holds across suspensions") {
        mutex m;
        int inside = 0;
        int max_inside = 0;
        std::vector<task_handle<>> hs;
        hs.reserve(10);
        for (int i = 0; i < 10; ++i) {
            hs.push_back(rt->spawn(critical(m, inside, max_inside, 1ms)));
        }
        const deadline start = now();
        run_until([&] { return hs.back().done(); });
        CHECK(max_inside == 1);
        CHECK(now() - start == 10ms); // strictly one after the other
        CHECK_FALSE(m.locked());
    }

    // -----------------------------------------------------------------------------------------
    // Cancellation

    TEST_CASE_FIXTURE(loop_fixture, "4.1 cancelled before it starts: lock on a held mutex raises "
                                    "and queues nothing; on a free mutex it is not a cancellation "
                                    "point") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            mutex::guard mine = m.try_lock();
            log_t log;
            task_handle<> self = run_given_own_handle(
                [&](task_handle<>& h) { return self_cancelled_lock(h, m, log); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"raised self"});
            mine.unlock();
            CHECK_FALSE(m.locked()); // nobody queued

            log.clear();
            task_handle<> free_self;
            free_self = rt->spawn(self_cancelled_lock(free_self, m, log));
            run_all();
            CHECK(free_self.cancelled());
            CHECK(log == log_t{"got"}); // the yield() raised; the guard released unwinding
            CHECK_FALSE(m.locked());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "cancelling a parked waiter detaches only it; the others are "
                                    "still served in FIFO order") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            mutex::guard mine = m.try_lock();
            log_t log;
            guard_slot a;
            guard_slot b;
            guard_slot c;
            task_handle<> ha = rt->spawn(lock_into(m, a, log, "a"));
            task_handle<> hb = rt->spawn(lock_into(m, b, log, "b"));
            task_handle<> hc = rt->spawn(lock_into(m, c, log, "c"));
            run_all();
            CHECK(hb.cancel("stop b"));
            run_all();
            CHECK(hb.cancelled());
            CHECK_FALSE(b.has_value());

            mine.unlock(); // to a
            run_all();
            CHECK(ha.done());
            a.reset(); // to c: b no longer queues
            run_all();
            CHECK(hc.done());
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a got", "c got"});
            c.reset();
            CHECK_FALSE(m.locked());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-2 a waiter cancelled after the hand-off gets the lock, "
                                    "raises at its next cancellation point and releases the lock "
                                    "unwinding, to the next waiter") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            mutex::guard mine = m.try_lock();
            log_t log;
            guard_slot b;
            task_handle<> ha = rt->spawn(lock_then_checkpoint(m, log, "a"));
            task_handle<> hb = rt->spawn(lock_into(m, b, log, "b"));
            run_all();

            mine.unlock();            // the hand-off to a is recorded first
            CHECK(ha.cancel("late")); // then a's scope is cancelled, before it resumes
            run_all();
            CHECK(ha.cancelled());
            CHECK(hb.done());
            CHECK(log == log_t{"a waits", "b waits", "a got", "b got"});
            b.reset();
            CHECK_FALSE(m.locked());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 a cancellation recorded before the unlock detaches the "
                                    "waiter: the lock becomes free") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            mutex::guard mine = m.try_lock();
            log_t log;
            guard_slot a;
            task_handle<> ha = rt->spawn(lock_into(m, a, log, "a"));
            run_all();
            CHECK(ha.cancel("stop"));
            mine.unlock();
            CHECK_FALSE(m.locked());
            run_all();
            CHECK(ha.cancelled());
            CHECK_FALSE(a.has_value());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a timeout around a parked lock raises timeout_error at its "
                                    "deadline and takes nothing; released earlier, it returns the "
                                    "guard") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            mutex::guard mine = m.try_lock();
            guard_slot slot;
            const deadline start = now();
            CHECK(run(lock_with_timeout(m, 5ms, slot)) == "timeout");
            CHECK(now() - start == 5ms);
            CHECK_FALSE(slot.has_value());
            mine.unlock();
            CHECK_FALSE(m.locked());
        }
        {
            mutex::guard mine = m.try_lock();
            guard_slot slot;
            const deadline start = now();
            task_handle<> holder = rt->spawn(unlock_after(mine, 3ms));
            task_handle<std::string> h = rt->spawn(lock_with_timeout(m, 5ms, slot));
            run_until([&] { return h.done(); });
            CHECK(now() - start == 3ms);
            REQUIRE(slot.has_value());
            CHECK(slot->owns_lock());
            slot.reset();
            CHECK_FALSE(m.locked());
        }
    }

    TEST_CASE("D-2 a hand-off and a deadline recorded in the same iteration: the timeout returns "
              "the guard") {
        loop_fixture f(loop_fixture::manual_clock());
        mutex m;
        mutex::guard mine = m.try_lock();
        guard_slot slot;
        task_handle<std::string> h = f.rt->spawn(lock_with_timeout(m, 10ms, slot));
        f.run_all();
        mine.unlock();       // hand-off first
        f.rt->advance(10ms); // then the deadline, same iteration
        f.run_until([&] { return h.done(); });
        REQUIRE(slot.has_value());
        CHECK(slot->owns_lock());
        slot.reset();
        CHECK_FALSE(m.locked());
    }

    TEST_CASE("a lock handed to a waiter whose frame is destroyed before it resumes goes back "
              "to the mutex") {
        mutex m;
        std::size_t leaked = 0;
        {
            runtime_options o = loop_fixture::virtual_clock();
            o.shutdown_grace = 0ms; // shutdown destroys the frames without resuming them
            loop_fixture f(o);
            mutex::guard mine = m.try_lock();
            log_t log;
            guard_slot a;
            guard_slot b;
            task_handle<> ha = f.rt->spawn(lock_into(m, a, log, "a"));
            task_handle<> hb = f.rt->spawn(lock_into(m, b, log, "b"));
            f.run_all();
            mine.unlock(); // handed to a, which is ready but has not run
            CHECK(m.locked());
            f.rt->shutdown();
            leaked = f.reported.size();
            CHECK(log == log_t{"a waits", "b waits"});
            CHECK_FALSE(a.has_value());
            CHECK_FALSE(b.has_value());
            CHECK_FALSE(m.locked()); // passed on to b, whose frame went too: free
            f.reported.clear();
        }
        CHECK(leaked == 2);
    }
}
