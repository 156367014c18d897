// SPDX-License-Identifier: MIT
// Cancellation points, delivery and ownership (SEMANTICS 4) and timeout scopes (SEMANTICS 5).
//
// Every test runs on the fixture's virtual clock (autojump on unless a test needs to make
// several events fall into one iteration; those use `loop_fixture::manual_clock()` and `advance`),
// so the times asserted below are exact loop-clock differences.
//
// C++ forbids `co_await` inside a handler, so "cleanup that awaits in a catch block" is written
// the usual C++20 way: the handler keeps the exception_ptr, the cleanup awaits after the try
// statement, then the exception is rethrown.

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
#include "string_makers.hpp"
#include "timed_tasks.hpp"

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;
using trace = std::vector<std::string>;

// ---------------------------------------------------------------------------------------------
// Helpers

std::string plus(long long ms) {
    return "+" + std::to_string(ms);
}

/// "+N": loop-clock milliseconds since `t0`.
std::string since(deadline t0) {
    return plus(ms_since(t0));
}

std::string flags(const timeout_scope& s) {
    return std::string("expired=") + (s.expired() ? "1" : "0") +
           " caught=" + (s.caught() ? "1" : "0");
}

task<int> value_now(int v) {
    co_return v;
}

task<std::unique_ptr<int>> ptr_after(loop_clock::duration d, int v) {
    co_await sleep(d);
    co_return std::make_unique<int>(v);
}

/// Sleeps for an hour, swallows one delivery and returns `v`.
task<int> swallow_once_then_return(int v) {
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
    }
    co_return v;
}

task<void> record(trace& tr, std::string what) {
    tr.push_back(std::move(what));
    co_return;
}

/// What awaiting `h` gives: "value[ N]", "cancelled(message)" or "error(what)".
template <class T>
task<std::string> outcome_of(task_handle<T> h) {
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

int count_handles(uv_loop_t* loop) {
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
task<void> await_and_record(Aw& aw, timeout_scope*& sp, scope_record& rec, deadline t0,
                            bool rethrow) {
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

/// Nested timeout scopes, one per entry of `ds` (outermost first), around `sleep(1h)`. Records
/// what left each level; the outermost level swallows a timeout_error.
task<void> nested_timeouts(std::size_t level, const std::vector<loop_clock::duration>& ds,
                           std::vector<scope_record>& rec, deadline t0) {
    if (level == ds.size()) {
        co_await sleep(1h);
        co_return;
    }
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return nested_timeouts(level + 1, ds, rec, t0);
    };
    auto aw = timeout(ds[level], body);
    co_await await_and_record(aw, sp, rec[level], t0, level > 0);
}

/// One timeout scope of `d` around `sleep(1h)`; records what left it and rethrows
/// cancelled_error (a timeout_error is swallowed).
task<void> timeout_around_sleep(loop_clock::duration d, scope_record& rec) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return void_after(1h);
    };
    auto aw = timeout(d, body);
    co_await await_and_record(aw, sp, rec, t0, false);
}

// =============================================================================================
// 4.1 The cancellation-point protocol

task<void> available_results_in_expired_scope(timeout_scope& s, task_handle<int>& finished,
                                              trace& tr) {
    tr.push_back(s.expired() ? "expired at entry" : "not expired at entry");
    const int a = co_await finished;
    tr.push_back("finished handle gave " + std::to_string(a));
    const int b = co_await value_now(8);
    tr.push_back("lazy task gave " + std::to_string(b));
    co_await checkpoint();
    tr.push_back("checkpoint passed");
}

task<void> await_available_results(task_handle<int>& finished, trace& tr) {
    auto body = [&](timeout_scope& s) {
        return available_results_in_expired_scope(s, finished, tr);
    };
    try {
        co_await timeout(0ms, body);
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
}

task<void> sleep_in_cancelled_scope(trace& tr) {
    try {
        co_await sleep(1h);
        tr.push_back("A: slept");
    } catch (const cancelled_error&) {
        tr.push_back("A: sleep raised");
        throw;
    }
}

task<void> first_point_in_expired_scope(trace& tr) {
    const deadline t0 = loop_clock::now();
    const auto r = co_await move_on_after(0ms, sleep_in_cancelled_scope(tr));
    tr.push_back(r ? std::string("A: value") : "A: nullopt at " + since(t0));
}

task<void> join_in_cancelled_scope(task_handle<int>& pending, trace& tr) {
    const auto r = co_await move_on_after(0ms, pending);
    tr.push_back(r ? "joined" : "join raised at once");
    tr.push_back(pending.done() ? "target done" : "target still pending");
}

task<void> yield_then_record(trace& tr, std::string name) {
    try {
        co_await yield();
        tr.push_back(name + ": yield passed");
    } catch (const cancelled_error&) {
        tr.push_back(name + ": yield raised on resumption");
        throw;
    }
}

task<void> yielder_in_scope(timeout_scope*& sp, trace& tr) {
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return yield_then_record(tr, "A");
    };
    const auto r = co_await move_on_after(1h, body);
    tr.push_back(r ? "A: value" : "A: nullopt");
}

task<void> cancel_scope_now(timeout_scope*& sp, trace& tr) {
    sp->cancel();
    tr.push_back("B: cancelled A's scope");
    co_return;
}

// ---------------------------------------------------------------------------------------------
// D-2 / 4.9 Completion wins

struct scope_slot {
    timeout_scope* s = nullptr;
};

task<int> sleep_then_return(timeout_scope& s, scope_slot& slot, trace& tr, bool checkpoint_after) {
    slot.s = &s;
    const deadline t0 = loop_clock::now();
    co_await sleep(10ms);
    tr.push_back("sleep returned at " + since(t0) + (s.expired() ? ", scope expired" : ""));
    if (checkpoint_after) {
        try {
            co_await checkpoint();
            tr.push_back("checkpoint passed");
        } catch (const cancelled_error&) {
            tr.push_back("checkpoint raised");
            throw;
        }
    }
    co_return 42;
}

task<void> completion_vs_expiry(scope_slot& slot, trace& tr, bool checkpoint_after) {
    auto body = [&](timeout_scope& s) { return sleep_then_return(s, slot, tr, checkpoint_after); };
    auto aw = timeout(1h, body);
    try {
        const int v = co_await aw;
        tr.push_back("value " + std::to_string(v));
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
    tr.push_back(flags(*slot.s));
}

// Re-registers A's scope deadline after A's sleep entry, at the same instant: one deadline pass
// then completes the sleep first and expires the scope second, before A runs.
task<void> reschedule_to_same_instant(scope_slot& slot, loop_clock::duration d) {
    slot.s->reschedule(loop_clock::now() + d);
    co_return;
}

task<void> cancel_slot_after(loop_clock::duration d, scope_slot& slot) {
    co_await sleep(d);
    slot.s->cancel();
}

task<int> sleep_then_maybe_checkpoint(trace& tr, bool checkpoint_after) {
    co_await sleep(10ms);
    tr.push_back("sleep returned");
    if (checkpoint_after) {
        co_await checkpoint();
        tr.push_back("checkpoint passed");
    }
    co_return 1;
}

// ---------------------------------------------------------------------------------------------
// 4.2 / D-7 Type of the cancellation

static_assert(!std::is_base_of_v<std::exception, cancelled_error>,
              "D-7: cancelled_error must not derive from std::exception");

static_assert(std::is_base_of_v<std::exception, timeout_error>,
              "D-7: timeout_error derives from std::exception");

task<void> catch_std_exception_around_sleep(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (const std::exception&) {
        tr.push_back("swallowed by catch (const std::exception&)");
    }
}

task<void> catch_all_around_sleep(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (...) {
        tr.push_back("seen by catch (...)");
        throw;
    }
}

task<void> catch_clauses_and_cancellation(trace& tr) {
    try {
        co_await timeout(10ms, catch_std_exception_around_sleep(tr));
        tr.push_back("value");
    } catch (const std::exception& e) {
        tr.push_back(dynamic_cast<const timeout_error*>(&e) != nullptr ? "timeout_error"
                                                                       : "other error");
    }
    try {
        co_await timeout(10ms, catch_all_around_sleep(tr));
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
}

struct derived_cancelled : cancelled_error {
    using cancelled_error::cancelled_error;
};

task<void> rethrow_as_derived(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (const cancelled_error& e) {
        tr.push_back("rethrown as a derived type");
        throw derived_cancelled(e.shared_message(), e.owner());
    }
}

task<void> derived_delivery_in_timeout(trace& tr) {
    try {
        co_await timeout(10ms, rethrow_as_derived(tr));
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    } catch (const cancelled_error&) {
        tr.push_back("cancelled_error passed the scope");
    }
}

task<void> throw_derived_cancelled() {
    co_await yield();
    throw derived_cancelled();
}

// ---------------------------------------------------------------------------------------------
// 4.3 / 4.6 Level triggering: swallowing does not un-cancel

task<int> swallow_at_every_point(task_handle<int>& pending, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("sleep raised at " + since(t0));
    }
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("sleep raised again at " + since(t0));
    }
    try {
        co_await yield();
    } catch (const cancelled_error&) {
        tr.push_back("yield raised");
    }
    try {
        co_await sleep(0ms);
    } catch (const cancelled_error&) {
        tr.push_back("sleep(0) raised");
    }
    try {
        co_await checkpoint();
    } catch (const cancelled_error&) {
        tr.push_back("checkpoint raised");
    }
    try {
        co_await sleep_until(never);
    } catch (const cancelled_error&) {
        tr.push_back("sleep_until(never) raised");
    }
    try {
        co_await pending;
    } catch (const cancelled_error&) {
        tr.push_back("join raised");
    }
    tr.push_back("returning at " + since(t0));
    co_return 5;
}

