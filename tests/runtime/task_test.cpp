// SPDX-License-Identifier: MIT
// Tasks and task handles: SEMANTICS.md sections 2 (Task) and 3 (task_handle::cancel).
#include <chrono>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "join.hpp"
#include "loop_fixture.hpp"
#include "test_error.hpp"
#include "timed_tasks.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using namespace uvasync::test;

/// An error type that does not derive from std::exception.
struct plain_error {
    int code;
};

deadline clock_now() {
    return loop_clock::now();
}

task<> set_flag(bool& flag) {
    flag = true;
    co_return;
}

task<> log_step(std::vector<std::string>& log, std::string name) {
    log.push_back(std::move(name));
    co_return;
}

task<int> immediate(int v) {
    co_return v;
}

task<std::string> string_after(loop_clock::duration d, std::string v) {
    co_await sleep(d);
    co_return v;
}

/// Parks until cancelled. No deadline, so the virtual clock's autojump never wakes it.
task<int> parked_forever() {
    co_await sleep_until(never);
    co_return -1;
}

/// Like parked_forever, but tells the host when its first step has run.
task<int> note_and_park(bool& parked) {
    parked = true;
    co_await sleep_until(never);
    co_return -1;
}

/// Cancels `target` after `d` and records what cancel() returned.
template <class T>
task<> cancel_later(task_handle<T> target, loop_clock::duration d, std::string msg, bool& result) {
    co_await sleep(d);
    result = target.cancel(msg);
}

} // namespace

