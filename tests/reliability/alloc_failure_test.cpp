// SPDX-License-Identifier: MIT
// Fault injection: the k-th allocation of a scenario fails with std::bad_alloc, for every k
// until the scenario runs without reaching k. Each run must end cleanly: no crash (a bad_alloc
// in a noexcept path would terminate), the error that comes out is std::bad_alloc (thrown, in
// an exception_group, or reported to the runtime's exception handler), and the fixture's
// teardown finds no live frame, no open handle, and uv_loop_close returns 0; the sanitizer
// passes add LSan (no leak) and ASan (no use of a half-built object).
//
// The global operator new of this binary is replaced (tests/support/replace_operators.hpp); the
// hook is armed only while a scenario runs, so doctest and the fixture allocate normally. libuv
// allocates with malloc, which is not hooked.
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <exception>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "replace_operators.hpp"

#include <sys/socket.h>
#include <unistd.h>

namespace {

long countdown = 0;    // > 0: the countdown-th allocation from now fails
bool fail_all = false; // every allocation fails
long injected = 0;

} // namespace

void* uvasync::test::replaced_alloc(std::size_t n) noexcept {
    if (fail_all || (countdown > 0 && --countdown == 0)) {
        ++injected;
        return nullptr;
    }
    return std::malloc(n);
}

namespace {

using namespace std::chrono_literals;
using uvasync::task;
using uvasync::test::loop_fixture;

/// True if `e` is std::bad_alloc, or an exception_group holding one.
bool is_bad_alloc(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::bad_alloc&) {
        return true;
    } catch (const uvasync::exception_group& g) {
        for (const std::exception_ptr& inner : g.exceptions()) {
            if (is_bad_alloc(inner)) {
                return true;
            }
        }
        return false;
    } catch (...) {
        return false;
    }
}

/// Runs `scenario` (a function returning task<>) once per allocation it makes, failing that
/// allocation; returns the number of failures injected.
template <class Scenario>
long fail_every_allocation(Scenario scenario) {
    long faults = 0;
    for (long k = 1;; ++k) {
        std::exception_ptr error;
        bool hit = false;
        {
            loop_fixture f;
            injected = 0;
            countdown = k;
            try {
                f.run(scenario());
            } catch (...) {
                error = std::current_exception();
            }
            countdown = 0;
            hit = injected != 0;
            if (!hit) {
                CHECK_MESSAGE(error == nullptr, "the scenario fails without a fault");
                CHECK(f.reported.empty());
            } else {
                bool seen = error != nullptr && is_bad_alloc(error);
                for (const std::exception_ptr& r : f.reported) {
                    seen = seen || is_bad_alloc(r);
                    CHECK_MESSAGE(is_bad_alloc(r),
                                  "allocation " << k << ": another error reported");
                }
                if (error != nullptr) {
                    CHECK_MESSAGE(is_bad_alloc(error), "allocation " << k << ": not bad_alloc");
                }
                (void)seen; // a failure may also be absorbed (a cancelled branch, a retry)
            }
        } // the fixture checks frames, handles and uv_loop_close here
        if (!hit) {
            MESSAGE("faults injected: " << faults);
            return faults;
        }
        ++faults;
        REQUIRE(k < 100000);
    }
}

/// A check inside a scenario: CHECK would catch the bad_alloc of the expression itself.
void expect(bool ok) {
    if (!ok) {
        throw std::logic_error("scenario check failed");
    }
}

task<int> sleeper(std::chrono::milliseconds d, int v) {
    co_await uvasync::sleep(d);
    co_return v;
}

task<> spawn_and_join() {
    auto h = uvasync::spawn(sleeper(5ms, 1));
    auto h2 = uvasync::spawn(sleeper(1ms, 2));
    h2.cancel();
    expect(co_await h == 1);
    try {
        co_await h2;
    } catch (const uvasync::cancelled_error&) {
    }
}

task<> timeouts() {
    try {
        co_await uvasync::timeout(2ms, sleeper(10ms, 0));
    } catch (const uvasync::timeout_error&) {
    }
    auto r = co_await uvasync::move_on_after(10ms, sleeper(1ms, 3));
    expect(r.value_or(0) == 3);
    co_await uvasync::timeout(5ms, [](uvasync::timeout_scope& s) -> task<> {
        s.reschedule(20ms);
        co_await uvasync::sleep(10ms);
    });
}

