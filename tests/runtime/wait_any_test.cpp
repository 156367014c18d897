// SPDX-License-Identifier: MIT
// wait_any (asyncio wait(FIRST_COMPLETED), structured: the losers are cancelled and awaited)
// and first_done (the caller keeps the tasks). SEMANTICS 22 (docs/semantics.md), 10
// (gather, which wait_any follows), D-2, D-3.
#include <chrono>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "test_error.hpp"
#include "timed_tasks.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::loop_fixture;

using log_t = std::vector<std::string>;

/// Sleeps `d` and returns `name`; when cancelled, cleans up for `cleanup` (shielded) first.
task<std::string> child(log_t& log, std::string name, loop_clock::duration d,
                        loop_clock::duration cleanup = 0ms) {
    co_await test::sleep_or_clean_up(log, name, d, cleanup);
    log.push_back(name + " done");
    co_return name;
}

task<int> number_after(loop_clock::duration d, int v) {
    co_await sleep(d);
    co_return v;
}

task<std::string> fail_after(loop_clock::duration d) {
    co_await sleep(d);
    throw test::my_error(1);
}

/// Ignores its cancellation and returns a value.
task<std::string> swallows(loop_clock::duration d) {
    try {
        co_await sleep(d);
    } catch (const cancelled_error&) {
        co_return "swallowed";
    }
    co_return "slept";
}

task<std::string> race_two(log_t& log) {
    completion<std::string> c =
        co_await wait_any(child(log, "slow", 3ms, 2ms), child(log, "fast", 1ms));
    log.push_back("winner " + std::to_string(c.index) + " " + c.result.value());
    co_return c.result.value();
}

task<std::size_t> mixed_types(log_t& log) {
    any_completion<int, std::string> c =
        co_await wait_any(number_after(1ms, 7), child(log, "str", 2ms));
    CHECK(c.result.index() == c.index);
    CHECK(std::get<0>(c.result).value() == 7);
    co_return c.index;
}

task<completion<std::string>> range(log_t& log, int n) {
    std::vector<task<std::string>> ts;
    ts.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        ts.push_back(child(log, "t" + std::to_string(i), std::chrono::milliseconds(5 - i)));
    }
    co_return co_await wait_any(std::move(ts));
}

task<std::string> error_wins(log_t& log) {
    completion<std::string> c = co_await wait_any(child(log, "slow", 5ms), fail_after(1ms));
    CHECK(c.index == 1);
    CHECK(c.result.has_error());
    CHECK_THROWS_AS(c.result.value(), test::my_error);
    co_return "ok";
}

task<> self_cancelled_wait_any(task_handle<>& self, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        (void)co_await wait_any(child(log, "a", 1ms), child(log, "b", 1ms));
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
}

task<std::string> wait_any_of_two(log_t& log) {
    completion<std::string> c = co_await wait_any(child(log, "a", 10ms), child(log, "b", 20ms));
    co_return c.result.value();
}

task<std::string> swallowing_winner(log_t& log) {
    completion<std::string> c = co_await wait_any(swallows(10ms), child(log, "b", 20ms));
    log.push_back("returned " + c.result.value());
    co_await yield();
    log.push_back("passed the checkpoint");
    co_return c.result.value();
}

task<std::string> timeout_around(log_t& log) {
    try {
        co_await timeout(2ms, wait_any(child(log, "a", 10ms, 1ms), child(log, "b", 10ms)));
    } catch (const timeout_error&) {
        co_return "timeout";
    }
    co_return "no timeout";
}

task<std::string> handle_loser(task_handle<std::string> h, log_t& log) {
    completion<std::string> c = co_await wait_any(h, child(log, "quick", 1ms));
    co_return c.result.value();
}

// first_done

task<std::size_t> first_of(const std::vector<task_handle<std::string>>& hs) {
    co_return co_await first_done(hs);
}

task<std::size_t> first_of_two(task_handle<std::string> a, task_handle<int> b) {
    co_return co_await first_done(a, b);
}

