// SPDX-License-Identifier: MIT
// future<T> / promise<T>: a one-shot value with any number of consumers.
// SEMANTICS D-13 and 4.11 (a cancelled waiter is only detached; producers never get an error
// for completing a future whose consumers were cancelled), 1 (awaiting something already
// complete is not a cancellation point), 4.1, 4.9 / D-2 (completion wins), D-1, D-11, D-14.
#include <chrono>
#include <exception>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "join.hpp"
#include "loop_fixture.hpp"
#include "sync_waiters.hpp"
#include "test_error.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using namespace uvasync::test;

/// Awaiting a future<std::string>, for the shared waiters of sync_waiters.hpp.
struct waits_on {
    future<std::string> fut;

    [[nodiscard]] future<std::string> wait() const { return fut; }

    [[nodiscard]] static std::string got(const std::string& v) { return "got " + v; }
};

/// Appends to its own copy of the value, so a shared value would show up in the others.
task<> consume_and_modify(future<std::string> fut, std::vector<std::string>& got) {
    std::string v = co_await fut;
    v += "!";
    got.push_back(v);
}

task<> consume_void(future<> fut, log_t& log, std::string name) {
    co_await fut;
    log.push_back(name + " woke");
}

/// Records the address and payload of the error it catches.
task<> catch_my_error(future<int> fut, std::vector<const void*>& seen, std::vector<int>& codes) {
    try {
        (void)co_await fut;
    } catch (const my_error& e) {
        seen.push_back(&e);
        codes.push_back(e.code);
    }
}

task<std::string> broken_promise_outcome(future<int> fut) {
    try {
        (void)co_await fut;
        co_return "value";
    } catch (const std::future_error& e) {
        co_return e.code() == std::make_error_code(std::future_errc::broken_promise)
            ? "broken_promise"
            : "other future_error";
    }
}

/// Catches the cancellation that `promise::cancel` delivers and checks that it did not cancel
/// this task: the next cancellation point does not raise.
task<std::string> catch_promise_cancel(future<std::string> fut) {
    std::string message;
    try {
        (void)co_await fut;
        co_return "value";
    } catch (const cancelled_error& e) {
        message = std::string(e.message());
    }
    co_await yield(); // our own scopes are not cancelled
    co_return "cancelled: " + message;
}

task<> set_after(promise<std::string>& p, std::string v, loop_clock::duration d) {
    co_await sleep(d);
    CHECK(p.set_value(std::move(v)));
}

template <class T>
task<T> await_future(future<T> fut) {
    co_return co_await fut;
}

} // namespace

