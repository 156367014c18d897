// SPDX-License-Identifier: MIT
// Timed callbacks: runtime::call_at / call_later / pending_deadlines (SEMANTICS 20), and
// runtime::current().
#include <cstddef>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "alloc_counter.hpp"
#include "loop_fixture.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::loop_fixture;

task<> record_after_event(event& e, std::vector<std::string>& log, std::string name) {
    co_await e.wait();
    log.push_back(std::move(name));
}

task<> sleep_then_record(loop_clock::duration d, std::vector<std::string>& log, std::string name) {
    co_await sleep(d);
    log.push_back(std::move(name));
}

task<runtime*> current_runtime_inside() {
    co_return &runtime::current();
}

task<uv_loop_t*> current_loop_inside() {
    co_return runtime::current().loop();
}

TEST_CASE("call_later runs at exactly its deadline on the virtual clock, outside any task") {
    loop_fixture f;
    const deadline start = f.now();
    deadline ran_at = never;
    bool in_task = true;
    timed_call h = f.rt->call_later(250ms, [&] {
        ran_at = f.rt->now();
        in_task = detail::current_task() != nullptr;
    });
    CHECK(h.pending());
    f.run_all(); // autojump counts the entry as a pending deadline (SEMANTICS 20.3)
    CHECK(ran_at - start == 250ms);
    CHECK_FALSE(in_task);
    CHECK_FALSE(h.pending());
    CHECK_FALSE(h.cancel()); // it ran
}

TEST_CASE("equal deadlines run in registration order; earlier deadlines first") {
    loop_fixture f(loop_fixture::manual_clock());
    std::vector<int> order;
    const deadline t0 = f.now();
    timed_call a = f.rt->call_at(t0 + 20ms, [&] { order.push_back(1); });
    timed_call b = f.rt->call_at(t0 + 10ms, [&] { order.push_back(2); });
    timed_call c = f.rt->call_at(t0 + 20ms, [&] { order.push_back(3); });
    timed_call d = f.rt->call_at(t0 + 10ms, [&] { order.push_back(4); });
    CHECK(f.rt->pending_deadlines() == 4);
    f.rt->advance(20ms);
    CHECK(order == std::vector<int>{2, 4, 1, 3});
    CHECK(f.rt->pending_deadlines() == 0);
}

TEST_CASE("entries due in one pass run before any task they woke") {
    loop_fixture f(loop_fixture::manual_clock());
    std::vector<std::string> log;
    event e;
    auto waiter = f.rt->spawn(record_after_event(e, log, "task"));
    auto sleeper = f.rt->spawn(sleep_then_record(10ms, log, "sleeper"));
    uv_run(f.loop(), UV_RUN_NOWAIT); // both tasks park
    timed_call first = f.rt->call_later(10ms, [&] {
        log.emplace_back("callback 1");
        e.set();
    });
    timed_call second = f.rt->call_later(10ms, [&] { log.emplace_back("callback 2"); });
    f.rt->advance(10ms);
    f.run_until([&] { return waiter.done() && sleeper.done(); });
    CHECK(log == std::vector<std::string>{"callback 1", "callback 2", "sleeper", "task"});
}

TEST_CASE("cancel() removes the entry and reports whether it had run; the destructor does not "
          "cancel") {
    loop_fixture f(loop_fixture::manual_clock());
    int runs = 0;
    timed_call cancelled = f.rt->call_later(5ms, [&] { ++runs; });
    {
        timed_call dropped = f.rt->call_later(5ms, [&] { runs += 10; });
    }
    CHECK(f.rt->pending_deadlines() == 2);
    CHECK(cancelled.cancel());
    CHECK_FALSE(cancelled.cancel());
    CHECK(f.rt->pending_deadlines() == 1);
    timed_call moved = std::move(cancelled);
    CHECK_FALSE(moved.pending());
    f.rt->advance(5ms);
    CHECK(runs == 10); // the dropped handle's callback still ran; the cancelled one did not
}

