// SPDX-License-Identifier: MIT
// semaphore: a counting semaphore with FIFO hand-off and RAII permits (asyncio.Semaphore).
// SEMANTICS 1 (cancellation points), 4.1 (protocol of a cancellation point), 4.9 / D-2
// (completion wins: a permit handed over is never dropped, Kotlin #2233), D-1 (level
// triggering), D-14 (resumption from the ready queue only).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
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

/// Acquiring a permit, for the shared waiters of sync_waiters.hpp.
using acquires = takes<semaphore, semaphore::permit, &semaphore::acquire, &semaphore::permit::held>;

/// Where a waiter keeps the permit it got, for the test to release.
using permit_slot = std::optional<semaphore::permit>;

/// Takes the only permit of `s`, which must be free.
semaphore::permit take_the_permit(semaphore& s) {
    std::optional<semaphore::permit> p = s.try_acquire();
    REQUIRE(p.has_value());
    return std::move(*p);
}

/// Holds a permit for `hold`, then lets it go.
task<> hold_for(semaphore& s, loop_clock::duration hold) {
    semaphore::permit p = co_await s.acquire();
    co_await sleep(hold);
}

/// One worker of the conservation test: `rounds` times, acquire (bounded by a timeout of
/// `patience`), hold for 1 ms, release.
task<> worker(semaphore& s, int rounds, loop_clock::duration patience, int& acquired) {
    for (int i = 0; i < rounds; ++i) {
        std::optional<semaphore::permit> p = co_await move_on_after(patience, s.acquire());
        if (p) {
            ++acquired;
            co_await sleep(1ms);
        }
    }
}

} // namespace

