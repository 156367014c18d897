// SPDX-License-Identifier: MIT
// queue<T>: a FIFO queue between tasks, optionally bounded (asyncio.Queue).
// SEMANTICS 1 (cancellation points: waiting for a queue; awaiting something already available
// is not one), 4.1 (protocol of a cancellation point), 4.9 / D-2 (completion wins: an item handed
// over is never dropped), D-1 (level triggering), D-11 (first message wins), D-14 (resumption
// from the ready queue only).
#include <chrono>
#include <cstddef>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
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

/// Getting from a queue, for the shared waiters of sync_waiters.hpp.
struct getter {
    queue<int>& q;

    [[nodiscard]] auto wait() const { return q.get(); }

    [[nodiscard]] static std::string got(int v) { return "got " + std::to_string(v); }
};

/// Putting `v` into a queue, for the shared waiters of sync_waiters.hpp.
struct putter {
    queue<int>& q;
    int v;

    [[nodiscard]] auto wait() const { return q.put(v); }

    [[nodiscard]] std::string got() const { return "put " + std::to_string(v); }
};

task<> get_and_log(queue<int>& q, log_t& log, std::string name) {
    return wait_and_log(getter{q}, log, std::move(name));
}

task<> put_and_log(queue<int>& q, int v, log_t& log, std::string name) {
    log.push_back(name + " puts " + std::to_string(v));
    co_await q.put(v);
    log.push_back(name + " put " + std::to_string(v));
}

/// Gets `n` items in a row and logs each.
task<> get_n(queue<int>& q, int n, log_t& log, std::string name) {
    for (int i = 0; i < n; ++i) {
        const int v = co_await q.get();
        log.push_back(name + " got " + std::to_string(v));
    }
}

task<> put_after(queue<int>& q, int v, loop_clock::duration d) {
    co_await sleep(d);
    co_await q.put(v);
}

task<> get_after(queue<int>& q, loop_clock::duration d, std::vector<int>& got) {
    co_await sleep(d);
    got.push_back(co_await q.get());
}

/// Puts 1..n and logs the loop-clock time (relative to `start`) at which each put completed.
task<> produce(queue<int>& q, int n, deadline start, log_t& log) {
    for (int i = 1; i <= n; ++i) {
        co_await q.put(i);
        log.push_back("put " + std::to_string(i) + " at +" +
                      std::to_string((loop_clock::now() - start).count()));
    }
}

using owned = std::unique_ptr<counted>;

task<> get_owned(queue<owned>& q, std::vector<owned>& got) {
    got.push_back(co_await q.get());
}

task<> get_owned_then_checkpoint(queue<owned>& q, int& received) {
    owned item = co_await q.get();
    received += item != nullptr ? 1 : 0;
    co_await yield();
}

/// Everything `q` holds right now, by try_get.
task<int> join_future(future<int> f) {
    co_return co_await f;
}

std::vector<int> drain(queue<int>& q) {
    std::vector<int> out;
    while (std::optional<int> v = q.try_get()) {
        out.push_back(*v);
    }
    return out;
}

} // namespace