TEST_CASE("a callback can cancel itself (false) and register another, which waits a pass") {
    loop_fixture f(loop_fixture::manual_clock());
    timed_call self;
    bool self_cancel = true;
    int later_runs = 0;
    timed_call later;
    self = f.rt->call_later(1ms, [&] {
        self_cancel = self.cancel();
        later = f.rt->call_at(f.rt->now(), [&] { ++later_runs; });
    });
    f.rt->advance(1ms);
    CHECK_FALSE(self_cancel);
    CHECK(later_runs == 0); // registered during the pass: the next pass (SEMANTICS 6.5)
    CHECK(later.pending());
    uv_run(f.loop(), UV_RUN_NOWAIT); // already due: runs in the next iteration
    CHECK(later_runs == 1);
}

TEST_CASE("a throwing callback goes to the exception handler and the loop goes on") {
    loop_fixture f(loop_fixture::manual_clock());
    bool after = false;
    timed_call a = f.rt->call_later(1ms, [] { throw std::runtime_error("boom"); });
    timed_call b = f.rt->call_later(1ms, [&] { after = true; });
    f.rt->advance(1ms);
    CHECK(after);
    REQUIRE(f.reported.size() == 1);
    CHECK_THROWS_WITH_AS(std::rethrow_exception(f.reported.front()), "boom", std::runtime_error);
    f.reported.clear();
}

TEST_CASE("pending_deadlines counts sleeps, scope deadlines and timed callbacks") {
    loop_fixture f(loop_fixture::manual_clock());
    std::vector<std::string> log;
    auto sleeper = f.rt->spawn(sleep_then_record(10ms, log, "s"));
    uv_run(f.loop(), UV_RUN_NOWAIT);
    CHECK(f.rt->pending_deadlines() == 1);
    timed_call c = f.rt->call_later(3ms, [] {});
    CHECK(f.rt->pending_deadlines() == 2);
    f.rt->advance(10ms);
    f.run_until([&] { return sleeper.done(); });
    CHECK(f.rt->pending_deadlines() == 0);
}

TEST_CASE("a small callable costs no allocation once the pool has a free node") {
    loop_fixture f(loop_fixture::manual_clock());
    int runs = 0;
    {
        timed_call warm = f.rt->call_later(1ms, [&] { ++runs; });
    }
    f.rt->advance(1ms); // the node goes back to the pool
    const std::size_t before = uvasync::test::allocations;
    timed_call h = f.rt->call_later(1ms, [&runs, a = 1, b = 2.0] { runs += a + int(b); });
    CHECK(uvasync::test::allocations == before);
    f.rt->advance(1ms);
    CHECK(runs == 4);

    // A callable larger than the buffer costs its own storage, once.
    struct big {
        char bytes[200] = {};
        int* runs;

        void operator()() const { ++*runs; }
    };

    const std::size_t before_big = uvasync::test::allocations;
    timed_call g = f.rt->call_later(1ms, big{{}, &runs});
    CHECK(uvasync::test::allocations == before_big + 1);
    f.rt->advance(1ms);
    CHECK(runs == 5);
}

TEST_CASE("shutdown drops callbacks that have not run; their captures are destroyed") {
    loop_fixture f(loop_fixture::manual_clock());
    auto owned = std::make_shared<int>(7);
    std::weak_ptr<int> watch = owned;
    bool ran = false;
    timed_call h = f.rt->call_later(1h, [&ran, p = std::move(owned)] { ran = *p == 7; });
    CHECK_FALSE(watch.expired());
    f.rt->shutdown();
    CHECK(watch.expired());
    CHECK_FALSE(ran);
    CHECK_FALSE(h.pending());
}

TEST_CASE("call_later on the real clock runs no earlier than its delay") {
    loop_fixture f(loop_fixture::real_clock());
    const deadline start = f.now();
    deadline ran_at = never;
    timed_call h = f.rt->call_later(15ms, [&] { ran_at = f.rt->now(); });
    f.run_until([&] { return !h.pending(); });
    CHECK(ran_at - start >= 15ms);
}

TEST_CASE("runtime::current() is the running task's runtime, or the thread's") {
    loop_fixture f;
    CHECK(f.run(current_runtime_inside()) == &*f.rt);
    CHECK(f.run(current_loop_inside()) == f.loop());
    CHECK(&runtime::current() == &*f.rt); // outside a task: this thread's runtime
    bool threw = false;
    std::thread other([&] {
        try {
            (void)runtime::current();
        } catch (const invalid_state&) {
            threw = true;
        }
    });
    other.join();
    CHECK(threw);
}

} // namespace