task<> fails_after(std::chrono::milliseconds d) {
    co_await uvasync::sleep(d);
    throw std::runtime_error("child failed");
}

task<> groups() {
    co_await uvasync::task_group::run([](uvasync::task_group& g) -> task<> {
        g.spawn(sleeper(1ms, 1));
        g.spawn(sleeper(2ms, 2));
        co_await uvasync::sleep(1ms);
    });
    try {
        co_await uvasync::task_group::run([](uvasync::task_group& g) -> task<> {
            g.spawn(fails_after(1ms));
            g.spawn(sleeper(50ms, 2));
            co_return;
        });
    } catch (const uvasync::exception_group& e) {
        if (!is_bad_alloc(std::make_exception_ptr(e))) {
            expect(e.size() == 1);
        }
    }
}

task<> gathers() {
    auto a = sleeper(1ms, 1);
    auto b = sleeper(2ms, 2);
    auto [x, y] = co_await uvasync::gather(std::move(a), std::move(b));
    expect(x + y == 3);
    auto c = sleeper(100ms, 1);
    auto d = sleeper(200ms, 2);
    try {
        co_await uvasync::wait_for(uvasync::gather(std::move(c), std::move(d)), 5ms);
    } catch (const uvasync::timeout_error&) {
    }
    // A plain awaitable is wrapped in a child task (a frame allocated at spawn): the second
    // spawn can fail after the first child started, which must be cancelled and awaited.
    auto e = sleeper(1ms, 1);
    auto f = uvasync::sleep(2ms);
    auto [z, unused] = co_await uvasync::gather(std::move(e), std::move(f));
    expect(z == 1);
    auto g = sleeper(1ms, 1);
    auto h = uvasync::sleep(50ms);
    const auto first = co_await uvasync::wait_any(std::move(g), std::move(h));
    expect(first.index == 0);
}

task<> producer(uvasync::event& ev, uvasync::queue<std::string>& qu, uvasync::promise<int>& pr) {
    co_await uvasync::sleep(1ms);
    ev.set();
    co_await qu.put(std::string(64, 'x')); // a heap string: one more allocation
    pr.set_value(4);
}

task<> consumer(uvasync::event& e, uvasync::queue<std::string>& q, uvasync::promise<int>& p) {
    uvasync::semaphore sem(1);
    uvasync::mutex m;
    co_await e.wait();
    {
        auto permit = co_await sem.acquire();
        auto lock = co_await m.lock();
        expect((co_await q.get()).size() == 64);
    }
    expect(co_await p.get_future() == 4);
}

// In a task group, so that a producer that fails (bad_alloc) cancels the waiting consumer
// instead of leaving it waiting forever.
task<> sync_primitives() {
    uvasync::event e;
    uvasync::queue<std::string> q(1);
    uvasync::promise<int> p;
    co_await uvasync::task_group::run([&](uvasync::task_group& g) {
        g.spawn(producer(e, q, p));
        return consumer(e, q, p);
    });
}

task<> socketpair_io() {
    int fds[2] = {-1, -1};
    expect(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    uvasync::pipe_stream a;
    uvasync::pipe_stream b;
    try {
        a = uvasync::pipe_stream::open(fds[0]);
    } catch (...) {
        ::close(fds[0]);
        ::close(fds[1]);
        throw;
    }
    try {
        b = uvasync::pipe_stream::open(fds[1]);
    } catch (...) {
        ::close(fds[1]);
        throw;
    }
    co_await a.write(std::string(100000, 'y')); // stays pending until b reads
    std::vector<char> buf(4096);
    std::size_t got = 0;
    while (got < 100000) {
        got += co_await b.read_some(buf);
    }
    auto line = b.read_until("\n", 100);
    co_await a.write("line\n");
    expect(co_await std::move(line) == "line\n");
    co_await a.close();
    co_await b.close();
}

} // namespace