template <class T>
task<> cancel_later(task_handle<T>& victim, loop_clock::duration d) {
    co_await sleep(d);
    CHECK(victim.cancel("late"));
}

task<std::size_t> first_then_checkpoint(task_handle<std::string> h, log_t& log) {
    std::size_t i = co_await first_done(h);
    log.push_back("first " + std::to_string(i));
    co_await yield();
    log.push_back("passed the checkpoint");
    co_return i;
}

/// Cancels itself, then waits for the handles: raises unless one is done already.
task<std::size_t> self_cancelled_first(task_handle<std::size_t>& self,
                                       const std::vector<task_handle<std::string>>& hs) {
    CHECK(self.cancel("self"));
    co_return co_await first_done(hs);
}

task<std::string> bad_first_done() {
    std::string out;
    try {
        (void)co_await first_done(std::vector<task_handle<int>>{});
    } catch (const std::invalid_argument&) {
        out += "empty ";
    }
    try {
        (void)co_await first_done(task_handle<int>{});
    } catch (const invalid_state&) {
        out += "invalid";
    }
    co_return out;
}

task<std::string> bad_wait_any() {
    std::string out;
    try {
        (void)co_await wait_any(std::vector<task<int>>{});
    } catch (const std::invalid_argument&) {
        out += "empty ";
    }
    try {
        (void)co_await wait_any(task<int>{}, number_after(1ms, 1));
    } catch (const invalid_state&) {
        out += "invalid";
    }
    co_return out;
}

} // namespace