task<void> level_triggered_in_timeout(task_handle<int>& pending, scope_slot& slot, trace& tr) {
    auto body = [&](timeout_scope& s) {
        slot.s = &s;
        return swallow_at_every_point(pending, tr);
    };
    auto aw = timeout(10ms, body);
    const int v = co_await aw;
    tr.push_back("value " + std::to_string(v));
    tr.push_back(flags(*slot.s));
}

task<int> swallow_then_sleep(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("swallowed");
    }
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("raised again");
        throw;
    }
    co_return 0;
}

task<void> swallow_then_reach_point(trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await timeout(10ms, swallow_then_sleep(tr));
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
}

task<void> after_scope_left(trace& tr) {
    const deadline t0 = loop_clock::now();
    const auto r = co_await move_on_after(10ms, void_after(1h));
    tr.push_back(r ? "value" : "nullopt at " + since(t0));
    co_await sleep(5ms);
    tr.push_back("slept after the scope, at " + since(t0));
    const int v = co_await timeout(10ms, swallow_once_then_return(6));
    tr.push_back("swallowing body returned " + std::to_string(v) + " at " + since(t0));
    co_await yield();
    co_await sleep(5ms);
    tr.push_back("slept again at " + since(t0));
}

task<int> swallow_task_cancellation(trace& tr) {
    const deadline t0 = loop_clock::now();
    for (int i = 0; i < 3; ++i) {
        try {
            co_await sleep(1h);
        } catch (const cancelled_error& e) {
            tr.push_back("delivery " + std::to_string(i) + " (" + std::string(e.message()) +
                         ") at " + since(t0));
        }
    }
    co_return 9;
}

// ---------------------------------------------------------------------------------------------
// 4.4 Catching is for cleanup

task<void> hold_counted_and_sleep(trace& tr) {
    counted guard;
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("catch block ran");
        throw;
    }
}

task<void> destructors_run_at_delivery(std::ptrdiff_t baseline, trace& tr) {
    try {
        co_await timeout(10ms, hold_counted_and_sleep(tr));
    } catch (const timeout_error&) {
        tr.push_back(counted::live() == baseline ? "locals destroyed" : "locals alive");
    }
}

// ---------------------------------------------------------------------------------------------
// 4.7 An error raised during cleanup replaces the cancellation

task<void> cleanup_throws(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("cleanup");
        throw std::runtime_error("cleanup failed");
    }
}

task<void> cleanup_error_in_timeout(scope_record& rec, trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return cleanup_throws(tr);
    };
    auto aw = timeout(10ms, body);
    co_await await_and_record(aw, sp, rec, t0, false); // rethrows the error
}

task<void> cleanup_error_caught_inside(trace& tr) {
    try {
        try {
            co_await sleep(1h);
        } catch (const cancelled_error&) {
            throw std::runtime_error("cleanup failed");
        }
    } catch (const std::runtime_error&) {
        tr.push_back("cleanup error caught inside the scope");
    }
    try {
        co_await yield();
        tr.push_back("yield passed");
    } catch (const cancelled_error&) {
        tr.push_back("yield raised");
        throw;
    }
}

task<void> cleanup_error_caught_inside_timeout(trace& tr) {
    try {
        co_await timeout(10ms, cleanup_error_caught_inside(tr));
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
}

// ---------------------------------------------------------------------------------------------
// 4.8 / D-3 Ownership

task<void> self_cancel_then_timeout(task_handle<void>& self, loop_clock::duration d,
                                    scope_record& rec) {
    self.cancel("earlier");
    co_await timeout_around_sleep(d, rec);
}

task<void> self_cancel_then_move_on(task_handle<void>& self, trace& tr) {
    self.cancel("earlier");
    try {
        const auto r = co_await move_on_after(0ms, void_after(1s));
        tr.push_back(r ? "value" : "nullopt");
    } catch (const cancelled_error& e) {
        tr.push_back("cancelled_error(" + std::string(e.message()) + ")");
        throw;
    }
}

task<void> swallow_then_timeout(scope_record& rec, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("swallowed at " + since(t0));
    }
    co_await timeout_around_sleep(10ms, rec);
}

task<void> goodbye_timeout_in_task_cleanup(trace& tr) {
    const deadline t0 = loop_clock::now();
    std::exception_ptr delivery;
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        delivery = std::current_exception();
        tr.push_back("cancelled at " + since(t0));
    }
    try {
        co_await shielded(timeout(500ms, void_after(1h)));
        tr.push_back("goodbye done");
    } catch (const timeout_error&) {
        tr.push_back("shielded timeout converted its own expiry at " + since(t0));
    }
    try {
        co_await checkpoint();
        tr.push_back("checkpoint passed");
    } catch (const cancelled_error& e) {
        tr.push_back("outer cancellation raised at " + since(t0) + " (" + std::string(e.message()) +
                     ")");
    }
    std::rethrow_exception(delivery);
}

task<void> inner_cleanup_outlives_outer(trace& tr, deadline t0) {
    std::exception_ptr delivery;
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        delivery = std::current_exception();
        tr.push_back("inner delivery at " + since(t0));
    }
    co_await shielded(sleep(200ms)); // the outer deadline (+100) passes meanwhile
    tr.push_back("cleanup done at " + since(t0));
    std::rethrow_exception(delivery);
}

task<void> owner_fixed_middle(timeout_scope& outer, trace& tr, deadline t0) {
    timeout_scope* inner = nullptr;
    auto ib = [&](timeout_scope& s) {
        inner = &s;
        return inner_cleanup_outlives_outer(tr, t0);
    };
    auto iaw = timeout(10ms, ib);
    scope_record rec;
    co_await await_and_record(iaw, inner, rec, t0, false);
    tr.push_back("inner: " + rec.escaped + (rec.caught ? " caught=1" : " caught=0"));
    tr.push_back(outer.expired() ? "outer expired" : "outer not expired");
    try {
        co_await checkpoint();
        tr.push_back("checkpoint passed");
    } catch (const cancelled_error&) {
        tr.push_back("checkpoint raised at " + since(t0));
        throw;
    }
}

task<void> owner_fixed_at_raise(trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* outer = nullptr;
    auto ob = [&](timeout_scope& s) {
        outer = &s;
        return owner_fixed_middle(s, tr, t0);
    };
    auto aw = timeout(100ms, ob);
    scope_record rec;
    co_await await_and_record(aw, outer, rec, t0, false);
    tr.push_back("outer: " + rec.escaped + " at " + plus(rec.at) +
                 (rec.caught ? " caught=1" : " caught=0"));
}

task<void> cancelled_elsewhere() {
    co_await sleep(1h);
}

task<void> foreign_cancellation_in_timeout(task_handle<void>& other, trace& tr) {
    try {
        co_await timeout(1h, other);
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    } catch (const cancelled_error& e) {
        tr.push_back("cancelled_error owner=" + std::to_string(e.owner()));
    }
    co_await sleep(1ms); // none of our scopes is cancelled: this is no cancellation
    tr.push_back("kept running");
}

// ---------------------------------------------------------------------------------------------
// 4.10 A wait that cannot be aborted delivers the real result

task<int> shielded_work(loop_clock::duration d, int v) {
    co_await shielded(sleep(d));
    co_return v;
}

task<void> join_then_checkpoint(task_handle<int>& child, trace& tr, deadline t0) {
    const int v = co_await child;
    tr.push_back("joined " + std::to_string(v) + " at " + since(t0));
    co_await checkpoint();
    tr.push_back("checkpoint passed");
}

task<void> wait_on_unabortable(task_handle<int>& child, trace& tr) {
    const deadline t0 = loop_clock::now();
    auto body = [&](timeout_scope&) { return join_then_checkpoint(child, tr, t0); };
    try {
        co_await timeout(10ms, body);
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
}

// ---------------------------------------------------------------------------------------------
// 4.11 / D-13 Producers never get an error

task<void> wait_future_in_timeout(future<int> f, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        const int v = co_await timeout(10ms, f);
        tr.push_back("A got " + std::to_string(v));
    } catch (const timeout_error&) {
        tr.push_back("A: timeout_error at " + since(t0));
    }
}

task<void> wait_future(future<int> f, std::string name, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        const int v = co_await f;
        tr.push_back(name + " got " + std::to_string(v) + " at " + since(t0));
    } catch (const cancelled_error& e) {
        tr.push_back(name + " cancelled at " + since(t0) + " (" + std::string(e.message()) + ")");
        throw;
    }
}

task<void> produce_after(loop_clock::duration d, promise<int>& p, trace& tr) {
    co_await sleep(d);
    tr.push_back(std::string("set_value returned ") + (p.set_value(5) ? "true" : "false"));
    tr.push_back(std::string("second set_value returned ") + (p.set_value(6) ? "true" : "false"));
}

// =============================================================================================
// 5 Timeout scope: results of timeout / timeout_at / move_on_after / move_on_at

static_assert(std::is_same_v<decltype(timeout(1ms, value_now(1)))::result_type, int>);

static_assert(std::is_same_v<decltype(timeout_at(never, value_now(1)))::result_type, int>);

static_assert(
    std::is_same_v<decltype(move_on_after(1ms, value_now(1)))::result_type, std::optional<int>>);

static_assert(
    std::is_same_v<decltype(move_on_at(never, value_now(1)))::result_type, std::optional<int>>);

static_assert(std::is_same_v<decltype(timeout(1ms, void_after(1ms)))::result_type, void>);

static_assert(std::is_same_v<decltype(move_on_after(1ms, void_after(1ms)))::result_type,
                             std::optional<unit>>);

