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
#include "sync_waiters.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using namespace uvasync::test;

using guard_slot = std::optional<mutex::guard>;

/// Locking, for the shared waiters of sync_waiters.hpp.
using locks = takes<mutex, mutex::guard, &mutex::lock, &mutex::guard::owns_lock>;

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
            task_handle<> ha = rt->spawn(wait_and_log(locks{m, &a}, log, "a"));
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
            task_handle<> ha = rt->spawn(wait_and_log(locks{m, &a}, log, "a"));
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
            std::vector<guard_slot> slots(3);
            std::vector<task_handle<>> hs = park_waiters(*this, log, locks{m, &slots[0]},
                                                         locks{m, &slots[1]}, locks{m, &slots[2]});
            // Not resumed inside unlock; a, then b, then c.
            hand_down(*this, log, hs, slots, {0, 1, 2}, [&] { mine.unlock(); });
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a got", "b got", "c got"});
            slots[2].reset();
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
            CHECK(self_cancelled_log(*this, locks{m}) == log_t{"raised self"});
            mine.unlock();
            CHECK_FALSE(m.locked()); // nobody queued

            // The yield() raised; the guard was released unwinding.
            CHECK(self_cancelled_log(*this, locks{m}) == log_t{"got"});
            CHECK_FALSE(m.locked());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "cancelling a parked waiter detaches only it; the others are "
                                    "still served in FIFO order") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            mutex::guard mine = m.try_lock();
            log_t log;
            std::vector<guard_slot> slots(3);
            std::vector<task_handle<>> hs = park_waiters(*this, log, locks{m, &slots[0]},
                                                         locks{m, &slots[1]}, locks{m, &slots[2]});
            cancel_and_check(*this, hs[1], "stop b", log);
            CHECK_FALSE(slots[1].has_value());

            // To a, then to c: b no longer queues.
            hand_down(*this, log, hs, slots, {0, 2}, [&] { mine.unlock(); });
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a got", "c got"});
            slots[2].reset();
            CHECK_FALSE(m.locked());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-2 a waiter cancelled after the hand-off gets the lock, "
                                    "raises at its next cancellation point and releases the lock "
                                    "unwinding, to the next waiter") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            mutex::guard mine = m.try_lock();
            guard_slot b;
            // The hand-off to a is recorded first, then a's scope is cancelled, before it
            // resumes.
            late_cancel_passes_on(*this, locks{m}, locks{m, &b}, [&] { mine.unlock(); });
            b.reset();
            CHECK_FALSE(m.locked());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 a cancellation recorded before the unlock detaches the "
                                    "waiter: the lock becomes free") {
        mutex m;
        for (int round = 0; round < 2; ++round) {
            mutex::guard mine = m.try_lock();
            guard_slot a;
            const log_t log = cancel_first_then_complete(
                *this,
                [&] {
                    mine.unlock();
                    CHECK_FALSE(m.locked());
                },
                locks{m, &a});
            CHECK(log == log_t{"a waits"});
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
            times_out(*this, locks{m, &slot});
            CHECK_FALSE(slot.has_value());
            mine.unlock();
            CHECK_FALSE(m.locked());
        }
        {
            mutex::guard mine = m.try_lock();
            guard_slot slot;
            const deadline start = now();
            task_handle<> holder = rt->spawn(unlock_after(mine, 3ms));
            task_handle<std::string> h = rt->spawn(wait_with_timeout(locks{m, &slot}, 5ms));
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
        task_handle<std::string> h = f.rt->spawn(wait_with_timeout(locks{m, &slot}, 10ms));
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
        guard_slot a;
        guard_slot b;
        mutex::guard mine = m.try_lock();
        const std::size_t leaked = destroy_before_resuming(locks{m, &a}, locks{m, &b}, [&] {
            mine.unlock(); // handed to a, which is ready but has not run
            CHECK(m.locked());
        });
        CHECK_FALSE(a.has_value());
        CHECK_FALSE(b.has_value());
        CHECK_FALSE(m.locked()); // passed on to b, whose frame went too: free
        CHECK(leaked == 2);
    }
}