TEST_CASE("alloc_failure_spawn_and_join") {
    CHECK(fail_every_allocation(spawn_and_join) > 0);
}

TEST_CASE("alloc_failure_timeouts") {
    CHECK(fail_every_allocation(timeouts) > 0);
}

TEST_CASE("alloc_failure_task_groups") {
    CHECK(fail_every_allocation(groups) > 0);
}

// Regression (found 2026-12-07 by this case under clang ASan): when an allocation failed while
// gather or wait_any spawned its children, the frame unwound and was freed while the children
// already spawned still ran under its scope (heap-use-after-free in owner_of()). Since a spawned
// task allocates nothing beyond its frame, only an awaitable argument (wrapped in a child task
// at spawn) reaches that path; both now cancel and await what they started, then rethrow.
TEST_CASE("alloc_failure_gather_and_wait_for") {
    CHECK(fail_every_allocation(gathers) > 0);
}

TEST_CASE("alloc_failure_sync_primitives") {
    CHECK(fail_every_allocation(sync_primitives) > 0);
}

TEST_CASE("alloc_failure_stream_io") {
    CHECK(fail_every_allocation(socketpair_io) > 0);
}

// The deadline registrations of noexcept paths that no throwing call precedes: a process's kill
// grace (added when its wait is cancelled) and the shutdown grace. Each holds room in the
// deadline queue from a throwing point (the wait's start, the runtime's constructor), so adding
// it never allocates, whatever the queue's fill: with every allocation failing around the
// noexcept path, no termination. Each fill level up to 40 entries crosses the queue's growth
// points (16 and 34 entries), where an unreserved push would reallocate.

namespace {

/// Fails every allocation while it lives.
class allocations_fail {
public:
    allocations_fail() noexcept { fail_all = true; }

    allocations_fail(const allocations_fail&) = delete;
    allocations_fail& operator=(const allocations_fail&) = delete;
    allocations_fail(allocations_fail&&) = delete;
    allocations_fail& operator=(allocations_fail&&) = delete;

    ~allocations_fail() { fail_all = false; }
};

/// Adds hour-long timed calls until `rt` has `fill` pending deadlines (each makes room for
/// itself only, so the deadline heap's spare room is what the test left). Keep the result.
std::vector<uvasync::timed_call> fill_deadlines(uvasync::runtime& rt, int fill) {
    std::vector<uvasync::timed_call> fillers;
    while (rt.pending_deadlines() < static_cast<std::size_t>(fill)) {
        fillers.push_back(rt.call_later(std::chrono::hours(1), [] {}));
    }
    return fillers;
}

/// Options of a virtual-clock runtime that counts its reported errors into `reported`;
/// without autojump, timed calls stay pending until the shutdown.
uvasync::runtime_options counting_virtual_runtime(long& reported) {
    uvasync::runtime_options o;
    o.virtual_clock = true;
    o.autojump = false;
    o.exception_handler = [&reported](const std::exception_ptr&) noexcept { ++reported; };
    return o;
}

} // namespace

TEST_CASE("alloc_failure_held_deadline_room") {
    struct entry : uvasync::detail::deadline_entry {
        entry()
            : deadline_entry([](deadline_entry*) noexcept {}) {}
    };

    for (std::size_t fill = 0; fill <= 40; ++fill) {
        CAPTURE(fill);
        uvasync::detail::deadline_queue q([](void* /*owner*/) noexcept {}, nullptr);
        q.hold_one();
        std::vector<entry> entries(fill + 1);
        for (std::size_t i = 0; i < fill; ++i) {
            q.reserve_one();
            entries[i].when = uvasync::deadline(std::chrono::milliseconds(i));
            q.push(entries[i]);
        }
        injected = 0;
        {
            const allocations_fail none;
            q.release_one();
            entries[fill].when = uvasync::deadline(std::chrono::milliseconds(1));
            q.push(entries[fill]); // the held room: no allocation
        }
        CHECK(injected == 0);
        CHECK(q.size() == fill + 1);
        for (entry& e : entries) {
            q.erase(e);
        }
    }
}

