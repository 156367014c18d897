// SPDX-License-Identifier: MIT
// Helpers shared by the tests of sleeps, shields, timeouts and cancellation points
// (sleep_test.cpp, shield_test.cpp, cancel_delivery_test.cpp, timeout_test.cpp,
// timeout_scope_test.cpp): outcomes and scope flags turned into strings, and a recorder of what
// leaves a timeout scope.
#pragma once

#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "timed_tasks.hpp"

namespace uvasync::test {

using namespace std::chrono_literals;

inline std::string plus(long long ms) {
    return "+" + std::to_string(ms);
}

/// "+N": loop-clock milliseconds since `t0`.
inline std::string since(deadline t0) {
    return plus(ms_since(t0));
}

inline std::string flags(const timeout_scope& s) {
    return std::string("expired=") + (s.expired() ? "1" : "0") +
           " caught=" + (s.caught() ? "1" : "0");
}

[[nodiscard]] inline task<int> value_now(int v) {
    co_return v;
}

[[nodiscard]] inline task<std::unique_ptr<int>> ptr_after(loop_clock::duration d, int v) {
    co_await sleep(d);
    co_return std::make_unique<int>(v);
}

/// A timeout body that publishes the scope it runs in to `slot`, then runs `make()` in it: for
/// a test that reads the scope's flags after the scope ended.
template <class Make>
auto publishing_scope(timeout_scope*& slot, Make make) {
    return [&slot, make](timeout_scope& s) {
        slot = &s;
        return make();
    };
}

/// Runs `body(tr)` (a task that records what happens in `tr`) to completion on `f`, with a
/// fresh `tr`, and returns what it recorded.
template <class Body>
std::vector<std::string> run_traced(loop_fixture& f, Body body) {
    std::vector<std::string> tr;
    f.run(body(tr));
    return tr;
}

/// Sleeps for an hour. When cancelled meanwhile, records "<what> at +N" (since `t0`) in `tr`
/// and returns the delivery, for the caller to rethrow after a cleanup that awaits (C++ forbids
/// `co_await` in a handler); null if the hour passed.
[[nodiscard]] inline task<std::exception_ptr>
sleep_until_cancelled(deadline t0, std::vector<std::string>& tr, std::string what = "cancelled") {
    std::exception_ptr delivery;
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        delivery = std::current_exception();
        tr.push_back(what + " at " + since(t0));
    }
    co_return delivery;
}

/// Sleeps for an hour, swallows one delivery and returns `v`.
[[nodiscard]] inline task<int> swallow_once_then_return(int v) {
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
    }
    co_return v;
}

[[nodiscard]] inline task<void> record(std::vector<std::string>& tr, std::string what) {
    tr.push_back(std::move(what));
    co_return;
}

/// What awaiting `h` gives: "value[ N]", "cancelled(message)" or "error(what)".
template <class T>
[[nodiscard]] task<std::string> outcome_of(task_handle<T> h) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await h;
            co_return "value";
        } else {
            const T v = co_await h;
            co_return "value " + std::to_string(v);
        }
    } catch (const cancelled_error& e) {
        co_return "cancelled(" + std::string(e.message()) + ")";
    } catch (const std::exception& e) {
        co_return std::string("error(") + e.what() + ")";
    }
}

inline int count_handles(uv_loop_t* loop) {
    int n = 0;
    uv_walk(
        loop, [](uv_handle_t*, void* arg) { ++*static_cast<int*>(arg); }, &n);
    return n;
}

/// What left one timeout scope, and the scope's flags at that moment.
struct scope_record {
    std::string escaped;
    bool expired = false;
    bool caught = false;
    long long at = -1; // ms since the test's t0
};

/// Awaits `aw` (a named timeout awaiter) and records what came out of it; rethrows anything but
/// a value when `rethrow` is set, else swallows a timeout_error and rethrows a cancelled_error.
template <class Aw>
[[nodiscard]] task<void> await_and_record(Aw& aw, timeout_scope*& sp, scope_record& rec,
                                          deadline t0, bool rethrow) {
    std::exception_ptr ep;
    bool is_timeout = false;
    try {
        co_await aw;
        rec.escaped = "value";
    } catch (const timeout_error&) {
        rec.escaped = "timeout_error";
        ep = std::current_exception();
        is_timeout = true;
    } catch (const cancelled_error& e) {
        rec.escaped = "cancelled_error(" + std::string(e.message()) + ")";
        ep = std::current_exception();
    } catch (const std::exception& e) {
        rec.escaped = std::string("error(") + e.what() + ")";
        ep = std::current_exception();
    }
    rec.at = ms_since(t0);
    if (sp != nullptr) {
        rec.expired = sp->expired();
        rec.caught = sp->caught();
    }
    if (ep && (rethrow || !is_timeout)) {
        std::rethrow_exception(ep);
    }
}

// The bodies below are named function objects, not lambdas: GCC 12 gives the coroutine frame
// of a lambda in a header function no linkage and warns (-Wsubobject-linkage).

inline task<void> nested_timeouts(std::size_t level, const std::vector<loop_clock::duration>& ds,
                                  std::vector<scope_record>& rec, deadline t0);

/// The body of one level of `nested_timeouts`: publishes its scope, then runs the next level.
struct nested_timeouts_body {
    timeout_scope*& sp;
    std::size_t level;
    const std::vector<loop_clock::duration>& ds;
    std::vector<scope_record>& rec;
    deadline t0;

    task<void> operator()(timeout_scope& s) const {
        sp = &s;
        return nested_timeouts(level + 1, ds, rec, t0);
    }
};

/// Nested timeout scopes, one per entry of `ds` (outermost first), around `sleep(1h)`. Records
/// what left each level; the outermost level swallows a timeout_error.
[[nodiscard]] inline task<void> nested_timeouts(std::size_t level,
                                                const std::vector<loop_clock::duration>& ds,
                                                std::vector<scope_record>& rec, deadline t0) {
    if (level == ds.size()) {
        co_await sleep(1h);
        co_return;
    }
    timeout_scope* sp = nullptr;
    const nested_timeouts_body body{sp, level, ds, rec, t0};
    auto aw = timeout(ds[level], body);
    co_await await_and_record(aw, sp, rec[level], t0, level > 0);
}

/// A body that publishes its scope and sleeps for an hour.
struct sleep_an_hour_body {
    timeout_scope*& sp;

    task<void> operator()(timeout_scope& s) const {
        sp = &s;
        return void_after(1h);
    }
};

/// One timeout scope of `d` around `sleep(1h)`; records what left it and rethrows
/// cancelled_error (a timeout_error is swallowed).
[[nodiscard]] inline task<void> timeout_around_sleep(loop_clock::duration d, scope_record& rec) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    const sleep_an_hour_body body{sp};
    auto aw = timeout(d, body);
    co_await await_and_record(aw, sp, rec, t0, false);
}

/// A timeout scope published by the body that runs in it, for another task to act on.
struct scope_slot {
    timeout_scope* s = nullptr;
};

/// Cancels the scope in `slot` after `d`.
[[nodiscard]] inline task<void> cancel_slot_after(loop_clock::duration d, scope_slot& slot) {
    co_await sleep(d);
    slot.s->cancel();
}

} // namespace uvasync::test
