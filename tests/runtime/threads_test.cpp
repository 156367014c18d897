// SPDX-License-Identifier: MIT
// Cross-thread cancellation and posting (SEMANTICS 12, D-10; 11.3 for handles on other threads).
//
// This file runs under ThreadSanitizer in CI. It is data-race free by construction: other
// threads only touch atomics, thread-safe uvasync calls and their own locals; everything else is
// read on the loop thread after a join, or after an acquire that the spec orders (12.6). Every
// wait is a loop with an iteration cap, and nothing asserts on wall-clock time.
#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"

using namespace std::chrono_literals;
using namespace uvasync;
using uvasync::test::loop_fixture;

namespace {

/// A repeating 1 ms timer of the test's own. It keeps the borrowed loop alive while the test
/// waits for other threads (the runtime keeps its cross-thread handle unreferenced) and bounds
/// each `uv_run(UV_RUN_ONCE)` to about a millisecond, so iteration caps bound every wait.
class ticker {
public:
    explicit ticker(uv_loop_t* loop)
        : loop_(loop) {
        REQUIRE(uv_timer_init(loop_, &timer_) == 0);
        timer_.data = this;
        REQUIRE(uv_timer_start(
                    &timer_, [](uv_timer_t*) {}, 1, 1) == 0);
    }

    ticker(const ticker&) = delete;
    ticker& operator=(const ticker&) = delete;
    ticker(ticker&&) = delete;
    ticker& operator=(ticker&&) = delete;

    ~ticker() {
        uv_close(reinterpret_cast<uv_handle_t*>(&timer_),
                 [](uv_handle_t* h) { static_cast<ticker*>(h->data)->closed_ = true; });
        while (!closed_) {
            uv_run(loop_, UV_RUN_NOWAIT);
        }
    }

private:
    uv_loop_t* loop_;
    uv_timer_t timer_{};
    bool closed_ = false;
};

/// Runs loop iterations until `done()` holds, at most `max_iterations` of them.
template <class Pred>
bool pump(loop_fixture& f, Pred done, int max_iterations = 20000) {
    for (int i = 0; i < max_iterations && !done(); ++i) {
        uv_run(f.loop(), UV_RUN_ONCE);
    }
    return done();
}

/// Spins (yielding) until `done()` holds, at most `max_spins` times. For other threads.
template <class Pred>
bool spin_until(Pred done, long max_spins = 50'000'000) {
    for (long i = 0; i < max_spins && !done(); ++i) {
        std::this_thread::yield();
    }
    return done();
}

/// Runs everything another thread posted before this call (the inbox is FIFO).
void flush_inbox(loop_fixture& f) {
    bool flushed = false;
    REQUIRE(f.rt->post([&flushed] { flushed = true; }));
    REQUIRE(pump(f, [&] { return flushed; }));
}

/// Counts calls, and calls on a thread other than the loop thread.
struct on_loop_counter {
    int* calls;
    int* wrong_thread;
    std::thread::id loop_thread;

    void operator()() const noexcept {
        ++*calls;
        if (std::this_thread::get_id() != loop_thread) {
            ++*wrong_thread;
        }
    }
};

struct log_to {
    std::vector<std::string>* log;
    const char* name;

    void operator()() const noexcept { log->emplace_back(name); }
};

task<> catch_message(task_handle<> h, std::string& out) {
    try {
        co_await h;
        out = "<not cancelled>";
    } catch (const cancelled_error& e) {
        out = std::string(e.message());
    }
}

/// The message of the cancellation that ended `h` (bounded wait).
std::string cancel_message_of(loop_fixture& f, const task_handle<>& h) {
    std::string out = "<still running>";
    task_handle<> reader = f.rt->spawn(catch_message(h, out));
    REQUIRE(pump(f, [&] { return reader.done(); }));
    return out;
}

task<> sleep_for(loop_clock::duration d, std::atomic<bool>& started) {
    started.store(true);
    co_await sleep(d);
}

} // namespace