TEST_CASE("alloc_failure_process_kill_grace") {
    for (int fill = 0; fill <= 40; ++fill) {
        CAPTURE(fill);
        loop_fixture f(loop_fixture::manual_clock()); // the grace never fires: SIGTERM ends it
        bool waiting = false;
        auto body = [&waiting]() -> task<> {
            uvasync::process_options o;
            o.file = "/bin/sleep";
            o.args = {"sleep", "30"};
            uvasync::process p = uvasync::process::spawn(std::move(o));
            waiting = true;
            co_await p.wait(); // cancelled below: SIGTERM, then the kill grace is registered
        };
        uvasync::task_handle<> h = f.rt->spawn(body());
        f.run_until([&] { return waiting; });
        std::vector<uvasync::timed_call> fillers = fill_deadlines(*f.rt, fill);
        injected = 0;
        {
            const allocations_fail none;
            CHECK(h.cancel()); // the abort hook adds the kill-grace deadline
        }
        CHECK(injected == 0);
        CHECK(f.rt->pending_deadlines() == static_cast<std::size_t>(fill) + 1);
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        for (uvasync::timed_call& c : fillers) {
            c.cancel();
        }
    }
}

TEST_CASE("alloc_failure_shutdown_grace") {
    for (int fill = 0; fill <= 40; ++fill) {
        CAPTURE(fill);
        uv_loop_t loop;
        REQUIRE(uv_loop_init(&loop) == 0);
        long reported = 0;
        std::optional<uvasync::runtime> rt;
        rt.emplace(&loop, counting_virtual_runtime(reported)); // the fillers stay pending
        // A wait without a deadline of its own: its cancellation frees no heap slot.
        uvasync::event never_set;
        auto body = [&never_set]() -> task<> { co_await never_set.wait(); };
        uvasync::task_handle<> h = rt->spawn(body());
        const std::vector<uvasync::timed_call> fillers = fill_deadlines(*rt, fill);
        uv_run(&loop, UV_RUN_NOWAIT); // the task parks at its wait
        REQUIRE(rt->task_count() == 1);
        injected = 0;
        {
            const allocations_fail none;
            rt.reset(); // shutdown adds its grace deadline while the task unwinds
        }
        CHECK(h.done());
        CHECK(reported == 0);
        CHECK(uv_loop_close(&loop) == 0);
    }
}

// The other noexcept paths that could allocate (the audit of issue 13, docs/reliability.md):
// each is driven with every allocation failing, at every fill of the structure whose growth
// would allocate; none may terminate.

TEST_CASE("alloc_failure_reschedule_of_a_scope_without_a_deadline") {
    // A scope entered with no deadline (`never`) has no entry in the deadline heap, so
    // rescheduling it to a finite time adds one. Without room made for it, that push takes
    // the room the runtime holds for its shutdown grace (or grows the heap inside the noexcept
    // add_deadline); the shutdown that follows, with the task still in the scope, then grows
    // the heap in its noexcept path. reschedule() must make room first: it either throws
    // std::bad_alloc with the scope unchanged or adds the deadline without allocating, and the
    // shutdown never allocates. Every fill of the heap up to 40 entries crosses its growth
    // points.
    for (int fill = 0; fill <= 40; ++fill) {
        CAPTURE(fill);
        for (const bool move_on : {false, true}) {
            CAPTURE(move_on);
            uv_loop_t loop;
            REQUIRE(uv_loop_init(&loop) == 0);
            long reported = 0;
            std::optional<uvasync::runtime> rt;
            rt.emplace(&loop, counting_virtual_runtime(reported)); // the fillers stay pending
            uvasync::timeout_scope* scope = nullptr;
            uvasync::event never_set;
            auto inner = [&](uvasync::timeout_scope& s) -> task<> {
                scope = &s;
                co_await never_set.wait();
            };
            auto body = [&]() -> task<> {
                if (move_on) {
                    (void)co_await uvasync::move_on_at(uvasync::never, inner);
                } else {
                    co_await uvasync::timeout_at(uvasync::never, inner);
                }
            };
            uvasync::task_handle<> h = rt->spawn(body());
            uv_run(&loop, UV_RUN_NOWAIT); // the task parks in its scope
            REQUIRE(scope != nullptr);
            const std::vector<uvasync::timed_call> fillers = fill_deadlines(*rt, fill);
            bool rescheduled = false;
            bool threw = false;
            {
                const allocations_fail none;
                try {
                    scope->reschedule(rt->now() + std::chrono::hours(2));
                    rescheduled = true;
                } catch (const std::bad_alloc&) {
                    threw = true;
                }
                CHECK(rescheduled != threw);
                CHECK(rt->pending_deadlines() ==
                      static_cast<std::size_t>(fill) + (rescheduled ? 1 : 0));
                rt.reset(); // the task is cancelled while the scope's deadline is queued
            }
            CHECK(h.done());
            CHECK(reported == 0);
            CHECK(uv_loop_close(&loop) == 0);
        }
    }
}

