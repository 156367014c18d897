// SPDX-License-Identifier: MIT
// Callables and tasks with owning captures passed inline, inside the co_await expression, to
// every public entry point that takes a callable or a task (issue 12, item 1).
//
// Every entry point below is a plain function returning an awaitable that owns the callable.
// Each capture owns a heap string, a shared_ptr and a `counted`: a double destruction shows as
// a negative live count here (checked by loop_fixture), and as "attempting double-free" under
// ASan.
//
// g++ 12 destroys a lambda or aggregate temporary written anywhere inside a co_await
// expression twice, whatever it is passed to: a coroutine, or a plain function taking it by
// forwarding reference, by const reference or by value (docs/decisions/0023). No signature of
// the callee avoids it, so on g++ 12 these tests name each callable first (ARG), which is the
// documented rule there; with clang (the clang passes of scripts/test) they pass it inline.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "counted.hpp"
#include "loop_fixture.hpp"

using namespace std::chrono_literals;
using namespace uvasync;
using uvasync::test::counted;
using uvasync::test::loop_fixture;

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#define NAME_FIRST(name, ...) auto name = __VA_ARGS__;
#define ARG(name, ...) std::move(name)
#else
#define NAME_FIRST(name, ...)
#define ARG(name, ...) __VA_ARGS__
#endif

// The scope body every timeout-like entry point gets: suspends, then reads its captures.
#define SCOPE_BODY                                                                                 \
    [o = owner{}](timeout_scope&) -> task<int> {                                                   \
        co_await sleep(1ms);                                                                       \
        co_return o.value();                                                                       \
    }

namespace {

/// What each lambda captures by value: owning members with non-trivial destructors.
struct owner {
    std::string text = std::string(64, 'x'); // heap-allocated, beyond the small buffer
    std::shared_ptr<int> shared = std::make_shared<int>(7);
    counted c;

    [[nodiscard]] int value() const { return static_cast<int>(text.size()) + *shared; } // 71
};

/// An aggregate with an owning member, passed as a whole.
struct aggregate_body {
    owner o;