TEST_SUITE("future") {

    // -----------------------------------------------------------------------------------------
    // Completes

    TEST_CASE_FIXTURE(loop_fixture, "D-14 set_value wakes every waiter from the ready queue, in "
                                    "FIFO order") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            CHECK(fut.valid());
            CHECK_FALSE(fut.done());
            log_t log;
            std::vector<task_handle<>> hs =
                park_waiters(*this, log, waits_on{fut}, waits_on{fut}, waits_on{fut});

            CHECK(p.set_value("v"));
            CHECK(fut.done());
            CHECK(p.done());
            CHECK(log == log_t{"a waits", "b waits", "c waits"}); // nothing ran inside set_value
            run_all();
            for (const task_handle<>& h : hs) {
                CHECK(h.done());
            }
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a got v", "b got v", "c got v"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "every consumer gets its own copy of the value") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            std::vector<std::string> got;
            task_handle<> a = rt->spawn(consume_and_modify(fut, got));
            task_handle<> b = rt->spawn(consume_and_modify(fut, got));
            run_all();
            CHECK(p.set_value("v"));
            task_handle<> c = rt->spawn(consume_and_modify(fut, got)); // after the set
            run_all();
            CHECK(a.done());
            CHECK(b.done());
            CHECK(c.done());
            CHECK(got == std::vector<std::string>{"v!", "v!", "v!"});
            CHECK(run(await_future(fut)) == "v"); // the stored value is untouched
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "the stored value is destroyed once, with the last future") {
        const auto live_before = counted::live().load();
        for (int round = 0; round < 2; ++round) {
            std::optional<future<counted>> fut;
            {
                promise<counted> p;
                fut = p.get_future();
                CHECK(p.set_value(counted{}));
            }
            CHECK(counted::live().load() == live_before + 1);
            { counted copy = run(await_future(*fut)); }
            CHECK(counted::live().load() == live_before + 1);
            fut.reset();
            CHECK(counted::live().load() == live_before);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "1 awaiting a completed future returns at once without "
                                    "suspending") {
        promise<std::string> p;
        future<std::string> fut = p.get_future();
        CHECK(p.set_value("v"));
        for (int round = 0; round < 2; ++round) {
            CHECK(wait_in_a_row(*this, waits_on{fut}, waits_on{fut}) ==
                  log_t{"a waits", "a got v", "b waits", "b got v"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a future<void> wakes its waiters on set_value()") {
        for (int round = 0; round < 2; ++round) {
            promise<> p;
            future<> fut = p.get_future();
            log_t log;
            task_handle<> a = rt->spawn(consume_void(fut, log, "a"));
            task_handle<> b = rt->spawn(consume_void(fut, log, "b"));
            run_all();
            CHECK(log.empty());
            CHECK(p.set_value());
            CHECK_FALSE(p.set_value());
            run_all();
            CHECK(a.done());
            CHECK(b.done());
            CHECK(log == log_t{"a woke", "b woke"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.11 set_value returns false once the future is complete, and "
                                    "the first value stays") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            CHECK(p.set_value("first"));
            CHECK_FALSE(p.set_value("second"));
            CHECK_FALSE(p.set_exception(std::make_exception_ptr(my_error(1))));
            CHECK_FALSE(p.cancel("late"));
            CHECK(run(await_future(fut)) == "first");
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.11 set_value and set_exception return false after "
                                    "promise::cancel()") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            CHECK(p.cancel("gone"));
            CHECK(fut.done());
            CHECK_FALSE(p.cancel("again"));
            CHECK_FALSE(p.set_value("v"));
            CHECK_FALSE(p.set_exception(std::make_exception_ptr(my_error(1))));
            CHECK(run(catch_promise_cancel(fut)) == "cancelled: gone");
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "set_exception rethrows the same error object to every "
                                    "waiter") {
        for (int round = 0; round < 2; ++round) {
            promise<int> p;
            future<int> fut = p.get_future();
            std::vector<const void*> seen;
            std::vector<int> codes;
            task_handle<> a = rt->spawn(catch_my_error(fut, seen, codes));
            task_handle<> b = rt->spawn(catch_my_error(fut, seen, codes));
            run_all();
            std::exception_ptr err = std::make_exception_ptr(my_error(42));
            CHECK(p.set_exception(err));
            run_all();
            task_handle<> c = rt->spawn(catch_my_error(fut, seen, codes)); // after completion
            run_all();
            CHECK(a.done());
            CHECK(b.done());
            CHECK(c.done());
            REQUIRE(seen.size() == 3);
            CHECK(codes == std::vector<int>{42, 42, 42});
            CHECK(seen[0] == seen[1]);
            CHECK(seen[1] == seen[2]);
            try {
                std::rethrow_exception(err);
            } catch (const my_error& e) {
                CHECK(&e == seen[0]);
            }
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a promise destroyed without a value completes the future "
                                    "with std::future_error(broken_promise)") {
        for (int round = 0; round < 2; ++round) {
            std::optional<promise<int>> p(std::in_place);
            future<int> fut = p->get_future();
            task_handle<std::string> a = rt->spawn(broken_promise_outcome(fut));
            task_handle<std::string> b = rt->spawn(broken_promise_outcome(fut));
            run_all();
            CHECK_FALSE(a.done());
            p.reset();
            CHECK(fut.done());
            run_all();
            CHECK(run(join(a)) == "broken_promise");
            CHECK(run(join(b)) == "broken_promise");
            CHECK(run(broken_promise_outcome(fut)) == "broken_promise"); // awaited afterwards
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "a moved-from promise does not break the future when it is "
                                    "destroyed") {
        for (int round = 0; round < 2; ++round) {
            std::optional<promise<std::string>> source(std::in_place);
            future<std::string> fut = source->get_future();
            promise<std::string> target(std::move(*source));
            source.reset();
            CHECK_FALSE(fut.done());
            CHECK(target.set_value("moved"));
            CHECK(run(await_future(fut)) == "moved");
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "promise::cancel makes the waiters raise cancelled_error with "
                                    "its message, without cancelling them") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            log_t log;
            task_handle<std::string> catcher = rt->spawn(catch_promise_cancel(fut));
            task_handle<> escaper = rt->spawn(wait_and_log(waits_on{fut}, log, "e"));
            run_all();
            CHECK(p.cancel("producer gave up"));
            run_all();
            CHECK(run(join(catcher)) == "cancelled: producer gave up");
            CHECK(escaper.done());
            CHECK(escaper.cancelled()); // a cancelled_error escaped its body (2.3)
            CHECK(log == log_t{"e waits"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "promise::cancel without a message gives an empty message") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            CHECK(p.cancel());
            CHECK(run(catch_promise_cancel(fut)) == "cancelled: ");
        }
    }

    TEST_CASE("4.8 a promise's cancellation passes through a timeout scope unconverted") {
        loop_fixture f(loop_fixture::manual_clock());
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            task_handle<std::string> h = f.rt->spawn(wait_with_timeout(waits_on{fut}, 1h));
            f.run_all();
            CHECK_FALSE(h.done());
            CHECK(p.cancel("stop"));
            f.run_until([&] { return h.done(); });
            CHECK(h.cancelled()); // neither a value nor "timeout"
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "awaiting an empty future is invalid_state") {
        future<int> empty;
        CHECK_FALSE(empty.valid());
        CHECK_FALSE(empty.done());
        for (int round = 0; round < 2; ++round) {
            CHECK_THROWS_AS(run(await_future(empty)), invalid_state);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled before start

    TEST_CASE_FIXTURE(loop_fixture, "4.1 awaiting a pending future in an already cancelled scope "
                                    "raises and leaves the future pending for the others") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            CHECK(self_cancelled_log(*this, waits_on{fut}) == log_t{"raised self"});
            CHECK_FALSE(fut.done());

            log_t other;
            std::vector<task_handle<>> hs = park_waiters(*this, other, waits_on{fut});
            CHECK(p.set_value("v"));
            run_all();
            CHECK(hs[0].done());
            CHECK(other == log_t{"a waits", "a got v"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "1 awaiting a completed future is not a cancellation point, "
                                    "even in a cancelled scope; the next one raises") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            CHECK(p.set_value("v"));
            CHECK(self_cancelled_log(*this, waits_on{fut}) == log_t{"got v"});
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled while pending (D-13)

    TEST_CASE_FIXTURE(loop_fixture, "D-13 a cancelled waiter does not cancel the future; a later "
                                    "set_value succeeds and reaches the other waiters") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            log_t log;
            std::vector<task_handle<>> hs =
                park_waiters(*this, log, waits_on{fut}, waits_on{fut}, waits_on{fut});
            cancel_and_check(*this, hs[1], "stop b", log);
            CHECK_FALSE(fut.done());
            CHECK_FALSE(p.done());
            CHECK_FALSE(hs[0].done());
            CHECK_FALSE(hs[2].done());

            CHECK(p.set_value("v"));
            run_all();
            CHECK(hs[0].done());
            CHECK(hs[2].done());
            CHECK(log == log_t{"a waits", "b waits", "c waits", "a got v", "c got v"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.11 set_value succeeds after every waiter was cancelled") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            log_t log;
            std::vector<task_handle<>> hs = park_waiters(*this, log, waits_on{fut}, waits_on{fut});
            for (task_handle<>& h : hs) {
                CHECK(h.cancel());
            }
            run_all();
            for (const task_handle<>& h : hs) {
                CHECK(h.cancelled());
            }
            CHECK(p.set_value("v")); // no error for the producer
            CHECK(run(await_future(fut)) == "v");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled after completion, before resumption

    TEST_CASE_FIXTURE(loop_fixture, "D-2 4.9 a waiter cancelled after set_value but before it "
                                    "resumed gets the value and raises at its next cancellation "
                                    "point") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            CHECK(late_cancel_log(*this, waits_on{fut}, [&] { CHECK(p.set_value("v")); }) ==
                  log_t{"a waits", "a got v"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 a waiter cancelled while parked raises even if the value "
                                    "is set before it resumes") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            // The value reaches b only.
            CHECK(cancel_first_then_complete(
                      *this, [&] { CHECK(p.set_value("v")); }, waits_on{fut}, waits_on{fut}) ==
                  log_t{"a waits", "b waits", "b got v"});
        }
    }

    TEST_CASE("D-2 4.9 a set_value and a deadline recorded in the same iteration: the value is "
              "returned") {
        loop_fixture f(loop_fixture::manual_clock());
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            CHECK(complete_and_deadline(
                      f, waits_on{fut}, [&] { CHECK(p.set_value("v")); }, true) == "got v");
        }
    }

    TEST_CASE("D-13 a deadline recorded before set_value detaches the waiter; set_value still "
              "succeeds") {
        loop_fixture f(loop_fixture::manual_clock());
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            // set_value still succeeds
            CHECK(complete_and_deadline(
                      f, waits_on{fut}, [&] { CHECK(p.set_value("v")); }, false) == "moved on");
        }
    }

    // -----------------------------------------------------------------------------------------
    // Cancelled twice

    TEST_CASE_FIXTURE(loop_fixture, "D-11 cancelling a waiter twice detaches it once and keeps the "
                                    "first message") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            log_t log;
            std::vector<task_handle<>> hs = park_waiters(*this, log, waits_on{fut}, waits_on{fut});
            cancel_twice_and_check(*this, hs[0]);
            CHECK(p.set_value("v"));
            run_all();
            CHECK(hs[1].done());
            CHECK(log == log_t{"a waits", "b waits", "b got v"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "D-1 a waiter that swallows its cancellation and awaits again "
                                    "raises again") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            swallow_and_wait_again_raises(*this, waits_on{fut});
            CHECK_FALSE(fut.done());
            CHECK(p.set_value("v")); // no waiter is left behind
        }
    }

    // -----------------------------------------------------------------------------------------
    // Inside timeout / move_on_after

    TEST_CASE_FIXTURE(loop_fixture, "D-13 5.6 a timeout around a pending future throws "
                                    "timeout_error at its deadline and leaves the future pending") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            const deadline start = now();
            times_out(*this, waits_on{fut});
            CHECK_FALSE(fut.done());
            CHECK(p.set_value("v"));
            CHECK(run(wait_with_timeout(waits_on{fut}, 5ms)) == "got v"); // done: no suspension
            CHECK(now() - start == 5ms);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "move_on_after around a future returns the value set before the "
                      "deadline and moves on otherwise") {
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            deadline start = now();
            task_handle<std::string> w = rt->spawn(wait_or_move_on(waits_on{fut}, 10ms));
            task_handle<> setter = rt->spawn(set_after(p, "v", 3ms));
            run_until([&] { return w.done() && setter.done(); });
            CHECK(now() - start == 3ms);
            CHECK(run(join(w)) == "got v");

            promise<std::string> q;
            start = now();
            CHECK(run(wait_or_move_on(waits_on{q.get_future()}, 10ms)) == "moved on");
            CHECK(now() - start == 10ms);
            CHECK(q.set_value("late")); // the waiter that moved on did not cancel the future
        }
    }

    TEST_CASE("4.8 a task cancellation passes through a timeout around a future as "
              "cancelled_error, and the future stays pending") {
        loop_fixture f(loop_fixture::manual_clock());
        for (int round = 0; round < 2; ++round) {
            promise<std::string> p;
            future<std::string> fut = p.get_future();
            cancel_through_timeout(f, waits_on{fut});
            CHECK_FALSE(fut.done());
            CHECK(p.set_value("v"));
        }
    }
}