TEST_SUITE("threads") {

    // ---------------------------------------------------------------------------------------------
    // 12.2, 12.3 A foreign request: the flag at once, the propagation on the loop thread

    TEST_CASE("12.2 12.3 a foreign request sets the flag at once, returns true and leaves the "
              "callbacks to the loop thread") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        const std::thread::id loop_thread = std::this_thread::get_id();
        cancel_source src;
        int calls = 0;
        int wrong_thread = 0;
        auto r = src.token().on_cancel(on_loop_counter{&calls, &wrong_thread, loop_thread});

        bool returned = false;
        bool seen_by_caller = false;
        std::thread canceller([src, &returned, &seen_by_caller]() mutable {
            returned = src.request_cancel("foreign");
            seen_by_caller = src.cancel_requested();
        });
        canceller.join();
        CHECK(returned);
        CHECK(seen_by_caller);
        CHECK(src.cancel_requested());
        CHECK(calls == 0); // the loop has not run since: nothing ran on the foreign thread

        bool seen_by_other = false;
        std::thread reader([src, &seen_by_other] { seen_by_other = src.cancel_requested(); });
        reader.join();
        CHECK(seen_by_other);

        REQUIRE(pump(f, [&] { return calls == 1; }));
        CHECK(wrong_thread == 0);
        CHECK_FALSE(src.request_cancel());
        flush_inbox(f);
        CHECK(calls == 1);
    }

    TEST_CASE("12.3 the flags of descendants stay false until the loop thread runs the "
              "propagation") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        cancel_source parent;
        cancel_source child(parent.token());
        cancel_source grandchild(child.token());

        bool child_in_thread = true;
        std::thread canceller([parent, child, &child_in_thread]() mutable {
            parent.request_cancel();
            child_in_thread = child.cancel_requested();
        });
        canceller.join();
        CHECK(parent.cancel_requested());
        CHECK_FALSE(child_in_thread);
        CHECK_FALSE(child.cancel_requested());
        CHECK_FALSE(grandchild.cancel_requested());

        REQUIRE(pump(f, [&] { return grandchild.cancel_requested(); }));
        CHECK(child.cancel_requested());
        CHECK_FALSE(child.request_cancel()); // the propagation made the transition
    }

    TEST_CASE("12.4 D-10 a foreign request propagates on the loop thread, parent before "
              "descendants, each callback once") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        const std::thread::id loop_thread = std::this_thread::get_id();
        std::vector<std::string> log;
        int calls = 0;
        int wrong_thread = 0;
        cancel_source root;
        cancel_source a(root.token());
        cancel_source aa(a.token());
        cancel_source b(root.token());
        auto r1 = root.token().on_cancel(log_to{&log, "root1"});
        auto r2 = root.token().on_cancel(log_to{&log, "root2"});
        auto ra = a.token().on_cancel(log_to{&log, "a"});
        auto raa = aa.token().on_cancel(log_to{&log, "aa"});
        auto rb = b.token().on_cancel(log_to{&log, "b"});
        auto c1 = root.token().on_cancel(on_loop_counter{&calls, &wrong_thread, loop_thread});
        auto c2 = aa.token().on_cancel(on_loop_counter{&calls, &wrong_thread, loop_thread});
        auto c3 = b.token().on_cancel(on_loop_counter{&calls, &wrong_thread, loop_thread});

        std::thread canceller([root]() mutable { root.request_cancel(); });
        REQUIRE(pump(f, [&] { return calls == 3; }));
        canceller.join();
        flush_inbox(f);
        CHECK(calls == 3);
        CHECK(wrong_thread == 0);
        REQUIRE(log.size() == 5);
        CHECK(log[0] == "root1");
        CHECK(log[1] == "root2");
        auto pos = [&](const std::string& name) {
            for (std::size_t i = 0; i < log.size(); ++i) {
                if (log[i] == name) {
                    return static_cast<int>(i);
                }
            }
            return -1;
        };
        CHECK(pos("a") < pos("aa"));
        CHECK(pos("b") > 1);
        CHECK(aa.cancel_requested());
    }

    TEST_CASE("12.2 of N concurrent callers exactly one gets true, and its message wins") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        const std::thread::id loop_thread = std::this_thread::get_id();
        constexpr int threads = 4;
        constexpr int rounds = 20;
        const std::vector<std::string> messages{"t0", "t1", "t2", "t3", "loop"};

        for (int round = 0; round < rounds; ++round) {
            CAPTURE(round);
            const bool loop_competes = round % 2 == 1;
            cancel_source src;
            int calls = 0;
            int wrong_thread = 0;
            auto r = src.token().on_cancel(on_loop_counter{&calls, &wrong_thread, loop_thread});
            std::atomic<bool> started{false};
            task_handle<> bound = f.rt->spawn(sleep_for(1h, started), src.token());
            REQUIRE(pump(f, [&] { return started.load(); }));

            std::atomic<bool> go{false};
            std::atomic<int> ready{0};
            std::atomic<int> trues{0};
            std::atomic<int> winner{-1};
            std::vector<std::thread> callers;
            for (int i = 0; i < threads; ++i) {
                callers.emplace_back([src, i, &messages, &go, &ready, &trues, &winner]() mutable {
                    ready.fetch_add(1);
                    spin_until([&] { return go.load(); });
                    if (src.request_cancel(messages[i])) {
                        trues.fetch_add(1);
                        winner.store(i);
                    }
                });
            }
            REQUIRE(spin_until([&] { return ready.load() == threads; }));
            go.store(true);
            if (loop_competes && src.request_cancel(messages[threads])) {
                trues.fetch_add(1);
                winner.store(threads);
            }
            REQUIRE(pump(f, [&] { return calls == 1 && bound.done(); }));
            for (auto& t : callers) {
                t.join();
            }
            flush_inbox(f);
            CHECK(trues.load() == 1);
            CHECK(calls == 1);
            CHECK(wrong_thread == 0);
            CHECK(bound.cancelled());
            REQUIRE(winner.load() >= 0);
            CHECK(cancel_message_of(f, bound) == messages[static_cast<std::size_t>(winner.load())]);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // 12.4, 12.5 Draining and racing

    TEST_CASE("12.4 one wake-up drains every queued propagation") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        constexpr int n = 100;
        std::vector<cancel_source> sources(n);
        std::vector<int> calls(n, 0);
        int wrong_thread = 0;
        auto regs = std::make_unique<std::optional<cancel_callback<on_loop_counter>>[]>(n);
        for (int i = 0; i < n; ++i) {
            regs[i].emplace(sources[i].token(),
                            on_loop_counter{&calls[i], &wrong_thread, std::this_thread::get_id()});
        }
        std::thread canceller([sources]() mutable {
            for (cancel_source& s : sources) {
                s.request_cancel();
            }
        });
        canceller.join();
        uv_run(f.loop(), UV_RUN_NOWAIT); // one iteration: its poll sees the wake-up
        int ran = 0;
        for (int c : calls) {
            ran += c;
        }
        CHECK(ran == n);
        CHECK(wrong_thread == 0);
        regs.reset();
    }

    TEST_CASE("12.4 a foreign request whose node an ancestor's propagation already reached runs "
              "nothing twice") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        const std::thread::id loop_thread = std::this_thread::get_id();
        int wrong_thread = 0;

        // The child's request is queued; the parent is then cancelled on the loop thread.
        {
            cancel_source parent;
            cancel_source child(parent.token());
            int on_parent = 0;
            int on_child = 0;
            auto rp =
                parent.token().on_cancel(on_loop_counter{&on_parent, &wrong_thread, loop_thread});
            auto rc =
                child.token().on_cancel(on_loop_counter{&on_child, &wrong_thread, loop_thread});
            bool child_true = false;
            std::thread canceller(
                [child, &child_true]() mutable { child_true = child.request_cancel(); });
            canceller.join();
            CHECK(child_true);
            CHECK(parent.request_cancel());
            CHECK(on_parent == 1);
            CHECK(on_child == 1); // the parent's propagation reached it first
            flush_inbox(f);
            CHECK(on_parent == 1);
            CHECK(on_child == 1);
        }

        // Both requests are queued, the parent's first or the child's first.
        for (int order = 0; order < 2; ++order) {
            CAPTURE(order);
            cancel_source parent;
            cancel_source child(parent.token());
            cancel_source grandchild(child.token());
            int on_parent = 0;
            int on_child = 0;
            int on_grandchild = 0;
            auto rp =
                parent.token().on_cancel(on_loop_counter{&on_parent, &wrong_thread, loop_thread});
            auto rc =
                child.token().on_cancel(on_loop_counter{&on_child, &wrong_thread, loop_thread});
            auto rg = grandchild.token().on_cancel(
                on_loop_counter{&on_grandchild, &wrong_thread, loop_thread});
            std::thread canceller([parent, child, order]() mutable {
                if (order == 0) {
                    parent.request_cancel();
                    child.request_cancel();
                } else {
                    child.request_cancel();
                    parent.request_cancel();
                }
            });
            canceller.join();
            flush_inbox(f);
            CHECK(on_parent == 1);
            CHECK(on_child == 1);
            CHECK(on_grandchild == 1);
        }
        CHECK(wrong_thread == 0);
    }

    TEST_CASE("12.5 a foreign request racing registrations runs each callback exactly once, on the "
              "loop thread") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        constexpr int n = 20000;
        cancel_source src;
        std::vector<int> calls(n, 0);
        int wrong_thread = 0;
        auto regs = std::make_unique<std::optional<cancel_callback<on_loop_counter>>[]>(n);
        std::atomic<bool> go{false};
        std::thread canceller([src, &go]() mutable {
            spin_until([&] { return go.load(); });
            src.request_cancel();
        });
        for (int i = 0; i < n; ++i) {
            if (i == n / 8) {
                go.store(true);
            }
            regs[i].emplace(src.token(),
                            on_loop_counter{&calls[i], &wrong_thread, std::this_thread::get_id()});
            if (i % 64 == 0) {
                uv_run(f.loop(), UV_RUN_NOWAIT);
            }
        }
        canceller.join();
        flush_inbox(f);
        int not_once = 0;
        for (int c : calls) {
            if (c != 1) {
                ++not_once;
            }
        }
        CHECK(not_once == 0);
        CHECK(wrong_thread == 0);
        regs.reset();
    }

    // ---------------------------------------------------------------------------------------------
    // Tasks woken by a foreign request

    TEST_CASE("12.2 a task waiting on token.cancelled() is woken by a foreign request, on the loop "
              "thread") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        cancel_source src;
        std::atomic<bool> parked{false};
        std::thread::id resumed_on;
        task_handle<> waiter = f.rt->spawn(
            [](cancel_token t, std::atomic<bool>& parked, std::thread::id& on) -> task<> {
                parked.store(true);
                co_await t.cancelled();
                on = std::this_thread::get_id();
            }(src.token(), parked, resumed_on));
        REQUIRE(pump(f, [&] { return parked.load(); }));

        std::thread canceller([src]() mutable { src.request_cancel("wake up"); });
        REQUIRE(pump(f, [&] { return waiter.done(); }));
        canceller.join();
        CHECK_FALSE(waiter.cancelled());
        CHECK(resumed_on == std::this_thread::get_id());
    }

    TEST_CASE("11.12 12.5 a task spawned with a token is cancelled by a foreign request") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        cancel_source src;
        std::atomic<bool> started{false};
        task_handle<> h = f.rt->spawn(sleep_for(1h, started), src.token());
        REQUIRE(pump(f, [&] { return started.load(); }));

        std::thread canceller([src]() mutable { src.request_cancel("from thread"); });
        REQUIRE(pump(f, [&] { return h.done(); }));
        canceller.join();
        CHECK(h.cancelled());
        CHECK(cancel_message_of(f, h) == "from thread");
    }

    TEST_CASE("12.5 a task that only yields sees a foreign cancellation") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        cancel_source src;
        std::atomic<bool> running{false};
        constexpr int max_yields = 200'000;
        task_handle<int> h = f.rt->spawn(
            [](std::atomic<bool>& running) -> task<int> {
                running.store(true);
                int i = 0;
                for (; i < max_yields; ++i) {
                    co_await yield();
                }
                co_return i; // reached only if the cancellation never arrived
            }(running),
            src.token());
        REQUIRE(pump(f, [&] { return running.load(); }));
        std::thread canceller([src]() mutable { src.request_cancel(); });
        REQUIRE(pump(
            f, [&] { return h.done(); }, 2 * max_yields));
        canceller.join();
        CHECK(h.cancelled());
    }

    // ---------------------------------------------------------------------------------------------
    // runtime::post

    TEST_CASE("12.1 runtime::post runs callables on the loop thread in posting order") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        const std::thread::id loop_thread = std::this_thread::get_id();
        constexpr int per_thread = 500;
        constexpr int threads = 3;

        // One poster: exactly its order.
        {
            std::vector<int> order; // loop thread only
            int wrong_thread = 0;
            std::atomic<int> accepted{0};
            runtime& rt = *f.rt;
            std::thread poster([&rt, &order, &wrong_thread, &accepted, loop_thread] {
                for (int i = 0; i < per_thread; ++i) {
                    const bool ok = rt.post([&order, &wrong_thread, loop_thread, i] {
                        order.push_back(i);
                        if (std::this_thread::get_id() != loop_thread) {
                            ++wrong_thread;
                        }
                    });
                    if (ok) {
                        accepted.fetch_add(1);
                    }
                }
            });
            REQUIRE(pump(f, [&] { return order.size() == static_cast<std::size_t>(per_thread); }));
            poster.join();
            CHECK(accepted.load() == per_thread);
            CHECK(wrong_thread == 0);
            bool in_order = true;
            for (int i = 0; i < per_thread; ++i) {
                in_order = in_order && order[static_cast<std::size_t>(i)] == i;
            }
            CHECK(in_order);
        }

        // Several posters at once: each one's order is kept.
        {
            std::vector<std::pair<int, int>> seen; // (poster, sequence); loop thread only
            runtime& rt = *f.rt;
            std::vector<std::thread> posters;
            for (int p = 0; p < threads; ++p) {
                posters.emplace_back([&rt, &seen, p] {
                    for (int i = 0; i < per_thread; ++i) {
                        rt.post([&seen, p, i] { seen.emplace_back(p, i); });
                    }
                });
            }
            REQUIRE(pump(
                f, [&] { return seen.size() == static_cast<std::size_t>(threads * per_thread); }));
            for (auto& t : posters) {
                t.join();
            }
            std::vector<int> next(threads, 0);
            int out_of_order = 0;
            for (const auto& [p, i] : seen) {
                if (i != next[static_cast<std::size_t>(p)]) {
                    ++out_of_order;
                }
                next[static_cast<std::size_t>(p)] = i + 1;
            }
            CHECK(out_of_order == 0);
        }

        // Posting from the loop thread never runs the callable inline.
        bool ran = false;
        CHECK(f.rt->post([&ran] { ran = true; }));
        CHECK_FALSE(ran);
        REQUIRE(pump(f, [&] { return ran; }));
    }

    // ---------------------------------------------------------------------------------------------
    // 12.6 Ordering

    TEST_CASE("12.6 a foreign request happens-before its callbacks and every cancel_requested() "
              "that returns true because of it") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());

        // Before its callbacks: the callback reads what the requester wrote, without atomics.
        {
            cancel_source src;
            int payload = 0;
            int seen_in_callback = -1;
            bool ran = false;

            struct read_payload {
                const int* payload;
                int* seen;
                bool* ran;

                void operator()() const noexcept {
                    *seen = *payload;
                    *ran = true;
                }
            };

            auto r = src.token().on_cancel(read_payload{&payload, &seen_in_callback, &ran});
            std::thread canceller([src, &payload]() mutable {
                payload = 42;
                src.request_cancel();
            });
            REQUIRE(pump(f, [&] { return ran; }));
            CHECK(seen_in_callback == 42);
            canceller.join();
        }

        // Before a cancel_requested() that sees it: read without the loop running and before join.
        {
            cancel_source src;
            int payload = 0;
            std::thread canceller([src, &payload]() mutable {
                payload = 7;
                src.request_cancel();
            });
            const bool seen = spin_until([&] { return src.cancel_requested(); });
            CHECK(seen);
            if (seen) {
                CHECK(payload == 7);
            }
            canceller.join();
            flush_inbox(f);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // 11.3 Handles on other threads

    TEST_CASE("11.3 copying and destroying tokens and sources on other threads is safe while the "
              "loop works on the same tree") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        const std::thread::id loop_thread = std::this_thread::get_id();
        cancel_source parent;
        std::vector<cancel_source> children;
        for (int i = 0; i < 8; ++i) {
            children.emplace_back(parent.token());
        }
        int calls = 0;
        int wrong_thread = 0;
        auto rp = parent.token().on_cancel(on_loop_counter{&calls, &wrong_thread, loop_thread});

        std::atomic<bool> stop{false};
        std::atomic<long> copies{0};
        std::vector<std::thread> workers;
        for (int w = 0; w < 3; ++w) {
            workers.emplace_back([parent, children, &stop, &copies] {
                while (!stop.load()) {
                    for (const cancel_source& c : children) {
                        cancel_source copy = c;           // NOLINT(performance-unnecessary-copy-*)
                        cancel_token t = copy.token();    // a token from a copy
                        cancel_token t2 = t;              // and a copy of it
                        cancel_token t3 = parent.token(); // the parent's token
                        (void)t2.cancel_requested();
                        (void)t3.cancel_requested();
                        copies.fetch_add(1);
                    }
                }
            });
        }
        // Meanwhile the loop thread creates and drops linked sources and registrations.
        int dead = 0;
        for (int i = 0; i < 2000; ++i) {
            cancel_source temp(parent.token());
            cancel_source temp_child(temp.token());
            auto r =
                temp_child.token().on_cancel(on_loop_counter{&dead, &wrong_thread, loop_thread});
            if (i % 16 == 0) {
                uv_run(f.loop(), UV_RUN_NOWAIT);
            }
        }
        REQUIRE(spin_until([&] { return copies.load() > 1000; }));
        CHECK(parent.request_cancel()); // on the loop thread, while the workers keep copying
        stop.store(true);
        for (auto& t : workers) {
            t.join();
        }
        flush_inbox(f);
        CHECK(calls == 1);
        CHECK(dead == 0);
        CHECK(wrong_thread == 0);
        int not_cancelled = 0;
        for (const cancel_source& c : children) {
            if (!c.cancel_requested()) {
                ++not_cancelled;
            }
        }
        CHECK(not_cancelled == 0);
    }

    TEST_CASE("11.3 the last handle of a linked source dropped on another thread leaves the tree "
              "intact") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        const std::thread::id loop_thread = std::this_thread::get_id();
        constexpr int threads = 4;
        constexpr int per_thread = 250;
        cancel_source parent;

        std::vector<std::vector<cancel_source>> handed(threads);
        std::vector<cancel_token> root_tokens; // tokens of unlinked roots, last held elsewhere
        for (auto& batch : handed) {
            for (int i = 0; i < per_thread; ++i) {
                batch.emplace_back(parent.token());
                batch.emplace_back(batch.back().token()); // a grandchild under it
            }
        }
        {
            cancel_source root;
            root_tokens.push_back(root.token());
        }

        std::atomic<bool> go{false};
        std::atomic<int> finished{0};
        std::vector<std::thread> droppers;
        for (int t = 0; t < threads; ++t) {
            // The thread gets copies; the loop thread's own handles go away before `go`.
            droppers.emplace_back([mine = handed[static_cast<std::size_t>(t)],
                                   tokens = t == 0 ? root_tokens : std::vector<cancel_token>{}, &go,
                                   &finished]() mutable {
                spin_until([&] { return go.load(); });
                mine.clear(); // the last handles of these nodes
                tokens.clear();
                finished.fetch_add(1);
            });
        }
        handed.clear();
        root_tokens.clear();
        go.store(true);

        // The loop keeps working on the same parent while the nodes are dropped.
        int live_calls = 0;
        int wrong_thread = 0;
        cancel_source keep(parent.token());
        auto rk = keep.token().on_cancel(on_loop_counter{&live_calls, &wrong_thread, loop_thread});
        REQUIRE(pump(f, [&] {
            cancel_source churn(parent.token());
            return finished.load() == threads;
        }));
        for (auto& t : droppers) {
            t.join();
        }
        flush_inbox(f); // every release posted by the droppers has run

        int on_parent = 0;
        auto rp = parent.token().on_cancel(on_loop_counter{&on_parent, &wrong_thread, loop_thread});
        CHECK(parent.request_cancel());
        CHECK(on_parent == 1);
        CHECK(live_calls == 1);
        CHECK(wrong_thread == 0);
        CHECK(keep.cancel_requested());
    }

    // ---------------------------------------------------------------------------------------------
    // 12.8 Latency

    TEST_CASE("12.8 a foreign request wakes a loop blocked in poll") {
        loop_fixture f{loop_fixture::real_clock()};

        // No ticker: the only referenced handle is a long guard timer, so uv_run blocks in poll
        // until the foreign request wakes it (or the guard fires, which the test reports).
        struct guard_state {
            uv_timer_t timer{};
            bool fired = false;
            bool closed = false;
        } guard;

        guard.timer.data = &guard;
        REQUIRE(uv_timer_init(f.loop(), &guard.timer) == 0);
        REQUIRE(uv_timer_start(
                    &guard.timer,
                    [](uv_timer_t* t) { static_cast<guard_state*>(t->data)->fired = true; }, 20000,
                    0) == 0);

        const std::thread::id loop_thread = std::this_thread::get_id();
        cancel_source src;
        int calls = 0;
        int wrong_thread = 0;
        auto r = src.token().on_cancel(on_loop_counter{&calls, &wrong_thread, loop_thread});
        std::thread canceller([src]() mutable {
            std::this_thread::sleep_for(20ms); // most likely the loop is in poll by now
            src.request_cancel();
        });
        for (int i = 0; i < 100 && calls == 0 && !guard.fired; ++i) {
            uv_run(f.loop(), UV_RUN_ONCE);
        }
        canceller.join();
        CHECK_FALSE(guard.fired);
        CHECK(calls == 1);
        CHECK(wrong_thread == 0);

        uv_close(reinterpret_cast<uv_handle_t*>(&guard.timer),
                 [](uv_handle_t* h) { static_cast<guard_state*>(h->data)->closed = true; });
        while (!guard.closed) {
            uv_run(f.loop(), UV_RUN_NOWAIT);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // 12.7, 15.7 After shutdown

    TEST_CASE("12.7 15.7 a foreign request after shutdown sets the flag, runs nothing and returns "
              "normally") {
        loop_fixture f{loop_fixture::real_clock()};
        ticker tick(f.loop());
        const std::thread::id loop_thread = std::this_thread::get_id();
        cancel_source src;
        std::optional<cancel_source> child;
        child.emplace(src.token());
        int calls = 0;
        int wrong_thread = 0;
        auto r = src.token().on_cancel(on_loop_counter{&calls, &wrong_thread, loop_thread});

        f.rt->shutdown();
        CHECK_FALSE(f.rt->post([] {}));

        bool returned = false;
        bool seen = false;
        std::thread canceller([src, c = *child, &returned, &seen]() mutable {
            returned = src.request_cancel("after shutdown");
            seen = src.cancel_requested();
            c.request_cancel();
            c = cancel_source(); // drops a handle of the linked child on this thread
        });
        child.reset(); // the thread now holds the last handle of the child
        canceller.join();
        CHECK(returned);
        CHECK(seen);
        CHECK(src.cancel_requested());
        for (int i = 0; i < 10; ++i) {
            uv_run(f.loop(), UV_RUN_NOWAIT);
        }
        CHECK(calls == 0);
        CHECK(wrong_thread == 0);
    }

    TEST_CASE("12.7 15.7 a foreign thread may request and drop handles after the runtime is "
              "destroyed") {
        loop_fixture f{loop_fixture::real_clock()};
        std::optional<cancel_source> parent;
        parent.emplace();
        std::optional<cancel_source> child;
        child.emplace(parent->token());
        int calls = 0;
        int wrong_thread = 0;
        std::optional<cancel_callback<on_loop_counter>> r;
        r.emplace(child->token(),
                  on_loop_counter{&calls, &wrong_thread, std::this_thread::get_id()});

        f.rt.reset(); // the runtime is gone; the sources outlive it

        bool returned = false;
        bool seen = false;
        std::thread canceller([p = *parent, c = *child, &returned, &seen]() mutable {
            returned = p.request_cancel("late");
            seen = p.cancel_requested();
            c.request_cancel();
        });
        parent.reset();
        child.reset(); // the thread's copies are the last handles
        canceller.join();
        CHECK(returned);
        CHECK(seen);
        CHECK(calls == 0); // nothing is left to run the propagation
        r.reset();
        CHECK(wrong_thread == 0);
    }

    // ---------------------------------------------------------------------------------------------
    // 3.8 loop-thread-only functions called from another thread are detected (thread checks are
    // on in debug builds and in the tests: UVASYNC_THREAD_CHECKS)

    namespace {

    task<void> park_in_scope(timeout_scope*& scope) {
        co_await move_on_after(1h, [&scope](timeout_scope& s) -> task<void> {
            scope = &s;
            co_await uvasync::sleep(2h);
        });
    }

    /// Runs `f` on a new thread and returns the message of the invalid_state it threw ("" when
    /// it threw nothing).
    template <class F>
    std::string error_on_other_thread(F f) {
        std::string message;
        std::thread other([&] {
            try {
                f();
            } catch (const invalid_state& e) {
                message = e.what();
            }
        });
        other.join();
        return message;
    }

    } // namespace

    TEST_CASE(
        "3.8 loop-thread-only calls from another thread throw invalid_state naming the call") {
        static_assert(UVASYNC_THREAD_CHECKS, "the tests run with thread checks on");
        loop_fixture f(loop_fixture::manual_clock());
        timeout_scope* scope = nullptr;
        auto h = f.rt->spawn(park_in_scope(scope));
        uv_run(f.loop(), UV_RUN_NOWAIT);
        REQUIRE(scope != nullptr);

        CHECK(error_on_other_thread([&] { h.cancel(); }).find("task_handle::cancel()") !=
              std::string::npos);
        CHECK(error_on_other_thread([&] { scope->cancel(); }).find("timeout_scope::cancel()") !=
              std::string::npos);
        CHECK(error_on_other_thread([&] {
                  scope->reschedule(1ms);
              }).find("timeout_scope::reschedule()") != std::string::npos);
        CHECK(error_on_other_thread([&] {
                  (void)f.rt->spawn(park_in_scope(scope));
              }).find("runtime::spawn()") != std::string::npos);
        CHECK(error_on_other_thread([&] {
                  (void)f.rt->call_later(1ms, [] {});
              }).find("runtime::call_at()") != std::string::npos);
        CHECK(error_on_other_thread([&] { f.rt->advance(1ms); }).find("runtime::advance()") !=
              std::string::npos);
        CHECK(error_on_other_thread([&] { f.rt->shutdown(); }).find("runtime::shutdown()") !=
              std::string::npos);
        CHECK(error_on_other_thread([&] {
                  (void)runtime::current();
              }).find("needs a runtime on this thread") != std::string::npos);

        // Nothing happened: the task is still parked; from the loop thread the same calls work.
        CHECK_FALSE(h.done());
        CHECK(f.rt->pending_deadlines() == 2);
        CHECK(h.cancel());
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
    }

} // TEST_SUITE
