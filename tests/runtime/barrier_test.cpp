// SPDX-License-Identifier: MIT
// barrier: a reusable rendezvous of n tasks (asyncio.Barrier, std::barrier). SEMANTICS 25
// (docs/semantics.md): generations, arrival indices, a cancelled waiter withdraws its
// arrival, completion wins (D-2).
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::loop_fixture;

using log_t = std::vector<std::string>;

task<> arrive(barrier& b, log_t& log, std::string name) {
    log.push_back(name + " arrives");
    std::size_t i = co_await b.arrive_and_wait();
    log.push_back(name + " passed as " + std::to_string(i));
}

/// Arrives `rounds` times in a row, recording the generation it passed in.
task<> arrive_rounds(barrier& b, int rounds, std::vector<std::size_t>& generations) {
    for (int r = 0; r < rounds; ++r) {
        co_await b.arrive_and_wait();
        generations.push_back(b.generation());
    }
}

task<> arrive_then_checkpoint(barrier& b, log_t& log, std::string name) {
    std::size_t i = co_await b.arrive_and_wait();
    log.push_back(name + " passed as " + std::to_string(i));
    co_await yield();
    log.push_back(name + " passed the checkpoint");
}

task<> arrive_then_cancel(barrier& b, task_handle<>& victim, log_t& log) {
    std::size_t i = co_await b.arrive_and_wait();
    log.push_back("b passed as " + std::to_string(i));
    CHECK(victim.cancel("late"));
}

task<> self_cancelled_arrive(task_handle<>& self, barrier& b, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        std::size_t i = co_await b.arrive_and_wait();
        log.push_back("passed as " + std::to_string(i));
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
}

struct two_waiting {
    task_handle<> a;
    task_handle<> b;
};

/// Spawns "a" then "b" arriving at `b` (which needs more parties) and runs until both wait.
two_waiting arrive_two(loop_fixture& f, barrier& b, log_t& log) {
    two_waiting w{f.rt->spawn(arrive(b, log, "a")), f.rt->spawn(arrive(b, log, "b"))};
    f.run_all();
    CHECK(b.n_waiting() == 2);
    return w;
}

task<std::string> arrive_with_timeout(barrier& b, loop_clock::duration d) {
    try {
        std::size_t i = co_await timeout(d, b.arrive_and_wait());
        co_return "passed as " + std::to_string(i);
    } catch (const timeout_error&) {
        co_return "timeout";
    }
}

} // namespace

