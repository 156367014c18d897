// SPDX-License-Identifier: MIT
// signal_set: POSIX signals handed to a task (docs/io/processes.md).
//
// Signals are raised to the test process itself with raise() (delivered before it returns,
// so libuv's signal pipe is readable at the next poll) or uv_kill(). Only SIGUSR1 and SIGUSR2
// are used; each is raised only while a signal_set catches it.
#include <csignal>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/error.hpp>
#include <uvasync/io/signal.hpp>
#include <uvasync/uvasync.hpp>

#include "cancel_log.hpp"
#include "join.hpp"
#include "loop_fixture.hpp"
#include "string_makers.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::join;
using uvasync::test::loop_fixture;

using log_t = std::vector<std::string>;

/// Raises `sig` and lets the loop poll once, so the set has queued it when this returns.
task<> raise_and_poll(int sig) {
    std::raise(sig);
    co_await yield();
}

task<int> wait_one(signal_set& s) {
    co_return co_await s.wait();
}

task<> wait_and_log(signal_set& s, log_t& log) {
    try {
        const int sig = co_await s.wait();
        log.push_back("got " + std::to_string(sig));
    } catch (const cancelled_error& e) {
        log.push_back("cancelled (" + std::string(e.message()) + ")");
        throw;
    } catch (const invalid_state&) {
        log.push_back("invalid_state");
    }
}

/// Waits, then reaches one more cancellation point.
task<> wait_then_checkpoint(signal_set& s, log_t& log) {
    const int sig = co_await s.wait();
    log.push_back("got " + std::to_string(sig));
    co_await yield();
    log.push_back("passed the checkpoint");
}

task<> self_cancelled_wait(task_handle<>& self, signal_set& s, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        co_await s.wait();
        log.push_back("got a signal");
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
}

/// Lets the waiter park, then kills the own process with `sig` through libuv.
task<> kill_self_later(int sig) {
    co_await yield();
    REQUIRE(uv_kill(uv_os_getpid(), sig) == 0);
}

task<> cancel_later(task_handle<>& h, log_t& log, int times) {
    co_await yield();
    uvasync::test::cancel_and_log(h, log, times);
}

task<> cancel_now(task_handle<>& h) {
    h.cancel("late");
    co_return;
}

task<> close_set(signal_set& s, log_t& log) {
    co_await s.close();
    log.push_back("closed");
}

task<> shielded_wait(signal_set& s) {
    co_await shielded(s.wait());
}

} // namespace

