// SPDX-License-Identifier: MIT
// as_outcome (SEMANTICS 19), move_on/timeout around a leaf (19.4) and the yield rule (4.1).
// Cancellations are observed by counting every unwind the process starts (throw_counter.hpp),
// never by timing.

#include <cstddef>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "throw_counter.hpp"

using namespace std::chrono_literals;

namespace uvasync::test {
namespace {

template <class T>
std::string describe(const outcome<T>& o) {
    if (o.has_value()) {
        return "value";
    }
    if (o.has_error()) {
        try {
            std::rethrow_exception(o.error());
        } catch (const std::exception& e) {
            return std::string("error: ") + e.what();
        } catch (...) {
            return "error";
        }
    }
    return "cancelled: " + std::string(o.message());
}

struct observed {
    std::string what;
    std::size_t throws = 0;
};

/// Awaits `make()` through as_outcome twice: the first wait is cancelled while parked (or
/// completes, when the canceller completes it first), the second starts in the cancelled
/// scope. Then a plain checkpoint raises: level triggering is unchanged (19.3).
template <class Make>
task<void> twice(Make make, std::vector<observed>& seen) {
    for (int i = 0; i < 2; ++i) {
        const throws_since n;
        auto o = co_await as_outcome(make());
        const std::size_t count = n.count();
        seen.push_back({describe(o), count});
    }
    co_await checkpoint();
    seen.push_back({"not reached", 0});
}

task<void> cancel_now(task_handle<void> h, std::function<void()> before) {
    if (before) {
        before();
    }
    h.cancel("stop");
    co_return;
}

/// Spawns `twice(make)` and, right after its first step (it is parked then), a task that
/// runs `before` and cancels it. Returns what it saw.
template <class Make>
std::vector<observed> cancel_while_parked(loop_fixture& f, Make make,
                                          std::function<void()> before = {}) {
    REQUIRE(throw_counter::active());
    std::vector<observed> seen;
    auto h = f.rt->spawn(twice(make, seen));
    auto c = f.rt->spawn(cancel_now(h, std::move(before)));
    f.run_until([&] { return h.done() && c.done(); });
    CHECK(h.cancelled()); // the checkpoint after the outcomes raised
    CHECK(seen.size() == 2);
    return seen;
}

void check_no_throw_cancelled(const std::vector<observed>& seen, std::size_t first_throws = 0) {
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].what == "cancelled: stop");
    CHECK(seen[0].throws == first_throws); // cancelled while parked
    CHECK(seen[1].what == "cancelled: stop");
    CHECK(seen[1].throws == 0); // cancelled before it started
}

} // namespace