    task<int> operator()(timeout_scope& /*scope*/) const {
        co_await sleep(1ms);
        co_return o.value();
    }
};

task<int> value_after_sleep(int v) {
    co_await sleep(1ms);
    co_return v;
}

task<std::string> echo_after_sleep(std::string s) {
    co_await sleep(1ms);
    co_return s;
}

task<int> timeouts() {
    int sum = 0;
    NAME_FIRST(b1, SCOPE_BODY)
    sum += co_await timeout(1s, ARG(b1, SCOPE_BODY));
    NAME_FIRST(b2, SCOPE_BODY)
    sum += co_await timeout_at(loop_clock::now() + 1s, ARG(b2, SCOPE_BODY));
    NAME_FIRST(b3, SCOPE_BODY)
    sum += (co_await move_on_after(1s, ARG(b3, SCOPE_BODY))).value_or(0);
    NAME_FIRST(b4, SCOPE_BODY)
    sum += (co_await move_on_at(loop_clock::now() + 1s, ARG(b4, SCOPE_BODY))).value_or(0);
    NAME_FIRST(b5, aggregate_body{})
    sum += co_await timeout(1s, ARG(b5, aggregate_body{}));
    // A task made by a coroutine taking an owning argument (not an aggregate: safe inline).
    sum += static_cast<int>((co_await timeout(1s, echo_after_sleep(std::string(64, 'y')))).size());
    // The scope expires while the owning body is suspended.
    NAME_FIRST(b6, [o = owner{}](timeout_scope&) -> task<int> {
        co_await sleep(1h);
        co_return o.value();
    })
    auto c = co_await move_on_after(1ms, ARG(b6, [o = owner{}](timeout_scope&) -> task<int> {
                                        co_await sleep(1h);
                                        co_return o.value();
                                    }));
    CHECK_FALSE(c.has_value());
    co_return sum;
}

#define GROUP_BODY                                                                                 \
    [o = owner{}](task_group& g) -> task<int> {                                                    \
        auto h = g.spawn(value_after_sleep(1));                                                    \
        co_await sleep(1ms);                                                                       \
        co_return o.value() + co_await h;                                                          \
    }

task<int> groups() {
    NAME_FIRST(b1, GROUP_BODY)
    int sum = co_await task_group::run(ARG(b1, GROUP_BODY));
    NAME_FIRST(b2, [o = owner{}](task_group& g) -> task<void> {
        g.spawn(echo_after_sleep(o.text));
        co_return;
    })
    co_await task_group::run(ARG(b2, [o = owner{}](task_group& g) -> task<void> {
        g.spawn(echo_after_sleep(o.text));
        co_return;
    }));
    co_return sum;
}

task<int> shields_and_waits() {
    int sum = 0;
    NAME_FIRST(b1, SCOPE_BODY)
    sum += co_await shielded(timeout(1s, ARG(b1, SCOPE_BODY)));
    NAME_FIRST(b2, SCOPE_BODY)
    sum += co_await shield(timeout(1s, ARG(b2, SCOPE_BODY)));
    NAME_FIRST(b3, SCOPE_BODY)
    sum += co_await wait_for(timeout(1s, ARG(b3, SCOPE_BODY)), 1s);
    sum += static_cast<int>((co_await shielded(echo_after_sleep(std::string(64, 'z')))).size());
    co_return sum;
}

#define COMPLETIONS_BODY                                                                           \
    [o = owner{}](completions<int>& done) -> task<int> {                                           \
        int n = 0;                                                                                 \
        while (auto c = co_await done.next()) {                                                    \
            n += c->result.value();                                                                \
        }                                                                                          \
        co_return n + o.value();                                                                   \
    }

task<int> gathers() {
    NAME_FIRST(b1, SCOPE_BODY)
    auto [x, y] =
        co_await gather(echo_after_sleep(std::string(64, 'a')), timeout(1s, ARG(b1, SCOPE_BODY)));
    auto any = co_await wait_any(echo_after_sleep(std::string(64, 'b')),
                                 echo_after_sleep(std::string(65, 'c')));
    std::vector<task<int>> tasks;
    tasks.push_back(value_after_sleep(1));
    tasks.push_back(value_after_sleep(2));
    NAME_FIRST(b2, COMPLETIONS_BODY)
    int completed = co_await as_completed(std::move(tasks), ARG(b2, COMPLETIONS_BODY));
    co_return static_cast<int>(x.size()) + y + static_cast<int>(any.result.value().size()) +
        completed;
}

task<int> sync_and_tokens() {
    mutex m;
    condition cv(m);
    auto g = co_await m.lock();
    // The predicate is true at once: no suspension, but the awaitable still owns the capture.
    NAME_FIRST(pred, [o = owner{}] { return o.value() == 71; })
    co_await cv.wait(g, ARG(pred, [o = owner{}] { return o.value() == 71; }));
    cancel_source source;
    NAME_FIRST(b1, SCOPE_BODY)
    auto v = co_await run_until_cancelled(source.token(), timeout(1s, ARG(b1, SCOPE_BODY)));
    co_return v.value_or(0);
}

task<int> spawned() {
    auto h = spawn(echo_after_sleep(std::string(64, 'q')));
    co_return static_cast<int>((co_await h).size());
}

TEST_CASE("timeout, timeout_at, move_on_after, move_on_at own an inline owning callable") {
    loop_fixture f;
    CHECK(f.run(timeouts()) == 71 * 5 + 64);
}

TEST_CASE("task_group::run owns an inline owning callable") {
    loop_fixture f;
    CHECK(f.run(groups()) == 72);
}

TEST_CASE("shielded, shield and wait_for own an inline owning awaitable") {
    loop_fixture f;
    CHECK(f.run(shields_and_waits()) == 71 * 3 + 64);
}

TEST_CASE("gather, wait_any and as_completed own inline owning tasks and callables") {
    loop_fixture f;
    CHECK(f.run(gathers()) == 64 + 71 + 64 + (1 + 2 + 71));
}

TEST_CASE("condition::wait and run_until_cancelled own an inline owning callable") {
    loop_fixture f;
    CHECK(f.run(sync_and_tokens()) == 71);
}

TEST_CASE("spawn takes an inline task with an owning argument") {
    loop_fixture f;
    CHECK(f.run(spawned()) == 64);
}

} // namespace