TEST_SUITE("signal") {

    TEST_CASE_FIXTURE(loop_fixture, "signal_set_wait_returns_the_signal_that_arrives") {
        signal_set s{SIGUSR1, SIGUSR2};
        CHECK(s.is_open());
        for (int round = 0; round < 2; ++round) {
            const int sig = round == 0 ? SIGUSR1 : SIGUSR2;
            auto w = rt->spawn(wait_one(s));
            auto k = rt->spawn(kill_self_later(sig));
            run_until([&] { return w.done() && k.done(); });
            CHECK(run(join(w)) == sig);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "signal_set_queues_and_counts_signals_nobody_waits_for") {
        signal_set s{SIGUSR1, SIGUSR2};
        for (int round = 0; round < 2; ++round) {
            run(raise_and_poll(SIGUSR1));
            run(raise_and_poll(SIGUSR1));
            run(raise_and_poll(SIGUSR2));
            // Kinds in the order of their first arrival, then round robin; each one once.
            CHECK(run(wait_one(s)) == SIGUSR1);
            CHECK(run(wait_one(s)) == SIGUSR2);
            CHECK(run(wait_one(s)) == SIGUSR1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "signal_set_keeps_the_loop_alive_only_while_a_task_waits") {
        signal_set s{SIGUSR1};
        run_all(); // returns at once: nobody waits
        run(raise_and_poll(SIGUSR1));
        run_all();
        CHECK(run(wait_one(s)) == SIGUSR1);
    }

    TEST_CASE_FIXTURE(loop_fixture, "signal_set_fails_to_start_for_bad_signals") {
        CHECK_THROWS_AS(signal_set({}), std::invalid_argument);
        try {
            signal_set s{SIGUSR1, SIGKILL};
            FAIL("SIGKILL cannot be caught");
        } catch (const std::system_error& e) {
            CHECK(e.code().category() == uv_category());
            CHECK(std::string(e.what()).find("signal 9") != std::string::npos);
        }
        CHECK_THROWS_AS(signal_set({0}), std::system_error);
        // The failed constructions closed what they had opened (the fixture checks the loop),
        // and SIGUSR1 can still be caught by a new set.
        signal_set ok{SIGUSR1, SIGUSR1};
        run(raise_and_poll(SIGUSR1));
        CHECK(run(wait_one(ok)) == SIGUSR1);
    }

    TEST_CASE("signal_set_needs_a_runtime") {
        CHECK_THROWS_AS(signal_set({SIGUSR1}), invalid_state);
    }

    TEST_CASE_FIXTURE(loop_fixture, "signal_set_wait_fails_when_busy_closed_or_moved_from") {
        signal_set s{SIGUSR1};
        log_t log;
        auto a = rt->spawn(wait_and_log(s, log));
        auto b = rt->spawn(wait_and_log(s, log)); // a second waiter is a misuse
        auto k = rt->spawn(kill_self_later(SIGUSR1));
        run_until([&] { return a.done() && b.done() && k.done(); });
        CHECK(log == log_t{"invalid_state", "got " + std::to_string(SIGUSR1)});

        signal_set moved(std::move(s));
        CHECK_FALSE(s.is_open());                 // NOLINT(bugprone-use-after-move)
        auto c = rt->spawn(wait_and_log(s, log)); // NOLINT(bugprone-use-after-move)
        run_until([&] { return c.done(); });
        CHECK(log.back() == "invalid_state");

        auto d = rt->spawn(close_set(moved, log));
        run_until([&] { return d.done(); });
        CHECK(log.back() == "closed");
        CHECK_FALSE(moved.is_open());
        auto e = rt->spawn(wait_and_log(moved, log));
        run_until([&] { return e.done(); });
        CHECK(log.back() == "invalid_state");
    }

    TEST_CASE_FIXTURE(loop_fixture, "signal_set_close_wakes_a_waiter_and_resumes_after_the_close_"
                                    "callbacks") {
        signal_set s{SIGUSR1, SIGUSR2};
        log_t log;
        auto a = rt->spawn(wait_and_log(s, log));
        auto c = rt->spawn(close_set(s, log));
        run_until([&] { return a.done() && c.done(); });
        CHECK(log == log_t{"invalid_state", "closed"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "signal_set_cancelled_before_start_takes_no_signal") {
        signal_set s{SIGUSR1};
        run(raise_and_poll(SIGUSR1));
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> self;
            self = rt->spawn(self_cancelled_wait(self, s, log));
            run_until([&] { return self.done(); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"raised self"});
        }
        CHECK(run(wait_one(s)) == SIGUSR1); // still queued
    }

    TEST_CASE_FIXTURE(loop_fixture, "signal_set_cancelled_while_pending_keeps_catching") {
        signal_set s{SIGUSR1};
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> a = rt->spawn(wait_and_log(s, log));
            auto c = rt->spawn(cancel_later(a, log, round + 1)); // round 1: cancelled twice
            run_until([&] { return a.done() && c.done(); });
            CHECK(a.cancelled());
            if (round == 0) {
                CHECK(log == log_t{"cancel true", "cancelled (first)"});
            } else {
                CHECK(log == log_t{"cancel true", "cancel false", "cancelled (first)"});
            }
            // A signal that arrives afterwards is queued for the next wait.
            run(raise_and_poll(SIGUSR1));
            CHECK(run(wait_one(s)) == SIGUSR1);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "signal_set_cancelled_after_delivery_before_resumption_"
                                    "returns_the_signal") {
        signal_set s{SIGUSR2};
        for (int round = 0; round < 2; ++round) {
            run(raise_and_poll(SIGUSR2));
            log_t log;
            // a takes the queued signal in its await_suspend and is queued to resume; b runs
            // in the same drain, before a resumes, and cancels it.
            task_handle<> a = rt->spawn(wait_then_checkpoint(s, log));
            auto b = rt->spawn(cancel_now(a));
            run_until([&] { return a.done() && b.done(); });
            CHECK(a.cancelled());
            CHECK(log == log_t{"got " + std::to_string(SIGUSR2)});
        }
    }

    TEST_CASE("signal_set_frame_destroyed_while_parked_leaves_libuv_safe") {
        runtime_options o = loop_fixture::virtual_clock();
        o.shutdown_grace = 0ms;
        loop_fixture f(o);
        std::optional<signal_set> s;
        s.emplace({SIGUSR1});
        auto a = f.rt->spawn(shielded_wait(*s));
        f.run_until([&] { return f.rt->task_count() == 1; });
        // Let it park: a poll with nothing to do.
        uv_run(f.loop(), UV_RUN_NOWAIT);
        f.rt->shutdown(); // the grace runs out; the parked frames are destroyed
        CHECK(f.reported.size() == 1);
        f.reported.clear();
        CHECK(a.done());
        // A set that outlives its runtime still closes; its close callbacks need a loop run.
        s.reset();
        f.run_all();
    }

} // TEST_SUITE

namespace {

/// An awaiter made before its set goes away (review M4): awaiting it must raise, not read
/// freed memory.
task<> wait_after_the_set_is_gone(bool close_it, bool& raised) {
    std::optional<signal_set> s(std::in_place, std::initializer_list<int>{SIGUSR1});
    auto aw = s->wait();
    if (close_it) {
        co_await s->close();
    } else {
        s.reset();
    }
    try {
        co_await aw;
    } catch (const invalid_state&) {
        raised = true;
    }
}

} // namespace

TEST_SUITE("signal") {
    TEST_CASE_FIXTURE(loop_fixture, "signal_awaiter_outliving_its_set_raises_invalid_state") {
        for (const bool close_it : {false, true}) {
            bool raised = false;
            run(wait_after_the_set_is_gone(close_it, raised));
            CHECK(raised);
            run_all(); // the close callbacks
        }
    }
} // TEST_SUITE