TEST_SUITE("as_outcome") {
    TEST_CASE_FIXTURE(loop_fixture, "19.2 sleep: cancelled while parked and before start, "
                                    "without a throw") {
        auto make = [] { return sleep(1h); };
        check_no_throw_cancelled(cancel_while_parked(*this, make));
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.2 4.1 yield: cancelled while waiting for the poll and "
                                    "before start, without a throw") {
        auto make = [] { return yield(); };
        check_no_throw_cancelled(cancel_while_parked(*this, make));
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.2 checkpoint in a cancelled scope, without a throw") {
        REQUIRE(throw_counter::active());
        run([]() -> task<void> {
            const throws_since n;
            // Expired at entry (D-5): the checkpoint inside is cancelled.
            auto m = co_await move_on_after(0ms, as_outcome(checkpoint()));
            REQUIRE(m.has_value());
            CHECK(m->cancelled());
            auto plain = co_await move_on_after(0ms, checkpoint());
            CHECK_FALSE(plain.has_value());
            CHECK(n.count() == 0);
            auto outside = co_await as_outcome(checkpoint());
            CHECK(outside.has_value());
        }());
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.2 event, semaphore, queue, future, token: cancelled "
                                    "while parked and before start, without a throw") {
        event ev;
        check_no_throw_cancelled(cancel_while_parked(*this, [&] { return ev.wait(); }));
        semaphore sem(0);
        check_no_throw_cancelled(cancel_while_parked(*this, [&] { return sem.acquire(); }));
        queue<int> q;
        check_no_throw_cancelled(cancel_while_parked(*this, [&] { return q.get(); }));
        promise<int> p;
        future<int> fut = p.get_future();
        check_no_throw_cancelled(cancel_while_parked(*this, [&]() -> future<int>& { return fut; }));
        cancel_source src;
        check_no_throw_cancelled(
            cancel_while_parked(*this, [&] { return src.token().cancelled(); }));
        mutex m;
        auto held = m.try_lock();
        REQUIRE(held.owns_lock());
        check_no_throw_cancelled(cancel_while_parked(*this, [&] { return m.lock(); }));
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.2 25 barrier: cancelled while parked and before start, "
                                    "without a throw; a full generation is a value") {
        barrier b(2); // the cancelled waiter withdraws its arrival: nobody else arrives
        check_no_throw_cancelled(cancel_while_parked(*this, [&] { return b.arrive_and_wait(); }));
        REQUIRE(throw_counter::active());
        run([]() -> task<void> {
            barrier alone(1);
            const throws_since n;
            auto o = co_await as_outcome(alone.arrive_and_wait()); // the last arrival: ready
            REQUIRE(o.has_value());
            CHECK(o.value() == 0);
            CHECK(n.count() == 0);
        }());
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.1 future: a value and an error as outcomes, the error "
                                    "without a rethrow") {
        REQUIRE(throw_counter::active());
        run([]() -> task<void> {
            promise<int> p;
            future<int> f = p.get_future();
            p.set_value(7);
            const throws_since n;
            auto v = co_await as_outcome(f);
            REQUIRE(v.has_value());
            CHECK(v.value() == 7);
            promise<void> q;
            future<void> g = q.get_future();
            q.set_exception(std::make_exception_ptr(std::runtime_error("boom")));
            auto e = co_await as_outcome(g);
            CHECK(n.count() == 0); // taken from the future as it is
            CHECK(describe(e) == "error: boom");
        }());
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.1 as_outcome on an empty future raises invalid_state, "
                                    "like a plain co_await (misuse is not an outcome)") {
        run([]() -> task<void> {
            std::vector<std::string> seen;
            future<int> empty;
            try {
                (void)co_await empty;
                seen.emplace_back("plain: no throw");
            } catch (const invalid_state&) {
                seen.emplace_back("plain: invalid_state");
            }
            try {
                auto o = co_await as_outcome(empty);
                seen.emplace_back(o.has_error() ? "default: error outcome" : "default: outcome");
            } catch (const invalid_state&) {
                seen.emplace_back("default: invalid_state");
            }
            promise<int> p;
            future<int> f = p.get_future();
            future<int> taken = std::move(f);
            try {
                // NOLINTNEXTLINE(bugprone-use-after-move): awaiting a moved-from future is the test
                auto o = co_await as_outcome(f);
                seen.emplace_back(o.has_error() ? "moved-from: error outcome"
                                                : "moved-from: outcome");
            } catch (const invalid_state&) {
                seen.emplace_back("moved-from: invalid_state");
            }
            CHECK(seen == std::vector<std::string>{"plain: invalid_state", "default: invalid_state",
                                                   "moved-from: invalid_state"});
            CHECK(taken.valid());
        }());
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.2 condition::wait cancelled while parked: the lock is "
                                    "back in the guard, no throw") {
        REQUIRE(throw_counter::active());
        mutex m;
        condition cv(m);
        std::vector<observed> seen;
        bool held_after = false;
        auto h = rt->spawn([](mutex& m, condition& cv, std::vector<observed>& seen,
                              bool& held_after) -> task<void> {
            mutex::guard g = co_await m.lock();
            const throws_since n;
            auto o = co_await as_outcome(cv.wait(g));
            const std::size_t count = n.count();
            seen.push_back({describe(o), count});
            held_after = g.owns_lock();
        }(m, cv, seen, held_after));
        auto c = rt->spawn(cancel_now(h, {}));
        run_until([&] { return h.done() && c.done(); });
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].what == "cancelled: stop");
        CHECK(seen[0].throws == 0);
        CHECK(held_after);
        CHECK(m.try_lock().owns_lock()); // the guard released it when the task ended
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.2 D-2 completion wins: the outcome is the value, the "
                                    "next wait starts cancelled") {
        event ev;
        auto seen = cancel_while_parked(
            *this, [&] { return ev.wait(); }, [&] { ev.set(); });
        REQUIRE(seen.size() == 2);
        CHECK(seen[0].what == "value");
        CHECK(seen[0].throws == 0);
        CHECK(seen[1].what == "value"); // a set event is ready: not a cancellation point
        semaphore sem(0);
        seen = cancel_while_parked(
            *this, [&] { return sem.acquire(); }, [&] { sem.release(); });
        REQUIRE(seen.size() == 2);
        CHECK(seen[0].what == "value");
        CHECK(seen[0].throws == 0);
        // The first permit went back when its outcome was destroyed: available again, so the
        // second acquire does not suspend and is not a cancellation point either.
        CHECK(seen[1].what == "value");
        queue<int> q;
        seen = cancel_while_parked(
            *this, [&] { return q.get(); }, [&] { (void)q.try_put(1); });
        REQUIRE(seen.size() == 2);
        CHECK(seen[0].what == "value");
        CHECK(seen[1].what == "cancelled: stop"); // the queue is empty now: parks, cancelled
        CHECK(seen[1].throws == 0);
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.2 task_handle: forwarding, then the awaiter's own "
                                    "delivery, without a throw in the awaiter") {
        REQUIRE(throw_counter::active());
        auto target = rt->spawn([]() -> task<int> {
            co_await sleep(1h);
            co_return 1;
        }());
        // The target's own delivery at its sleep is the one throw (forwarding cancels it).
        check_no_throw_cancelled(
            cancel_while_parked(*this, [&]() -> task_handle<int>& { return target; }), 1);
        CHECK(target.cancelled());
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.1 values and errors come back as outcomes") {
        REQUIRE(throw_counter::active());
        auto failing = rt->spawn([]() -> task<int> {
            throw std::runtime_error("in task");
            co_return 0;
        }());
        run([](task_handle<int> failing) -> task<void> {
            event ev;
            ev.set();
            auto v = co_await as_outcome(ev.wait());
            CHECK(v.has_value());
            promise<int> p;
            future<int> f = p.get_future();
            p.set_exception(std::make_exception_ptr(std::runtime_error("boom")));
            auto e = co_await as_outcome(f);
            CHECK(describe(e) == "error: boom");
            co_await yield(); // let it fail
            const throws_since n;
            auto he = co_await as_outcome(failing);
            CHECK(n.count() == 0); // the handle's error is taken without a rethrow
            CHECK(describe(he) == "error: in task");
            auto sv = co_await as_outcome(sleep(1ms));
            CHECK(sv.has_value());
        }(failing));
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.2 a task<T> body ending in the delivery: one throw, "
                                    "caught at the boundary") {
        REQUIRE(throw_counter::active());
        std::vector<observed> seen;
        auto body = []() -> task<int> {
            co_await sleep(1h);
            co_return 1;
        };
        auto h = rt->spawn([](auto body, std::vector<observed>& seen) -> task<void> {
            const throws_since n;
            task<int> t = body();
            auto o = co_await as_outcome(std::move(t));
            const std::size_t count = n.count();
            seen.push_back({describe(o), count});
            const throws_since n2;
            task<int> failing = []() -> task<int> {
                throw std::runtime_error("body");
                co_return 0;
            }();
            auto e = co_await as_outcome(std::move(failing));
            const std::size_t count2 = n2.count(); // before describe(), which rethrows
            seen.push_back({describe(e), count2});
        }(body, seen));
        auto c = rt->spawn(cancel_now(h, {}));
        run_until([&] { return h.done() && c.done(); });
        REQUIRE(seen.size() == 2);
        CHECK(seen[0].what == "cancelled: stop");
        CHECK(seen[0].throws == 1);
        CHECK(seen[1].what == "error: body");
        CHECK(seen[1].throws == 1); // the body's own throw, not rethrown
        CHECK_FALSE(h.cancelled()); // no cancellation point after the outcomes (19.5)
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.5 a task that observed its cancellation only through "
                                    "as_outcome and returned is a normal return") {
        REQUIRE(throw_counter::active());
        const throws_since n;
        auto h = rt->spawn([]() -> task<int> {
            auto o = co_await as_outcome(sleep(1h));
            co_return o.cancelled() ? 5 : 0;
        }());
        auto c = rt->spawn([](task_handle<int> h) -> task<void> {
            h.cancel("stop");
            co_return;
        }(h));
        run_until([&] { return h.done() && c.done(); });
        CHECK_FALSE(h.cancelled());
        CHECK(h.result() == 5);
        CHECK(n.count() == 0);
    }

    TEST_CASE_FIXTURE(loop_fixture, "19.4 move_on_after around a leaf: no throw when its own "
                                    "deadline fires; timeout: exactly one throw") {
        REQUIRE(throw_counter::active());
        run([]() -> task<void> {
            {
                const throws_since n;
                auto m = move_on_after(10ms, sleep(1h));
                auto r = co_await m;
                CHECK_FALSE(r.has_value());
                CHECK(m.scope().expired());
                CHECK(m.scope().caught());
                CHECK(n.count() == 0);
            }
            {
                event never_set;
                const throws_since n;
                auto r = co_await move_on_at(loop_clock::now() + 5ms, never_set.wait());
                CHECK_FALSE(r.has_value());
                CHECK(n.count() == 0);
            }
            {
                const throws_since n;
                std::size_t seen = 0;
                try {
                    co_await timeout(10ms, sleep(1h));
                } catch (const timeout_error&) {
                    seen = n.count();
                }
                CHECK(seen == 1);
            }
            {
                // as_outcome inside a timeout: the scope's own deadline produced the outcome,
                // and the scope still reports it expired (19.3).
                const throws_since n;
                auto t = timeout(10ms, as_outcome(sleep(1h)));
                auto o = co_await t;
                CHECK(o.cancelled());
                CHECK(t.scope().expired());
                CHECK_FALSE(t.scope().caught());
                CHECK(n.count() == 0);
                co_await checkpoint(); // the scope was left: nothing is cancelled here
            }
        }());
    }

    TEST_CASE("19.3 D-3 an outer cancellation in the same iteration as move_on's deadline "
              "belongs to the task: one throw, the scope still expired") {
        loop_fixture f(loop_fixture::manual_clock());
        REQUIRE(throw_counter::active());
        std::string message;
        bool expired = false;
        std::size_t throws = 0;
        bool parked = false;
        auto h = f.rt->spawn([](std::string& message, bool& expired, bool& parked,
                                std::size_t& throws) -> task<void> {
            auto m = move_on_after(10ms, sleep(1h));
            parked = true; // in this step, at the co_await below
            const throws_since n;
            try {
                co_await m;
            } catch (const cancelled_error& e) {
                throws = n.count();
                message = e.message();
                expired = m.scope().expired();
            }
            co_await checkpoint(); // still cancelled: raises (level-triggered)
        }(message, expired, parked, throws));
        f.run_until([&] { return parked; });
        f.rt->advance(10ms); // the scope's deadline passes: recorded, nothing runs yet
        h.cancel("outer");   // and the task is cancelled in the same iteration
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(message == "outer");
        CHECK(expired);
        CHECK(throws == 1);
    }
}