TEST_SUITE("task") {

    // -----------------------------------------------------------------------------------------
    // 2.1 Lazy start

    TEST_CASE("2.1 spawn returns at once and the body starts only when the loop runs") {
        bool started = false;
        loop_fixture f;
        for (int round = 0; round < 2; ++round) {
            started = false;
            task_handle<> h = f.rt->spawn(set_flag(started));
            CHECK(h.valid());
            CHECK_FALSE(started);
            CHECK_FALSE(h.done());
            f.run_until([&] { return h.done(); });
            CHECK(started);
            CHECK(h.done());
        }
    }

    TEST_CASE("2.1 tasks spawned from the host start in spawn order") {
        std::vector<std::string> log;
        loop_fixture f;
        auto c = f.rt->spawn(log_step(log, "c"));
        auto a = f.rt->spawn(log_step(log, "a"));
        auto b = f.rt->spawn(log_step(log, "b"));
        CHECK(log.empty());
        f.run_all();
        CHECK(log == std::vector<std::string>{"c", "a", "b"});
    }

    namespace {
    task<> spawn_three(runtime& rt, std::vector<std::string>& log,
                       std::vector<task_handle<>>& out) {
        for (const char* name : {"a", "b", "c"}) {
            out.push_back(rt.spawn(log_step(log, name)));
            log.push_back(std::string("spawned ") + name);
        }
        log.emplace_back("spawner step ends");
        for (auto& h : out) {
            co_await h;
        }
        log.emplace_back("spawner joined");
    }
    } // namespace

    TEST_CASE("2.1 tasks spawned in one step start in spawn order, after the spawner's step") {
        std::vector<std::string> log;
        std::vector<task_handle<>> children;
        loop_fixture f;
        f.run(spawn_three(*f.rt, log, children));
        CHECK(log == std::vector<std::string>{"spawned a", "spawned b", "spawned c",
                                              "spawner step ends", "a", "b", "c",
                                              "spawner joined"});
        children.clear(); // the handles must not outlive the fixture's frame check
    }

    namespace {
    task<> note_run_void(bool& ran, counted /*param*/) {
        ran = true;
        co_return;
    }
    } // namespace

    TEST_CASE("2.1 a lazy task runs nothing until awaited; destroying it unstarted destroys its "
              "parameters") {
        bool ran = false;
        loop_fixture f;
        const auto base = counted::live().load();
        {
            task<> t = note_run_void(ran, counted{});
            CHECK(t.valid());
            CHECK_FALSE(ran);
            CHECK(counted::live().load() == base + 1);
        }
        CHECK_FALSE(ran);
        CHECK(counted::live().load() == base);
    }

    // -----------------------------------------------------------------------------------------
    // 2.2 States, 2.3 outcomes, 2.4 escaping cancellations

    TEST_CASE("2.2 a task is pending, then done with a value, an error or cancelled") {
        loop_fixture f;
        auto hv = f.rt->spawn(value_after(5ms, 1));
        auto he = f.rt->spawn(fail_after(5ms, 2));
        auto hc = f.rt->spawn(parked_forever());
        for (auto* h : {&hv, &he, &hc}) {
            CHECK_FALSE(h->done());
            CHECK_FALSE(h->cancelled());
        }
        CHECK(hc.cancel());
        f.run_until([&] { return hv.done() && he.done() && hc.done(); });
        CHECK(hv.done());
        CHECK_FALSE(hv.cancelled());
        CHECK(he.done());
        CHECK_FALSE(he.cancelled());
        CHECK(hc.done());
        CHECK(hc.cancelled());
        CHECK(f.run(join(hv)) == 1);
        CHECK_THROWS_AS(f.run(join(he)), my_error);
        CHECK_THROWS_AS(f.run(join(hc)), cancelled_error);
    }

    TEST_CASE("2.3 the outcome is the value the body returned") {
        loop_fixture f;
        auto h = f.rt->spawn(value_after(3ms, 42));
        CHECK(f.run(join(h)) == 42);
        CHECK_FALSE(h.cancelled());
    }

    TEST_CASE("2.3 2.11 an error thrown after a wake-up by the loop becomes the task's error") {
        loop_fixture f;
        auto h = f.rt->spawn(fail_after(3ms, 9));
        f.run_all(); // the error must not escape through uv_run
        REQUIRE(h.done());
        CHECK_FALSE(h.cancelled());
        try {
            f.run(join(h));
            FAIL("no error");
        } catch (const my_error& e) {
            CHECK(e.code == 9);
        }
        CHECK(f.reported.empty());
    }

    namespace {
    task<int> swallow_and_return(int v, bool& parked, bool& caught) {
        parked = true;
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            caught = true;
        }
        co_return v;
    }

    task<int> self_cancel_then_return(task_handle<int>* self, bool& cancel_result, bool& raised) {
        cancel_result = self->cancel("self");
        try {
            co_await yield();
        } catch (const cancelled_error&) {
            raised = true;
        }
        co_return 12;
    }
    } // namespace

    TEST_CASE("2.3 a task that swallows its cancellation and returns completes with its value") {
        bool parked = false;
        bool caught = false;
        loop_fixture f;
        auto h = f.rt->spawn(swallow_and_return(5, parked, caught));
        f.run_until([&] { return parked; });
        CHECK(h.cancel("stop"));
        CHECK(f.run(join(h)) == 5);
        CHECK(caught);
        CHECK(h.done());
        CHECK_FALSE(h.cancelled());
    }

    TEST_CASE(
        "2.3 after a self-cancel a cancellation point raises, but return v completes with v") {
        bool cancel_result = false;
        bool raised = false;
        loop_fixture f;
        task_handle<int> h;
        h = f.rt->spawn(self_cancel_then_return(&h, cancel_result, raised));
        CHECK(f.run(join(h)) == 12);
        CHECK(cancel_result);
        CHECK(raised);
        CHECK_FALSE(h.cancelled());
    }

    namespace {
    task<int> throw_cancelled_directly() {
        co_await sleep(1ms);
        throw cancelled_error("thrown by hand");
    }
    } // namespace

    TEST_CASE(
        "2.4 a cancelled_error escaping the body makes the task cancelled, with its message") {
        loop_fixture f;
        auto h = f.rt->spawn(throw_cancelled_directly());
        CHECK(f.run(cancel_message_of(h)) == "thrown by hand");
        CHECK(h.done());
        CHECK(h.cancelled());
    }

    namespace {
    task<> swallow_then_throw_by_hand() {
        try {
            co_await sleep(1h);
        } catch (const cancelled_error&) {
        }
        throw cancelled_error("thrown after the delivery");
    }

    task<> rethrow_a_copy() {
        try {
            co_await sleep(1h);
        } catch (const cancelled_error& e) {
            throw cancelled_error(e); // a copy, not the delivered object
        }
    }
    } // namespace

    TEST_CASE("2.4 the outcome of a body that ends with another cancelled_error than the one "
              "delivered carries that error's message") {
        loop_fixture f;
        auto a = f.rt->spawn(swallow_then_throw_by_hand());
        auto b = f.rt->spawn(rethrow_a_copy());
        f.run([](task_handle<> a, task_handle<> b) -> task<> {
            co_await sleep(1ms);
            a.cancel("delivered");
            b.cancel("delivered");
        }(a, b));
        f.run_until([&] { return a.done() && b.done(); });
        CHECK(a.cancelled());
        CHECK(b.cancelled());
        CHECK(f.run(cancel_message_of(a)) == "thrown after the delivery");
        CHECK(f.run(cancel_message_of(b)) == "delivered");
    }

    TEST_CASE("2.4 2.6 a task awaiting a task that someone else cancelled ends cancelled") {
        bool cancel_result = false;
        loop_fixture f;
        auto a = f.rt->spawn(parked_forever());
        auto b = f.rt->spawn(join(a));
        auto c = f.rt->spawn(cancel_later(a, 5ms, "by c", cancel_result));
        f.run_until([&] { return b.done(); });
        CHECK(cancel_result);
        CHECK(a.cancelled());
        CHECK(b.cancelled());
        CHECK(f.run(cancel_message_of(b)) == "by c");
    }

    // -----------------------------------------------------------------------------------------
    // 2.5 Awaiting a task_handle

    namespace {
    task<std::string> join_string(task_handle<std::string> h) {
        co_return co_await h;
    }

    task<std::vector<std::string>> join_twice(task_handle<std::string> h) {
        std::vector<std::string> got;
        got.push_back(co_await h);
        got.push_back(co_await h);
        co_return got;
    }
    } // namespace

    TEST_CASE("2.5 a handle can be awaited by several tasks and again after it finished") {
        loop_fixture f;
        auto a = f.rt->spawn(string_after(10ms, "value"));
        auto b1 = f.rt->spawn(join_string(a));
        auto b2 = f.rt->spawn(join_string(a));
        auto b3 = f.rt->spawn(join_string(a));
        f.run_until([&] { return b1.done() && b2.done() && b3.done(); });
        CHECK(f.run(join(b1)) == "value");
        CHECK(f.run(join(b2)) == "value");
        CHECK(f.run(join(b3)) == "value");
        // Finished: awaited again, the value is copied each time.
        CHECK(f.run(join_twice(a)) == std::vector<std::string>{"value", "value"});
        CHECK(f.run(join_string(a)) == "value");
    }

    namespace {
    struct error_seen {
        const void* address = nullptr;
        int code = 0;
    };

    task<> catch_my_error(task_handle<int> h, error_seen& seen) {
        try {
            co_await h;
        } catch (const my_error& e) {
            seen.address = &e;
            seen.code = e.code;
        }
    }

    task<int> throw_plain(int code) {
        co_await sleep(1ms);
        throw plain_error{code};
    }

    task<int> throw_system_error() {
        co_await sleep(1ms);
        throw std::system_error(std::make_error_code(std::errc::connection_refused), "connect");
    }

    task<int> catch_plain(task_handle<int> h) {
        try {
            co_await h;
        } catch (const plain_error& e) {
            co_return e.code;
        }
        co_return -1;
    }

    task<int> catch_system_error(task_handle<int> h) {
        try {
            co_await h;
        } catch (const std::system_error& e) {
            co_return e.code() == std::errc::connection_refused ? 1 : 0;
        }
        co_return -1;
    }
    } // namespace

    TEST_CASE("2.5 an error is rethrown as the same exception object, its type preserved") {
        error_seen first;
        error_seen second;
        loop_fixture f;
        auto a = f.rt->spawn(fail_after(2ms, 77));
        auto b1 = f.rt->spawn(catch_my_error(a, first));
        f.run_until([&] { return b1.done(); });
        f.run(catch_my_error(a, second)); // after it finished
        CHECK(first.code == 77);
        CHECK(second.code == 77);
        CHECK(first.address != nullptr);
        CHECK(first.address == second.address);

        auto p = f.rt->spawn(throw_plain(5));
        CHECK(f.run(catch_plain(p)) == 5);

        auto s = f.rt->spawn(throw_system_error());
        CHECK(f.run(catch_system_error(s)) == 1);
        CHECK(f.reported.empty());
    }

    namespace {
    task<int> lazy_rethrows_by_type() {
        try {
            co_await fail_after(1ms, 3);
        } catch (const my_error& e) {
            co_return e.code;
        }
        co_return -1;
    }
    } // namespace

    TEST_CASE("2.5 awaiting a lazy task rethrows its error with its type") {
        loop_fixture f;
        CHECK(f.run(lazy_rethrows_by_type()) == 3);
    }

    TEST_CASE("2.5 a cancelled task raises cancelled_error carrying the task's message") {
        loop_fixture f;
        bool parked = false;
        auto a = f.rt->spawn(note_and_park(parked));
        f.run_until([&] { return parked; });
        CHECK(a.cancel("the message"));
        CHECK(f.run(cancel_message_of(a)) == "the message");
        CHECK(f.run(cancel_message_of(a)) == "the message"); // also after it finished
    }

    namespace {
    task<std::unique_ptr<int>> make_unique_after(loop_clock::duration d, int v) {
        co_await sleep(d);
        co_return std::make_unique<int>(v);
    }

    struct move_only_result {
        int first = 0;
        bool second_invalid = false;
    };

    task<> take_twice(task_handle<std::unique_ptr<int>> h, move_only_result& r) {
        std::unique_ptr<int> p = co_await h;
        r.first = p ? *p : -1;
        try {
            std::unique_ptr<int> q = co_await h;
            (void)q;
        } catch (const invalid_state&) {
            r.second_invalid = true;
        }
    }
    } // namespace

    TEST_CASE("2.5 a move-only value can be taken once; a second await is invalid_state") {
        move_only_result r;
        loop_fixture f;
        auto a = f.rt->spawn(make_unique_after(2ms, 8));
        f.run(take_twice(a, r));
        CHECK(r.first == 8);
        CHECK(r.second_invalid);
    }

    // -----------------------------------------------------------------------------------------
    // task_handle::result(): the outcome of a finished task, without waiting

    TEST_CASE("2.5 result() of a finished task gives its value, again and again for a copy") {
        loop_fixture f;
        auto h = f.rt->spawn(value_after(3ms, 42));
        f.run_until([&] { return h.done(); });
        CHECK(h.result() == 42);
        CHECK(h.result() == 42);
        CHECK(f.run(join(h)) == 42); // awaiting still works after result()
    }

    TEST_CASE("2.5 result() moves a move-only value out once; a second take is invalid_state") {
        loop_fixture f;
        auto h = f.rt->spawn(make_unique_after(2ms, 8));
        f.run_until([&] { return h.done(); });
        std::unique_ptr<int> p = h.result();
        REQUIRE(p != nullptr);
        CHECK(*p == 8);
        CHECK_THROWS_AS((void)h.result(), invalid_state);
        CHECK_THROWS_AS(f.run(join(h)), invalid_state); // shared with co_await: taken is taken
    }

    TEST_CASE("2.5 result() of a void task returns; of a cancelled task raises cancelled_error "
              "with the task's message") {
        loop_fixture f;
        auto v = f.rt->spawn(void_after(1ms));
        bool parked = false;
        auto c = f.rt->spawn(note_and_park(parked));
        f.run_until([&] { return v.done() && parked; });
        CHECK_NOTHROW(v.result());
        CHECK(c.cancel("the message"));
        f.run_until([&] { return c.done(); });
        try {
            (void)c.result();
            FAIL("no cancelled_error");
        } catch (const cancelled_error& e) {
            CHECK(std::string(e.message()) == "the message");
        }
    }

    TEST_CASE("2.5 2.9 result() rethrows the task's error object, which counts as observing it") {
        loop_fixture f;
        {
            auto h = f.rt->spawn(fail_after(2ms, 7));
            f.run_until([&] { return h.done(); });
            const my_error* first = nullptr;
            try {
                (void)h.result();
                FAIL("no error");
            } catch (const my_error& e) {
                CHECK(e.code == 7);
                first = &e;
            }
            try {
                (void)h.result();
                FAIL("no error");
            } catch (const my_error& e) {
                CHECK(&e == first); // the same exception object, rethrown
            }
        } // the last handle goes: an observed error is not reported
        f.run_all();
        CHECK(f.reported.empty());
    }

    TEST_CASE("2.5 result() of an unfinished task or an empty handle throws invalid_state") {
        loop_fixture f;
        bool parked = false;
        auto h = f.rt->spawn(note_and_park(parked));
        CHECK_THROWS_AS((void)h.result(), invalid_state); // not started
        f.run_until([&] { return parked; });
        CHECK_THROWS_AS((void)h.result(), invalid_state); // parked
        CHECK_FALSE(h.done());                            // and nothing changed
        task_handle<int> empty;
        CHECK_THROWS_AS((void)empty.result(), invalid_state);
        h.cancel();
        f.run_until([&] { return h.done(); });
        CHECK_THROWS_AS((void)h.result(), cancelled_error);
    }

    namespace {
    struct lazy_twice_result {
        int first = 0;
        bool second_invalid = false;
        bool moved_from_invalid = false;
        bool empty_invalid = false;
    };

    task<> await_lazy_twice(lazy_twice_result& r) {
        task<int> t = value_after(1ms, 6);
        r.first = co_await t;
        try {
            (void)co_await t;
        } catch (const invalid_state&) {
            r.second_invalid = true;
        }
        task<int> u = immediate(1);
        task<int> v = std::move(u);
        try {
            (void)co_await u; // NOLINT(bugprone-use-after-move): the moved-from task is the test
        } catch (const invalid_state&) {
            r.moved_from_invalid = true;
        }
        (void)co_await v;
        task<int> empty;
        try {
            (void)co_await empty;
        } catch (const invalid_state&) {
            r.empty_invalid = true;
        }
    }
    } // namespace

    TEST_CASE("2.5 a lazy task can be awaited once; again, moved-from or empty is invalid_state") {
        lazy_twice_result r;
        loop_fixture f;
        f.run(await_lazy_twice(r));
        CHECK(r.first == 6);
        CHECK(r.second_invalid);
        CHECK(r.moved_from_invalid);
        CHECK(r.empty_invalid);
    }

    namespace {
    task<int> await_empty_handle() {
        task_handle<int> empty;
        try {
            (void)co_await empty;
        } catch (const invalid_state&) {
            co_return 1;
        }
        co_return 0;
    }
    } // namespace

    TEST_CASE("2.5 awaiting an empty task_handle is invalid_state") {
        loop_fixture f;
        task_handle<int> empty;
        CHECK_FALSE(empty.valid());
        CHECK_FALSE(empty.done());
        CHECK_FALSE(empty.cancelled());
        CHECK_FALSE(empty.cancel("nothing"));
        CHECK(f.run(await_empty_handle()) == 1);
    }

    namespace {
    task<int> await_own_handle(task_handle<int>* self) {
        try {
            (void)co_await *self;
        } catch (const invalid_state&) {
            co_return 1;
        }
        co_return 0;
    }
    } // namespace

    TEST_CASE("2.5 a task awaiting its own handle gets invalid_state") {
        loop_fixture f;
        task_handle<int> h;
        h = f.rt->spawn(await_own_handle(&h));
        CHECK(f.run(join(h)) == 1);
    }

    // -----------------------------------------------------------------------------------------
    // 2.6 Waiting for a task: a cancellation point with forwarding

    namespace {
    struct join_trace {
        std::string joined_message;
        loop_clock::duration raised_after{-1};
        bool joined = false;
        bool cancel_result = false;
    };

    task<int> cancel_self_then_join(task_handle<int>* self, task_handle<int> other, join_trace& t) {
        t.cancel_result = self->cancel("self");
        const deadline before = clock_now();
        try {
            (void)co_await other;
            t.joined = true;
        } catch (const cancelled_error& e) {
            t.raised_after = clock_now() - before;
            t.joined_message = std::string(e.message());
            throw;
        }
        co_return 0;
    }
    } // namespace

    TEST_CASE("2.6 an awaiter already cancelled raises at once and leaves the awaited task alone") {
        join_trace t;
        loop_fixture f;
        const deadline t0 = f.now();
        auto a = f.rt->spawn(value_after(10ms, 4));
        task_handle<int> b;
        b = f.rt->spawn(cancel_self_then_join(&b, a, t));
        f.run_until([&] { return b.done(); });
        CHECK(t.cancel_result);
        CHECK_FALSE(t.joined);
        CHECK(t.raised_after == 0ms);
        CHECK(t.joined_message == "self");
        CHECK(b.cancelled());
        CHECK(f.run(join(a)) == 4);
        CHECK_FALSE(a.cancelled());
        CHECK(f.now() - t0 == 10ms);
    }

    namespace {
    struct forward_trace {
        std::string a_message;
        std::string b_message;
        deadline a_caught{};
        deadline a_finished{};
        deadline b_resumed{};
        bool first_cancel = false;
        bool second_cancel = true;
    };

    // Catches the cancellation, cleans up for 5 ms inside a shield, then rethrows.
    task<int> slow_cleanup(forward_trace& t) {
        std::exception_ptr cancelled;
        try {
            co_await sleep(1h);
        } catch (const cancelled_error& e) {
            t.a_message = std::string(e.message());
            t.a_caught = clock_now();
            cancelled = std::current_exception();
        }
        if (cancelled) {
            auto cleanup = shielded(sleep(5ms));
            co_await cleanup;
            t.a_finished = clock_now();
            std::rethrow_exception(cancelled);
        }
        co_return 1;
    }

    task<int> join_recording(task_handle<int> h, forward_trace& t) {
        try {
            co_return co_await h;
        } catch (const cancelled_error& e) {
            t.b_message = std::string(e.message());
            t.b_resumed = clock_now();
            throw;
        }
    }
    } // namespace

    TEST_CASE("2.6 3.2 cancelling an awaiter forwards the cancellation and waits for the task") {
        forward_trace t;
        loop_fixture f;
        const deadline t0 = f.now();
        auto a = f.rt->spawn(slow_cleanup(t));
        auto b = f.rt->spawn(join_recording(a, t));
        auto c1 = f.rt->spawn(cancel_later(b, 5ms, "stop", t.first_cancel));
        auto c2 = f.rt->spawn(cancel_later(a, 7ms, "again", t.second_cancel));
        f.run_until([&] { return a.done() && b.done() && c2.done(); });
        CHECK(t.first_cancel);
        CHECK_FALSE(t.second_cancel); // a's scope was already cancelled by forwarding
        CHECK(t.a_caught - t0 == 5ms);
        CHECK(t.a_message == "stop"); // the owner's message is forwarded
        CHECK(t.a_finished - t0 == 10ms);
        CHECK(t.b_resumed - t0 == 10ms); // b kept waiting until a finished
        CHECK(t.b_message == "stop");
        CHECK(a.cancelled());
        CHECK(b.cancelled());
        CHECK(f.run(cancel_message_of(a)) == "stop"); // the ignored "again" did not replace it
    }

    namespace {
    struct d2b_trace {
        int value = 0;
        bool yield_passed = false;
        bool raised = false;
        std::string message;
    };

    task<int> swallow_forwarded(int v) {
        try {
            co_await sleep(1h);
        } catch (const cancelled_error&) {
        }
        co_return v;
    }

    task<> join_then_yield(task_handle<int> h, d2b_trace& t) {
        t.value = co_await h;
        try {
            co_await yield();
            t.yield_passed = true;
        } catch (const cancelled_error& e) {
            t.raised = true;
            t.message = std::string(e.message());
            throw;
        }
    }
    } // namespace

    TEST_CASE("D-2b a forwarded cancellation swallowed by the awaited task: the awaiter gets the "
              "value and raises at its next cancellation point") {
        d2b_trace t;
        bool cancel_result = false;
        loop_fixture f;
        auto a = f.rt->spawn(swallow_forwarded(7));
        auto b = f.rt->spawn(join_then_yield(a, t));
        auto c = f.rt->spawn(cancel_later(b, 3ms, "outer", cancel_result));
        f.run_until([&] { return a.done() && b.done(); });
        CHECK(cancel_result);
        CHECK(t.value == 7);
        CHECK_FALSE(t.yield_passed);
        CHECK(t.raised);
        CHECK(t.message == "outer");
        CHECK_FALSE(a.cancelled());
        CHECK(f.run(join(a)) == 7);
        CHECK(b.cancelled());
    }

    namespace {
    task<int> fail_when_cancelled(int code) {
        bool cancelled = false;
        try {
            co_await sleep(1h);
        } catch (const cancelled_error&) {
            cancelled = true;
        }
        if (cancelled) {
            throw my_error(code);
        }
        co_return 0;
    }

    task<int> join_catch_my_error(task_handle<int> h) {
        try {
            co_await h;
        } catch (const my_error& e) {
            co_return e.code;
        }
        co_return -1;
    }
    } // namespace

    TEST_CASE("2.6 when the awaited task answers a forwarded cancellation with an error, the "
              "awaiter gets that error") {
        bool cancel_result = false;
        loop_fixture f;
        auto a = f.rt->spawn(fail_when_cancelled(31));
        auto b = f.rt->spawn(join_catch_my_error(a));
        auto c = f.rt->spawn(cancel_later(b, 2ms, "go", cancel_result));
        f.run_until([&] { return b.done(); });
        CHECK(cancel_result);
        CHECK(f.run(join(b)) == 31);
        CHECK(a.done());
        CHECK_FALSE(a.cancelled());
        CHECK(f.reported.empty());
    }

    namespace {
    struct timeout_join_trace {
        bool timed_out = false;
        bool cancelled = false;
        loop_clock::duration at{-1};
    };

    task<> join_with_timeout(task_handle<int> h, timeout_join_trace& t) {
        const deadline start = clock_now();
        try {
            auto bounded = timeout(10ms, h);
            (void)co_await bounded;
        } catch (const timeout_error&) {
            t.timed_out = true;
        } catch (const cancelled_error&) {
            t.cancelled = true;
        }
        t.at = clock_now() - start;
    }
    } // namespace

    TEST_CASE("2.6 D-3 a timeout around an await forwards to the task and owns the cancellation") {
        timeout_join_trace t;
        loop_fixture f;
        auto a = f.rt->spawn(parked_forever());
        f.run(join_with_timeout(a, t));
        CHECK(t.timed_out);
        CHECK_FALSE(t.cancelled);
        CHECK(t.at == 10ms);
        CHECK(a.done());
        CHECK(a.cancelled());
    }

    namespace {
    struct foreign_trace {
        std::string message;
        std::uint64_t owner = 1;
        bool timed_out = false;
        bool later_sleep_passed = false;
    };

    task<int> catch_foreign_cancellation(task_handle<int> h, foreign_trace& t) {
        try {
            auto bounded = timeout(1h, h);
            (void)co_await bounded;
        } catch (const timeout_error&) {
            t.timed_out = true;
        } catch (const cancelled_error& e) {
            t.message = std::string(e.message());
            t.owner = e.owner();
        }
        co_await sleep(1ms); // none of our scopes is cancelled: not raised
        t.later_sleep_passed = true;
        co_return 5;
    }
    } // namespace

    TEST_CASE("2.6 a cancellation received from a task someone else cancelled has no owner in the "
              "awaiter: no scope converts it, and a caught one lets the awaiter run on") {
        foreign_trace t;
        bool cancel_result = false;
        loop_fixture f;
        auto a = f.rt->spawn(parked_forever());
        auto b = f.rt->spawn(catch_foreign_cancellation(a, t));
        auto c = f.rt->spawn(cancel_later(a, 4ms, "foreign", cancel_result));
        CHECK(f.run(join(b)) == 5);
        CHECK(cancel_result);
        CHECK_FALSE(t.timed_out);
        CHECK(t.message == "foreign");
        CHECK(t.owner == 0);
        CHECK(t.later_sleep_passed);
        CHECK_FALSE(b.cancelled());
    }

    namespace {
    task<int> cancel_self_then_join_done(task_handle<int>* self, task_handle<int> done_task,
                                         bool& yield_raised) {
        self->cancel("self");
        const int v = co_await done_task; // already complete: not a cancellation point
        try {
            co_await yield();
        } catch (const cancelled_error&) {
            yield_raised = true;
        }
        co_return v;
    }
    } // namespace

    TEST_CASE("4.1 awaiting a task that already finished is not a cancellation point") {
        bool yield_raised = false;
        loop_fixture f;
        auto a = f.rt->spawn(immediate(21));
        f.run_until([&] { return a.done(); });
        task_handle<int> b;
        b = f.rt->spawn(cancel_self_then_join_done(&b, a, yield_raised));
        CHECK(f.run(join(b)) == 21);
        CHECK(yield_raised);
    }

    // -----------------------------------------------------------------------------------------
    // 2.7 Cancel before the first step

    namespace {
    struct body_probe {
        bool ran = false;
        bool caught = false;
    };

    task<int> probed_body(body_probe& p, counted /*param*/) {
        p.ran = true;
        try {
            co_await sleep(1ms);
        } catch (...) {
            p.caught = true;
            throw;
        }
        co_return 1;
    }
    } // namespace

    TEST_CASE("2.7 a task cancelled before its first step never runs and its frame and "
              "parameters are destroyed") {
        body_probe p;
        loop_fixture f;
        const auto base = counted::live().load();
        for (int round = 0; round < 2; ++round) {
            auto h = f.rt->spawn(probed_body(p, counted{}));
            CHECK(counted::live().load() == base + 1);
            CHECK(h.cancel("early"));
            CHECK_FALSE(h.cancel("later")); // 3.2
            f.run_until([&] { return h.done(); });
            CHECK(h.cancelled());
            CHECK_FALSE(p.ran);
            CHECK_FALSE(p.caught);
            CHECK(counted::live().load() == base);
            CHECK(f.run(cancel_message_of(h)) == "early");
        }
    }

    TEST_CASE("2.7 a task spawned with a token that is already cancelled never runs") {
        body_probe p;
        loop_fixture f;
        cancel_source src;
        CHECK(src.request_cancel("token"));
        auto h = f.rt->spawn(probed_body(p, counted{}), src.token());
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK_FALSE(p.ran);
        CHECK(f.run(cancel_message_of(h)) == "token");
    }

    // -----------------------------------------------------------------------------------------
    // 2.8 Spawn is independent

    namespace {
    task<int> spawn_child_and_park(runtime& rt, task_handle<int>& child) {
        child = rt.spawn(value_after(20ms, 3));
        co_await sleep(1h);
        co_return 0;
    }
    } // namespace

    TEST_CASE("2.8 cancelling the spawner does not cancel the task it spawned") {
        task_handle<int> child;
        bool cancel_result = false;
        loop_fixture f;
        const deadline t0 = f.now();
        auto spawner = f.rt->spawn(spawn_child_and_park(*f.rt, child));
        auto c = f.rt->spawn(cancel_later(spawner, 5ms, "spawner", cancel_result));
        f.run_until([&] { return spawner.done() && child.valid() && child.done(); });
        CHECK(cancel_result);
        CHECK(spawner.cancelled());
        CHECK_FALSE(child.cancelled());
        CHECK(f.run(join(child)) == 3);
        CHECK(f.now() - t0 == 20ms);
        child = {}; // the handle must not outlive the fixture's frame check
    }

    namespace {
    task<> spawn_then_sleep(runtime& rt, task_handle<int>& child) {
        child = rt.spawn(value_after(20ms, 9));
        co_await sleep(1h);
    }

    struct independent_trace {
        bool timed_out = false;
        loop_clock::duration timed_out_at{-1};
        int child_value = 0;
        loop_clock::duration child_at{-1};
    };

    task<> timeout_around_spawn(runtime& rt, task_handle<int>& child, independent_trace& t) {
        const deadline start = clock_now();
        try {
            auto body = spawn_then_sleep(rt, child);
            auto bounded = timeout(5ms, std::move(body));
            co_await bounded;
        } catch (const timeout_error&) {
            t.timed_out = true;
            t.timed_out_at = clock_now() - start;
        }
        t.child_value = co_await child;
        t.child_at = clock_now() - start;
    }
    } // namespace

    TEST_CASE("2.8 a timeout that expires around the spawn call does not cancel the task") {
        task_handle<int> child;
        independent_trace t;
        loop_fixture f;
        f.run(timeout_around_spawn(*f.rt, child, t));
        CHECK(t.timed_out);
        CHECK(t.timed_out_at == 5ms);
        CHECK(t.child_value == 9);
        CHECK(t.child_at == 20ms);
        CHECK_FALSE(child.cancelled());
        child = {}; // the handle must not outlive the fixture's frame check
    }

    // -----------------------------------------------------------------------------------------
    // 2.9 The runtime owns running tasks; detached errors are reported

    namespace {
    task<> record_time_after(loop_clock::duration d, loop_clock::duration& at, deadline start) {
        co_await sleep(d);
        at = clock_now() - start;
    }

    template <class E>
    bool is_my_error(const std::exception_ptr& e, int code) {
        try {
            std::rethrow_exception(e);
        } catch (const E& err) {
            return err.code == code;
        } catch (...) {
        }
        return false;
    }
    } // namespace

    TEST_CASE("2.9 dropping the handle detaches the task: it keeps running to completion") {
        loop_clock::duration at{-1};
        loop_fixture f;
        const auto frames = detail::live_frame_counter().load();
        f.rt->spawn(record_time_after(10ms, at, f.now())).detach();
        (void)f.rt->spawn(record_time_after(12ms, at, f.now())); // handle dropped at once
        CHECK(f.rt->task_count() == 2);
        f.run_all();
        CHECK(at == 12ms);
        CHECK(f.rt->task_count() == 0);
        CHECK(detail::live_frame_counter().load() == frames);
    }

    TEST_CASE(
        "2.9 a detached task's error is reported to the exception handler when it completes") {
        loop_fixture f;
        f.rt->spawn(fail_after(3ms, 13)).detach();
        f.run_all();
        REQUIRE(f.reported.size() == 1);
        CHECK(is_my_error<my_error>(f.reported[0], 13));
        f.rt.reset();
        CHECK(f.reported.size() == 1); // reported once, not again at shutdown
    }

    TEST_CASE("2.9 a failed task whose last handle is dropped unobserved is reported once") {
        loop_fixture f;
        auto h = f.rt->spawn(fail_after(3ms, 14));
        f.run_until([&] { return h.done(); });
        CHECK(f.reported.empty()); // someone can still await it
        h = task_handle<int>();
        REQUIRE(f.reported.size() == 1);
        CHECK(is_my_error<my_error>(f.reported[0], 14));
        f.rt.reset();
        CHECK(f.reported.size() == 1);
    }

    TEST_CASE("2.9 an error that was awaited is not reported, and neither is a cancellation") {
        loop_fixture f;
        auto h = f.rt->spawn(fail_after(3ms, 15));
        CHECK(f.run(join_catch_my_error(h)) == 15);
        h = task_handle<int>();
        auto c = f.rt->spawn(parked_forever());
        c.cancel("bye");
        c.detach();
        f.run_all();
        f.rt.reset();
        CHECK(f.reported.empty());
    }

    // -----------------------------------------------------------------------------------------
    // 2.12 / D-14 Resumption from the ready queue

    namespace {
    struct wake_trace {
        bool b_sleep_returned = false;
        bool b_yield_raised = false;
        bool cancel_result = false;
    };

    task<> wake_then_cancel(task_handle<>* other, wake_trace& t) {
        co_await sleep(10ms);
        t.cancel_result = other->cancel("same iteration");
    }

    task<> wake_then_yield(wake_trace& t) {
        co_await sleep(10ms);
        t.b_sleep_returned = true;
        try {
            co_await yield();
        } catch (const cancelled_error&) {
            t.b_yield_raised = true;
            throw;
        }
    }
    } // namespace

    TEST_CASE("2.12 3.3 D-2 a task whose wake-up was recorded before it was cancelled resumes "
              "with the result and raises at its next cancellation point") {
        wake_trace t;
        loop_fixture f;
        task_handle<> b;
        auto a = f.rt->spawn(wake_then_cancel(&b, t));
        b = f.rt->spawn(wake_then_yield(t));
        f.run_until([&] { return a.done() && b.done(); });
        CHECK(t.cancel_result);
        CHECK(t.b_sleep_returned);
        CHECK(t.b_yield_raised);
        CHECK(b.cancelled());
    }

    // -----------------------------------------------------------------------------------------
    // 16.3 Deep awaits do not grow the native stack

    namespace {
    task<long long> sum_immediates(int n) {
        long long sum = 0;
        for (int i = 0; i < n; ++i) {
            sum += co_await immediate(i);
        }
        co_return sum;
    }

    task<long long> sum_done_handle(task_handle<int> h, int n) {
        long long sum = 0;
        for (int i = 0; i < n; ++i) {
            sum += co_await h;
        }
        co_return sum;
    }

    task<int> chain(int depth) {
        if (depth == 0) {
            co_return 0;
        }
        co_return 1 + co_await chain(depth - 1);
    }
    } // namespace

    TEST_CASE("16.3 1,000,000 co_awaits of lazy tasks that complete at once do not overflow the "
              "stack") {
        constexpr int n = 1'000'000;
        loop_fixture f;
        CHECK(f.run(sum_immediates(n)) == static_cast<long long>(n) * (n - 1) / 2);
    }

    TEST_CASE("16.3 1,000,000 co_awaits of a finished task_handle do not overflow the stack") {
        constexpr int n = 1'000'000;
        loop_fixture f;
        auto h = f.rt->spawn(immediate(2));
        f.run_until([&] { return h.done(); });
        CHECK(f.run(sum_done_handle(h, n)) == 2LL * n);
    }

    TEST_CASE("16.3 a chain of 1,000,000 nested lazy tasks unwinds without growing the stack") {
        constexpr int depth = 1'000'000;
        loop_fixture f;
        CHECK(f.run(chain(depth)) == depth);
    }

    // -----------------------------------------------------------------------------------------
    // 3. task_handle::cancel

    TEST_CASE("3.1 cancel on a done task returns false and changes nothing") {
        loop_fixture f;
        auto v = f.rt->spawn(immediate(3));
        auto e = f.rt->spawn(fail_after(1ms, 4));
        auto c = f.rt->spawn(parked_forever());
        CHECK(c.cancel("first"));
        f.run_until([&] { return v.done() && e.done() && c.done(); });
        for (int round = 0; round < 2; ++round) {
            CHECK_FALSE(v.cancel("late"));
            CHECK_FALSE(e.cancel("late"));
            CHECK_FALSE(c.cancel("late"));
        }
        CHECK_FALSE(v.cancelled());
        CHECK_FALSE(e.cancelled());
        CHECK(f.run(join(v)) == 3);
        CHECK(f.run(join_catch_my_error(e)) == 4);
        CHECK(f.run(cancel_message_of(c)) == "first");
    }

    TEST_CASE("3.2 D-11 the first cancel returns true; later ones return false and their message "
              "is ignored") {
        bool parked = false;
        loop_fixture f;
        auto h = f.rt->spawn(note_and_park(parked));
        f.run_until([&] { return parked; });
        CHECK(h.cancel("first"));
        CHECK_FALSE(h.cancel("second"));
        CHECK_FALSE(h.cancel());
        CHECK(f.run(cancel_message_of(h)) == "first");

        auto g = f.rt->spawn(parked_forever());
        CHECK(g.cancel()); // no message: empty
        CHECK_FALSE(g.cancel("too late"));
        CHECK(f.run(cancel_message_of(g)).empty());
    }

    TEST_CASE("3.2 cancel returns false when the task scope is cancelled through its token") {
        bool parked = false;
        loop_fixture f;
        cancel_source src;
        auto h = f.rt->spawn(note_and_park(parked), src.token());
        f.run_until([&] { return parked; });
        CHECK(src.request_cancel("token"));
        CHECK_FALSE(h.cancel("mine"));
        CHECK(f.run(cancel_message_of(h)) == "token");
        CHECK(h.cancelled());
    }

    namespace {
    struct shutdown_cancel_trace {
        bool parked = false;
        bool caught = false;
        bool cancel_result = true;
    };

    task<> swallow_shutdown_then_cancel_self(task_handle<>* self, shutdown_cancel_trace& t) {
        t.parked = true;
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            t.caught = true;
        }
        t.cancel_result = self->cancel("late");
    }
    } // namespace

    TEST_CASE("3.2 cancel returns false when shutdown already cancelled the task") {
        shutdown_cancel_trace t;
        loop_fixture f;
        task_handle<> h;
        h = f.rt->spawn(swallow_shutdown_then_cancel_self(&h, t));
        f.run_until([&] { return t.parked; });
        f.rt->shutdown();
        CHECK(t.caught);
        CHECK_FALSE(t.cancel_result);
        CHECK(h.done());
        CHECK_FALSE(h.cancelled()); // it swallowed and returned (2.3)
    }

    namespace {
    task<> parked_until_cancelled(deadline start, loop_clock::duration& caught_at) {
        try {
            co_await sleep(1h);
        } catch (const cancelled_error&) {
            caught_at = clock_now() - start;
            throw;
        }
    }
    } // namespace

    TEST_CASE("3.3 cancelling a parked task runs the abort hook: it raises at once") {
        loop_clock::duration caught_at{-1};
        bool cancel_result = false;
        loop_fixture f;
        const deadline t0 = f.now();
        auto h = f.rt->spawn(parked_until_cancelled(t0, caught_at));
        auto c = f.rt->spawn(cancel_later(h, 6ms, "", cancel_result));
        f.run_until([&] { return h.done(); });
        CHECK(cancel_result);
        CHECK(caught_at == 6ms);
        CHECK(h.cancelled());
    }

    namespace {
    struct running_trace {
        int steps_after_cancel = 0;
        bool raised = false;
        loop_clock::duration raised_after{-1};
    };

    task<> self_cancel_keeps_running(task_handle<>* self, running_trace& t) {
        const deadline start = clock_now();
        self->cancel("self");
        for (int i = 0; i < 3; ++i) {
            ++t.steps_after_cancel; // plain code keeps running
        }
        try {
            co_await sleep(1h);
        } catch (const cancelled_error&) {
            t.raised = true;
            t.raised_after = clock_now() - start;
            throw;
        }
    }
    } // namespace

    TEST_CASE("3.3 cancelling a running task (self-cancel) takes effect at its next cancellation "
              "point") {
        running_trace t;
        loop_fixture f;
        task_handle<> h;
        h = f.rt->spawn(self_cancel_keeps_running(&h, t));
        f.run_until([&] { return h.done(); });
        CHECK(t.steps_after_cancel == 3);
        CHECK(t.raised);
        CHECK(t.raised_after == 0ms); // the sleep never started
        CHECK(h.cancelled());
    }

    namespace {
    struct shield_trace {
        loop_clock::duration shield_done{-1};
        loop_clock::duration raised_at{-1};
        bool yield_passed = false;
    };

    task<> shielded_sleeper(deadline start, shield_trace& t) {
        auto s = shielded(sleep(10ms));
        co_await s;
        t.shield_done = clock_now() - start;
        try {
            co_await yield();
            t.yield_passed = true;
        } catch (const cancelled_error&) {
            t.raised_at = clock_now() - start;
            throw;
        }
    }
    } // namespace

    TEST_CASE("3.3 cancelling a task inside a shielded scope takes effect at the first "
              "cancellation point after it") {
        shield_trace t;
        bool cancel_result = false;
        loop_fixture f;
        const deadline t0 = f.now();
        auto h = f.rt->spawn(shielded_sleeper(t0, t));
        auto c = f.rt->spawn(cancel_later(h, 2ms, "wait", cancel_result));
        f.run_until([&] { return h.done(); });
        CHECK(cancel_result);
        CHECK(t.shield_done == 10ms);
        CHECK(t.raised_at == 10ms);
        CHECK_FALSE(t.yield_passed);
        CHECK(h.cancelled());
    }

    namespace {
    task<> target_logging(std::vector<std::string>& log, bool& parked) {
        parked = true;
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            log.emplace_back("target caught");
            throw;
        }
    }

    task<> canceller_logging(task_handle<> target, std::vector<std::string>& log) {
        co_await sleep(1ms);
        log.emplace_back("before cancel");
        target.cancel();
        log.emplace_back("after cancel");
        co_await yield();
        log.emplace_back("canceller resumed");
    }
    } // namespace

    TEST_CASE("3.4 cancel never runs the target's code synchronously") {
        std::vector<std::string> log;
        bool parked = false;
        loop_fixture f;
        SUBCASE("from the host") {
            auto h = f.rt->spawn(target_logging(log, parked));
            f.run_until([&] { return parked; });
            CHECK(h.cancel());
            CHECK(log.empty());
            f.run_until([&] { return h.done(); });
            CHECK(log == std::vector<std::string>{"target caught"});
        }
        SUBCASE("from another task") {
            auto h = f.rt->spawn(target_logging(log, parked));
            auto c = f.rt->spawn(canceller_logging(h, log));
            f.run_until([&] { return h.done() && c.done(); });
            REQUIRE(log.size() == 4);
            CHECK(log[0] == "before cancel");
            CHECK(log[1] == "after cancel");
            CHECK(log[2] == "target caught");
            CHECK(log[3] == "canceller resumed");
        }
    }

    TEST_CASE("3.5 true does not mean the task ends cancelled: it may return a value or fail") {
        bool parked = false;
        bool caught = false;
        bool r1 = false;
        bool r2 = false;
        loop_fixture f;
        auto v = f.rt->spawn(swallow_and_return(17, parked, caught));
        auto e = f.rt->spawn(fail_when_cancelled(18));
        auto c1 = f.rt->spawn(cancel_later(v, 1ms, "x", r1));
        auto c2 = f.rt->spawn(cancel_later(e, 1ms, "y", r2));
        f.run_until([&] { return v.done() && e.done(); });
        CHECK(r1);
        CHECK(r2);
        CHECK_FALSE(v.cancelled());
        CHECK(f.run(join(v)) == 17);
        CHECK_FALSE(e.cancelled());
        CHECK(f.run(join_catch_my_error(e)) == 18);
    }

    namespace {
    struct level_trace {
        int deliveries = 0;
        loop_clock::duration elapsed{-1};
        std::vector<std::string> messages;
    };

    task<int> swallow_three_times(level_trace& t) {
        deadline first{};
        for (int i = 0; i < 3; ++i) {
            try {
                co_await sleep(1h);
            } catch (const cancelled_error& e) {
                if (t.deliveries == 0) {
                    first = clock_now();
                }
                ++t.deliveries;
                t.messages.emplace_back(e.message());
            }
        }
        try {
            co_await yield();
        } catch (const cancelled_error&) {
            ++t.deliveries;
        }
        t.elapsed = clock_now() - first;
        co_return t.deliveries;
    }
    } // namespace

    TEST_CASE("3.6 there is no withdrawal: every later cancellation point raises again") {
        level_trace t;
        bool cancel_result = false;
        loop_fixture f;
        auto h = f.rt->spawn(swallow_three_times(t));
        auto c = f.rt->spawn(cancel_later(h, 3ms, "level", cancel_result));
        CHECK(f.run(join(h)) == 4);
        CHECK(cancel_result);
        CHECK(t.elapsed == 0ms); // the later sleeps never waited
        CHECK(t.messages == std::vector<std::string>{"level", "level", "level"});
    }

    namespace {
    task<std::string> delivered_message(bool& parked) {
        parked = true;
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error& e) {
            co_return std::string(e.message());
        }
        co_return "<not cancelled>";
    }
    } // namespace

    TEST_CASE("3.7 the delivered cancelled_error carries the first message, also for awaiters") {
        bool h_parked = false;
        bool w_parked = false;
        bool e_parked = false;
        loop_fixture f;
        auto h = f.rt->spawn(delivered_message(h_parked));
        auto w = f.rt->spawn(note_and_park(w_parked));
        auto waiter = f.rt->spawn(cancel_message_of(w));
        f.run_until([&] { return h_parked && w_parked; });
        CHECK(h.cancel("one"));
        CHECK_FALSE(h.cancel("two"));
        CHECK(w.cancel("for the awaiter"));
        CHECK(f.run(join(h)) == "one");
        CHECK(f.run(join(waiter)) == "for the awaiter");

        auto e = f.rt->spawn(delivered_message(e_parked));
        CHECK(e.cancel());
        CHECK_FALSE(e.cancel("ignored"));
        // Cancelled before its first step: the awaiter sees the empty first message.
        CHECK(f.run(cancel_message_of(e)).empty());
        CHECK_FALSE(e_parked);
    }

} // TEST_SUITE("task")
