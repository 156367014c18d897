// SPDX-License-Identifier: MIT
// as_completed: outcomes in completion order, structured (what the body leaves is cancelled
// and awaited when it ends). SEMANTICS 22 (docs/semantics.md), 9.8, D-2.
#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
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

task<int> child(log_t& log, int v, loop_clock::duration d, loop_clock::duration cleanup = 0ms) {
    co_await test::sleep_or_clean_up(log, std::to_string(v), d, cleanup);
    if (v < 0) {
        throw test::my_error(v);
    }
    co_return v;
}

/// Children 0, 1, ... sleeping the given milliseconds. (Variadic: GCC 12 rejects a braced
/// list inside a co_await expression.)
template <class... Ms>
std::vector<task<int>> children(log_t& log, loop_clock::duration cleanup, Ms... ms) {
    std::vector<task<int>> ts;
    int i = 0;
    (ts.push_back(child(log, i++, std::chrono::milliseconds(ms), cleanup)), ...);
    return ts;
}

std::string describe(completion<int>& c) {
    if (c.result.has_value()) {
        return "#" + std::to_string(c.index) + "=" + std::to_string(c.result.value());
    }
    if (c.result.has_error()) {
        return "#" + std::to_string(c.index) + " error";
    }
    return "#" + std::to_string(c.index) + " cancelled";
}

task<log_t> take_all(log_t& log) {
    log_t seen;
    co_await as_completed(children(log, 0ms, 4, 1, 3, 2), [&seen](completions<int>& c) -> task<> {
        CHECK(c.size() == 4);
        while (std::optional<completion<int>> r = co_await c.next()) {
            seen.push_back(describe(*r));
        }
        CHECK(c.remaining() == 0);
        std::optional<completion<int>> again = co_await c.next();
        CHECK_FALSE(again.has_value());
    });
    co_return seen;
}

task<int> first_value(log_t& log) {
    std::vector<task<int>> ts = children(log, 2ms, 5, 1, 3);
    int v = co_await as_completed(std::move(ts), [&log](completions<int>& c) -> task<int> {
        std::optional<completion<int>> r = co_await c.next();
        log.push_back("body got " + describe(*r));
        co_return r->result.value(); // returning closes: the rest is cancelled and awaited
    });
    log.push_back("as_completed returned");
    co_return v;
}

task<std::string> body_throws(log_t& log) {
    try {
        co_await as_completed(children(log, 0ms, 5, 1), [](completions<int>& c) -> task<> {
            (void)co_await c.next();
            throw std::runtime_error("body failed");
        });
    } catch (const std::runtime_error& e) {
        co_return e.what();
    }
    co_return "no error";
}

task<log_t> errors_are_outcomes(log_t& log) {
    log_t seen;
    std::vector<task<int>> ts;
    ts.push_back(child(log, -1, 1ms));
    ts.push_back(child(log, 2, 2ms));
    co_await as_completed(std::move(ts), [&seen](completions<int>& c) -> task<> {
        while (auto r = co_await c.next()) {
            seen.push_back(describe(*r));
        }
    });
    co_return seen;
}

/// A timeout around one next(): raises timeout_error; the completion is not lost.
task<log_t> timeout_around_next(log_t& log) {
    log_t seen;
    co_await as_completed(children(log, 0ms, 3), [&seen](completions<int>& c) -> task<> {
        try {
            (void)co_await timeout(1ms, c.next());
        } catch (const timeout_error&) {
            seen.push_back("timeout");
        }
        auto r = co_await c.next();
        seen.push_back(describe(*r));
    });
    co_return seen;
}

task<> self_cancelled(task_handle<>& self, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        co_await as_completed(children(log, 0ms, 1, 1), [&log](completions<int>&) -> task<> {
            log.push_back("body ran");
            co_return;
        });
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
}