TEST_SUITE("yield") {
    /// Counts the loop's check phases, which come right after each poll for I/O. Started after
    /// the runtime's own check handle, it runs after the runtime's check drain.
    struct poll_counter {
        explicit poll_counter(uv_loop_t* loop)
            : handle(new uv_check_t) {
            uv_check_init(loop, handle);
            handle->data = this;
            uv_check_start(handle,
                           [](uv_check_t* h) { ++static_cast<poll_counter*>(h->data)->polls; });
            uv_unref(reinterpret_cast<uv_handle_t*>(handle));
        }

        poll_counter(const poll_counter&) = delete;
        poll_counter& operator=(const poll_counter&) = delete;
        poll_counter(poll_counter&&) = delete;
        poll_counter& operator=(poll_counter&&) = delete;

        ~poll_counter() {
            uv_loop_t* loop = handle->loop;
            uv_close(reinterpret_cast<uv_handle_t*>(handle),
                     [](uv_handle_t* h) { delete reinterpret_cast<uv_check_t*>(h); });
            uv_run(loop, UV_RUN_NOWAIT); // the close callback
        }

        uv_check_t* handle;
        std::size_t polls = 0;
    };

    template <class Make>
    task<void> yields(Make make, const poll_counter& pc, std::vector<std::size_t>& at) {
        for (int i = 0; i < 8; ++i) {
            at.push_back(pc.polls);
            co_await make();
        }
        at.push_back(pc.polls);
    }

    template <class Make>
    void check_every_yield_polls(loop_fixture & f, Make make) {
        poll_counter pc(f.loop());
        std::vector<std::size_t> at;
        f.run(yields(make, pc, at));
        REQUIRE(at.size() == 9);
        for (std::size_t i = 1; i < at.size(); ++i) {
            CHECK_MESSAGE(at[i] == at[i - 1] + 1,
                          "yield " << i << ": the loop polled " << (at[i] - at[i - 1]) << " times");
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 every yield() lets the loop poll exactly once before "
                                    "the task resumes") {
        check_every_yield_polls(*this, [] { return yield(); });
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.1 sleep(0), sleep(-1 ms) and sleep_until(past) are "
                                    "yield()") {
        check_every_yield_polls(*this, [] { return sleep(0ms); });
        check_every_yield_polls(*this, [] { return sleep(-1ms); });
        check_every_yield_polls(*this, [] { return sleep_until(deadline{}); });
    }

    // On a real clock the runtime drains from its idle handle while tasks are ready and stops
    // its check handle while only yields are pending (decision 0041): still one poll per yield.
    TEST_CASE("4.1 on a real clock every yield() lets the loop poll exactly once") {
        loop_fixture f{loop_fixture::real_clock()};
        check_every_yield_polls(f, [] { return yield(); });
        check_every_yield_polls(f, [] { return sleep(0ms); });
    }

    task<void> yield_after_wakeup(event & e, const poll_counter& pc, std::vector<std::size_t>& at) {
        co_await e.wait(); // resumes in the drain after the poll (woken by another task)
        for (int i = 0; i < 4; ++i) {
            at.push_back(pc.polls);
            co_await yield();
        }
        at.push_back(pc.polls);
    }

    task<void> set_later(event & e) {
        co_await sleep(1ms);
        e.set();
    }

    TEST_CASE("4.1 on a real clock a task woken by another task polls once per yield") {
        loop_fixture f{loop_fixture::real_clock()};
        poll_counter pc(f.loop());
        std::vector<std::size_t> at;
        event e;
        auto setter = f.rt->spawn(set_later(e));
        f.run(yield_after_wakeup(e, pc, at));
        REQUIRE(at.size() == 5);
        for (std::size_t i = 1; i < at.size(); ++i) {
            CHECK_MESSAGE(at[i] == at[i - 1] + 1,
                          "yield " << i << ": the loop polled " << (at[i] - at[i - 1]) << " times");
        }
        CHECK(setter.done());
    }
}

} // namespace uvasync::test
