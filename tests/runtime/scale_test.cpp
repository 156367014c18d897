// SPDX-License-Identifier: MIT
// Scale: SEMANTICS section 16 (and 11.8 for token trees).
//
// Every bound is stated in loop iterations or on the loop clock, never in wall-clock time
// (16.5); wall-clock cost belongs to the benchmarks. Memory returning to baseline is checked by
// the fixture's frame count (and by ASan's leak checker in sanitizer builds). Per-task work is
// kept minimal so that the sizes the spec names run under ASan+UBSan too.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"

using namespace std::chrono_literals;
using namespace uvasync;
using uvasync::test::loop_fixture;

namespace {

/// Loop iterations allowed for "all of them finish within a bounded number of iterations": the
/// ready queue is drained at least once per iteration, so one iteration should do; a few allow
/// for a runtime that drains in more than one phase.
constexpr int bounded_iterations = 3;

/// A virtual clock that only moves when told to, so that tasks parked on long sleeps stay
/// parked until the test cancels them.
runtime_options virtual_without_autojump() {
    runtime_options o = loop_fixture::virtual_clock();
    o.autojump = false;
    return o;
}

/// Runs non-blocking loop iterations until `done()` holds or `limit` iterations ran; returns the
/// number of iterations.
template <class Pred>
int iterate(uv_loop_t* loop, Pred done, int limit) {
    int n = 0;
    while (!done() && n < limit) {
        uv_run(loop, UV_RUN_NOWAIT);
        ++n;
    }
    return n;
}

std::size_t count_equal(const std::vector<std::uint8_t>& v, std::uint8_t value) {
    return static_cast<std::size_t>(std::count(v.begin(), v.end(), value));
}

template <class T>
std::size_t count_cancelled(const std::vector<task_handle<T>>& hs) {
    return static_cast<std::size_t>(
        std::count_if(hs.begin(), hs.end(), [](const task_handle<T>& h) { return h.cancelled(); }));
}

struct sleepers {
    std::vector<std::uint8_t> deliveries;
    std::size_t started = 0;
};

/// Counts the exceptions that unwind through it: a delivery, without the cost of a catch and
/// a rethrow per task (the task still ends cancelled, which the test checks separately).
class unwind_counter {
public:
    explicit unwind_counter(std::uint8_t& n) noexcept
        : n_(n)
        , in_flight_(std::uncaught_exceptions()) {}

    unwind_counter(const unwind_counter&) = delete;
    unwind_counter& operator=(const unwind_counter&) = delete;
    unwind_counter(unwind_counter&&) = delete;
    unwind_counter& operator=(unwind_counter&&) = delete;

    ~unwind_counter() {
        if (std::uncaught_exceptions() > in_flight_) {
            ++n_;
        }
    }

private:
    std::uint8_t& n_;
    int in_flight_;
};

task<void> sleep_an_hour(sleepers& s, std::size_t i) {
    ++s.started;
    const unwind_counter delivery(s.deliveries[i]);
    co_await uvasync::sleep(1h);
}

} // namespace