task<void> all_result_forms(trace& tr) {
    const deadline t0 = loop_clock::now();
    const int a = co_await timeout(10ms, value_after(5ms, 1));
    tr.push_back("timeout value " + std::to_string(a) + " at " + since(t0));
    co_await timeout(10ms, void_after(5ms));
    tr.push_back("timeout void at " + since(t0));
    co_await timeout(10ms, sleep(5ms));
    tr.push_back("timeout around a sleep at " + since(t0));
    const std::unique_ptr<int> p = co_await timeout(10ms, ptr_after(5ms, 3));
    tr.push_back("timeout move-only " + std::to_string(*p) + " at " + since(t0));
    try {
        co_await timeout(10ms, value_after(1h, 0));
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
    const int b = co_await timeout_at(loop_clock::now() + 10ms, value_after(5ms, 4));
    tr.push_back("timeout_at value " + std::to_string(b) + " at " + since(t0));
    try {
        co_await timeout_at(loop_clock::now() + 10ms, void_after(1h));
    } catch (const timeout_error&) {
        tr.push_back("timeout_at timeout_error at " + since(t0));
    }
    const std::optional<int> c = co_await move_on_after(10ms, value_after(5ms, 5));
    tr.push_back("move_on_after " + (c ? std::to_string(*c) : "nullopt") + " at " + since(t0));
    const std::optional<int> d = co_await move_on_after(10ms, value_after(1h, 6));
    tr.push_back("move_on_after " + (d ? std::to_string(*d) : "nullopt") + " at " + since(t0));
    const std::optional<unit> e = co_await move_on_after(10ms, void_after(5ms));
    tr.push_back(std::string("move_on_after void ") + (e ? "unit" : "nullopt") + " at " +
                 since(t0));
    const std::optional<unit> g = co_await move_on_after(10ms, void_after(1h));
    tr.push_back(std::string("move_on_after void ") + (g ? "unit" : "nullopt") + " at " +
                 since(t0));
    const std::optional<int> h = co_await move_on_at(loop_clock::now() + 10ms, value_after(5ms, 7));
    tr.push_back("move_on_at " + (h ? std::to_string(*h) : "nullopt") + " at " + since(t0));
    const std::optional<int> i = co_await move_on_at(loop_clock::now() + 10ms, value_after(1h, 8));
    tr.push_back("move_on_at " + (i ? std::to_string(*i) : "nullopt") + " at " + since(t0));
    const std::optional<std::unique_ptr<int>> j = co_await move_on_after(10ms, ptr_after(1ms, 9));
    tr.push_back("move_on_after move-only " + (j ? std::to_string(**j) : "nullopt") + " at " +
                 since(t0));
    const int k = co_await timeout_at(never, value_after(50ms, 10));
    tr.push_back("timeout_at(never) " + std::to_string(k) + " at " + since(t0));
}

task<void> timeout_around_handle(task_handle<int>& h, trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await timeout(10ms, h);
        tr.push_back("value");
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
}

// ---------------------------------------------------------------------------------------------
// 5 API: when(), expired(), caught()

task<void> scope_api_body(timeout_scope& s, deadline t0, trace& tr) {
    tr.push_back("entry: when " + plus((s.when() - t0).count()) + " " + flags(s));
    co_await sleep(5ms);
    tr.push_back("at " + since(t0) + ": " + flags(s));
    try {
        co_await sleep(1h);
    } catch (const cancelled_error& e) {
        tr.push_back("delivery at " + since(t0) + " message='" + std::string(e.message()) + "' " +
                     flags(s));
        throw;
    }
}

task<void> scope_api(trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return scope_api_body(s, t0, tr);
    };
    auto aw = timeout(10ms, body);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
    tr.push_back("after exit: when " + plus((sp->when() - t0).count()) + " " + flags(*sp));
}

task<void> when_of_never(trace& tr) {
    auto body = [&](timeout_scope& s) {
        tr.push_back(s.when() == never ? "when never" : "when finite");
        return void_after(20ms);
    };
    co_await timeout_at(never, body);
    tr.push_back("done");
}

// ---------------------------------------------------------------------------------------------
// 5.10 reschedule

task<void> reschedule_body(timeout_scope& s, deadline t0, loop_clock::duration first_sleep,
                           deadline to, trace& tr) {
    co_await sleep(first_sleep);
    s.reschedule(to);
    tr.push_back("rescheduled at " + since(t0) + ": when " +
                 (s.when() == never ? std::string("never") : plus((s.when() - t0).count())) +
                 (s.expired() ? " expired" : ""));
    try {
        co_await sleep(1h);
        tr.push_back("slept until " + since(t0));
    } catch (const cancelled_error&) {
        tr.push_back("raised at " + since(t0));
        throw;
    }
}

/// Enters timeout(initial), sleeps `first_sleep`, reschedules to t0 + `to_offset` (or `never`).
task<void> reschedule_case(loop_clock::duration initial, loop_clock::duration first_sleep,
                           std::optional<loop_clock::duration> to_offset, trace& tr) {
    const deadline t0 = loop_clock::now();
    const deadline to = to_offset ? t0 + *to_offset : never;
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return reschedule_body(s, t0, first_sleep, to, tr);
    };
    auto aw = timeout(initial, body);
    try {
        co_await aw;
        tr.push_back("value at " + since(t0));
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
    tr.push_back(flags(*sp));
}

task<void> reschedule_relative_body(timeout_scope& s, deadline t0, trace& tr) {
    co_await sleep(5ms);
    s.reschedule(20ms);
    tr.push_back("reschedule(20ms) at +5: when " + plus((s.when() - t0).count()));
    co_await sleep(10ms);
    s.reschedule(-1ms);
    tr.push_back(std::string("reschedule(-1ms) at +15: ") + (s.expired() ? "expired" : "pending"));
    co_await sleep(1h);
}

task<void> reschedule_relative(trace& tr) {
    const deadline t0 = loop_clock::now();
    auto body = [&](timeout_scope& s) { return reschedule_relative_body(s, t0, tr); };
    try {
        co_await timeout(10ms, body);
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
}

task<void> inner_rescheduled_later(deadline t0, trace& tr) {
    auto inner = [&](timeout_scope& s) {
        s.reschedule(loop_clock::now() + 1h);
        tr.push_back("inner when +" + std::to_string((s.when() - t0).count()) + ", effective +" +
                     std::to_string((current_deadline() - t0).count()));
        return void_after(1h);
    };
    co_await timeout(5ms, inner);
}

task<void> inner_cannot_extend_outer(trace& tr) {
    const deadline t0 = loop_clock::now();
    auto outer = [&](timeout_scope&) { return inner_rescheduled_later(t0, tr); };
    try {
        co_await timeout(10ms, outer);
    } catch (const timeout_error&) {
        tr.push_back("outer timeout_error at " + since(t0));
    }
}

task<void> reschedule_after_expiry_body(timeout_scope& s, trace& tr) {
    s.cancel();
    try {
        s.reschedule(loop_clock::now() + 1h);
        tr.push_back("reschedule(deadline) accepted");
    } catch (const invalid_state&) {
        tr.push_back("reschedule(deadline) after expiry: invalid_state");
    }
    try {
        s.reschedule(1h);
        tr.push_back("reschedule(duration) accepted");
    } catch (const invalid_state&) {
        tr.push_back("reschedule(duration) after expiry: invalid_state");
    }
    try {
        s.reschedule(never);
        tr.push_back("reschedule(never) accepted");
    } catch (const invalid_state&) {
        tr.push_back("reschedule(never) after expiry: invalid_state");
    }
    co_return;
}

task<void> reschedule_invalid_states(trace& tr) {
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return reschedule_after_expiry_body(s, tr);
    };
    auto aw = timeout(1h, body);
    co_await aw;
    try {
        sp->reschedule(loop_clock::now() + 1h);
        tr.push_back("reschedule(deadline) after exit accepted");
    } catch (const invalid_state&) {
        tr.push_back("reschedule(deadline) after exit: invalid_state");
    }
    try {
        sp->reschedule(1h);
        tr.push_back("reschedule(duration) after exit accepted");
    } catch (const invalid_state&) {
        tr.push_back("reschedule(duration) after exit: invalid_state");
    }

    // A scope that exited without expiring.
    auto quick = [&](timeout_scope& s) {
        sp = &s;
        return void_after(1ms);
    };
    auto aw2 = timeout(1h, quick);
    co_await aw2;
    try {
        sp->reschedule(loop_clock::now() + 1h);
        tr.push_back("unexpired: reschedule after exit accepted");
    } catch (const invalid_state&) {
        tr.push_back("unexpired: reschedule after exit: invalid_state");
    }
}

// Before entry cannot be reached: a timeout_scope has no public constructor, and a body only
// receives its scope after entry.
static_assert(!std::is_default_constructible_v<timeout_scope>);

static_assert(!std::is_copy_constructible_v<timeout_scope>);

// ---------------------------------------------------------------------------------------------
// 5.4 cancel()

task<void> cancel_inside_body(timeout_scope& s, trace& tr) {
    s.cancel();
    tr.push_back(std::string("after cancel(): ") + flags(s));
    s.cancel(); // expires at most once; a second call changes nothing
    tr.push_back("synchronous code still runs");
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("first point raised");
        throw;
    }
}

task<void> own_cancel(trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return cancel_inside_body(s, tr);
    };
    auto aw = timeout(1h, body);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
    tr.push_back(flags(*sp));
    sp->cancel(); // after exit: no effect, no error
    tr.push_back("after exit: " + flags(*sp));
}

task<void> parked_in_scope(scope_slot& slot, trace& tr) {
    const deadline t0 = loop_clock::now();
    auto body = [&](timeout_scope& s) {
        slot.s = &s;
        return void_after(1h);
    };
    auto aw = timeout(1h, body);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0) + " " + flags(*slot.s));
    }
}

// ---------------------------------------------------------------------------------------------
// 5.1 Entry