TEST_SUITE("wait_any") {

    TEST_CASE_FIXTURE(loop_fixture, "the first to finish wins; the losers are cancelled and "
                                    "awaited, cleanup included, before wait_any returns") {
        log_t log;
        const deadline start = now();
        CHECK(run(race_two(log)) == "fast");
        CHECK(now() - start == 3ms); // 1 ms to the winner, 2 ms of the loser's cleanup
        CHECK(log == log_t{"fast done", "slow cleaned up", "winner 1 fast"});
        CHECK(reported.empty());
    }

    TEST_CASE_FIXTURE(loop_fixture, "different value types give an any_completion; a vector of "
                                    "tasks gives the index in the vector") {
        log_t log;
        CHECK(run(mixed_types(log)) == 0);
        CHECK(log == log_t{"str cleaned up"});
        log.clear();
        completion<std::string> c = run(range(log, 4));
        CHECK(c.index == 3);
        CHECK(c.result.value() == "t3");
        CHECK(log == log_t{"t3 done", "t0 cleaned up", "t1 cleaned up", "t2 cleaned up"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "a failure also finishes first: its outcome is returned, not "
                                    "thrown; no argument or an empty task is rejected") {
        log_t log;
        CHECK(run(error_wins(log)) == "ok");
        CHECK(log == log_t{"slow cleaned up"});
        CHECK(run(bad_wait_any()) == "empty invalid");
        CHECK(reported.empty());
    }

    TEST_CASE_FIXTURE(loop_fixture, "a losing task_handle argument is cancelled by forwarding") {
        log_t log;
        task_handle<std::string> h = rt->spawn(child(log, "spawned", 10ms));
        CHECK(run(handle_loser(h, log)) == "quick");
        CHECK(h.cancelled());
        CHECK(log == log_t{"quick done", "spawned cleaned up"});
    }

    // -----------------------------------------------------------------------------------------
    // Cancellation

    TEST_CASE_FIXTURE(loop_fixture, "10.2 entry is a cancellation point: nothing starts") {
        log_t log;
        task_handle<> self =
            run_given_own_handle([&](task_handle<>& h) { return self_cancelled_wait_any(h, log); });
        CHECK(self.cancelled());
        CHECK(log == log_t{"raised self"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "cancelled from outside while waiting: every child is "
                                    "cancelled and awaited, and the caller's cancellation is "
                                    "raised") {
        log_t log;
        task_handle<std::string> h = rt->spawn(wait_any_of_two(log));
        task_handle<> c = rt->spawn(cancel_later(h, 1ms));
        run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(log == log_t{"a cleaned up", "b cleaned up"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-2 cancelled from outside, a winner with a value is "
                                    "returned; the caller's next cancellation point raises") {
        log_t log;
        task_handle<std::string> h = rt->spawn(swallowing_winner(log));
        task_handle<> c = rt->spawn(cancel_later(h, 1ms));
        run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(log == log_t{"b cleaned up", "returned swallowed"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "a timeout around wait_any converts after every child has "
                                    "finished its cleanup") {
        log_t log;
        const deadline start = now();
        CHECK(run(timeout_around(log)) == "timeout");
        CHECK(now() - start == 3ms);
        CHECK(log == log_t{"b cleaned up", "a cleaned up"});
    }
}

TEST_SUITE("first_done") {

    TEST_CASE_FIXTURE(loop_fixture, "returns the position of the first task to finish and cancels "
                                    "nothing") {
        log_t log;
        std::vector<task_handle<std::string>> hs;
        hs.push_back(rt->spawn(child(log, "a", 3ms)));
        hs.push_back(rt->spawn(child(log, "b", 1ms)));
        hs.push_back(rt->spawn(child(log, "c", 2ms)));
        CHECK(run(first_of(hs)) == 1);
        run_all();
        CHECK(log == log_t{"b done", "c done", "a done"}); // the others ran to their end
        for (const auto& h : hs) {
            CHECK_FALSE(h.cancelled());
        }
        // Already done: the lowest position, without suspending.
        CHECK(run(first_of(hs)) == 0);
        task_handle<int> n = rt->spawn(number_after(1ms, 3));
        CHECK(run(first_of_two(hs[0], n)) == 0);
        CHECK(run(bad_first_done()) == "empty invalid");
        run_all();
    }

    TEST_CASE_FIXTURE(loop_fixture, "cancelled while waiting: raises, and the tasks run on") {
        log_t log;
        std::vector<task_handle<std::string>> hs;
        hs.push_back(rt->spawn(child(log, "a", 5ms)));
        task_handle<std::size_t> w = rt->spawn(first_of(hs));
        task_handle<> c = rt->spawn(cancel_later(w, 1ms));
        const deadline start = now();
        run_until([&] { return w.done(); });
        CHECK(w.cancelled());
        run_all();
        CHECK(now() - start == 5ms);
        CHECK(log == log_t{"a done"}); // not cancelled
        CHECK_FALSE(hs[0].cancelled());
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 cancelled before it waits: raises; with a task done "
                                    "already it is not a cancellation point") {
        log_t log;
        std::vector<task_handle<std::string>> hs;
        hs.push_back(rt->spawn(child(log, "a", 1ms)));
        task_handle<std::size_t> w;
        w = rt->spawn(self_cancelled_first(w, hs));
        run_until([&] { return w.done(); });
        CHECK(w.cancelled());
        run_all();
        CHECK_FALSE(hs[0].cancelled());
        task_handle<std::size_t> w2;
        w2 = rt->spawn(self_cancelled_first(w2, hs));
        run_until([&] { return w2.done(); });
        CHECK_FALSE(w2.cancelled());
        CHECK(w2.state()->take_outcome() == 0);
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-2 a task that finished before the caller's cancellation "
                                    "took effect is reported; the next cancellation point "
                                    "raises") {
        log_t log;
        task_handle<std::string> target = rt->spawn(child(log, "a", 1ms));
        task_handle<std::size_t> w = rt->spawn(first_then_checkpoint(target, log));
        // Registered after the target's deadline: fires in the same pass, runs after it.
        task_handle<> c = rt->spawn(cancel_later(w, 1ms));
        run_until([&] { return w.done(); });
        CHECK(w.cancelled());
        CHECK(log == log_t{"a done", "first 0"});
    }
}
