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

task<> get_and_log(queue<int>& q, log_t& log, std::string name) {
    log.push_back(name + " waits");
    const int v = co_await q.get();
    log.push_back(name + " got " + std::to_string(v));
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

/// Gets an item, then reaches one more cancellation point. A getter cancelled after the
/// hand-off receives the item (D-2) and raises at the `yield()`.
task<> get_then_checkpoint(queue<int>& q, log_t& log, std::string name) {
    log.push_back(name + " waits");
    const int v = co_await q.get();
    log.push_back(name + " got " + std::to_string(v));
    co_await yield();
    log.push_back(name + " passed the checkpoint");
}

task<> put_then_checkpoint(queue<int>& q, int v, log_t& log, std::string name) {
    log.push_back(name + " puts " + std::to_string(v));
    co_await q.put(v);
    log.push_back(name + " put " + std::to_string(v));
    co_await yield();
    log.push_back(name + " passed the checkpoint");
}

/// Cancels its own task (the test stores the handle in `self` right after spawning), then
/// gets: the scope is already cancelled when the get starts.
task<> self_cancelled_get(task_handle<>& self, queue<int>& q, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        const int v = co_await q.get();
        log.push_back("got " + std::to_string(v));
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
    co_await yield();
    log.push_back("passed the checkpoint");
}

task<> self_cancelled_put(task_handle<>& self, queue<int>& q, int v, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        co_await q.put(v);
        log.push_back("put " + std::to_string(v));
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
    co_await yield();
    log.push_back("passed the checkpoint");
}

/// Catches the first delivery, then gets again in the same (still cancelled) task scope.
task<> swallow_and_get_again(queue<int>& q, log_t& log) {
    try {
        const int v = co_await q.get();
        log.push_back("got " + std::to_string(v));
    } catch (const cancelled_error& e) {
        log.push_back("first raised " + std::string(e.message()));
    }
    try {
        const int v = co_await q.get();
        log.push_back("got on retry " + std::to_string(v));
    } catch (const cancelled_error& e) {
        log.push_back("retry raised " + std::string(e.message()));
        throw;
    }
}

task<std::string> get_with_timeout(queue<int>& q, loop_clock::duration d) {
    try {
        const int v = co_await timeout(d, q.get());
        co_return "got " + std::to_string(v);
    } catch (const timeout_error&) {
        co_return "timeout";
    }
}

task<std::string> get_or_move_on(queue<int>& q, loop_clock::duration d) {
    std::optional<int> v = co_await move_on_after(d, q.get());
    co_return v ? "got " + std::to_string(*v) : "moved on";
}

task<std::string> put_with_timeout(queue<int>& q, int v, loop_clock::duration d) {
    try {
        co_await timeout(d, q.put(v));
        co_return "put";
    } catch (const timeout_error&) {
        co_return "timeout";
    }
}

task<std::string> put_or_move_on(queue<int>& q, int v, loop_clock::duration d) {
    std::optional<unit> r = co_await move_on_after(d, q.put(v));
    co_return r ? "put" : "moved on";
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
            log_t log;
            task_handle<> self = run_given_own_handle(
                [&](task_handle<>& h) { return self_cancelled_get(h, q, log); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"raised self"});
            CHECK(run(cancel_message_of(self)) == "self");

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
            log_t log;
            task_handle<> self = run_given_own_handle(
                [&](task_handle<>& h) { return self_cancelled_put(h, q, 2, log); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"raised self"});
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
            log_t log;
            task_handle<> self = run_given_own_handle(
                [&](task_handle<>& h) { return self_cancelled_get(h, q, log); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"got 3"});
            CHECK(q.empty());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 put with room is not a cancellation point: a cancelled "
                                    "task stores the item and the next cancellation point raises") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> self = run_given_own_handle(
                [&](task_handle<>& h) { return self_cancelled_put(h, q, 4, log); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"put 4"});
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
            task_handle<> a = rt->spawn(get_and_log(q, log, "a"));
            task_handle<> b = rt->spawn(get_and_log(q, log, "b"));
            task_handle<> c = rt->spawn(get_and_log(q, log, "c"));
            run_all();
            CHECK(b.cancel("stop b"));
            run_all();
            CHECK(b.cancelled());
            CHECK(run(cancel_message_of(b)) == "stop b");
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
            CHECK(p2.cancel("stop p2"));
            run_all();
            CHECK(p2.cancelled());
            CHECK(run(cancel_message_of(p2)) == "stop p2");

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
            log_t log;
            task_handle<> g = rt->spawn(get_then_checkpoint(q, log, "g"));
            run_all();
            CHECK(q.try_put(7));     // handed over: g is ready
            CHECK(g.cancel("late")); // cancelled before it resumes
            run_all();
            CHECK(g.cancelled());
            CHECK(log == log_t{"g waits", "g got 7"});
            CHECK(run(cancel_message_of(g)) == "late");
            CHECK(q.empty()); // the item was delivered, not put back or duplicated
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-2 4.9 a putter cancelled after its item was admitted has put "
                      "it and raises at its next cancellation point") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            CHECK(q.try_put(0));
            log_t log;
            task_handle<> p = rt->spawn(put_then_checkpoint(q, 1, log, "p"));
            run_all();
            CHECK(q.try_get() == std::optional<int>(0)); // admits p's item
            CHECK(p.cancel("late"));
            run_all();
            CHECK(p.cancelled());
            CHECK(log == log_t{"p puts 1", "p put 1"});
            CHECK(drain(q) == std::vector<int>{1});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 a getter cancelled while parked raises and takes nothing "
                                    "even if an item is put before it resumes") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> g = rt->spawn(get_and_log(q, log, "g"));
            run_all();
            CHECK(g.cancel("stop")); // the abort is recorded first
            CHECK(q.try_put(5));     // g is no longer a getter: the item is stored
            CHECK(q.size() == 1);
            run_all();
            CHECK(g.cancelled());
            CHECK(log == log_t{"g waits"});
            CHECK(run(cancel_message_of(g)) == "stop");
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
            const deadline start = f.now();
            task_handle<std::string> h = f.rt->spawn(get_or_move_on(q, 10ms));
            f.run_all();
            CHECK_FALSE(h.done());
            CHECK(q.try_put(5)); // recorded first
            f.rt->advance(10ms); // then the deadline, before the getter resumes
            f.run_until([&] { return h.done(); });
            CHECK(f.now() - start == 10ms);
            CHECK(f.run(join(h)) == "got 5");
            CHECK(q.empty());
        }
    }

    TEST_CASE("4.9 a deadline recorded before the put detaches the getter: the item stays "
              "queued") {
        loop_fixture f(loop_fixture::manual_clock());
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            task_handle<std::string> h = f.rt->spawn(get_or_move_on(q, 10ms));
            f.run_all();
            f.rt->advance(10ms);
            CHECK(q.try_put(5));
            CHECK(q.size() == 1);
            f.run_until([&] { return h.done(); });
            CHECK(f.run(join(h)) == "moved on");
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
            task_handle<> a = rt->spawn(get_and_log(q, log, "a"));
            task_handle<> b = rt->spawn(get_and_log(q, log, "b"));
            run_all();
            CHECK(a.cancel("first"));
            CHECK_FALSE(a.cancel("second"));
            run_all();
            CHECK(a.cancelled());
            CHECK(run(cancel_message_of(a)) == "first");
            CHECK_FALSE(a.cancel("third"));

            CHECK(q.try_put(1));
            CHECK(q.try_put(2));
            run_all();
            CHECK(b.done());
            CHECK(log == log_t{"a waits", "b waits", "b got 1"});
            CHECK(drain(q) == std::vector<int>{2});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-1 a getter that swallows its cancellation and gets again "
                                    "raises again without queueing") {
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> h = rt->spawn(swallow_and_get_again(q, log));
            run_all();
            CHECK(h.cancel("stop"));
            run_all();
            CHECK(h.cancelled());
            CHECK(log == log_t{"first raised stop", "retry raised stop"});
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
            CHECK(run(get_with_timeout(q, 5ms)) == "timeout");
            CHECK(now() - start == 5ms);
            CHECK(q.try_put(1));
            CHECK(q.size() == 1);
            CHECK(run(get_with_timeout(q, 5ms)) == "got 1"); // available: no suspension
            CHECK(now() - start == 5ms);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.6 a timeout around a put on a full queue throws "
                                    "timeout_error at its deadline and adds nothing") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            CHECK(q.try_put(1));
            const deadline start = now();
            CHECK(run(put_with_timeout(q, 2, 5ms)) == "timeout");
            CHECK(now() - start == 5ms);
            CHECK(q.try_get() == std::optional<int>(1)); // admits nobody
            CHECK(q.empty());
            CHECK(run(put_with_timeout(q, 3, 5ms)) == "put");
            CHECK(drain(q) == std::vector<int>{3});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "move_on_after around get and put returns when the other side "
                                    "arrives before the deadline and moves on otherwise") {
        queue<int> q(1);
        for (int round = 0; round < 2; ++round) {
            deadline start = now();
            task_handle<std::string> g = rt->spawn(get_or_move_on(q, 10ms));
            task_handle<> p = rt->spawn(put_after(q, 6, 3ms));
            run_until([&] { return g.done() && p.done(); });
            CHECK(now() - start == 3ms);
            CHECK(run(join(g)) == "got 6");

            start = now();
            CHECK(run(get_or_move_on(q, 10ms)) == "moved on");
            CHECK(now() - start == 10ms);

            CHECK(q.try_put(1));
            start = now();
            CHECK(run(put_or_move_on(q, 2, 10ms)) == "moved on");
            CHECK(now() - start == 10ms);
            CHECK(drain(q) == std::vector<int>{1});
        }
    }

    TEST_CASE("4.8 a task cancellation passes through a timeout around a get as cancelled_error") {
        loop_fixture f(loop_fixture::manual_clock());
        queue<int> q;
        for (int round = 0; round < 2; ++round) {
            task_handle<std::string> h = f.rt->spawn(get_with_timeout(q, 1h));
            f.run_all();
            CHECK_FALSE(h.done());
            CHECK(h.cancel("outer"));
            f.run_until([&] { return h.done(); });
            CHECK(h.cancelled());
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