task<void> enter_twice(trace& tr) {
    auto aw = timeout(10ms, value_after(1ms, 1));
    tr.push_back("first " + std::to_string(co_await aw));
    try {
        co_await aw;
        tr.push_back("second entry accepted");
    } catch (const invalid_state&) {
        tr.push_back("second entry: invalid_state");
    }
}

// ---------------------------------------------------------------------------------------------
// 5.2 / D-4 The relative deadline starts at entry

task<void> created_early_awaited_later(trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return void_after(1h);
    };
    auto aw = timeout(10ms, body);
    auto plain = move_on_after(10ms, void_after(1h));
    co_await sleep(50ms);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0) + ", when +" +
                     std::to_string((sp->when() - t0).count()));
    }
    const auto r = co_await plain;
    tr.push_back((r ? std::string("value") : std::string("nullopt")) + " at " + since(t0));
}

// ---------------------------------------------------------------------------------------------
// 5.3 / D-5 Deadline already passed at entry

task<void> body_in_due_scope(timeout_scope& s, trace& tr) {
    tr.push_back(std::string("body started, expired=") + (s.expired() ? "1" : "0"));
    tr.push_back(current_token().cancel_requested() ? "scope cancelled" : "scope not cancelled");
    try {
        co_await sleep(1h);
    } catch (const cancelled_error&) {
        tr.push_back("first point raised");
        throw;
    }
}

template <class Make>
task<void> due_at_entry(Make make, trace& tr) {
    const deadline t0 = loop_clock::now();
    auto body = [&](timeout_scope& s) { return body_in_due_scope(s, tr); };
    auto aw = make(body);
    try {
        co_await aw;
    } catch (const timeout_error&) {
        tr.push_back("timeout_error at " + since(t0));
    }
}

task<void> due_scope_without_points(trace& tr) {
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return value_now(3);
    };
    auto aw = timeout(0ms, body);
    const int v = co_await aw;
    tr.push_back("value " + std::to_string(v) + " " + flags(*sp));
    const auto r = co_await move_on_after(0ms, value_now(4));
    tr.push_back(r ? "move_on value " + std::to_string(*r) : std::string("nullopt"));
}

// ---------------------------------------------------------------------------------------------
// 5.8 / 5.9 Exit after expiry

task<int> outlive_deadline_in_shield(loop_clock::duration d, bool fail) {
    co_await shielded(sleep(d));
    if (fail) {
        throw std::logic_error("late failure");
    }
    co_return 4;
}

task<void> exit_after_expiry(bool fail, trace& tr) {
    const deadline t0 = loop_clock::now();
    timeout_scope* sp = nullptr;
    auto body = [&](timeout_scope& s) {
        sp = &s;
        return outlive_deadline_in_shield(20ms, fail);
    };
    auto aw = timeout(10ms, body);
    try {
        const int v = co_await aw;
        tr.push_back("value " + std::to_string(v) + " at " + since(t0));
    } catch (const std::logic_error& e) {
        tr.push_back(std::string("logic_error '") + e.what() + "' at " + since(t0));
    } catch (const timeout_error&) {
        tr.push_back("timeout_error");
    }
    tr.push_back(flags(*sp));
}

// ---------------------------------------------------------------------------------------------
// 5.6 Conversion

task<void> body_sees_cancelled_error(trace& tr) {
    try {
        co_await sleep(1h);
    } catch (const timeout_error&) {
        tr.push_back("body saw timeout_error");
        throw;
    } catch (const cancelled_error&) {
        tr.push_back("body saw cancelled_error");
        throw;
    }
}

task<void> nested_cancelled_error(trace& tr) {
    try {
        co_await timeout(10ms, body_sees_cancelled_error(tr));
    } catch (const timeout_error& e) {
        tr.push_back(std::string("timeout_error: ") + e.what());
        tr.push_back(dynamic_cast<const std::nested_exception*>(&e) != nullptr
                         ? "is a nested_exception"
                         : "is not a nested_exception");
        try {
            std::rethrow_if_nested(e);
            tr.push_back("nothing nested");
        } catch (const cancelled_error& c) {
            tr.push_back("nested cancelled_error, message='" + std::string(c.message()) + "'");
        } catch (...) {
            tr.push_back("something else nested");
        }
    }
}

task<void> task_cancel_through_timeouts(trace& tr) {
    const std::vector<loop_clock::duration> ds{1h, 30min};
    std::vector<scope_record> rec(ds.size());
    const deadline t0 = loop_clock::now();
    std::exception_ptr ep;
    try {
        co_await nested_timeouts(0, ds, rec, t0);
    } catch (const cancelled_error&) {
        ep = std::current_exception();
    }
    for (const auto& r : rec) {
        tr.push_back(r.escaped + " at " + plus(r.at) + (r.expired ? " expired=1" : " expired=0") +
                     (r.caught ? " caught=1" : " caught=0"));
    }
    if (ep) {
        std::rethrow_exception(ep);
    }
}

// ---------------------------------------------------------------------------------------------
// 5.11 current_deadline() and remaining()

task<void> deadline_probe(deadline t0, trace& tr, std::string label) {
    const deadline d = current_deadline();
    tr.push_back(label + ": deadline " +
                 (d == never ? std::string("never") : plus((d - t0).count())) + ", remaining " +
                 (d == never ? std::string("max") : std::to_string(remaining().count())));
    co_return;
}

task<void> deadlines_in_outer(deadline t0, trace& tr) {
    co_await deadline_probe(t0, tr, "outer");
    co_await sleep(30ms);
    co_await deadline_probe(t0, tr, "outer at +30");
    auto shorter = [&](timeout_scope&) { return deadline_probe(t0, tr, "inner 20ms"); };
    co_await timeout(20ms, shorter);
    auto longer = [&](timeout_scope&) { return deadline_probe(t0, tr, "inner 500ms"); };
    co_await timeout(500ms, longer);
    auto none = [&](timeout_scope&) { return deadline_probe(t0, tr, "inner never"); };
    co_await timeout_at(never, none);
    co_await deadline_probe(t0, tr, "outer after inner scopes");
}

task<void> deadlines_nesting(trace& tr) {
    const deadline t0 = loop_clock::now();
    co_await deadline_probe(t0, tr, "no scope");
    tr.push_back(remaining() == loop_clock::duration::max() ? "remaining() is max"
                                                            : "remaining() is finite");
    auto outer = [&](timeout_scope&) { return deadlines_in_outer(t0, tr); };
    co_await timeout(100ms, outer);
    co_await deadline_probe(t0, tr, "after the scope");
}

task<void> deadline_when_cancelled(timeout_scope& s, trace& tr) {
    s.cancel();
    const deadline now = loop_clock::now();
    tr.push_back(current_deadline() <= now ? "deadline <= now" : "deadline in the future");
    tr.push_back("remaining " + std::to_string(remaining().count()));
    auto inner = [&](timeout_scope&) {
        const deadline d = current_deadline();
        tr.push_back(d <= loop_clock::now() ? "inner: deadline <= now"
                                            : "inner: deadline in the future");
        return value_now(0);
    };
    co_await timeout(1h, inner);
}

task<void> task_cancelled_deadline(task_handle<void>& self, trace& tr) {
    self.cancel();
    tr.push_back(current_deadline() <= loop_clock::now() ? "task: deadline <= now"
                                                         : "task: deadline in the future");
    tr.push_back("task: remaining " + std::to_string(remaining().count()));
    co_return;
}

// ---------------------------------------------------------------------------------------------
// 5.5 / 5.13 Exit leaves nothing armed; no handle per scope

task<void> quick_ops_in_long_timeouts() {
    co_await timeout(10s, sleep(1ms));
    co_await timeout(10s, value_now(1));
    co_await move_on_after(10s, sleep(1ms));
    co_await timeout_at(loop_clock::now() + 10s, sleep(1ms));
    auto failing = [](timeout_scope&) -> task<void> {
        co_await sleep(1ms);
        throw std::runtime_error("body failed");
    };
    try {
        co_await timeout(10s, failing);
    } catch (const std::runtime_error&) {
    }
    co_await move_on_after(2ms, sleep(10s)); // one that expires
}

// ---------------------------------------------------------------------------------------------
// 5.2 / 6.2 Durations of relative timeouts

task<void> rounding_when(trace& tr) {
    const deadline t0 = loop_clock::now();
    auto probe = [&](timeout_scope& s) {
        tr.push_back(s.when() == never ? std::string("never") : plus((s.when() - t0).count()));
        return value_now(0);
    };
    co_await timeout(std::chrono::microseconds(300), probe);
    co_await timeout(std::chrono::microseconds(1200), probe);
    co_await timeout(std::chrono::duration<double, std::milli>(1.2), probe);
    co_await timeout(std::chrono::nanoseconds(1), probe);
    co_await timeout(std::chrono::seconds(2), probe);
    co_await timeout(std::chrono::hours::max(), probe);
    co_await timeout(std::chrono::duration<double>(std::numeric_limits<double>::infinity()), probe);
    co_await move_on_after(std::chrono::seconds::max(), probe);
}

task<void> expiry_after_rounding(trace& tr) {
    const deadline t0 = loop_clock::now();
    try {
        co_await timeout(std::chrono::microseconds(300), sleep(1h));
    } catch (const timeout_error&) {
        tr.push_back("300us expired at " + since(t0));
    }
    const auto r = co_await move_on_after(std::chrono::hours::max(), sleep(25ms));
    tr.push_back(std::string(r ? "hours::max() body finished" : "nullopt") + " at " + since(t0));
}

task<void> nan_timeout(trace& tr) {
    try {
        co_await timeout(std::chrono::duration<double>(std::nan("")), record(tr, "body ran"));
    } catch (const std::invalid_argument&) {
        tr.push_back("timeout: invalid_argument");
    }
    try {
        co_await move_on_after(std::chrono::duration<float, std::milli>(std::nanf("")),
                               record(tr, "body ran"));
    } catch (const std::invalid_argument&) {
        tr.push_back("move_on_after: invalid_argument");
    }
}

