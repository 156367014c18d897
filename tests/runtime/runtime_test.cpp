// SPDX-License-Identifier: MIT
// The runtime: shutdown (SEMANTICS.md section 15, D-12), borrowed and owned loops, run(), post(),
// the exception handler.
#include <chrono>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/uvasync.hpp>

#include "join.hpp"
#include "loop_fixture.hpp"
#include "test_error.hpp"
#include "timed_tasks.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using namespace uvasync::test;

/// Checks, like loop_fixture does, that a test with an owned runtime leaves no coroutine frame
/// and no `counted` object behind. Declare it before the runtime.
class leak_check {
public:
    leak_check() = default;
    leak_check(const leak_check&) = delete;
    leak_check& operator=(const leak_check&) = delete;
    leak_check(leak_check&&) = delete;
    leak_check& operator=(leak_check&&) = delete;

    ~leak_check() {
        CHECK(detail::live_frame_counter().load() == frames_);
        CHECK(counted::live().load() == objects_);
    }

private:
    std::ptrdiff_t frames_ = detail::live_frame_counter().load();
    std::ptrdiff_t objects_ = counted::live().load();
};

/// Virtual clock, errors collected in `reported`.
runtime_options collecting_options(std::vector<std::exception_ptr>& reported) {
    runtime_options o;
    o.virtual_clock = true;
    o.exception_handler = [&reported](std::exception_ptr e) { reported.push_back(std::move(e)); };
    return o;
}

runtime_options with_grace(std::chrono::milliseconds grace) {
    runtime_options o = loop_fixture::virtual_clock();
    o.shutdown_grace = grace;
    return o;
}

template <class E>
bool holds(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const E&) {
        return true;
    } catch (...) {
    }
    return false;
}

bool holds_my_error(const std::exception_ptr& e, int code) {
    try {
        std::rethrow_exception(e);
    } catch (const my_error& err) {
        return err.code == code;
    } catch (...) {
    }
    return false;
}

std::size_t count_handles(uv_loop_t* loop) {
    std::size_t n = 0;
    uv_walk(
        loop, [](uv_handle_t*, void* arg) { ++*static_cast<std::size_t*>(arg); }, &n);
    return n;
}

deadline clock_now() {
    return loop_clock::now();
}

task<> set_flag(bool& flag) {
    flag = true;
    co_return;
}

task<int> immediate(int v) {
    co_return v;
}

task<int> elapsed_after(loop_clock::duration d) {
    const deadline start = clock_now();
    co_await sleep(d);
    co_return static_cast<int>((clock_now() - start).count());
}

/// Parks with no deadline (the virtual clock's autojump never wakes it) until cancelled.
task<int> note_and_park(bool& parked) {
    parked = true;
    co_await sleep_until(never);
    co_return -1;
}

/// Parks; when cancelled, cleans up for `d` inside a shield, then rethrows.
task<> cleanup_for(loop_clock::duration d, bool& parked, bool& cleaned) {
    parked = true;
    std::exception_ptr cancelled;
    try {
        co_await sleep_until(never);
    } catch (const cancelled_error&) {
        cancelled = std::current_exception();
    }
    if (cancelled) {
        auto cleanup = shielded(sleep(d));
        co_await cleanup;
        cleaned = true;
        std::rethrow_exception(cancelled);
    }
}

/// Counts its destruction.
struct on_destroy {
    int* count;

    explicit on_destroy(int* c) noexcept
        : count(c) {}

    on_destroy(const on_destroy&) = delete;
    on_destroy& operator=(const on_destroy&) = delete;
    on_destroy(on_destroy&&) = delete;
    on_destroy& operator=(on_destroy&&) = delete;

    ~on_destroy() { ++*count; }
};

struct leak_probe {
    bool parked = false;
    bool caught = false;
    bool resumed = false;
    int destroyed = 0;
};

task<> shielded_inner(leak_probe& p) {
    on_destroy guard(&p.destroyed);
    counted local;
    p.parked = true;
    co_await sleep_until(never); // no deadline: only the grace period can end the wait
    p.resumed = true;
}