TEST_SUITE("barrier") {

    TEST_CASE_FIXTURE(loop_fixture, "the last arrival releases the generation without suspending; "
                                    "indices follow arrival order; the barrier is reusable") {
        barrier b(3);
        for (int round = 0; round < 2; ++round) {
            log_t log;
            const two_waiting held = arrive_two(*this, b, log); // alive to the round's end
            CHECK(log == log_t{"a arrives", "b arrives"});
            task_handle<> hc = rt->spawn(arrive(b, log, "c"));
            run_all();
            CHECK(b.n_waiting() == 0);
            CHECK(b.generation() == static_cast<std::size_t>(round + 1));
            CHECK(log == log_t{"a arrives", "b arrives", "c arrives", "c passed as 2",
                               "a passed as 0", "b passed as 1"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a task that arrives again right away belongs to the next "
                                    "generation") {
        barrier b(2);
        std::vector<std::size_t> g1;
        std::vector<std::size_t> g2;
        task_handle<> h1 = rt->spawn(arrive_rounds(b, 3, g1));
        task_handle<> h2 = rt->spawn(arrive_rounds(b, 3, g2));
        run_all();
        CHECK(h1.done());
        CHECK(h2.done());
        CHECK(b.generation() == 3);
        CHECK(g2 == std::vector<std::size_t>{1, 2, 3}); // the last arrival passes at once
        CHECK(g1.size() == 3);
    }

    TEST_CASE_FIXTURE(loop_fixture, "one party never suspends; zero parties is invalid") {
        CHECK_THROWS_AS(barrier(0), std::invalid_argument);
        barrier b(1);
        log_t log;
        run(arrive(b, log, "a"));
        CHECK(log == log_t{"a arrives", "a passed as 0"});
    }

    // -----------------------------------------------------------------------------------------
    // Cancellation

    TEST_CASE_FIXTURE(loop_fixture, "4.1 cancelled before it arrives: raises and does not count; "
                                    "as the last arrival it passes (not a cancellation point)") {
        barrier b(2);
        log_t log;
        task_handle<> self = run_given_own_handle(
            [&](task_handle<>& h) { return self_cancelled_arrive(h, b, log); });
        CHECK(self.cancelled());
        CHECK(log == log_t{"raised self"});
        CHECK(b.n_waiting() == 0);

        log.clear();
        task_handle<> ha = rt->spawn(arrive(b, log, "a"));
        run_all();
        task_handle<> last;
        last = rt->spawn(self_cancelled_arrive(last, b, log));
        run_all();
        CHECK(last.done());
        CHECK_FALSE(last.cancelled());
        CHECK(ha.done());
        CHECK(log == log_t{"a arrives", "passed as 1", "a passed as 0"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "a waiter cancelled while parked withdraws its arrival; the "
                                    "others keep waiting for one more party") {
        barrier b(3);
        for (int round = 0; round < 2; ++round) {
            log_t log;
            auto [ha, hb] = arrive_two(*this, b, log);
            CHECK(ha.cancel("stop"));
            run_all();
            CHECK(ha.cancelled());
            CHECK(b.n_waiting() == 1);
            CHECK_FALSE(hb.done());

            task_handle<> hc = rt->spawn(arrive(b, log, "c"));
            run_all();
            CHECK_FALSE(hb.done()); // two of three
            task_handle<> hd = rt->spawn(arrive(b, log, "d"));
            run_all();
            CHECK(hb.done());
            CHECK(hc.done());
            CHECK(log == log_t{"a arrives", "b arrives", "c arrives", "d arrives", "d passed as 2",
                               "b passed as 0", "c passed as 1"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-2 a waiter whose generation completed before its "
                                    "cancellation took effect passes and raises at its next "
                                    "cancellation point") {
        barrier b(2);
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> ha = rt->spawn(arrive_then_checkpoint(b, log, "a"));
            run_all();
            // b releases a, then cancels it in the same step, before a resumes.
            task_handle<> hb = rt->spawn(arrive_then_cancel(b, ha, log));
            run_all();
            CHECK(hb.done());
            CHECK(ha.cancelled());
            CHECK(log == log_t{"b passed as 1", "a passed as 0"});
            CHECK(b.n_waiting() == 0);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a timeout around arrive_and_wait withdraws the arrival at its "
                                    "deadline") {
        barrier b(2);
        for (int round = 0; round < 2; ++round) {
            const deadline start = now();
            CHECK(run(arrive_with_timeout(b, 5ms)) == "timeout");
            CHECK(now() - start == 5ms);
            CHECK(b.n_waiting() == 0);
        }
        log_t log;
        task_handle<std::string> h = rt->spawn(arrive_with_timeout(b, 5ms));
        task_handle<> ha = rt->spawn(arrive(b, log, "a"));
        run_all();
        CHECK(h.state()->take_outcome() == "passed as 0");
    }

    TEST_CASE("a parked arrival whose frame is destroyed is withdrawn") {
        barrier b(3);
        {
            runtime_options o = loop_fixture::virtual_clock();
            o.shutdown_grace = 0ms;
            loop_fixture f(o);
            log_t log;
            task_handle<> ha = f.rt->spawn(arrive(b, log, "a"));
            f.run_all();
            CHECK(b.n_waiting() == 1);
            f.rt->shutdown();
            CHECK(f.reported.size() == 1);
            f.reported.clear();
        }
        CHECK(b.n_waiting() == 0);
    }
}