task<> parked_in_next(log_t& log) {
    co_await as_completed(children(log, 1ms, 10, 20), [&log](completions<int>& c) -> task<> {
        try {
            (void)co_await c.next();
        } catch (const cancelled_error& e) {
            log.push_back("next raised " + std::string(e.message()));
            throw;
        }
    });
}

/// A sibling that cancels the task running as_completed once its deadline (registered after the
/// first child's, so it fires after it in the same pass) has passed.
task<int> cancel_owner(task_handle<>& owner, loop_clock::duration d) {
    co_await sleep(d);
    CHECK(owner.cancel("outer"));
    co_return 99;
}

/// The child finishes and the caller is cancelled in the same pass: next() returns it.
task<> next_then_checkpoint(task_handle<>& self, log_t& log) {
    std::vector<task<int>> ts;
    ts.push_back(child(log, 0, 1ms));
    ts.push_back(cancel_owner(self, 1ms));
    co_await as_completed(std::move(ts), [&log](completions<int>& c) -> task<> {
        auto r = co_await c.next();
        log.push_back("got " + describe(*r));
        co_await yield();
        log.push_back("passed the checkpoint");
    });
}

template <class T>
task<> cancel_later(task_handle<T>& victim, loop_clock::duration d) {
    co_await sleep(d);
    CHECK(victim.cancel("outer"));
}

} // namespace

TEST_SUITE("as_completed") {

    TEST_CASE_FIXTURE(loop_fixture, "next() hands out every child in completion order with its "
                                    "index, then nothing") {
        log_t log;
        const deadline start = now();
        CHECK(run(take_all(log)) == log_t{"#1=1", "#3=3", "#2=2", "#0=0"});
        CHECK(now() - start == 4ms);
        CHECK(log.empty());
    }

    TEST_CASE_FIXTURE(loop_fixture, "when the body returns, the children still running are "
                                    "cancelled and awaited, cleanup included") {
        log_t log;
        const deadline start = now();
        CHECK(run(first_value(log)) == 1);
        CHECK(now() - start == 3ms); // 1 ms to the first, 2 ms of cleanup
        CHECK(log ==
              log_t{"body got #1=1", "0 cleaned up", "2 cleaned up", "as_completed returned"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "when the body throws, the rest is cancelled and awaited and "
                                    "the error comes out") {
        log_t log;
        CHECK(run(body_throws(log)) == "body failed");
        CHECK(log == log_t{"0 cleaned up"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "errors are handed out as outcomes, not thrown") {
        log_t log;
        CHECK(run(errors_are_outcomes(log)) == log_t{"#0 error", "#1=2"});
        CHECK(reported.empty());
    }

    // -----------------------------------------------------------------------------------------
    // Cancellation

    TEST_CASE_FIXTURE(loop_fixture, "entry is a cancellation point: neither the children nor "
                                    "the body start") {
        log_t log;
        task_handle<> self =
            run_given_own_handle([&](task_handle<>& h) { return self_cancelled(h, log); });
        CHECK(self.cancelled());
        CHECK(log == log_t{"raised self"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "a timeout around next() raises timeout_error and the "
                                    "completion stays for the next call") {
        log_t log;
        const deadline start = now();
        CHECK(run(timeout_around_next(log)) == log_t{"timeout", "#0=0"});
        CHECK(now() - start == 3ms);
    }

    TEST_CASE_FIXTURE(loop_fixture, "cancelled from outside while next() waits: next() raises, "
                                    "every child is cancelled and awaited, the call raises") {
        log_t log;
        task_handle<> h = rt->spawn(parked_in_next(log));
        task_handle<> c = rt->spawn(cancel_later(h, 1ms));
        const deadline start = now();
        run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(now() - start == 2ms);
        CHECK(log == log_t{"next raised outer", "0 cleaned up", "1 cleaned up"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-2 a completion recorded before the cancellation is "
                                    "returned by next(); the next cancellation point raises") {
        log_t log;
        task_handle<> h;
        h = rt->spawn(next_then_checkpoint(h, log));
        run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(log == log_t{"got #0=0"});
    }
}