/// Ignores cancellation: it sits in a shielded scope for an hour.
task<> leaker(leak_probe& p) {
    on_destroy guard(&p.destroyed);
    try {
        auto inner = shielded_inner(p);
        auto shield = shielded(std::move(inner));
        co_await shield;
        p.resumed = true;
    } catch (...) {
        p.caught = true;
        throw;
    }
}

} // namespace

TEST_SUITE("runtime") {

    // -----------------------------------------------------------------------------------------
    // 15. Shutdown

    namespace {
    task<> park_then_log(loop_clock::duration first, int id, std::vector<int>& order, int& parked) {
        co_await sleep(first);
        ++parked;
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            order.push_back(id);
            throw;
        }
    }
    } // namespace

    TEST_CASE("15.2 D-12 shutdown cancels every unfinished task in spawn order") {
        std::vector<int> order;
        int parked = 0;
        loop_fixture f;
        // They park in the order 2, 3, 1; shutdown must still cancel 1, 2, 3.
        auto t1 = f.rt->spawn(park_then_log(3ms, 1, order, parked));
        auto t2 = f.rt->spawn(park_then_log(1ms, 2, order, parked));
        auto t3 = f.rt->spawn(park_then_log(2ms, 3, order, parked));
        f.run_until([&] { return parked == 3; });
        f.rt->shutdown();
        CHECK(order == std::vector<int>{1, 2, 3});
        CHECK(t1.cancelled());
        CHECK(t2.cancelled());
        CHECK(t3.cancelled());
        CHECK(f.rt->task_count() == 0);
        CHECK(f.reported.empty());
    }

    namespace {
    task<int> swallow_every_time(bool& parked, int& deliveries) {
        parked = true;
        for (int i = 0; i < 2; ++i) {
            try {
                co_await sleep_until(never);
            } catch (const cancelled_error&) {
                ++deliveries;
            }
        }
        try {
            co_await sleep(1h);
        } catch (const cancelled_error&) {
            ++deliveries;
        }
        co_return deliveries;
    }
    } // namespace

    TEST_CASE("15.2 D-12 the shutdown cancellation stays in effect: every later cancellation point "
              "raises again") {
        bool parked = false;
        int deliveries = 0;
        loop_fixture f;
        auto h = f.rt->spawn(swallow_every_time(parked, deliveries));
        f.run_until([&] { return parked; });
        f.rt->shutdown();
        CHECK(deliveries == 3);
        CHECK(h.done());
        CHECK_FALSE(h.cancelled()); // it swallowed and returned (2.3)
        CHECK(f.reported.empty());
    }

    TEST_CASE("15.3 18.10 a shutdown whose tasks finish at once takes no time on the virtual "
              "clock: it does not jump to the grace deadline") {
        bool parked = false;
        int deliveries = 0;
        loop_fixture f; // default grace: 5 s
        auto a = f.rt->spawn(note_and_park(parked));
        auto b = f.rt->spawn(swallow_every_time(parked, deliveries));
        f.run_until([&] { return parked; });
        const deadline t0 = f.now();
        f.rt->shutdown();
        CHECK(a.cancelled());
        CHECK(deliveries == 3); // its one-hour sleep raised at once and never started
        CHECK(b.done());
        // On the real clock this shutdown returns at once; the virtual trace must be the same.
        CHECK(f.now() - t0 == 0ms);
    }

    TEST_CASE("15.3 shutdown waits for cancelled tasks to finish their cleanup, and no longer") {
        bool parked = false;
        bool cleaned = false;
        loop_fixture f(with_grace(1000ms));
        auto h = f.rt->spawn(cleanup_for(30ms, parked, cleaned));
        f.run_until([&] { return parked; });
        const deadline t0 = f.now();
        f.rt->shutdown();
        CHECK(cleaned);
        CHECK(h.cancelled());
        CHECK(f.now() - t0 == 30ms);
        CHECK(f.reported.empty());
    }

    TEST_CASE("15.3 a task still running when the grace period ends is reported as "
              "leaked_task_error after exactly the grace period on the loop clock") {
        leak_probe p;
        bool parked = false;
        bool cleaned = false;
        loop_fixture f(with_grace(250ms));
        f.rt->spawn(leaker(p)).detach();
        auto coop = f.rt->spawn(cleanup_for(30ms, parked, cleaned));
        f.run_until([&] { return p.parked && parked; });
        const deadline t0 = f.now();
        f.rt->shutdown();
        CHECK(f.now() - t0 == 250ms);
        CHECK(cleaned);
        CHECK(coop.cancelled());
        REQUIRE(f.reported.size() == 1);
        CHECK(holds<leaked_task_error>(f.reported[0]));
        CHECK_FALSE(p.resumed);
    }

    TEST_CASE("15.3 a leaked task is never resumed: destructors of its live locals run, its catch "
              "blocks do not") {
        leak_probe p;
        loop_fixture f(with_grace(100ms));
        const auto frames = detail::live_frame_counter().load();
        const auto objects = counted::live().load();
        f.rt->spawn(leaker(p)).detach();
        f.run_until([&] { return p.parked; });
        CHECK(counted::live().load() == objects + 1);
        f.rt->shutdown();
        CHECK(p.destroyed == 2); // the locals of the outer and of the nested frame
        CHECK_FALSE(p.caught);
        CHECK_FALSE(p.resumed);
        CHECK(counted::live().load() == objects);
        CHECK(detail::live_frame_counter().load() == frames);
        REQUIRE(f.reported.size() == 1);
        CHECK(holds<leaked_task_error>(f.reported[0]));
    }

    namespace {
    task<> join_leaker(task_handle<> h, bool& parked, bool& caught) {
        parked = true;
        try {
            co_await h;
        } catch (...) {
            caught = true;
            throw;
        }
    }
    } // namespace

    TEST_CASE("15.3 D-12 a task waiting for a leaked task is leaked too; shutdown ends after the "
              "default grace period and destroys every frame") {
        leak_probe p;
        bool parked = false;
        bool caught = false;
        loop_fixture f; // default grace: 5 s, on the virtual clock
        const auto frames = detail::live_frame_counter().load();
        {
            auto a = f.rt->spawn(leaker(p));
            f.rt->spawn(join_leaker(a, parked, caught)).detach();
        }
        f.run_until([&] { return p.parked && parked; });
        const deadline t0 = f.now();
        f.rt->shutdown();
        CHECK(f.now() - t0 == 5000ms);
        CHECK_FALSE(caught);
        CHECK_FALSE(p.caught);
        CHECK(p.destroyed == 2);
        CHECK(detail::live_frame_counter().load() == frames);
        REQUIRE(f.reported.size() == 2);
        CHECK(holds<leaked_task_error>(f.reported[0]));
        CHECK(holds<leaked_task_error>(f.reported[1]));
    }

    namespace {
    task<int> catch_my_error(task_handle<int> h) {
        try {
            co_await h;
        } catch (const my_error& e) {
            co_return e.code;
        }
        co_return -1;
    }

    /// Sets `parked`, parks until cancelled and swallows the cancellation: true once it came
    /// (a task spawned at shutdown is cancelled there).
    task<bool> park_and_swallow_cancel(bool& parked) {
        parked = true;
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            co_return true;
        }
        co_return false;
    }

    task<> fail_on_cancel(bool& parked, int code) {
        const bool cancelled = co_await park_and_swallow_cancel(parked);
        if (cancelled) {
            throw my_error(code);
        }
    }
    } // namespace

    TEST_CASE("15.4 errors nobody retrieved are reported to the exception handler at shutdown") {
        bool parked = false;
        loop_fixture f;
        auto unobserved = f.rt->spawn(fail_after(2ms, 5));
        auto observed = f.rt->spawn(fail_after(2ms, 6));
        f.rt->spawn(fail_on_cancel(parked, 7)).detach();
        CHECK(f.run(catch_my_error(observed)) == 6);
        f.run_until([&] { return unobserved.done() && parked; });
        CHECK(f.reported.empty()); // a handle still refers to it: someone may await it
        f.rt->shutdown();
        REQUIRE(f.reported.size() == 2);
        // The error raised by the cleanup of a task cancelled at shutdown, and the unobserved one.
        const bool a = holds_my_error(f.reported[0], 5) && holds_my_error(f.reported[1], 7);
        const bool b = holds_my_error(f.reported[0], 7) && holds_my_error(f.reported[1], 5);
        CHECK((a || b));
        unobserved = task_handle<int>();
        observed = task_handle<int>();
        CHECK(f.reported.size() == 2); // not reported a second time
    }

    namespace {
    task<> spawn_in_cleanup(runtime& rt, bool& parked, bool& child_ran, task_handle<>& child) {
        const bool cancelled = co_await park_and_swallow_cancel(parked);
        if (cancelled) {
            child = rt.spawn(set_flag(child_ran));
        }
    }
    } // namespace

    TEST_CASE("15.2 2.7 a task spawned during shutdown never runs and ends cancelled") {
        bool parked = false;
        bool child_ran = false;
        loop_fixture f;
        task_handle<> child;
        auto h = f.rt->spawn(spawn_in_cleanup(*f.rt, parked, child_ran, child));
        f.run_until([&] { return parked; });
        f.rt->shutdown();
        CHECK(h.done());
        REQUIRE(child.valid());
        CHECK_FALSE(child_ran);
        CHECK(child.done());
        CHECK(child.cancelled());
        CHECK(f.reported.empty());
    }

    TEST_CASE("15.6 a runtime on a borrowed loop leaves no handle behind: the host's "
              "uv_loop_close returns 0") {
        loop_fixture f; // frame and counted checks
        std::vector<std::exception_ptr> reported;
        for (bool virtual_clock : {true, false}) {
            CAPTURE(virtual_clock);
            uv_loop_t host{};
            REQUIRE(uv_loop_init(&host) == 0);
            bool parked = false;
            {
                runtime_options o = collecting_options(reported);
                o.virtual_clock = virtual_clock;
                runtime rt(&host, std::move(o));
                CHECK(count_handles(&host) > 0); // the runtime's own handles
                auto finished = rt.spawn(value_after(2ms, 1));
                auto waiting = rt.spawn(note_and_park(parked));
                CHECK(uv_run(&host, UV_RUN_DEFAULT) == 0);
                CHECK(finished.done());
                CHECK(parked);
                CHECK_FALSE(waiting.done());
            } // handles dropped, then the runtime shuts down and closes its handles
            CHECK(count_handles(&host) == 0);
            CHECK(uv_loop_alive(&host) == 0);
            CHECK(uv_loop_close(&host) == 0);
        }
        CHECK(reported.empty());
    }

    TEST_CASE("15.6 an explicit shutdown closes the runtime's handles on the borrowed loop") {
        loop_fixture f;
        auto h = f.rt->spawn(value_after(1ms, 1));
        f.run_all();
        f.rt->shutdown();
        CHECK(count_handles(f.loop()) == 0);
        f.rt->shutdown(); // idempotent
        CHECK(count_handles(f.loop()) == 0);
    }

    TEST_CASE("15.7 a foreign request_cancel after shutdown is harmless") {
        bool parked = false;
        bool foreign_result = false;
        loop_fixture f;
        cancel_source src;
        auto h = f.rt->spawn(note_and_park(parked), src.token());
        f.run_until([&] { return parked; });
        f.rt->shutdown();
        CHECK(h.cancelled());
        std::thread other([&] { foreign_result = src.request_cancel("late"); });
        other.join();
        CHECK(foreign_result);
        CHECK(src.cancel_requested());
        f.rt.reset();
        CHECK(src.cancel_requested());
    }

    // -----------------------------------------------------------------------------------------
    // Borrowed loop: the runtime never keeps the host's loop alive when it has nothing to do

    TEST_CASE("borrowed loop: uv_run returns at once while the runtime has nothing to do") {
        for (bool virtual_clock : {true, false}) {
            CAPTURE(virtual_clock);
            loop_fixture f(virtual_clock ? loop_fixture::virtual_clock()
                                         : loop_fixture::real_clock());
            CHECK(uv_loop_alive(f.loop()) == 0);
            CHECK(uv_run(f.loop(), UV_RUN_DEFAULT) == 0);
            CHECK(uv_run(f.loop(), UV_RUN_NOWAIT) == 0);
        }
    }

    TEST_CASE("borrowed loop: uv_run returns once every task has finished") {
        SUBCASE("virtual clock") {
            loop_fixture f;
            const deadline t0 = f.now();
            auto a = f.rt->spawn(value_after(5ms, 1));
            auto b = f.rt->spawn(value_after(10ms, 2));
            CHECK(uv_run(f.loop(), UV_RUN_DEFAULT) == 0);
            CHECK(a.done());
            CHECK(b.done());
            CHECK(f.now() - t0 == 10ms);
            CHECK(uv_loop_alive(f.loop()) == 0);
        }
        SUBCASE("real clock") {
            loop_fixture f(loop_fixture::real_clock());
            const deadline t0 = f.now();
            auto a = f.rt->spawn(value_after(2ms, 1));
            CHECK(uv_run(f.loop(), UV_RUN_DEFAULT) == 0);
            CHECK(a.done());
            CHECK(f.now() - t0 >= 2ms); // a lower bound only: real time
            CHECK(uv_loop_alive(f.loop()) == 0);
        }
    }

    TEST_CASE("18.8 borrowed loop: a task parked with no deadline does not keep the host loop "
              "alive") {
        for (bool virtual_clock : {true, false}) {
            CAPTURE(virtual_clock);
            bool parked = false;
            loop_fixture f(virtual_clock ? loop_fixture::virtual_clock()
                                         : loop_fixture::real_clock());
            auto h = f.rt->spawn(note_and_park(parked));
            CHECK(uv_run(f.loop(), UV_RUN_DEFAULT) == 0);
            CHECK(parked);
            CHECK_FALSE(h.done());
            CHECK(h.cancel("wake up"));
            CHECK(uv_run(f.loop(), UV_RUN_DEFAULT) == 0);
            CHECK(h.done());
            CHECK(h.cancelled());
        }
    }

    TEST_CASE("runtime(nullptr) throws std::invalid_argument") {
        loop_fixture f;
        CHECK_THROWS_AS([] { runtime rt(nullptr); }(), std::invalid_argument);
        CHECK_THROWS_AS([] { runtime rt(nullptr, loop_fixture::virtual_clock()); }(),
                        std::invalid_argument);
        // The fixture's runtime is still the one this thread uses.
        CHECK(f.run(value_after(3ms, 4)) == 4);
    }

    TEST_CASE("runtime::run on a borrowed loop throws invalid_state and does not run the task") {
        bool ran = false;
        loop_fixture f;
        const auto frames = detail::live_frame_counter().load();
        CHECK_THROWS_AS(f.rt->run(set_flag(ran)), invalid_state);
        CHECK_FALSE(ran);
        CHECK(f.rt->task_count() == 0);
        f.run_all();
        CHECK_FALSE(ran);
        CHECK(detail::live_frame_counter().load() == frames);
    }

    // -----------------------------------------------------------------------------------------
    // Owned loop: uvasync::run and runtime::run

    namespace {
    task<int> throw_cancelled(std::string message) {
        co_await sleep(1ms);
        throw cancelled_error(message);
    }

    task<int> cancel_and_join(runtime& rt) {
        bool parked = false;
        auto h = rt.spawn(note_and_park(parked));
        co_await sleep(1ms);
        h.cancel("bye");
        co_return co_await h;
    }
    } // namespace

    TEST_CASE("uvasync::run returns the task's value") {
        std::vector<std::exception_ptr> reported;
        leak_check lc;
        CHECK(uvasync::run(elapsed_after(10ms), collecting_options(reported)) == 10);
        CHECK(uvasync::run(immediate(3)) == 3); // default options: an owned loop, real clock
        CHECK(uvasync::run(value_after(1ms, 4)) == 4);
        CHECK(reported.empty());
    }

    TEST_CASE("uvasync::run rethrows the task's error with its type") {
        std::vector<std::exception_ptr> reported;
        leak_check lc;
        try {
            uvasync::run(fail_after(2ms, 11), collecting_options(reported));
            FAIL("no error");
        } catch (const my_error& e) {
            CHECK(e.code == 11);
        }
        CHECK(reported.empty()); // it was observed by the caller
    }

    TEST_CASE("uvasync::run raises cancelled_error when the task ends cancelled") {
        std::vector<std::exception_ptr> reported;
        leak_check lc;
        std::string message = "<none>";
        try {
            uvasync::run(throw_cancelled("stop"), collecting_options(reported));
        } catch (const cancelled_error& e) {
            message = std::string(e.message());
        }
        CHECK(message == "stop");
        CHECK(reported.empty());
    }

    TEST_CASE("runtime::run returns values, and tasks spawned earlier keep running across calls") {
        std::vector<std::exception_ptr> reported;
        leak_check lc;
        runtime_options o = collecting_options(reported);
        o.autojump = false; // step by step: time moves only with advance()
        runtime rt(std::move(o));
        CHECK(rt.uses_virtual_clock());
        auto background = rt.spawn(value_after(10ms, 7));
        CHECK(rt.run(immediate(5)) == 5);
        CHECK_FALSE(background.done());
        rt.advance(10ms);
        CHECK(rt.run(join(background)) == 7);
        CHECK(rt.run(immediate(6)) == 6);
        CHECK(reported.empty());
    }

    TEST_CASE("runtime::run rethrows errors and raises cancelled_error; the runtime stays usable") {
        std::vector<std::exception_ptr> reported;
        leak_check lc;
        runtime rt(collecting_options(reported));
        for (int round = 0; round < 2; ++round) {
            try {
                rt.run(fail_after(1ms, 21));
                FAIL("no error");
            } catch (const my_error& e) {
                CHECK(e.code == 21);
            }
            std::string message = "<none>";
            try {
                rt.run(cancel_and_join(rt));
            } catch (const cancelled_error& e) {
                message = std::string(e.message());
            }
            CHECK(message == "bye");
            CHECK(rt.run(value_after(1ms, 22)) == 22);
        }
        CHECK(reported.empty());
    }

    namespace {
    task<int> spawn_background(runtime& rt, bool& parked, bool& cleaned) {
        rt.spawn(cleanup_for(3ms, parked, cleaned)).detach();
        co_await sleep(1ms);
        co_return 1;
    }
    } // namespace

    TEST_CASE("15.2 destroying an owned runtime cancels the tasks that are left and lets them "
              "clean up") {
        std::vector<std::exception_ptr> reported;
        bool parked = false;
        bool cleaned = false;
        leak_check lc;
        {
            runtime rt(collecting_options(reported));
            CHECK(rt.run(spawn_background(rt, parked, cleaned)) == 1);
            CHECK(parked);
            CHECK_FALSE(cleaned);
            CHECK(rt.task_count() == 1);
        }
        CHECK(cleaned);
        CHECK(reported.empty());
    }

    // -----------------------------------------------------------------------------------------
    // The exception handler

    TEST_CASE("2.9 the exception handler receives the failure of a detached task") {
        SUBCASE("owned loop") {
            std::vector<std::exception_ptr> reported;
            leak_check lc;
            runtime rt(collecting_options(reported));
            rt.spawn(fail_after(2ms, 31)).detach();
            CHECK(rt.run(value_after(5ms, 0)) == 0);
            REQUIRE(reported.size() == 1); // when it completed, before shutdown
            CHECK(holds_my_error(reported[0], 31));
        }
        SUBCASE("borrowed loop") {
            loop_fixture f;
            f.rt->spawn(fail_after(2ms, 32)).detach();
            f.run_all();
            REQUIRE(f.reported.size() == 1);
            CHECK(holds_my_error(f.reported[0], 32));
        }
    }

    // -----------------------------------------------------------------------------------------
    // post()

    namespace {
    task<> post_three(runtime& rt, std::vector<int>& log, std::vector<bool>& accepted,
                      std::size_t& seen_right_after) {
        for (int i = 1; i <= 3; ++i) {
            accepted.push_back(rt.post([&log, i] { log.push_back(i); }));
        }
        seen_right_after = log.size();
        for (int spins = 0; log.size() < 3 && spins < 100; ++spins) {
            co_await yield();
        }
    }

    task<> yield_until(const std::vector<int>& log, std::size_t n) {
        for (int spins = 0; log.size() < n && spins < 100; ++spins) {
            co_await yield();
        }
    }
    } // namespace

    TEST_CASE("post() from the loop thread runs the callable later, in posting order") {
        std::vector<int> log;
        std::vector<bool> accepted;
        std::size_t seen_right_after = 99;
        loop_fixture f;
        SUBCASE("from a task") {
            f.run(post_three(*f.rt, log, accepted, seen_right_after));
            CHECK(accepted == std::vector<bool>{true, true, true});
            CHECK(seen_right_after == 0);
            CHECK(log == std::vector<int>{1, 2, 3});
        }
        SUBCASE("from the host, between loop runs") {
            for (int i = 1; i <= 3; ++i) {
                CHECK(f.rt->post([&log, i] { log.push_back(i); }));
            }
            CHECK(log.empty());
            f.run(yield_until(log, 3));
            CHECK(log == std::vector<int>{1, 2, 3});
        }
    }

    TEST_CASE("post() after shutdown returns false and drops the callable") {
        bool ran = false;
        loop_fixture f;
        f.rt->shutdown();
        const auto objects = counted::live().load();
        CHECK_FALSE(f.rt->post([c = counted{}, &ran] { ran = true; }));
        CHECK(counted::live().load() == objects);
        f.run_all();
        f.rt.reset();
        CHECK_FALSE(ran);
    }

    // -----------------------------------------------------------------------------------------
    // A runtime destroyed while tasks run

    TEST_CASE("D-12 a runtime destroyed while tasks run ends in bounded time with a defined "
              "outcome for every task") {
        leak_probe p;
        bool coop_parked = false;
        bool cleaned = false;
        bool plain_parked = false;
        runtime_options o = with_grace(100ms);
        o.autojump = false; // the one-hour sleep must still be pending at the destruction
        loop_fixture f(std::move(o));
        auto coop = f.rt->spawn(cleanup_for(5ms, coop_parked, cleaned));
        auto plain = f.rt->spawn(note_and_park(plain_parked));
        auto stuck = f.rt->spawn(leaker(p));
        auto pending = f.rt->spawn(value_after(1h, 1)); // would finish only in an hour
        f.run_until([&] { return coop_parked && plain_parked && p.parked; });
        f.rt.reset();
        CHECK(cleaned);
        CHECK(coop.done());
        CHECK(coop.cancelled());
        CHECK(plain.done());
        CHECK(plain.cancelled());
        CHECK(pending.done());
        CHECK(pending.cancelled());
        CHECK(stuck.done());
        CHECK_FALSE(p.caught);
        CHECK_FALSE(p.resumed);
        REQUIRE(f.reported.size() == 1);
        CHECK(holds<leaked_task_error>(f.reported[0]));
    }

    TEST_CASE("close_from_callback closes a borrowed runtime from inside a host callback") {
        uv_loop_t loop;
        REQUIRE(uv_loop_init(&loop) == 0);

        struct host {
            std::unique_ptr<runtime> rt;
            bool refused = false;
            bool closed = false;
            uv_timer_t timer{};
        } h;

        h.rt = std::make_unique<runtime>(&loop);
        bool ran = false;
        auto task = h.rt->spawn(set_flag(ran));
        REQUIRE(uv_timer_init(&loop, &h.timer) == 0);
        h.timer.data = &h;
        // The timer runs before the runtime's first drain (libuv runs timers first in an
        // iteration), so the first attempt finds the task unfinished and is refused; the next, once
        // it finished, closes the runtime's handles without running the loop (it is running
        // already).
        uv_timer_start(
            &h.timer,
            [](uv_timer_t* t) {
                auto* self = static_cast<host*>(t->data);
                if (self->rt->task_count() > 0) {
                    try {
                        self->rt->close_from_callback([] {});
                    } catch (const invalid_state&) {
                        self->refused = true;
                    }
                    return;
                }
                self->rt->close_from_callback([self] { self->closed = true; });
                self->rt.reset(); // may be destroyed right away
                uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
            },
            0, 1);
        CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
        CHECK(h.refused);
        CHECK(h.closed);
        CHECK(ran);
        CHECK(task.done());
        CHECK(uv_loop_close(&loop) == 0);
    }

    namespace {
    /// A raw libuv timer the program starts on the runtime's own loop (SEMANTICS 15.6).
    struct program_timer {
        uv_timer_t handle{};
        bool fired = false;
        bool closed = false;
    };

    void close_program_timer(uv_timer_t* t) {
        uv_close(reinterpret_cast<uv_handle_t*>(t),
                 [](uv_handle_t* h) { static_cast<program_timer*>(h->data)->closed = true; });
    }

    /// Starts `pt` on the running task's loop; it fires once after 20 ms and then closes
    /// itself.
    task<int> start_self_closing_timer(program_timer& pt) {
        uv_loop_t* loop = runtime::current().loop();
        uv_timer_init(loop, &pt.handle);
        pt.handle.data = &pt;
        uv_timer_start(
            &pt.handle,
            [](uv_timer_t* t) {
                static_cast<program_timer*>(t->data)->fired = true;
                close_program_timer(t);
            },
            20, 0);
        co_return 5;
    }

    /// Leaves an initialised, unreferenced timer open on the running task's loop and hands the
    /// loop out: nothing keeps the loop running, and nothing closes it.
    task<int> leave_timer_open(program_timer& pt, uv_loop_t*& loop) {
        loop = runtime::current().loop();
        uv_timer_init(loop, &pt.handle);
        pt.handle.data = &pt;
        co_return 6;
    }
    } // namespace

    TEST_CASE("15.6 an owned loop runs until the program's own handles are done, then closes") {
        leak_check lc;
        program_timer pt;
        CHECK(uvasync::run(start_self_closing_timer(pt)) == 5);
        CHECK(pt.fired);
        CHECK(pt.closed);
    }

    TEST_CASE("15.6 shutdown throws an error naming the handles left open; a later shutdown "
              "retries") {
        std::vector<std::exception_ptr> reported;
        leak_check lc;
        program_timer pt;
        uv_loop_t* loop = nullptr;
        runtime rt(collecting_options(reported));
        CHECK(rt.run(leave_timer_open(pt, loop)) == 6);
        CHECK(loop == rt.loop());
        CHECK_THROWS_WITH_AS(rt.shutdown(), doctest::Contains("handles still open: timer"),
                             invalid_state);
        close_program_timer(&pt.handle);
        rt.shutdown(); // runs the loop for the close callback, then closes it
        CHECK(pt.closed);
        CHECK(reported.empty());
    }

    TEST_CASE("15.6 uvasync::run throws the close failure after the main task's outcome") {
        std::vector<std::exception_ptr> reported;
        program_timer pt;
        uv_loop_t* loop = nullptr;
        CHECK_THROWS_WITH_AS(uvasync::run(leave_timer_open(pt, loop), collecting_options(reported)),
                             doctest::Contains("handles still open: timer"), invalid_state);
        // Thrown to the caller, not also reported; the loop memory was left intact, so the
        // program can still close its handle and the loop.
        CHECK(reported.empty());
        REQUIRE(loop != nullptr);
        close_program_timer(&pt.handle);
        uv_run(loop, UV_RUN_DEFAULT);
        CHECK(pt.closed);
        CHECK(uv_loop_close(loop) == 0);
        delete loop;
    }

    TEST_CASE("15.6 uvasync::run: a failed main task's error goes to the handler when the loop "
              "cannot be closed") {
        std::vector<std::exception_ptr> reported;
        program_timer pt;
        uv_loop_t* loop = nullptr;
        auto failing = [&](program_timer& p, uv_loop_t*& l) -> task<int> {
            co_await leave_timer_open(p, l);
            throw my_error(12);
        };
        auto body = failing(pt, loop);
        CHECK_THROWS_AS(uvasync::run(std::move(body), collecting_options(reported)), invalid_state);
        REQUIRE(reported.size() == 1);
        CHECK(holds_my_error(reported.front(), 12));
        close_program_timer(&pt.handle);
        uv_run(loop, UV_RUN_DEFAULT);
        CHECK(uv_loop_close(loop) == 0);
        delete loop;
    }

    // Kept last: if spawning after shutdown crashes, every other test has already run.
    TEST_CASE("2.7 a task spawned after shutdown never runs and ends cancelled") {
        bool ran = false;
        loop_fixture f;
        f.rt->shutdown();
        const auto objects = counted::live().load();
        {
            auto h = f.rt->spawn(set_flag(ran));
            f.run_all();
            CHECK_FALSE(ran);
            CHECK(h.done());
            CHECK(h.cancelled());
        }
        f.rt.reset();
        CHECK_FALSE(ran);
        CHECK(counted::live().load() == objects);
    }

} // TEST_SUITE("runtime")