TEST_SUITE("scale") {

    // ---------------------------------------------------------------------------------------------
    // 16.2: many tasks cancelled at once

    TEST_CASE("16.2 1,000,000 sleeping tasks all cancelled: exactly one delivery each, all finish "
              "within a bounded number of loop iterations, memory returns") {
        constexpr std::size_t n = 1'000'000;
        loop_fixture f{virtual_without_autojump()};
        const std::ptrdiff_t frames_before = detail::live_frame_counter().load();
        sleepers s;
        s.deliveries.assign(n, 0);
        {
            std::vector<task_handle<>> hs;
            hs.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                hs.push_back(f.rt->spawn(sleep_an_hour(s, i)));
            }
            const int to_start = iterate(
                f.loop(), [&] { return s.started == n; }, 100);
            CHECK(s.started == n);
            CHECK(to_start <= bounded_iterations);
            CHECK(f.rt->task_count() == n);

            std::size_t accepted = 0;
            for (auto& h : hs) {
                accepted += h.cancel() ? 1 : 0;
            }
            CHECK(accepted == n);

            const int to_finish = iterate(
                f.loop(), [&] { return f.rt->task_count() == 0; }, 100);
            CHECK(f.rt->task_count() == 0);
            CHECK(to_finish <= bounded_iterations);
            CHECK(count_equal(s.deliveries, 1) == n);
            CHECK(count_cancelled(hs) == n);
        }
        CHECK(detail::live_frame_counter().load() == frames_before);
        CHECK(uv_loop_alive(f.loop()) == 0); // no deadline entry is left behind
    }

    namespace {

    struct siblings {
        std::vector<std::uint8_t> deliveries;
        std::size_t started = 0;
    };

    /// Even tasks rethrow their delivery; odd ones swallow it and return a value (2.3).
    task<int> sibling(siblings& s, std::size_t i) {
        ++s.started;
        try {
            co_await uvasync::sleep(1h);
        } catch (const cancelled_error&) {
            ++s.deliveries[i];
            if (i % 2 == 0) {
                throw;
            }
        }
        co_return static_cast<int>(i % 7);
    }

    } // namespace

    TEST_CASE("16.2 3.2 100,000 sibling tasks cancelled at once: cancel() succeeds once per task, "
              "each gets exactly one delivery, all finish within a bounded number of iterations") {
        constexpr std::size_t n = 100'000;
        loop_fixture f{virtual_without_autojump()};
        const std::ptrdiff_t frames_before = detail::live_frame_counter().load();
        siblings s;
        s.deliveries.assign(n, 0);
        {
            std::vector<task_handle<int>> hs;
            hs.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                hs.push_back(f.rt->spawn(sibling(s, i)));
            }
            iterate(
                f.loop(), [&] { return s.started == n; }, 100);
            REQUIRE(s.started == n);

            std::size_t first = 0;
            std::size_t second = 0;
            for (auto& h : hs) {
                first += h.cancel("all at once") ? 1 : 0;
            }
            for (auto& h : hs) {
                second += h.cancel("again") ? 1 : 0;
            }
            CHECK(first == n);
            CHECK(second == 0);

            const int to_finish = iterate(
                f.loop(), [&] { return f.rt->task_count() == 0; }, 100);
            CHECK(f.rt->task_count() == 0);
            CHECK(to_finish <= bounded_iterations);
            CHECK(count_equal(s.deliveries, 1) == n);
            CHECK(count_cancelled(hs) == n / 2); // the rethrowing half
            std::size_t with_value = 0;
            for (std::size_t i = 1; i < n; i += 2) {
                with_value += hs[i].done() && !hs[i].cancelled() ? 1 : 0;
            }
            CHECK(with_value == n / 2);
        }
        CHECK(detail::live_frame_counter().load() == frames_before);
    }

    namespace {

    struct token_bound {
        std::vector<std::uint8_t> deliveries;
        std::size_t started = 0;
        std::size_t with_message = 0;
    };

    task<void> park_until_cancelled(token_bound& s, std::size_t i) {
        ++s.started;
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error& e) {
            ++s.deliveries[i];
            s.with_message += e.message() == "shutdown of the pool" ? 1 : 0;
            throw;
        }
    }

    } // namespace

    TEST_CASE(
        "16.2 16.4 11.12 100,000 tasks spawned with one token are all cancelled by one request") {
        constexpr std::size_t n = 100'000;
        loop_fixture f;
        token_bound s;
        s.deliveries.assign(n, 0);
        {
            cancel_source pool;
            std::vector<task_handle<>> hs;
            hs.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                hs.push_back(f.rt->spawn(park_until_cancelled(s, i), pool.token()));
            }
            iterate(
                f.loop(), [&] { return s.started == n; }, 100);
            REQUIRE(s.started == n);

            CHECK(pool.request_cancel("shutdown of the pool"));
            const int to_finish = iterate(
                f.loop(), [&] { return f.rt->task_count() == 0; }, 100);
            CHECK(f.rt->task_count() == 0);
            CHECK(to_finish <= bounded_iterations);
            CHECK(count_equal(s.deliveries, 1) == n);
            CHECK(s.with_message == n);
            CHECK(count_cancelled(hs) == n);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // 16.4 / 11.8: token trees

    namespace {

    struct counter {
        int* n;

        void operator()() const noexcept { ++*n; }
    };

    std::size_t count_requested(const std::deque<cancel_source>& chain, std::size_t from,
                                std::size_t to) {
        std::size_t n = 0;
        for (std::size_t i = from; i < to; ++i) {
            n += chain[i].cancel_requested() ? 1 : 0;
        }
        return n;
    }

    void build_chain(std::deque<cancel_source>& chain, std::size_t depth) {
        chain.emplace_back();
        for (std::size_t i = 0; i < depth; ++i) {
            chain.emplace_back(chain.back().token());
        }
    }

    struct leaf_task_state {
        bool parked = false;
        std::string message;
    };

    task<void> park_on_leaf(leaf_task_state& s) {
        s.parked = true;
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error& e) {
            s.message = std::string(e.message());
            throw;
        }
    }

    } // namespace

    TEST_CASE_FIXTURE(
        loop_fixture,
        "16.4 11.8 a 100,000-deep cancel-token chain: a request reaches the leaf without "
        "recursion, and the chain is destroyed root first or leaf first") {
        constexpr std::size_t depth = 100'000;
        int root_calls = 0;
        int middle_calls = 0;
        int leaf_calls = 0;
        leaf_task_state leaf;
        {
            std::deque<cancel_source> chain;
            build_chain(chain, depth);
            REQUIRE(chain.size() == depth + 1);
            auto root_cb = chain.front().token().on_cancel(counter{&root_calls});
            auto middle_cb = chain[depth / 2].token().on_cancel(counter{&middle_calls});
            auto leaf_cb = chain.back().token().on_cancel(counter{&leaf_calls});
            auto h = rt->spawn(park_on_leaf(leaf), chain.back().token());
            run_until([&] { return leaf.parked; });

            // Cancelling the middle reaches every descendant and no ancestor (11.2).
            CHECK(chain[depth / 2].request_cancel("middle"));
            CHECK(count_requested(chain, 0, depth / 2) == 0);
            CHECK(count_requested(chain, depth / 2, depth + 1) == depth + 1 - depth / 2);
            CHECK(root_calls == 0);
            CHECK(middle_calls == 1);
            CHECK(leaf_calls == 1);

            // The root then cancels only what was left; callbacks run once in total (11.1).
            CHECK(chain.front().request_cancel("root"));
            CHECK(count_requested(chain, 0, depth + 1) == depth + 1);
            CHECK(root_calls == 1);
            CHECK(middle_calls == 1);
            CHECK(leaf_calls == 1);
            CHECK_FALSE(chain[depth / 2].request_cancel("again"));

            run_until([&] { return h.done(); });
            CHECK(h.cancelled());
            CHECK(leaf.message == "middle"); // the first message that reached it (D-11)

            while (!chain.empty()) {
                chain.pop_front(); // root first
            }
        }
        {
            std::deque<cancel_source> chain;
            build_chain(chain, depth);
            int calls = 0;
            auto leaf_cb = chain.back().token().on_cancel(counter{&calls});
            CHECK(chain.front().request_cancel());
            CHECK(calls == 1);
            CHECK(count_requested(chain, 0, depth + 1) == depth + 1);
            while (!chain.empty()) {
                chain.pop_back(); // leaf first (the callback still holds the leaf's token)
            }
        }
        {
            // Never cancelled: dropping an uncancelled chain is O(1) per link too.
            std::deque<cancel_source> chain;
            build_chain(chain, depth);
            CHECK_FALSE(chain.back().cancel_requested());
            while (!chain.empty()) {
                chain.pop_front();
            }
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "16.4 11.7 a 1,000,000-wide token tree: one request cancels every child, and "
                      "dropped children leave the parent in O(1)") {
        constexpr std::size_t width = 1'000'000;
        int calls = 0;
        cancel_source parent;
        {
            std::vector<std::optional<cancel_source>> kids(width);
            for (auto& k : kids) {
                k.emplace(parent.token());
            }
            // Drop every other child, from the middle of the parent's list (O(1) each).
            for (std::size_t i = 1; i < width; i += 2) {
                kids[i].reset();
            }
            std::deque<cancel_callback<counter>> callbacks;
            for (std::size_t i = 0; i < width; i += 1000) {
                callbacks.emplace_back(kids[i]->token(), counter{&calls});
            }

            CHECK(parent.request_cancel());
            std::size_t cancelled = 0;
            for (const auto& k : kids) {
                cancelled += k && k->cancel_requested() ? 1 : 0;
            }
            CHECK(cancelled == width / 2);
            CHECK(calls == static_cast<int>(width / 1000));

            cancel_source late(parent.token()); // linked to a cancelled parent: born cancelled
            CHECK(late.cancel_requested());
            callbacks.clear();
        }
        CHECK_FALSE(parent.request_cancel());
        CHECK(calls == static_cast<int>(width / 1000));
    }

    // ---------------------------------------------------------------------------------------------
    // 16.1: 10,000 nested timeout scopes

    namespace {

    /// One run of `depth` nested timeout scopes, level 0 outermost. Each level is a lazy task that
    /// awaits the next one inside its own scope, so the nesting lives in coroutine frames.
    struct nest_ctx {
        std::size_t depth = 10'000;
        deadline outer_at = never; // level 0
        deadline inner_at = never; // levels 1 .. depth-1
        bool park = true;          // the innermost sleeps until cancelled, or returns 1
        std::size_t yields = 0;    // cancellation points at the innermost level before that

        std::size_t entered = 0;
        bool innermost_parked = false;
        deadline innermost_deadline{};
        std::size_t cancelled_seen = 0;  // bodies a cancelled_error left
        std::size_t expired_in_body = 0; // ... whose scope reported expired() at that moment
        std::size_t expired_at_exit = 0; // scopes that reported expired() after a normal exit
        std::size_t timeout_errors = 0;
        std::size_t timeout_level = 0;
        bool outer_caught = false;
        std::size_t passed_caught = 0; // scopes a cancelled_error passed that report caught()

        int result = 0;
        bool top_timeout = false;
        deadline top_at{};
    };

    task<int> nest_level(nest_ctx& c, std::size_t level);

    task<int> nest_body(nest_ctx& c, timeout_scope& s, std::size_t level) {
        ++c.entered;
        try {
            if (level + 1 < c.depth) {
                co_return co_await nest_level(c, level + 1);
            }
            c.innermost_deadline = current_deadline();
            for (std::size_t i = 0; i < c.yields; ++i) {
                co_await yield();
            }
            if (c.park) {
                c.innermost_parked = true;
                co_await sleep_until(never);
            }
            co_return 1;
        } catch (const cancelled_error&) {
            ++c.cancelled_seen;
            c.expired_in_body += s.expired() ? 1 : 0;
            throw;
        }
    }

    task<int> nest_level(nest_ctx& c, std::size_t level) {
        timeout_scope* mine = nullptr;
        auto factory = [&c, &mine, level](timeout_scope& s) {
            mine = &s;
            return nest_body(c, s, level);
        };
        auto aw = timeout_at(level == 0 ? c.outer_at : c.inner_at, factory);
        try {
            const int v = co_await aw;
            c.expired_at_exit += mine->expired() ? 1 : 0;
            co_return v;
        } catch (const timeout_error&) {
            ++c.timeout_errors;
            c.timeout_level = level;
            c.outer_caught = mine->caught();
            throw;
        } catch (const cancelled_error&) {
            c.passed_caught += mine->caught() ? 1 : 0;
            throw;
        }
    }

    task<void> nest_top(nest_ctx& c) {
        try {
            c.result = co_await nest_level(c, 0);
        } catch (const timeout_error&) {
            c.top_timeout = true;
            c.top_at = loop_clock::now();
        }
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture,
                      "16.1 10,000 nested timeout scopes with equal deadlines: exactly one "
                      "timeout_error, thrown by the outermost, and every scope reports expired()") {
        nest_ctx c;
        const deadline start = now();
        c.outer_at = start + 10s;
        c.inner_at = start + 10s;
        run(nest_top(c));
        CHECK(c.entered == c.depth);
        CHECK(c.innermost_deadline == start + 10s);
        CHECK(c.cancelled_seen == c.depth);
        CHECK(c.expired_in_body == c.depth);
        CHECK(c.timeout_errors == 1);
        CHECK(c.timeout_level == 0);
        CHECK(c.outer_caught);
        CHECK(c.passed_caught == 0);
        CHECK(c.top_timeout);
        CHECK(c.top_at == start + 10s);
        CHECK(uv_loop_alive(loop()) == 0); // every deadline entry was removed
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "16.1 an outermost deadline that passes first cancels all 10,000 nested scopes; "
        "only the outermost expires and converts") {
        nest_ctx c;
        const deadline start = now();
        c.outer_at = start + 5s;
        c.inner_at = start + 1h;
        run(nest_top(c));
        CHECK(c.entered == c.depth);
        CHECK(c.innermost_deadline == start + 5s); // the effective deadline is the minimum (5.11)
        CHECK(c.cancelled_seen == c.depth);
        CHECK(c.expired_in_body == 1);
        CHECK(c.timeout_errors == 1);
        CHECK(c.timeout_level == 0);
        CHECK(c.outer_caught);
        CHECK(c.passed_caught == 0);
        CHECK(c.top_at == start + 5s);
        CHECK(uv_loop_alive(loop()) == 0);
    }

    TEST_CASE(
        "16.1 4.8 an outer cancellation reaches the innermost of 10,000 nested timeout scopes "
        "and passes through every one of them") {
        loop_fixture f{virtual_without_autojump()};
        nest_ctx c;
        const deadline start = f.now();
        c.outer_at = start + 1h;
        c.inner_at = start + 1h;
        auto h = f.rt->spawn(nest_top(c));
        // Entering 10,000 lazy levels may bounce through the run queue (bounded native stack); the
        // bound is generous but finite.
        iterate(
            f.loop(), [&] { return c.innermost_parked; }, static_cast<int>(c.depth));
        REQUIRE(c.innermost_parked);
        CHECK(c.entered == c.depth);

        CHECK(h.cancel("from outside"));
        iterate(
            f.loop(), [&] { return h.done(); }, static_cast<int>(c.depth));
        REQUIRE(h.done());
        CHECK(h.cancelled());
        CHECK(c.cancelled_seen == c.depth);
        CHECK(c.expired_in_body == 0);
        CHECK(c.timeout_errors == 0);
        CHECK(c.passed_caught == 0);
        CHECK(f.now() == start);
        CHECK(uv_loop_alive(f.loop()) == 0); // 10,000 deadline entries removed on exit
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "16.1 4.1 10,000 nested timeout scopes entered and left normally, with "
                      "cancellation points inside, leave no deadline behind") {
        nest_ctx c;
        const deadline start = now();
        c.outer_at = start + 10s;
        c.inner_at = start + 10s;
        c.park = false;
        c.yields = 100;
        run(nest_top(c));
        CHECK(c.result == 1);
        CHECK(c.entered == c.depth);
        CHECK(c.cancelled_seen == 0);
        CHECK(c.expired_at_exit == 0);
        CHECK(c.timeout_errors == 0);
        CHECK(now() == start); // nothing jumped to the removed deadlines
        CHECK(uv_loop_alive(loop()) == 0);
    }

    // ---------------------------------------------------------------------------------------------
    // 16.3: deep awaits

    namespace {

    struct chain_ctx {
        std::vector<std::uint8_t> deliveries;
        std::size_t parked = 0;
    };

    task<void> chain_bottom(chain_ctx& c, std::size_t i) {
        ++c.parked;
        try {
            co_await sleep_until(never);
        } catch (const cancelled_error&) {
            ++c.deliveries[i];
            throw;
        }
    }

    task<void> chain_link(chain_ctx& c, task_handle<> next, std::size_t i) {
        ++c.parked;
        try {
            co_await next;
        } catch (const cancelled_error&) {
            ++c.deliveries[i];
            throw;
        }
    }

    } // namespace

    TEST_CASE_FIXTURE(
        loop_fixture,
        "16.3 2.6 a 10,000-deep chain of tasks awaiting task handles, cancelled from the "
        "top, unwinds within about one loop turn per link") {
        constexpr std::size_t n = 10'000;
        chain_ctx c;
        c.deliveries.assign(n, 0);
        const std::ptrdiff_t frames_before = detail::live_frame_counter().load();
        {
            std::vector<task_handle<>> hs(n);
            hs[n - 1] = rt->spawn(chain_bottom(c, n - 1));
            for (std::size_t i = n - 1; i-- > 0;) {
                hs[i] = rt->spawn(chain_link(c, hs[i + 1], i));
            }
            iterate(
                loop(), [&] { return c.parked == n; }, 100);
            REQUIRE(c.parked == n);

            CHECK(hs[0].cancel("top")); // forwarding carries it down to the bottom (2.6)
            const int turns = iterate(
                loop(), [&] { return rt->task_count() == 0; }, static_cast<int>(n) + 10);
            CHECK(rt->task_count() == 0);
            CHECK(turns <= static_cast<int>(n) + 2);
            CHECK(count_equal(c.deliveries, 1) == n);
            CHECK(count_cancelled(hs) == n);
        }
        CHECK(detail::live_frame_counter().load() == frames_before);
    }

    namespace {

    task<std::size_t> lazy_depth(std::size_t n) {
        if (n == 0) {
            co_return 0;
        }
        co_return 1 + co_await lazy_depth(n - 1);
    }

    struct lazy_ctx {
        bool parked = false;
        std::size_t unwound = 0;
    };

    task<std::size_t> lazy_park(std::size_t n, lazy_ctx& c) {
        if (n == 0) {
            c.parked = true;
            co_await sleep_until(never);
            co_return 0;
        }
        try {
            co_return 1 + co_await lazy_park(n - 1, c);
        } catch (const cancelled_error&) {
            ++c.unwound;
            throw;
        }
    }

    } // namespace

    TEST_CASE_FIXTURE(
        loop_fixture,
        "16.3 a 100,000-deep chain of directly awaited lazy tasks completes, and unwinds "
        "when cancelled, without growing the native stack") {
        constexpr std::size_t depth = 100'000;
        CHECK(run(lazy_depth(depth)) == depth);

        lazy_ctx c;
        auto h = rt->spawn(lazy_park(depth, c));
        run_until([&] { return c.parked; });
        CHECK(h.cancel());
        run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(c.unwound == depth);
    }

} // TEST_SUITE