TEST_SUITE("semaphore") {

    // -----------------------------------------------------------------------------------------
    // Completes

    TEST_CASE_FIXTURE(loop_fixture, "4.1 acquire with a free permit completes without suspending") {
        semaphore s(2);
        for (int round = 0; round < 2; ++round) {
            permit_slot a;
            permit_slot b;
            // Neither suspended: each body ran to its end before the next task started.
            CHECK(wait_in_a_row(*this, acquires{s, &a}, acquires{s, &b}) ==
                  log_t{"a waits", "a got", "b waits", "b got"});
            CHECK(a->held());
            CHECK(b->held());
            CHECK(s.available() == 0);
            a.reset();
            CHECK(s.available() == 1);
            b.reset();
            CHECK(s.available() == 2);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-14 release hands the permit to a parked waiter, which "
                                    "resumes later from the ready queue") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            log_t log;
            permit_slot a;
            task_handle<> ha = rt->spawn(wait_and_log(acquires{s, &a}, log, "a"));
            run_all();
            CHECK(log == log_t{"a waits"});
            CHECK_FALSE(ha.done());

            mine->release();
            CHECK(log == log_t{"a waits"}); // not resumed inside release()
            CHECK(s.available() == 0);      // handed over, not made free

            run_all();
            CHECK(ha.done());
            CHECK(log == log_t{"a waits", "a got"});
            REQUIRE(a.has_value());
            CHECK(a->held());
            a.reset();
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "waiters are served in FIFO order, one permit per release") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            log_t log;
            std::vector<permit_slot> slots(3);
            std::vector<task_handle<>> hs = park_waiters(
                *this, log, acquires{s, &slots[0]}, acquires{s, &slots[1]}, acquires{s, &slots[2]});
            // The permit goes to a, the first waiter, then to b, then to c.
            hand_down(*this, log, hs, slots, {0, 1, 2}, [&] { mine.reset(); });
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a got", "b got", "c got"});
            CHECK(s.available() == 0);
            slots[2].reset();
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a permit handed to a waiter cannot be taken by try_acquire "
                                    "or by a later acquire before the waiter runs") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            log_t log;
            permit_slot a;
            permit_slot late;
            task_handle<> ha = rt->spawn(wait_and_log(acquires{s, &a}, log, "a"));
            run_all();

            // The newcomer is queued to run before a is made ready.
            task_handle<> hl = rt->spawn(wait_and_log(acquires{s, &late}, log, "late"));
            mine.reset(); // handed to a, which has not run yet
            CHECK(s.available() == 0);
            CHECK_FALSE(s.try_acquire()); // no barging
            run_all();
            CHECK(ha.done());
            CHECK_FALSE(hl.done()); // the newcomer queues behind
            CHECK(log == log_t{"a waits", "late waits", "a got"});

            a.reset();
            run_all();
            CHECK(hl.done());
            late.reset();
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "try_acquire takes a free permit and never suspends; it "
                                    "returns nothing when none is free or a waiter queues") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            std::optional<semaphore::permit> p = s.try_acquire(); // outside any task
            REQUIRE(p.has_value());
            CHECK(p->held());
            CHECK(s.available() == 0);
            CHECK_FALSE(s.try_acquire().has_value());

            log_t log;
            permit_slot a;
            task_handle<> ha = rt->spawn(wait_and_log(acquires{s, &a}, log, "a"));
            run_all();
            CHECK_FALSE(ha.done());
            CHECK_FALSE(s.try_acquire().has_value());

            p.reset();
            run_all();
            CHECK(ha.done());
            a.reset();
            CHECK(s.available() == 1);
        }
    }

    // -----------------------------------------------------------------------------------------
    // RAII permits

    TEST_CASE_FIXTURE(loop_fixture, "a permit releases on destruction and on release(), once") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            {
                semaphore::permit p = std::move(*s.try_acquire());
                CHECK(p.held());
                CHECK(s.available() == 0);
            }
            CHECK(s.available() == 1);

            semaphore::permit p = std::move(*s.try_acquire());
            p.release();
            CHECK_FALSE(p.held());
            CHECK(s.available() == 1);
            p.release(); // no effect the second time
            CHECK(s.available() == 1);
        }
        semaphore::permit empty;
        CHECK_FALSE(empty.held());
        empty.release();
        CHECK(s.available() == 1);
    }

    TEST_CASE_FIXTURE(loop_fixture, "moving a permit transfers it; the moved-from permit "
                                    "releases nothing") {
        semaphore s(2);
        for (int round = 0; round < 2; ++round) {
            semaphore::permit a = std::move(*s.try_acquire());
            semaphore::permit b(std::move(a));
            CHECK_FALSE(a.held()); // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
            CHECK(b.held());
            CHECK(s.available() == 1);
            a = semaphore::permit();
            CHECK(s.available() == 1);

            // Move assignment releases the permit the target held.
            semaphore::permit c = std::move(*s.try_acquire());
            CHECK(s.available() == 0);
            c = std::move(b);
            CHECK(s.available() == 1);
            CHECK(c.held());
            CHECK_FALSE(b.held()); // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
            c.release();
            CHECK(s.available() == 2);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a permit released while a task waits is handed to it") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            semaphore::permit mine = std::move(*s.try_acquire());
            log_t log;
            permit_slot a;
            task_handle<> ha = rt->spawn(wait_and_log(acquires{s, &a}, log, "a"));
            run_all();
            CHECK_FALSE(ha.done());
            semaphore::permit moved(std::move(mine));
            moved = semaphore::permit(); // releases: hands to a
            CHECK(s.available() == 0);
            run_all();
            CHECK(ha.done());
            a.reset();
            CHECK(s.available() == 1);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled before start

    TEST_CASE_FIXTURE(loop_fixture, "4.1 acquire in an already cancelled scope raises without "
                                    "queueing, so a later release makes the permit free") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            CHECK(self_cancelled_log(*this, acquires{s}) == log_t{"raised self"});

            mine.reset(); // nobody waits: the permit becomes free, nothing was taken
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 acquire with a free permit in a cancelled scope is not a "
                                    "cancellation point: it takes the permit and the next "
                                    "cancellation point raises, releasing it") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            // The yield() raised; the permit was released unwinding.
            CHECK(self_cancelled_log(*this, acquires{s}) == log_t{"got"});
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-5 move_on_after(0ms) around an acquire with no free permit "
                                    "moves on at once and queues nothing") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            permit_slot slot;
            const deadline start = now();
            CHECK(run(wait_or_move_on(acquires{s, &slot}, 0ms)) == "moved on");
            CHECK(now() - start == 0ms);
            CHECK_FALSE(slot.has_value());
            mine.reset(); // nobody waits
            CHECK(s.available() == 1);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled while pending

    TEST_CASE_FIXTURE(loop_fixture, "cancelling a parked waiter detaches only it; the others are "
                                    "still served in FIFO order") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            log_t log;
            std::vector<permit_slot> slots(3);
            std::vector<task_handle<>> hs = park_waiters(
                *this, log, acquires{s, &slots[0]}, acquires{s, &slots[1]}, acquires{s, &slots[2]});
            cancel_and_check(*this, hs[1], "stop b", log); // D-14: b did not run yet
            CHECK_FALSE(slots[1].has_value());
            CHECK_FALSE(hs[0].done());
            CHECK_FALSE(hs[2].done());

            // To a, then to c: b is no longer queued.
            hand_down(*this, log, hs, slots, {0, 2}, [&] { mine.reset(); });
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a got", "c got"});
            slots[2].reset();
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "cancelling the only parked waiter leaves the semaphore as if "
                                    "it had never waited") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            log_t log;
            permit_slot a;
            task_handle<> ha = rt->spawn(wait_and_log(acquires{s, &a}, log, "a"));
            run_all();
            CHECK(ha.cancel());
            run_all();
            CHECK(ha.cancelled());
            mine.reset();
            CHECK(s.available() == 1); // not handed to the cancelled waiter
            CHECK(s.try_acquire().has_value());
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled after completion, before resumption

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-2 4.9 a waiter cancelled after the hand-off gets the permit, "
                      "raises at its next cancellation point and releases the permit "
                      "unwinding (Kotlin #2233)") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            // The hand-off is recorded (a is ready), then a's scope is cancelled, before it
            // resumes.
            const log_t log = late_cancel_log(*this, acquires{s}, [&] {
                mine.reset();
                CHECK(s.available() == 0);
            });
            CHECK(log == log_t{"a waits", "a got"});
            CHECK(s.available() == 1); // released as it unwound: no leak
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 a waiter cancelled while parked raises and takes nothing "
                                    "even if a permit is released before it resumes") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            permit_slot a;
            const log_t log = cancel_first_then_complete(
                *this,
                [&] {
                    mine.reset(); // a is no longer queued: the permit becomes free
                    CHECK(s.available() == 1);
                },
                acquires{s, &a});
            CHECK(log == log_t{"a waits"});
            CHECK_FALSE(a.has_value());
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-2 the permit released by a waiter unwinding after a late "
                                    "cancellation goes to the next waiter") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            permit_slot b;
            late_cancel_passes_on(*this, acquires{s}, acquires{s, &b}, [&] { mine.reset(); });
            CHECK(s.available() == 0);
            b.reset();
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE("D-2 4.9 a hand-off and a deadline recorded in the same iteration: the timeout "
              "returns the permit (5.8)") {
        loop_fixture f(loop_fixture::manual_clock());
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            permit_slot slot;
            // The hand-off is recorded first, then the scope's deadline passes, same iteration.
            CHECK(complete_and_deadline(
                      f, acquires{s, &slot}, [&] { mine.reset(); }, true) == "got");
            REQUIRE(slot.has_value());
            CHECK(slot->held());
            CHECK(s.available() == 0);
            slot.reset();
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE("4.9 a deadline recorded before the hand-off detaches the waiter: the permit stays "
              "free") {
        loop_fixture f(loop_fixture::manual_clock());
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            permit_slot slot;
            // The waiter is detached first; then nobody waits any more.
            const std::string got = complete_and_deadline(
                f, acquires{s, &slot},
                [&] {
                    mine.reset();
                    CHECK(s.available() == 1);
                },
                false);
            CHECK(got == "moved on");
            CHECK_FALSE(slot.has_value());
            CHECK(s.available() == 1);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled twice

    TEST_CASE_FIXTURE(loop_fixture, "D-11 cancelling a parked waiter twice detaches it once and "
                                    "keeps the first message") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            log_t log;
            permit_slot a;
            permit_slot b;
            std::vector<task_handle<>> hs =
                park_waiters(*this, log, acquires{s, &a}, acquires{s, &b});
            cancel_twice_and_check(*this, hs[0]);

            mine.reset(); // to b
            run_all();
            CHECK(hs[1].done());
            b.reset();
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-1 a waiter that swallows its cancellation and acquires again "
                      "raises again without queueing") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            swallow_and_wait_again_raises(*this, acquires{s});
            mine.reset();
            CHECK(s.available() == 1);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Inside timeout / move_on_after

    TEST_CASE_FIXTURE(loop_fixture, "5.6 a timeout around a parked acquire throws timeout_error at "
                                    "its deadline and takes no permit") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            times_out(*this, acquires{s});
            mine.reset(); // nobody waits
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a timeout around an acquire returns the permit when one is "
                                    "released before the deadline") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            const deadline start = now();
            task_handle<> holder = rt->spawn(hold_for(s, 3ms));
            task_handle<std::string> waiter = rt->spawn(wait_with_timeout(acquires{s}, 10ms));
            run_until([&] { return holder.done() && waiter.done(); });
            CHECK(now() - start == 3ms);
            CHECK(run(join(waiter)) == "got");
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "move_on_after around a parked acquire moves on at its deadline "
                      "and the permit goes to the next waiter") {
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            log_t log;
            permit_slot first;
            permit_slot second;
            const deadline start = now();
            task_handle<std::string> h1 = rt->spawn(wait_or_move_on(acquires{s, &first}, 5ms));
            task_handle<> h2 = rt->spawn(wait_and_log(acquires{s, &second}, log, "second"));
            run_until([&] { return h1.done(); });
            CHECK(now() - start == 5ms);
            CHECK_FALSE(first.has_value());
            CHECK_FALSE(h2.done());

            mine.reset();
            run_all();
            CHECK(h2.done());
            second.reset();
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE("4.8 a task cancellation passes through a timeout around an acquire as "
              "cancelled_error") {
        loop_fixture f(loop_fixture::manual_clock());
        semaphore s(1);
        for (int round = 0; round < 2; ++round) {
            permit_slot mine(take_the_permit(s));
            cancel_through_timeout(f, acquires{s}); // not converted into timeout_error
            mine.reset();
            CHECK(s.available() == 1);
        }
    }

    TEST_CASE("a permit handed to a waiter whose frame is destroyed before it resumes goes "
              "back to the semaphore") {
        semaphore s(1);
        permit_slot a;
        permit_slot b;
        permit_slot mine(take_the_permit(s));
        const std::size_t leaked = destroy_before_resuming(acquires{s, &a}, acquires{s, &b}, [&] {
            mine.reset(); // handed to a, which is ready but has not run
            CHECK(s.available() == 0);
        });
        CHECK_FALSE(a.has_value());
        CHECK_FALSE(b.has_value());
        CHECK(s.available() == 1); // passed on to b, whose frame went too: free
        CHECK(leaked == 2);
    }

    // -----------------------------------------------------------------------------------------
    // Conservation

    TEST_CASE_FIXTURE(loop_fixture, "permits are conserved across hand-offs, timeouts and "
                                    "cancellations (Kotlin #2233)") {
        semaphore s(3);
        for (int round = 0; round < 2; ++round) {
            constexpr int workers = 40;
            std::vector<task_handle<>> hs;
            int acquired = 0;
            hs.reserve(workers);
            for (int i = 0; i < workers; ++i) {
                hs.push_back(
                    rt->spawn(worker(s, 5, std::chrono::milliseconds(1 + i % 4), acquired)));
            }
            // Cancel every seventh worker once it had a chance to park or hold a permit.
            run_until([&] { return acquired > 0; });
            for (int i = 0; i < workers; i += 7) {
                hs[static_cast<std::size_t>(i)].cancel();
            }
            run_until([&] {
                for (const auto& h : hs) {
                    if (!h.done()) {
                        return false;
                    }
                }
                return true;
            });
            CHECK(acquired > 0);
            CHECK(s.available() == 3);
            CHECK(s.try_acquire().has_value());
        }
    }
}