TEST_CASE("alloc_failure_signals_queued_and_taken") {
    // Signals nobody waits for are queued (one entry per kind, with a count) by a libuv
    // callback, and taken round robin by wait(): both noexcept. With every allocation failing,
    // hundreds of signals of two kinds are queued and taken: none may terminate, none is lost.
    loop_fixture f(loop_fixture::manual_clock());
    uvasync::signal_set set{SIGUSR1, SIGUSR2};
    constexpr int each = 200;
    int taken[2] = {0, 0};
    auto body = [&]() -> task<> {
        for (int i = 0; i < 2 * each; ++i) {
            const int sig = co_await set.wait();
            ++taken[sig == SIGUSR1 ? 0 : 1];
        }
    };
    uvasync::task_handle<> h = f.rt->spawn(body());
    uv_run(f.loop(), UV_RUN_NOWAIT); // the task parks in wait(), before anything fails
    injected = 0;
    {
        const allocations_fail none;
        for (int i = 0; i < each; ++i) {
            REQUIRE(::raise(SIGUSR1) == 0);
            REQUIRE(::raise(SIGUSR2) == 0);
        }
        f.run_until([&] { return h.done(); });
    }
    CHECK(injected == 0);
    CHECK(taken[0] == each);
    CHECK(taken[1] == each);
    CHECK_FALSE(h.cancelled());
    h.result();
}

TEST_CASE("alloc_failure_tasks_leaked_at_shutdown") {
    // A task that ignores its cancellation past the shutdown grace (a shielded wait) is
    // reported as leaked and its frame destroyed by the noexcept shutdown path: with every
    // allocation failing there, no termination; each leaked task is still destroyed (no frame
    // is left: the fixture-free teardown below checks the loop).
    for (const int tasks : {1, 2, 17}) {
        CAPTURE(tasks);
        uv_loop_t loop;
        REQUIRE(uv_loop_init(&loop) == 0);
        const std::ptrdiff_t frames_before = uvasync::detail::live_frame_counter().load();
        std::optional<uvasync::runtime> rt;
        uvasync::runtime_options o;
        o.virtual_clock = true;
        o.shutdown_grace = std::chrono::milliseconds(10);
        long reported = 0;
        o.exception_handler = [&reported](const std::exception_ptr&) noexcept { ++reported; };
        rt.emplace(&loop, std::move(o));
        uvasync::event never_set;
        auto body = [&never_set]() -> task<> { co_await uvasync::shielded(never_set.wait()); };
        std::vector<uvasync::task_handle<>> handles;
        handles.reserve(static_cast<std::size_t>(tasks));
        for (int i = 0; i < tasks; ++i) {
            handles.push_back(rt->spawn(body()));
        }
        uv_run(&loop, UV_RUN_NOWAIT); // every task parks at its shielded wait
        REQUIRE(rt->task_count() == static_cast<std::size_t>(tasks));
        {
            const allocations_fail none;
            rt.reset(); // the grace passes; the tasks are leaked and destroyed
        }
        for (uvasync::task_handle<>& h : handles) {
            CHECK(h.done());
        }
        handles.clear();
        CHECK(reported <= tasks); // a report needs memory: without it, the task still goes
        CHECK(uvasync::detail::live_frame_counter().load() == frames_before);
        CHECK(uv_loop_close(&loop) == 0);
    }
}