TEST_SUITE("timeout") {

    // =============================================================================================
    // 4.1 The cancellation-point protocol

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.1 awaiting a result that is already available in a cancelled scope does not "
        "raise; the next real cancellation point does") {
        task_handle<int> finished = rt->spawn(value_now(7));
        run_until([&] { return finished.done(); });
        trace tr;
        run(await_available_results(finished, tr));
        CHECK(tr == trace{"expired at entry", "finished handle gave 7", "lazy task gave 8",
                          "timeout_error"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.1 a sleep in a cancelled scope raises without starting: no suspension, no "
                      "deadline entry") {
        for (int round = 0; round < 2; ++round) {
            const deadline t0 = now();
            trace tr;
            auto a = rt->spawn(first_point_in_expired_scope(tr));
            auto b = rt->spawn(record(tr, "B ran"));
            run_until([&] { return a.done() && b.done(); });
            // A never suspended, so B (queued behind A) ran only after A had finished.
            CHECK(tr == trace{"A: sleep raised", "A: nullopt at +0", "B ran"});
            // No deadline entry was left behind: autojump has nothing to jump to.
            run_all();
            CHECK((now() - t0).count() == 0);
        }
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.1 awaiting a pending task in a cancelled scope raises at once and does not "
        "touch the awaited task") {
        const deadline t0 = now();
        task_handle<int> pending = rt->spawn(value_after(10ms, 3));
        trace tr;
        run(join_in_cancelled_scope(pending, tr));
        CHECK(tr == trace{"join raised at once", "target still pending"});
        CHECK(run(outcome_of(pending)) == "value 3");
        CHECK((now() - t0).count() == 10);
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.1 yield() checks again on resumption: a cancellation recorded while it was "
        "queued raises") {
        timeout_scope* sp = nullptr;
        trace tr;
        auto a = rt->spawn(yielder_in_scope(sp, tr));
        auto b = rt->spawn(cancel_scope_now(sp, tr));
        run_until([&] { return a.done() && b.done(); });
        CHECK(tr == trace{"B: cancelled A's scope", "A: yield raised on resumption", "A: nullopt"});
    }

    // ---------------------------------------------------------------------------------------------
    // D-2 / 4.9 Completion wins

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-2 a sleep that completes in the same deadline pass as the scope's expiry "
                      "returns its result, and the body's value is returned (5.8)") {
        for (int round = 0; round < 2; ++round) {
            scope_slot slot;
            trace tr;
            auto a = rt->spawn(completion_vs_expiry(slot, tr, false));
            auto b = rt->spawn(reschedule_to_same_instant(slot, 10ms));
            run_until([&] { return a.done() && b.done(); });
            CHECK(tr ==
                  trace{"sleep returned at +10, scope expired", "value 42", "expired=1 caught=0"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-2 after completion wins the scope stays cancelled: the next cancellation "
                      "point raises and the scope converts") {
        scope_slot slot;
        trace tr;
        auto a = rt->spawn(completion_vs_expiry(slot, tr, true));
        auto b = rt->spawn(reschedule_to_same_instant(slot, 10ms));
        run_until([&] { return a.done() && b.done(); });
        CHECK(tr == trace{"sleep returned at +10, scope expired", "checkpoint raised",
                          "timeout_error", "expired=1 caught=1"});
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "D-2 a scope cancel() that arrives after the sleep completed but before the task "
        "resumed does not drop the result") {
        for (const bool checkpoint_after : {false, true}) {
            scope_slot slot;
            trace tr;
            // B is queued ahead of A: both wake in the pass at +10, B runs first and cancels A's
            // scope while A's completed sleep waits in the ready queue.
            auto b = rt->spawn(cancel_slot_after(10ms, slot));
            auto a = rt->spawn(completion_vs_expiry(slot, tr, checkpoint_after));
            run_until([&] { return a.done() && b.done(); });
            if (checkpoint_after) {
                CHECK(tr == trace{"sleep returned at +10, scope expired", "checkpoint raised",
                                  "timeout_error", "expired=1 caught=1"});
            } else {
                CHECK(tr == trace{"sleep returned at +10, scope expired", "value 42",
                                  "expired=1 caught=0"});
            }
        }
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "D-2 a task cancel() between completion and resumption: the task resumes with "
        "the result and ends with its value unless it reaches another point") {
        for (const bool checkpoint_after : {false, true}) {
            trace tr;
            task_handle<int> a;
            auto b = rt->spawn(cancel_after(a, 10ms, "late"));
            a = rt->spawn(sleep_then_maybe_checkpoint(tr, checkpoint_after));
            run_until([&] { return a.done() && b.done(); });
            CHECK(tr == trace{"sleep returned"});
            CHECK(a.cancelled() == checkpoint_after);
            CHECK(run(outcome_of(a)) == (checkpoint_after ? "cancelled(late)" : "value 1"));
        }
    }

    // ---------------------------------------------------------------------------------------------
    // 4.2 / D-7 Type of the cancellation

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.2 catch (const std::exception&) cannot swallow cancelled_error; catch (...) "
        "sees it; timeout_error is a std::exception") {
        trace tr;
        run(catch_clauses_and_cancellation(tr));
        CHECK(tr == trace{"timeout_error", "seen by catch (...)", "timeout_error"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.2 scopes recognise types derived from cancelled_error: a timeout converts "
                      "one, a task ends cancelled by one") {
        trace tr;
        run(derived_delivery_in_timeout(tr));
        CHECK(tr == trace{"rethrown as a derived type", "timeout_error"});

        auto h = rt->spawn(throw_derived_cancelled());
        run_until([&] { return h.done(); });
        CHECK(h.cancelled());
    }

    // ---------------------------------------------------------------------------------------------
    // 4.3 / 4.6 Level triggering: swallowing does not un-cancel

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.3 4.6 after a swallowed delivery every later cancellation point in the "
                      "expired scope raises again; returning without one yields the value (5.8)") {
        task_handle<int> pending = rt->spawn(value_after(1h, 3));
        scope_slot slot;
        trace tr;
        run(level_triggered_in_timeout(pending, slot, tr));
        CHECK(tr == trace{"sleep raised at +10", "sleep raised again at +10", "yield raised",
                          "sleep(0) raised", "checkpoint raised", "sleep_until(never) raised",
                          "join raised", "returning at +10", "value 5", "expired=1 caught=0"});
        // The join raised without touching the awaited task (4.1 step 2).
        CHECK_FALSE(pending.done());
        pending.cancel();
        run_until([&] { return pending.done(); });
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.6 a body that swallows and then reaches a cancellation point "
                      "is cancelled again, and the scope converts") {
        trace tr;
        run(swallow_then_reach_point(tr));
        CHECK(tr == trace{"swallowed", "raised again", "timeout_error at +10"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.3 once control leaves the cancelled scope, its cancellation "
                                    "affects nothing") {
        trace tr;
        run(after_scope_left(tr));
        CHECK(tr == trace{"nullopt at +10", "slept after the scope, at +15",
                          "swallowing body returned 6 at +25", "slept again at +30"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.3 a cancelled task scope delivers at every cancellation point "
                      "until the task ends") {
        trace tr;
        task_handle<int> a = rt->spawn(swallow_task_cancellation(tr));
        auto c = rt->spawn(cancel_after(a, 5ms, "stop"));
        run_until([&] { return a.done() && c.done(); });
        CHECK(tr == trace{"delivery 0 (stop) at +5", "delivery 1 (stop) at +5",
                          "delivery 2 (stop) at +5"});
        CHECK_FALSE(a.cancelled());
        CHECK(run(outcome_of(a)) == "value 9");
    }

    // ---------------------------------------------------------------------------------------------
    // 4.4 Catching is for cleanup

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.4 at a delivery, catch blocks and destructors of the body run normally") {
        trace tr;
        run(destructors_run_at_delivery(counted::live().load(), tr));
        CHECK(tr == trace{"catch block ran", "locals destroyed"});
    }

    // ---------------------------------------------------------------------------------------------
    // 4.7 An error raised during cleanup replaces the cancellation

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.7 5.9 an error raised while handling the delivery replaces the "
                      "cancellation and passes the timeout scope unchanged") {
        trace tr;
        scope_record rec;
        CHECK_THROWS_AS(run(cleanup_error_in_timeout(rec, tr)), std::runtime_error);
        CHECK(tr == trace{"cleanup"});
        CHECK(rec.escaped == "error(cleanup failed)");
        CHECK(rec.at == 10);
        CHECK(rec.expired);
        CHECK_FALSE(rec.caught);
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.7 a task whose cleanup raises an error ends with that error, not cancelled") {
        trace tr;
        task_handle<void> a = rt->spawn(cleanup_throws(tr));
        auto c = rt->spawn(cancel_after(a, 5ms, "stop"));
        run_until([&] { return a.done() && c.done(); });
        CHECK(tr == trace{"cleanup"});
        CHECK_FALSE(a.cancelled());
        CHECK(run(outcome_of(a)) == "error(cleanup failed)");
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.7 after a cleanup error is caught inside the scope, the scope "
                      "is still cancelled and the next point raises") {
        trace tr;
        run(cleanup_error_caught_inside_timeout(tr));
        CHECK(tr ==
              trace{"cleanup error caught inside the scope", "yield raised", "timeout_error"});
    }

    // ---------------------------------------------------------------------------------------------
    // 4.8 / D-3 Ownership

    TEST_CASE(
        "4.8 nested timeouts that expire in the same iteration: only the outermost converts") {
        loop_fixture f(loop_fixture::manual_clock());
        const std::vector<loop_clock::duration> ds{10ms, 5ms};
        std::vector<scope_record> rec(ds.size());
        const deadline t0 = f.now();
        auto h = f.rt->spawn(nested_timeouts(0, ds, rec, t0));
        f.run_all();         // the body is parked on sleep(1h)
        f.rt->advance(20ms); // both deadlines (+5 inner, +10 outer) are due in one pass
        f.run_all();
        REQUIRE(h.done());
        CHECK(rec[1].escaped == "cancelled_error()");
        CHECK(rec[1].expired);
        CHECK_FALSE(rec[1].caught);
        CHECK(rec[0].escaped == "timeout_error");
        CHECK(rec[0].expired);
        CHECK(rec[0].caught);
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.8 16.1 nested timeouts with equal deadlines: the outermost converts, every "
        "scope reports expired()") {
        const std::vector<loop_clock::duration> ds{10ms, 10ms, 10ms};
        std::vector<scope_record> rec(ds.size());
        const deadline t0 = now();
        run(nested_timeouts(0, ds, rec, t0));
        for (std::size_t i = 0; i < ds.size(); ++i) {
            CAPTURE(i);
            CHECK(rec[i].expired);
            CHECK(rec[i].at == 10);
            CHECK(rec[i].caught == (i == 0));
            CHECK(rec[i].escaped == (i == 0 ? "timeout_error" : "cancelled_error()"));
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.7 a nested timeout that expires alone converts its own expiry; "
                      "the outer scope lets the timeout_error pass") {
        const std::vector<loop_clock::duration> ds{10ms, 5ms};
        std::vector<scope_record> rec(ds.size());
        run(nested_timeouts(0, ds, rec, now()));
        CHECK(rec[1].escaped == "timeout_error");
        CHECK(rec[1].caught);
        CHECK(rec[1].at == 5);
        CHECK(rec[0].escaped == "timeout_error");
        CHECK_FALSE(rec[0].expired);
        CHECK_FALSE(rec[0].caught);
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.7 an outer timeout's expiry passes through an inner timeout "
                                    "that is not expired") {
        const std::vector<loop_clock::duration> ds{10ms, 1h};
        std::vector<scope_record> rec(ds.size());
        run(nested_timeouts(0, ds, rec, now()));
        CHECK(rec[1].escaped == "cancelled_error()");
        CHECK_FALSE(rec[1].expired);
        CHECK_FALSE(rec[1].caught);
        CHECK(rec[0].escaped == "timeout_error");
        CHECK(rec[0].caught);
        CHECK(rec[0].at == 10);
    }

    TEST_CASE(
        "4.8 a task cancel() recorded before the timeout's expiry in the same iteration escapes "
        "the timeout as cancelled_error") {
        loop_fixture f(loop_fixture::manual_clock());
        scope_record rec;
        task_handle<void> h = f.rt->spawn(timeout_around_sleep(10ms, rec));
        f.run_all();
        h.cancel("stop");
        f.rt->advance(10ms);
        f.run_all();
        REQUIRE(h.done());
        CHECK(rec.escaped == "cancelled_error(stop)");
        CHECK(rec.expired);
        CHECK_FALSE(rec.caught);
        CHECK(h.cancelled());
    }

    TEST_CASE(
        "4.8 a task cancel() recorded after the timeout's expiry in the same iteration escapes "
        "the timeout as cancelled_error") {
        loop_fixture f(loop_fixture::manual_clock());
        scope_record rec;
        task_handle<void> h = f.rt->spawn(timeout_around_sleep(10ms, rec));
        f.run_all();
        f.rt->advance(10ms);
        h.cancel("stop");
        f.run_all();
        REQUIRE(h.done());
        CHECK(rec.escaped == "cancelled_error(stop)");
        CHECK(rec.expired);
        CHECK_FALSE(rec.caught);
        CHECK(h.cancelled());
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.8 a task woken in the same deadline pass that cancels the timed-out task "
                      "before it runs: cancelled_error escapes the timeout") {
        scope_record rec;
        task_handle<void> a;
        auto b = rt->spawn(cancel_after(a, 10ms, "stop")); // its sleep is registered first
        a = rt->spawn(timeout_around_sleep(10ms, rec));
        run_until([&] { return a.done() && b.done(); });
        CHECK(rec.escaped == "cancelled_error(stop)");
        CHECK(rec.expired);
        CHECK_FALSE(rec.caught);
        CHECK(a.cancelled());
    }

    TEST_CASE("4.8 a bound token cancelled in the same iteration as the deadline, in either order: "
              "cancelled_error escapes the timeout") {
        for (const bool token_first : {true, false}) {
            CAPTURE(token_first);
            loop_fixture f(loop_fixture::manual_clock());
            scope_record rec;
            cancel_source src;
            task_handle<void> h = f.rt->spawn(timeout_around_sleep(10ms, rec), src.token());
            f.run_all();
            if (token_first) {
                src.request_cancel("token");
                f.rt->advance(10ms);
            } else {
                f.rt->advance(10ms);
                src.request_cancel("token");
            }
            f.run_all();
            REQUIRE(h.done());
            CHECK(rec.escaped == "cancelled_error(token)");
            CHECK(rec.expired);
            CHECK_FALSE(rec.caught);
            CHECK(h.cancelled());
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.8 gh-134471: a task whose scope is cancelled gets cancelled_error, never "
                      "timeout_error, from a timeout it enters afterwards") {
        for (const auto d : {0ms, 10ms}) {
            CAPTURE(d.count());
            scope_record rec;
            task_handle<void> a;
            a = rt->spawn(self_cancel_then_timeout(a, d, rec));
            run_until([&] { return a.done(); });
            CHECK(rec.escaped == "cancelled_error(earlier)");
            CHECK(rec.at == 0);
            CHECK_FALSE(rec.caught);
            CHECK(rec.expired == (d == 0ms)); // timeout(0) expires at entry (D-5)
            CHECK(a.cancelled());
        }
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.8 a move_on_after(0) entered by a cancelled task does not swallow the task's "
        "cancellation") {
        trace tr;
        task_handle<void> a;
        a = rt->spawn(self_cancel_then_move_on(a, tr));
        run_until([&] { return a.done(); });
        CHECK(tr == trace{"cancelled_error(earlier)"});
        CHECK(a.cancelled());
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.8 a task that swallowed a delivery still gets cancelled_error from a later "
        "timeout: its own cancellation is outer and still in effect") {
        scope_record rec;
        trace tr;
        task_handle<void> a = rt->spawn(swallow_then_timeout(rec, tr));
        auto c = rt->spawn(cancel_after(a, 5ms, "stop"));
        run_until([&] { return a.done() && c.done(); });
        CHECK(tr == trace{"swallowed at +5"});
        CHECK(rec.escaped == "cancelled_error(stop)");
        CHECK(rec.at == 0);
        CHECK_FALSE(rec.caught);
        CHECK(a.cancelled());
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.8 8b.2 inside shielded(), a nested timeout owns its own expiry while the "
                      "task's cancellation waits outside") {
        trace tr;
        task_handle<void> a = rt->spawn(goodbye_timeout_in_task_cleanup(tr));
        auto c = rt->spawn(cancel_after(a, 5ms, "stop"));
        run_until([&] { return a.done() && c.done(); });
        CHECK(tr == trace{"cancelled at +5", "shielded timeout converted its own expiry at +505",
                          "outer cancellation raised at +505 (stop)"});
        CHECK(a.cancelled());
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.8 the owner is fixed at raise time: an enclosing scope cancelled while the "
        "delivery propagates does not take it, and raises at the next point") {
        trace tr;
        run(owner_fixed_at_raise(tr));
        CHECK(tr == trace{"inner delivery at +10", "cleanup done at +210",
                          "inner: timeout_error caught=1", "outer expired",
                          "checkpoint raised at +210", "outer: timeout_error at +210 caught=1"});
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.8 a cancelled_error from a task someone else cancelled has no owner here and "
        "passes every timeout") {
        trace tr;
        task_handle<void> other = rt->spawn(cancelled_elsewhere());
        auto c = rt->spawn(cancel_after(other, 5ms, "elsewhere"));
        run(foreign_cancellation_in_timeout(other, tr));
        CHECK(tr == trace{"cancelled_error owner=0", "kept running"});
    }

    // ---------------------------------------------------------------------------------------------
    // 4.10 A wait that cannot be aborted delivers the real result

    TEST_CASE_FIXTURE(
        loop_fixture,
        "4.10 D-2b a wait whose abort only forwards keeps waiting; the real result is "
        "delivered and the next point raises") {
        trace tr;
        task_handle<int> child = rt->spawn(shielded_work(50ms, 5));
        run(wait_on_unabortable(child, tr));
        CHECK(tr == trace{"joined 5 at +50", "timeout_error at +50"});
        CHECK_FALSE(child.cancelled());
    }

    // -------------------------------------------------------------------------------------------
    // 4.11 / D-13 Producers never get an error

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.11 D-13 waiters of a future that time out or are cancelled detach alone: "
                      "a later set_value() succeeds and reaches the remaining waiter") {
        trace tr;
        promise<int> p;
        const future<int> fut = p.get_future();
        auto a = rt->spawn(wait_future_in_timeout(fut, tr));
        auto b = rt->spawn(wait_future(fut, "B", tr));
        task_handle<void> c = rt->spawn(wait_future(fut, "C", tr));
        auto cc = rt->spawn(cancel_after(c, 5ms, "stop"));
        auto producer = rt->spawn(produce_after(20ms, p, tr));
        run_until([&] { return a.done() && b.done() && c.done() && cc.done() && producer.done(); });
        CHECK(tr == trace{"C cancelled at +5 (stop)", "A: timeout_error at +10",
                          "set_value returned true", "second set_value returned false",
                          "B got 5 at +20"});
        CHECK(c.cancelled());
        CHECK(fut.done());
    }

    // =============================================================================================
    // 5 Timeout scope: results of timeout / timeout_at / move_on_after / move_on_at

    TEST_CASE_FIXTURE(loop_fixture,
                      "5 timeout, timeout_at, move_on_after and move_on_at return the "
                      "body's result, or convert their own expiry exactly on time") {
        trace tr;
        run(all_result_forms(tr));
        CHECK(tr == trace{"timeout value 1 at +5", "timeout void at +10",
                          "timeout around a sleep at +15", "timeout move-only 3 at +20",
                          "timeout_error at +30", "timeout_at value 4 at +35",
                          "timeout_at timeout_error at +45", "move_on_after 5 at +50",
                          "move_on_after nullopt at +60", "move_on_after void unit at +65",
                          "move_on_after void nullopt at +75", "move_on_at 7 at +80",
                          "move_on_at nullopt at +90", "move_on_after move-only 9 at +91",
                          "timeout_at(never) 10 at +141"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "5 a timeout around a task_handle cancels the task at the "
                                    "deadline, waits for it and converts") {
        trace tr;
        task_handle<int> h = rt->spawn(value_after(1h, 1));
        run(timeout_around_handle(h, tr));
        CHECK(tr == trace{"timeout_error at +10"});
        CHECK(h.cancelled());
    }

    // ---------------------------------------------------------------------------------------------
    // 5 API: when(), expired(), caught()

    TEST_CASE_FIXTURE(loop_fixture,
                      "5 when() is the deadline, expired() turns true at the deadline, "
                      "caught() only once the scope converted") {
        trace tr;
        run(scope_api(tr));
        CHECK(tr == trace{"entry: when +10 expired=0 caught=0", "at +5: expired=0 caught=0",
                          "delivery at +10 message='' expired=1 caught=0", "timeout_error",
                          "after exit: when +10 expired=1 caught=1"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "6.1 timeout_at(never) has when() == never and no deadline") {
        trace tr;
        const deadline t0 = now();
        run(when_of_never(tr));
        CHECK(tr == trace{"when never", "done"});
        CHECK((now() - t0).count() == 20);
    }

    // ---------------------------------------------------------------------------------------------
    // 5.10 reschedule

    TEST_CASE_FIXTURE(loop_fixture, "5.10 reschedule() to a later deadline extends the scope") {
        trace tr;
        run(reschedule_case(10ms, 5ms, 25ms, tr));
        CHECK(tr == trace{"rescheduled at +5: when +25", "raised at +25", "timeout_error at +25",
                          "expired=1 caught=1"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.10 reschedule() to an earlier deadline shortens the scope") {
        trace tr;
        run(reschedule_case(1h, 5ms, 10ms, tr));
        CHECK(tr == trace{"rescheduled at +5: when +10", "raised at +10", "timeout_error at +10",
                          "expired=1 caught=1"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.10 reschedule(never) removes the deadline: the scope does not expire") {
        trace tr;
        const deadline t0 = now();
        run(reschedule_case(10ms, 5ms, std::nullopt, tr));
        CHECK(tr == trace{"rescheduled at +5: when never", "slept until +3600005",
                          "value at +3600005", "expired=0 caught=0"});
        CHECK((now() - t0).count() == 3600005);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.10 D-5 reschedule() to a deadline already passed expires the "
                      "scope synchronously") {
        for (const auto to : {5ms, 2ms}) { // exactly now, and in the past
            trace tr;
            run(reschedule_case(1h, 5ms, to, tr));
            CHECK(tr == trace{"rescheduled at +5: when " + plus(to.count()) + " expired",
                              "raised at +5", "timeout_error at +5", "expired=1 caught=1"});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.10 reschedule(duration) counts from now; a negative one "
                                    "expires synchronously") {
        trace tr;
        run(reschedule_relative(tr));
        CHECK(tr == trace{"reschedule(20ms) at +5: when +25", "reschedule(-1ms) at +15: expired",
                          "timeout_error at +15"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.10 5.11 rescheduling an inner scope later never extends the "
                                    "outer one") {
        trace tr;
        run(inner_cannot_extend_outer(tr));
        CHECK(tr == trace{"inner when +3600000, effective +10", "outer timeout_error at +10"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.10 reschedule() after expiry or after exit is invalid_state") {
        trace tr;
        run(reschedule_invalid_states(tr));
        CHECK(tr == trace{"reschedule(deadline) after expiry: invalid_state",
                          "reschedule(duration) after expiry: invalid_state",
                          "reschedule(never) after expiry: invalid_state",
                          "reschedule(deadline) after exit: invalid_state",
                          "reschedule(duration) after exit: invalid_state",
                          "unexpired: reschedule after exit: invalid_state"});
    }

    // ---------------------------------------------------------------------------------------------
    // 5.4 cancel()

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.4 cancel() expires the scope at once; it converts like its own "
                      "deadline; later calls have no effect") {
        trace tr;
        const deadline t0 = now();
        run(own_cancel(tr));
        CHECK(tr == trace{"after cancel(): expired=1 caught=0", "synchronous code still runs",
                          "first point raised", "timeout_error at +0", "expired=1 caught=1",
                          "after exit: expired=1 caught=1"});
        // The 1 h deadline entry went away with the expiry: nothing is left to jump to.
        run_all();
        CHECK((now() - t0).count() == 0);
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "5.4 cancel() from another task aborts the parked body and the scope converts") {
        scope_slot slot;
        trace tr;
        auto a = rt->spawn(parked_in_scope(slot, tr));
        auto b = rt->spawn(cancel_slot_after(7ms, slot));
        run_until([&] { return a.done() && b.done(); });
        CHECK(tr == trace{"timeout_error at +7 expired=1 caught=1"});
    }

    // ---------------------------------------------------------------------------------------------
    // 5.1 Entry

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.1 entering a timeout scope outside a task is invalid_state") {
        auto aw = timeout(10ms, void_after(1ms));
        CHECK_THROWS_AS(aw.await_suspend(std::noop_coroutine()), invalid_state);
        auto factory = [](timeout_scope&) { return void_after(1ms); };
        auto aw2 = move_on_after(10ms, factory);
        CHECK_THROWS_AS(aw2.await_suspend(std::noop_coroutine()), invalid_state);
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.1 entering one timeout scope twice is invalid_state") {
        trace tr;
        run(enter_twice(tr));
        CHECK(tr == trace{"first 1", "second entry: invalid_state"});
    }

    // ---------------------------------------------------------------------------------------------
    // 5.2 / D-4 The relative deadline starts at entry

    TEST_CASE_FIXTURE(loop_fixture, "5.2 D-4 a relative timeout created early and awaited later "
                                    "counts from when it is awaited") {
        trace tr;
        run(created_early_awaited_later(tr));
        CHECK(tr == trace{"timeout_error at +60, when +60", "nullopt at +70"});
    }

    // ---------------------------------------------------------------------------------------------
    // 5.3 / D-5 Deadline already passed at entry

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.3 D-5 a deadline already passed at entry: expired() at once, the body "
                      "starts, the first cancellation point raises, the scope converts") {
        const trace expected{"body started, expired=1", "scope cancelled", "first point raised",
                             "timeout_error at +0"};
        {
            trace tr;
            auto make = [](auto& b) { return timeout(0ms, b); };
            run(due_at_entry(make, tr));
            CHECK(tr == expected);
        }
        {
            trace tr;
            auto make = [](auto& b) { return timeout(-5ms, b); };
            run(due_at_entry(make, tr));
            CHECK(tr == expected);
        }
        {
            trace tr;
            auto make = [](auto& b) {
                return timeout(-std::numeric_limits<double>::infinity() * 1s, b);
            };
            run(due_at_entry(make, tr));
            CHECK(tr == expected);
        }
        {
            trace tr;
            auto make = [](auto& b) { return timeout_at(loop_clock::now(), b); };
            run(due_at_entry(make, tr));
            CHECK(tr == expected);
        }
        {
            trace tr;
            auto make = [](auto& b) { return timeout_at(loop_clock::now() - 10ms, b); };
            run(due_at_entry(make, tr));
            CHECK(tr == expected);
        }
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "5.3 5.8 a body that reaches no cancellation point in an already expired scope "
        "returns its value") {
        trace tr;
        run(due_scope_without_points(tr));
        CHECK(tr == trace{"value 3 expired=1 caught=0", "move_on value 4"});
    }

    // ---------------------------------------------------------------------------------------------
    // 5.8 / 5.9 Exit after expiry

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.8 a body that ends normally after the deadline passed, with nothing "
                      "delivered, returns its value with expired() true and caught() false") {
        trace tr;
        run(exit_after_expiry(false, tr));
        CHECK(tr == trace{"value 4 at +20", "expired=1 caught=0"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.9 a different error after expiry propagates unchanged and "
                                    "expired() records the timeout") {
        trace tr;
        run(exit_after_expiry(true, tr));
        CHECK(tr == trace{"logic_error 'late failure' at +20", "expired=1 caught=0"});
    }

    // ---------------------------------------------------------------------------------------------
    // 5.6 Conversion

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.6 the body sees cancelled_error; outside, timeout_error carries it nested "
                      "(std::rethrow_if_nested)") {
        trace tr;
        run(nested_cancelled_error(tr));
        REQUIRE(tr.size() == 4);
        CHECK(tr[0] == "body saw cancelled_error");
        CHECK(tr[2] == "is a nested_exception");
        CHECK(tr[3] == "nested cancelled_error, message=''");
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.7 a task cancellation passes through every timeout unchanged, "
                      "with its message") {
        trace tr;
        task_handle<void> a = rt->spawn(task_cancel_through_timeouts(tr));
        auto c = rt->spawn(cancel_after(a, 5ms, "stop"));
        run_until([&] { return a.done() && c.done(); });
        CHECK(tr == trace{"cancelled_error(stop) at +5 expired=0 caught=0",
                          "cancelled_error(stop) at +5 expired=0 caught=0"});
        CHECK(a.cancelled());
        CHECK(run(outcome_of(a)) == "cancelled(stop)");
    }

    // ---------------------------------------------------------------------------------------------
    // 5.11 current_deadline() and remaining()

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.11 current_deadline() is the minimum over the enclosing scopes "
                      "and remaining() counts down to it") {
        trace tr;
        run(deadlines_nesting(tr));
        CHECK(tr == trace{"no scope: deadline never, remaining max", "remaining() is max",
                          "outer: deadline +100, remaining 100",
                          "outer at +30: deadline +100, remaining 70",
                          "inner 20ms: deadline +50, remaining 20",
                          "inner 500ms: deadline +100, remaining 70",
                          "inner never: deadline +100, remaining 70",
                          "outer after inner scopes: deadline +100, remaining 70",
                          "after the scope: deadline never, remaining max"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "5.11 where a cancellation is in effect, current_deadline() is no "
                      "later than now and remaining() is 0") {
        trace tr;
        auto body = [&](timeout_scope& s) { return deadline_when_cancelled(s, tr); };
        run([](decltype(body)& b) -> task<void> { co_await move_on_after(1h, b); }(body));
        CHECK(tr == trace{"deadline <= now", "remaining 0", "inner: deadline <= now"});

        trace tr2;
        task_handle<void> a;
        a = rt->spawn(task_cancelled_deadline(a, tr2));
        run_until([&] { return a.done(); });
        CHECK(tr2 == trace{"task: deadline <= now", "task: remaining 0"});
    }

    // ---------------------------------------------------------------------------------------------
    // 5.5 / 5.13 Exit leaves nothing armed; no handle per scope

    TEST_CASE("5.5 after 10 s timeouts around quick operations complete, the loop has no active "
              "handle (real clock)") {
        loop_fixture f(loop_fixture::real_clock());
        f.run(quick_ops_in_long_timeouts());
        CHECK(uv_loop_alive(f.loop()) == 0);
        CHECK(uv_run(f.loop(), UV_RUN_NOWAIT) == 0);
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.5 after 10 s timeouts around quick operations complete, no "
                                    "deadline is left (virtual clock)") {
        const deadline t0 = now();
        run(quick_ops_in_long_timeouts());
        CHECK((now() - t0).count() == 6);
        CHECK(uv_loop_alive(loop()) == 0);
        CHECK(uv_run(loop(), UV_RUN_NOWAIT) == 0);
        run_all();
        CHECK((now() - t0).count() == 6); // nothing to jump to
    }

    TEST_CASE("5.13 timeout scopes open no libuv handle, however many are active") {
        loop_fixture f(loop_fixture::manual_clock());
        const int before = count_handles(f.loop());
        const std::vector<loop_clock::duration> deep(50, 1h);
        std::vector<scope_record> rec(deep.size());
        std::vector<task_handle<void>> tasks;
        tasks.push_back(f.rt->spawn(nested_timeouts(0, deep, rec, f.now())));
        std::vector<scope_record> single(100);
        for (auto& r : single) {
            tasks.push_back(f.rt->spawn(timeout_around_sleep(1h, r)));
        }
        f.run_all(); // all parked inside their scopes
        CHECK(count_handles(f.loop()) == before);
        for (auto& t : tasks) {
            t.cancel();
        }
        f.run_all();
        for (auto& t : tasks) {
            CHECK(t.cancelled());
        }
        CHECK(count_handles(f.loop()) == before);
    }

    // ---------------------------------------------------------------------------------------------
    // 5.2 / 6.2 Durations of relative timeouts

    TEST_CASE_FIXTURE(loop_fixture, "5.2 6.2 a relative timeout's deadline rounds up to whole "
                                    "milliseconds and saturates to never") {
        trace tr;
        run(rounding_when(tr));
        CHECK(tr == trace{"+1", "+2", "+2", "+1", "+2000", "never", "never", "never"});
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "6.2 a 300 us timeout expires after 1 ms; an unrepresentable one never does") {
        trace tr;
        run(expiry_after_rounding(tr));
        CHECK(tr == trace{"300us expired at +1", "hours::max() body finished at +26"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2 a NaN timeout throws std::invalid_argument before the body runs") {
        trace tr;
        run(nan_timeout(tr));
        CHECK(tr == trace{"timeout: invalid_argument", "move_on_after: invalid_argument"});
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "4.6 a task that swallows 1000 deliveries without suspending is reported") {
        auto h = rt->spawn([]() -> task<int> {
            int swallowed = 0;
            while (swallowed < 1500) {
                try {
                    co_await sleep(1s); // raises at once: the scope is cancelled
                } catch (const cancelled_error&) {
                    ++swallowed;
                }
            }
            co_return swallowed;
        }());
        // Cancelled once it has started (before its first step the body would never run).
        CHECK(run([](task_handle<int> t) -> task<int> {
                  co_await sleep(1ms);
                  t.cancel("stop");
                  co_return co_await t;
              }(h)) == 1500);
        REQUIRE(reported.size() == 1);
        CHECK_THROWS_AS(std::rethrow_exception(reported.front()), invalid_state);
    }

    // ---------------------------------------------------------------------------------------------
    // A body that is an awaiter runs in place, without a coroutine frame (bench/NOTES.md, W2)

    /// Records the number of live frames when it suspends; completes without suspending.
    struct frame_probe {
        std::ptrdiff_t* seen;

        [[nodiscard]] bool await_ready() const noexcept { return false; }

        bool await_suspend(std::coroutine_handle<>) const noexcept {
            *seen = detail::live_frame_counter().load();
            return false; // resume at once
        }

        int await_resume() const noexcept { return 7; }
    };

    TEST_CASE_FIXTURE(loop_fixture, "5 a timeout around an awaiter awaits it in place, without "
                                    "a frame, and returns its result") {
        const int r = run([]() -> task<int> {
            const std::ptrdiff_t before = detail::live_frame_counter().load();
            std::ptrdiff_t seen = -1;
            const int v = co_await timeout(1s, frame_probe{&seen});
            CHECK(seen == before);
            auto m = co_await move_on_after(1s, frame_probe{&seen});
            CHECK(seen == before);
            REQUIRE(m.has_value());
            co_return v + *m;
        }());
        CHECK(r == 14);
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.3 D-5 a body awaiter that is ready at once still runs "
                                    "inside the scope: an expired scope makes checkpoint() raise") {
        trace tr;
        run([](trace& tr) -> task<> {
            auto m = co_await move_on_after(0ms, checkpoint());
            tr.push_back(m.has_value() ? "value" : "nullopt");
            auto t = timeout(-1ms, checkpoint());
            try {
                co_await t;
                tr.push_back("returned");
            } catch (const timeout_error& e) {
                tr.push_back(
                    std::string("timeout_error, nested ") +
                    (dynamic_cast<const std::nested_exception*>(&e)->nested_ptr() != nullptr
                         ? "yes"
                         : "no"));
            }
            tr.push_back(flags(t.scope()));
            co_await checkpoint(); // the scope was left: nothing is cancelled here
            tr.push_back("after");
        }(tr));
        CHECK(tr == trace{"nullopt", "timeout_error, nested yes", "expired=1 caught=1", "after"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "5.7 nested timeouts around a sleep, awaited in place: the "
                                    "scope whose deadline passed owns the cancellation") {
        trace tr;
        run([](trace& tr) -> task<> {
            const deadline t0 = loop_clock::now();
            try {
                co_await timeout(1s, timeout(5ms, sleep(1h)));
            } catch (const timeout_error&) {
                tr.push_back("inner timeout_error at " + since(t0));
            }
            auto outer = timeout(5ms, timeout(1s, sleep(1h)));
            try {
                co_await outer;
            } catch (const timeout_error&) {
                tr.push_back("outer timeout_error at " + since(t0) + " " + flags(outer.scope()));
            }
            auto m = co_await move_on_after(1s, move_on_after(5ms, sleep(1h)));
            tr.push_back(m.has_value() && !m->has_value() ? "inner nullopt" : "?");
        }(tr));
        CHECK(tr == trace{"inner timeout_error at +5",
                          "outer timeout_error at +10 expired=1 caught=1", "inner nullopt"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "4.8 a timeout around a sleep in a cancelled task passes the "
                                    "task's cancellation through, with its message") {
        auto h = rt->spawn([]() -> task<> { co_await timeout(1s, sleep(1h)); }());
        const std::string message = run([](task_handle<> h) -> task<std::string> {
            co_await sleep(2ms);
            h.cancel("stop");
            try {
                co_await h;
            } catch (const cancelled_error& e) {
                co_return std::string(e.message());
            }
            co_return "not cancelled";
        }(h));
        CHECK(h.cancelled());
        CHECK(message == "stop");
    }

    TEST_CASE("a frame destroyed while parked in a timeout around a sleep leaves the deadline "
              "heap and the token tree clean") {
        runtime_options o = loop_fixture::virtual_clock();
        o.shutdown_grace = 0ms; // shutdown destroys the parked frame without resuming it
        loop_fixture f(o);
        f.rt->spawn([]() -> task<> { co_await timeout(1h, sleep(2h)); }()).detach();
        f.run([]() -> task<> { co_await sleep(1ms); }());
        f.rt->shutdown();
        REQUIRE(f.reported.size() == 1);
        CHECK_THROWS_AS(std::rethrow_exception(f.reported.front()), leaked_task_error);
    }

} // TEST_SUITE

} // namespace
} // namespace uvasync::test