TEST_SUITE("queue") {

    // -----------------------------------------------------------------------------------------
    // Construction, try_put, try_get

    TEST_CASE_FIXTURE(loop_fixture, "a queue with capacity 0 is std::invalid_argument") {
        CHECK_THROWS_AS(queue<int>(0), std::invalid_argument);
        queue<int> one(1);
        CHECK(one.capacity() == 1);
        queue<int> unbounded;
        CHECK(unbounded.capacity() == std::numeric_limits<std::size_t>::max());
        CHECK(unbounded.empty());
        CHECK_FALSE(unbounded.full());
    }

    TEST_CASE_FIXTURE(loop_fixture, "try_put and try_get never suspend: try_put refuses when full, "
                                    "try_get returns nothing when empty, items come out FIFO") {
        queue<int> q(2);
        for (int round = 0; round < 2; ++round) {
            CHECK_FALSE(q.try_get().has_value());
            CHECK(q.try_put(1));
            CHECK(q.try_put(2));
            CHECK(q.full());
            CHECK(q.size() == 2);
            CHECK_FALSE(q.try_put(3));
            CHECK(q.size() == 2);
            CHECK(q.try_get() == std::optional<int>(1));
            CHECK_FALSE(q.full());
            CHECK(q.try_put(3));
            CHECK(drain(q) == std::vector<int>{2, 3});
            CHECK(q.empty());
        }
    }

    // -----------------------------------------------------------------------------------------
    // Completes

    TEST_CASE_FIXTURE(loop_fixture, "1 get with items queued and put with room complete without "
                                    "suspending") {
        queue<int> q(2);
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> p1 = rt->spawn(put_and_log(q, 1, log, "p"));
            task_handle<> g = rt->spawn(get_n(q, 1, log, "g"));
            task_handle<> p2 = rt->spawn(put_and_log(q, 2, log, "q"));
            run_all();
            CHECK(p1.done());
            CHECK(g.done());
            CHECK(p2.done());
            CHECK(log == log_t{"p puts 1", "p put 1", "g got 1", "q puts 2", "q put 2"});
            CHECK(drain(q) == std::vector<int>{2});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-14 a put with a parked getter hands the item over directly; "
                                    "the getter resumes later from the ready queue") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> g = rt->spawn(get_and_log(q, log, "g"));
            run_all();
            CHECK(log == log_t{"g waits"});

            CHECK(q.try_put(5));
            CHECK(q.size() == 0); // handed to the getter, not stored
            CHECK(log == log_t{"g waits"});
            run_all();
            CHECK(g.done());
            CHECK(log == log_t{"g waits", "g got 5"});
            CHECK(q.empty());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "parked getters are served in FIFO order, one item each") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> a = rt->spawn(get_and_log(q, log, "a"));
            task_handle<> b = rt->spawn(get_and_log(q, log, "b"));
            task_handle<> c = rt->spawn(get_and_log(q, log, "c"));
            run_all();
            task_handle<> p = rt->spawn(put_and_log(q, 10, log, "p"));
            run_all();
            CHECK(q.try_put(20));
            CHECK(q.try_put(30));
            CHECK(q.try_put(40)); // no getter left: stored
            run_all();
            CHECK(a.done());
            CHECK(b.done());
            CHECK(c.done());
            CHECK(p.done());
            CHECK(log == log_t{"a waits", "b waits", "c waits", "p puts 10", "p put 10", "a got 10",
                               "b got 20", "c got 30"});
            CHECK(drain(q) == std::vector<int>{40});
        }
    }

    // -----------------------------------------------------------------------------------------
    // Bounded queue: backpressure

    TEST_CASE_FIXTURE(loop_fixture, "a put on a full queue waits; a get admits the first parked "
                                    "putter's item, in FIFO order") {
        queue<int> q(2);
        for (int round = 0; round < 2; ++round) {
            log_t log;
            CHECK(q.try_put(1));
            CHECK(q.try_put(2));
            task_handle<> p3 = rt->spawn(put_and_log(q, 3, log, "p3"));
            task_handle<> p4 = rt->spawn(put_and_log(q, 4, log, "p4"));
            run_all();
            CHECK(log == log_t{"p3 puts 3", "p4 puts 4"});
            CHECK(q.size() == 2);
            CHECK_FALSE(q.try_put(5)); // full, and putters queue ahead

            CHECK(q.try_get() == std::optional<int>(1)); // admits p3's item
            CHECK(q.size() == 2);
            CHECK(q.full());
            CHECK(log == log_t{"p3 puts 3", "p4 puts 4"}); // D-14: p3 resumes later
            run_all();
            CHECK(p3.done());
            CHECK_FALSE(p4.done());

            // A get() by a task admits the next putter the same way.
            task_handle<> g = rt->spawn(get_n(q, 1, log, "g"));
            run_all();
            CHECK(g.done());
            CHECK(p4.done());
            CHECK(log == log_t{"p3 puts 3", "p4 puts 4", "p3 put 3", "g got 2", "p4 put 4"});
            CHECK(drain(q) == std::vector<int>{3, 4});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a producer faster than its consumer is slowed to the "
                                    "consumer's pace by a bounded queue") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            std::vector<int> got;
            const deadline start = now();
            std::vector<task_handle<>> consumers;
            for (int i = 1; i <= 3; ++i) {
                consumers.push_back(
                    rt->spawn(get_after(q, std::chrono::milliseconds(10 * i), got)));
            }
            log_t log;
            task_handle<> producer = rt->spawn(produce(q, 4, start, log));
            run_until([&] { return producer.done(); });
            // 1 fits at once; 2 waits for the get at +10; 3 for +20; 4 for +30.
            CHECK(now() - start == 30ms);
            CHECK(log == log_t{"put 1 at +0", "put 2 at +10", "put 3 at +20", "put 4 at +30"});
            run_all();
            CHECK(got == std::vector<int>{1, 2, 3});
            CHECK(drain(q) == std::vector<int>{4});
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled before start

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.1 get on an empty queue in an already cancelled scope raises "
                      "and does not become a getter: a later item is not consumed "
                      "by it") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            CHECK(self_cancelled_log(*this, getter{q}) == log_t{"raised self"});

            CHECK(q.try_put(7));
            CHECK(q.size() == 1); // stored, not handed to a dead getter
            CHECK(drain(q) == std::vector<int>{7});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 put on a full queue in an already cancelled scope raises "
                                    "and adds nothing, not even later") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            CHECK(q.try_put(1));
            CHECK(self_cancelled_log(*this, putter{q, 2}) == log_t{"raised self"});
            CHECK(q.size() == 1);
            CHECK(q.try_get() == std::optional<int>(1)); // admits nobody
            CHECK(q.empty());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 get with an item queued is not a cancellation point: a "
                                    "cancelled task receives it and the next cancellation point "
                                    "raises") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            CHECK(q.try_put(3));
            CHECK(self_cancelled_log(*this, getter{q}) == log_t{"got 3"});
            CHECK(q.empty());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 put with room is not a cancellation point: a cancelled "
                                    "task stores the item and the next cancellation point raises") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            CHECK(self_cancelled_log(*this, putter{q, 4}) == log_t{"put 4"});
            CHECK(drain(q) == std::vector<int>{4});
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled while pending

    TEST_CASE_FIXTURE(loop_fixture, "cancelling a parked getter detaches only it; the others are "
                                    "still served in FIFO order") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            std::vector<task_handle<>> hs =
                park_waiters(*this, log, getter{q}, getter{q}, getter{q});
            task_handle<>& a = hs[0];
            task_handle<>& c = hs[2];
            cancel_and_check(*this, hs[1], "stop b", log);
            CHECK_FALSE(a.done());
            CHECK_FALSE(c.done());

            CHECK(q.try_put(10));
            CHECK(q.try_put(20));
            CHECK(q.empty()); // both handed over; b took nothing
            run_all();
            CHECK(a.done());
            CHECK(c.done());
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a got 10", "c got 20"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "cancelling a parked putter detaches only it; its item is never "
                      "added and the other putters are admitted in FIFO order") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            CHECK(q.try_put(0));
            log_t log;
            task_handle<> p1 = rt->spawn(put_and_log(q, 1, log, "p1"));
            task_handle<> p2 = rt->spawn(put_and_log(q, 2, log, "p2"));
            task_handle<> p3 = rt->spawn(put_and_log(q, 3, log, "p3"));
            run_all();
            cancel_and_check(*this, p2, "stop p2", log);

            std::vector<int> got;
            for (int i = 0; i < 3; ++i) {
                std::optional<int> v = q.try_get();
                REQUIRE(v.has_value());
                got.push_back(*v);
                run_all();
            }
            CHECK(got == std::vector<int>{0, 1, 3});
            CHECK(q.empty());
            CHECK(p1.done());
            CHECK(p3.done());
            CHECK(log == log_t{"p1 puts 1", "p2 puts 2", "p3 puts 3", "p1 put 1", "p3 put 3"});
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled after completion, before resumption

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-2 4.9 a getter cancelled after the hand-off receives the item "
                      "and raises at its next cancellation point") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            // Handed over (the getter is ready), then cancelled before it resumes.
            CHECK(late_cancel_log(*this, getter{q}, [&] { CHECK(q.try_put(7)); }) ==
                  log_t{"a waits", "a got 7"});
            CHECK(q.empty()); // the item was delivered, not put back or duplicated
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-2 4.9 a putter cancelled after its item was admitted has put "
                      "it and raises at its next cancellation point") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            CHECK(q.try_put(0));
            const log_t log = late_cancel_log(*this, putter{q, 1}, [&] {
                CHECK(q.try_get() == std::optional<int>(0)); // admits the putter's item
            });
            CHECK(log == log_t{"a waits", "a put 1"});
            CHECK(drain(q) == std::vector<int>{1});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 a getter cancelled while parked raises and takes nothing "
                                    "even if an item is put before it resumes") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            const log_t log = cancel_first_then_complete(
                *this,
                [&] {
                    CHECK(q.try_put(5)); // no longer a getter: the item is stored
                    CHECK(q.size() == 1);
                },
                getter{q});
            CHECK(log == log_t{"a waits"});
            CHECK(drain(q) == std::vector<int>{5});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-2 move-only items are neither lost nor leaked when getters "
                                    "are cancelled before or after the hand-off") {
        queue<owned> q;
        for (int round = 0; round < 2; ++round) {
            const auto live_before = counted::live().load();
            int received = 0;
            std::vector<owned> got;
            task_handle<> early = rt->spawn(get_owned(q, got));
            task_handle<> late = rt->spawn(get_owned_then_checkpoint(q, received));
            task_handle<> keeper = rt->spawn(get_owned(q, got));
            run_all();
            CHECK(early.cancel()); // while parked: takes nothing
            run_all();
            CHECK(q.try_put(std::make_unique<counted>())); // to late
            CHECK(late.cancel());                          // after the hand-off
            CHECK(q.try_put(std::make_unique<counted>())); // to keeper
            CHECK(q.try_put(std::make_unique<counted>())); // stored
            run_all();
            CHECK(early.cancelled());
            CHECK(late.cancelled());
            CHECK(keeper.done());
            CHECK(received == 1);
            REQUIRE(got.size() == 1);
            CHECK(got[0] != nullptr);
            CHECK(q.size() == 1);
            CHECK(counted::live().load() == live_before + 2); // got[0] and the stored one
            got.clear();
            CHECK(q.try_get().has_value());
            CHECK(counted::live().load() == live_before);
        }
    }

    TEST_CASE("D-2 4.9 a hand-off and a deadline recorded in the same iteration: the item is "
              "returned") {
        loop_fixture f(loop_fixture::manual_clock());
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            // The put is recorded first, then the deadline, before the getter resumes.
            CHECK(complete_and_deadline(
                      f, getter{q}, [&] { CHECK(q.try_put(5)); }, true) == "got 5");
            CHECK(q.empty());
        }
    }

    TEST_CASE("4.9 a deadline recorded before the put detaches the getter: the item stays "
              "queued") {
        loop_fixture f(loop_fixture::manual_clock());
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            const std::string got = complete_and_deadline(
                f, getter{q},
                [&] {
                    CHECK(q.try_put(5));
                    CHECK(q.size() == 1);
                },
                false);
            CHECK(got == "moved on");
            CHECK(drain(q) == std::vector<int>{5});
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled twice

    TEST_CASE_FIXTURE(loop_fixture, "D-11 cancelling a parked getter twice detaches it once and "
                                    "keeps the first message") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            std::vector<task_handle<>> hs = park_waiters(*this, log, getter{q}, getter{q});
            cancel_twice_and_check(*this, hs[0]);

            CHECK(q.try_put(1));
            CHECK(q.try_put(2));
            run_all();
            CHECK(hs[1].done());
            CHECK(log == log_t{"a waits", "b waits", "b got 1"});
            CHECK(drain(q) == std::vector<int>{2});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-1 a getter that swallows its cancellation and gets again "
                                    "raises again without queueing") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            swallow_and_wait_again_raises(*this, getter{q});
            CHECK(q.try_put(9));
            CHECK(q.size() == 1); // no getter was left behind
            CHECK(drain(q) == std::vector<int>{9});
        }
    }

    // -----------------------------------------------------------------------------------------
    // Inside timeout / move_on_after

    TEST_CASE_FIXTURE(loop_fixture, "5.6 a timeout around a get on an empty queue throws "
                                    "timeout_error at its deadline and leaves no getter behind") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            const deadline start = now();
            times_out(*this, getter{q});
            CHECK(q.try_put(1));
            CHECK(q.size() == 1);
            CHECK(run(wait_with_timeout(getter{q}, 5ms)) == "got 1"); // available: no suspension
            CHECK(now() - start == 5ms);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.6 a timeout around a put on a full queue throws "
                                    "timeout_error at its deadline and adds nothing") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            CHECK(q.try_put(1));
            times_out(*this, putter{q, 2});
            CHECK(q.try_get() == std::optional<int>(1)); // admits nobody
            CHECK(q.empty());
            CHECK(run(wait_with_timeout(putter{q, 3}, 5ms)) == "put 3");
            CHECK(drain(q) == std::vector<int>{3});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "move_on_after around get and put returns when the other side "
                                    "arrives before the deadline and moves on otherwise") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            deadline start = now();
            task_handle<std::string> g = rt->spawn(wait_or_move_on(getter{q}, 10ms));
            task_handle<> p = rt->spawn(put_after(q, 6, 3ms));
            run_until([&] { return g.done() && p.done(); });
            CHECK(now() - start == 3ms);
            CHECK(run(join(g)) == "got 6");

            start = now();
            CHECK(run(wait_or_move_on(getter{q}, 10ms)) == "moved on");
            CHECK(now() - start == 10ms);

            CHECK(q.try_put(1));
            start = now();
            CHECK(run(wait_or_move_on(putter{q, 2}, 10ms)) == "moved on");
            CHECK(now() - start == 10ms);
            CHECK(drain(q) == std::vector<int>{1});
        }
    }

    TEST_CASE("4.8 a task cancellation passes through a timeout around a get as cancelled_error") {
        loop_fixture f(loop_fixture::manual_clock());
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            cancel_through_timeout(f, getter{q});
            CHECK(q.try_put(1));
            CHECK(drain(q) == std::vector<int>{1});
        }
    }

    TEST_CASE("an item handed to a getter whose frame is destroyed before it resumes goes back "
              "to the head of the queue") {
        queue<owned> q(1);
        std::size_t leaked = 0;
        const auto live_before = counted::live().load();
        {
            runtime_options o = loop_fixture::virtual_clock();
            o.shutdown_grace = 0ms; // shutdown destroys the frames without resuming them
            loop_fixture f(o);
            std::vector<owned> got_a;
            std::vector<owned> got_b;
            task_handle<> ha = f.rt->spawn(get_owned(q, got_a));
            task_handle<> hb = f.rt->spawn(get_owned(q, got_b));
            f.run_all();                                   // both park
            CHECK(q.try_put(std::make_unique<counted>())); // handed to a, which has not run
            CHECK(q.try_put(std::make_unique<counted>())); // handed to b
            CHECK(q.empty());
            f.rt->shutdown();
            leaked = f.reported.size();
            CHECK(got_a.empty());
            CHECK(got_b.empty());
            f.reported.clear();
            // Both items are back and alive (not destroyed with the frames).
            CHECK(q.size() == 2);
            CHECK(counted::live().load() == live_before + 2);
            while (!q.empty()) {
                (void)q.try_get();
            }
            CHECK(counted::live().load() == live_before);
        }
        CHECK(leaked == 2);
    }

    TEST_CASE("a future's value stays with the future when a waiter's frame is destroyed before "
              "it resumes") {
        promise<int> p;
        future<int> fut = p.get_future();
        {
            runtime_options o = loop_fixture::virtual_clock();
            o.shutdown_grace = 0ms;
            loop_fixture f(o);
            task_handle<int> h = f.rt->spawn(join_future(fut));
            f.run_all();
            CHECK(p.set_value(5)); // the waiter is woken but never resumes
            f.rt->shutdown();
            CHECK(f.reported.size() == 1);
            f.reported.clear();
        }
        CHECK(fut.done());
        loop_fixture f;
        CHECK(f.run(join_future(fut)) == 5);
    }
}
