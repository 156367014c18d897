// SPDX-License-Identifier: MIT
// The waiters and cancellation scenarios shared by the tests of the synchronisation primitives
// (event, semaphore, mutex, queue, future). Every primitive is waited on by the same kinds of
// task and held to the same contract (SEMANTICS 1, 4.1, 4.8, 4.9 / D-2, D-1, D-11), so each
// scenario is written once here; a test says only how to wait on its primitive (a "waits"
// value, below), how to complete the wait, and what it checks besides.
//
// A waits value `w` has `w.wait()`, which returns the primitive's awaitable, and `w.got(r)`
// (`w.got()` when the wait returns nothing), which names what a waiter got in the log: "woke",
// "got", "got v". It may keep the result where the test can see it (a permit, a guard).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

#include "join.hpp"
#include "loop_fixture.hpp"

namespace uvasync::test {

using log_t = std::vector<std::string>;

/// What `co_await w.wait()` returns.
template <class W>
using waited_t = detail::await_result_t<decltype(std::declval<W&>().wait())>;

/// The waits value of a primitive that hands over one token at a time, taken by `(p.*Take)()`
/// (a semaphore's permit, a mutex's guard; `Held` says whether a token is a real one). With a
/// `slot` the waiter moves the token there, which the test owns, and the test decides when to
/// let it go; without one the waiter holds it until its task ends.
template <class Primitive, class Token, auto Take, auto Held>
struct takes {
    Primitive& p;
    std::optional<Token>* slot = nullptr;

    [[nodiscard]] auto wait() const { return (p.*Take)(); }

    [[nodiscard]] std::string got(Token& t) const {
        std::string what = (t.*Held)() ? "got" : "got an empty token";
        if (slot != nullptr) {
            slot->emplace(std::move(t));
        }
        return what;
    }
};

// -------------------------------------------------------------------------------------------
// Waiters

/// Logs "<name> waits", waits, then logs "<name> <what it got>". With `checkpoint`, it then
/// reaches one more cancellation point holding what it got and logs "<name> passed the
/// checkpoint": a task cancelled after the completion but before it resumed gets what the
/// completion gave it (D-2) and raises at the `yield()`.
template <class W>
[[nodiscard]] task<> wait_and_log(W w, log_t& log, std::string name, bool checkpoint = false) {
    log.push_back(name + " waits");
    if constexpr (std::is_void_v<waited_t<W>>) {
        co_await w.wait();
        log.push_back(name + " " + w.got());
        if (checkpoint) {
            co_await yield();
        }
    } else {
        waited_t<W> r = co_await w.wait();
        log.push_back(name + " " + w.got(r));
        if (checkpoint) {
            co_await yield();
        }
    }
    if (checkpoint) {
        log.push_back(name + " passed the checkpoint");
    }
}

/// `wait_and_log` with the checkpoint.
template <class W>
[[nodiscard]] task<> wait_then_checkpoint(W w, log_t& log, std::string name) {
    return wait_and_log(std::move(w), log, std::move(name), true);
}

/// Cancels its own task (`self` is its handle), then waits: the scope is already cancelled
/// when the wait starts. Logs "raised <message>", or what it got (which it lets go at once)
/// before the next cancellation point raises.
template <class W>
[[nodiscard]] task<> self_cancelled_wait(task_handle<>& self, W w, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        if constexpr (std::is_void_v<waited_t<W>>) {
            co_await w.wait();
            log.push_back(w.got());
        } else {
            waited_t<W> r = co_await w.wait();
            log.push_back(w.got(r));
        }
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
    co_await yield();
    log.push_back("passed the checkpoint");
}

/// Catches the first delivery, then waits again in the same (still cancelled) task scope.
template <class W>
[[nodiscard]] task<> swallow_and_wait_again(W w, log_t& log) {
    for (const char* attempt : {"first", "retry"}) {
        try {
            if constexpr (std::is_void_v<waited_t<W>>) {
                co_await w.wait();
                log.push_back(std::string(attempt) + " " + w.got());
            } else {
                waited_t<W> r = co_await w.wait();
                log.push_back(std::string(attempt) + " " + w.got(r));
            }
        } catch (const cancelled_error& e) {
            log.push_back(std::string(attempt) + " raised " + std::string(e.message()));
            if (std::string(attempt) == "retry") {
                throw;
            }
        }
    }
}

/// `timeout(d, w.wait())`: what it got, or "timeout".
template <class W>
[[nodiscard]] task<std::string> wait_with_timeout(W w, loop_clock::duration d) {
    try {
        if constexpr (std::is_void_v<waited_t<W>>) {
            co_await timeout(d, w.wait());
            co_return w.got();
        } else {
            waited_t<W> r = co_await timeout(d, w.wait());
            co_return w.got(r);
        }
    } catch (const timeout_error&) {
        co_return "timeout";
    }
}

/// `move_on_after(d, w.wait())`: what it got, or "moved on".
template <class W>
[[nodiscard]] task<std::string> wait_or_move_on(W w, loop_clock::duration d) {
    auto r = co_await move_on_after(d, w.wait());
    if (!r) {
        co_return "moved on";
    }
    if constexpr (std::is_void_v<waited_t<W>>) {
        co_return w.got();
    } else {
        co_return w.got(*r);
    }
}

// -------------------------------------------------------------------------------------------
// Scenarios. `complete` completes the wait the waiters park on (set, set_value, release, put,
// unlock); each scenario runs `f`'s loop and checks what the contract says, and the caller
// checks what its primitive shows besides.

/// 4.1 / 1: runs `self_cancelled_wait` to its end and returns its log; the task ended
/// cancelled with its own message, "self".
template <class W>
log_t self_cancelled_log(loop_fixture& f, W w) {
    log_t log;
    task_handle<> self =
        f.run_given_own_handle([&](task_handle<>& h) { return self_cancelled_wait(h, w, log); });
    CHECK(self.cancelled());
    CHECK(f.run(cancel_message_of(self)) == "self");
    return log;
}

/// Spawns one `wait_and_log` task per waits value, named "a", "b", ... in order, and runs the
/// loop until nothing is left to do; requires every one to be parked, having logged only
/// "<name> waits".
template <class... W>
std::vector<task_handle<>> park_waiters(loop_fixture& f, log_t& log, W... w) {
    log_t expected = log;
    std::vector<task_handle<>> hs;
    char name = 'a';
    for (std::size_t i = 0; i < sizeof...(W); ++i) {
        expected.push_back(std::string(1, static_cast<char>('a' + i)) + " waits");
    }
    (hs.push_back(f.rt->spawn(wait_and_log(std::move(w), log, std::string(1, name++)))), ...);
    f.run_all();
    for (const task_handle<>& h : hs) {
        REQUIRE_FALSE(h.done());
    }
    CHECK(log == expected);
    return hs;
}

/// 1: waiting on something already complete does not suspend: two waiters spawned in a row,
/// "a" and "b", both end in one run of the loop. Returns the log, where each ran to its end
/// before the next started.
template <class W>
log_t wait_in_a_row(loop_fixture& f, W a, W b) {
    log_t log;
    task_handle<> ha = f.rt->spawn(wait_and_log(std::move(a), log, "a"));
    task_handle<> hb = f.rt->spawn(wait_and_log(std::move(b), log, "b"));
    f.run_all();
    REQUIRE(ha.done());
    REQUIRE(hb.done());
    return log;
}

/// Cancels `h` with `message`, runs the loop, and checks that `h` ended cancelled with it.
/// D-14: cancel() resumes nothing inline, so the waiters' `log` is unchanged until the loop runs.
inline void cancel_and_check(loop_fixture& f, task_handle<>& h, const std::string& message,
                             const log_t& log) {
    const std::size_t logged = log.size(); // the log only grows
    CHECK(h.cancel(message));
    CHECK(log.size() == logged);
    f.run_all();
    CHECK(h.done());
    CHECK(h.cancelled());
    CHECK(f.run(cancel_message_of(h)) == message);
}

/// D-11: cancelling `h` twice detaches it once and keeps the first message; once done, a third
/// cancel() is refused too.
inline void cancel_twice_and_check(loop_fixture& f, task_handle<>& h) {
    CHECK(h.cancel("first"));
    CHECK_FALSE(h.cancel("second"));
    f.run_all();
    CHECK(h.cancelled());
    CHECK(f.run(cancel_message_of(h)) == "first");
    CHECK_FALSE(h.cancel("third"));
}

/// D-2 4.9: `w`'s waiter parks; `complete()` is recorded, then the waiter is cancelled
/// ("late") before it resumes. It gets what the completion gave it, raises at its next
/// cancellation point, and its log is returned.
template <class W, class Complete>
log_t late_cancel_log(loop_fixture& f, W w, Complete complete) {
    log_t log;
    task_handle<> h = f.rt->spawn(wait_then_checkpoint(std::move(w), log, "a"));
    f.run_all();
    CHECK(log == log_t{"a waits"});
    complete();
    CHECK(h.cancel("late"));
    f.run_all();
    CHECK(h.cancelled());
    CHECK(f.run(cancel_message_of(h)) == "late");
    return log;
}

/// 4.1: the waiters of `w...` park, "a" first; "a" is cancelled ("stop") and `complete()` comes
/// after the abort was recorded, so "a" raises and gets nothing, and the others are done.
/// Returns the log.
template <class Complete, class... W>
log_t cancel_first_then_complete(loop_fixture& f, Complete complete, W... w) {
    log_t log;
    std::vector<task_handle<>> hs = park_waiters(f, log, std::move(w)...);
    CHECK(hs[0].cancel("stop")); // the abort is recorded first
    complete();
    f.run_all();
    CHECK(hs[0].cancelled());
    CHECK(f.run(cancel_message_of(hs[0])) == "stop");
    for (std::size_t i = 1; i < hs.size(); ++i) {
        CHECK(hs[i].done());
        CHECK_FALSE(hs[i].cancelled());
    }
    return log;
}

/// D-1: a waiter that swallows its cancellation and waits again raises again.
template <class W>
void swallow_and_wait_again_raises(loop_fixture& f, W w) {
    log_t log;
    task_handle<> h = f.rt->spawn(swallow_and_wait_again(std::move(w), log));
    f.run_all();
    CHECK(h.cancel("stop"));
    f.run_all();
    CHECK(h.cancelled());
    CHECK(log == log_t{"first raised stop", "retry raised stop"});
}

/// 4.9 on a manual clock: `move_on_after(10ms, w.wait())` parks; then `complete()` and the
/// deadline are recorded in the same iteration, in the order `complete_first` says. Returns
/// what the waiter returned: completion wins when it was recorded first (D-2), else the waiter
/// was detached and moved on.
template <class W, class Complete>
std::string complete_and_deadline(loop_fixture& f, W w, Complete complete, bool complete_first) {
    const deadline start = f.now();
    task_handle<std::string> h =
        f.rt->spawn(wait_or_move_on(std::move(w), std::chrono::milliseconds(10)));
    f.run_all();
    CHECK_FALSE(h.done());
    if (complete_first) {
        complete();
        f.rt->advance(std::chrono::milliseconds(10));
    } else {
        f.rt->advance(std::chrono::milliseconds(10));
        complete();
    }
    f.run_until([&] { return h.done(); });
    CHECK(f.now() - start == std::chrono::milliseconds(10));
    return f.run(join(h));
}

// -------------------------------------------------------------------------------------------
// Scenarios of the primitives that hand over one token at a time (a semaphore's only permit,
// a mutex's lock): `release()` lets go of the token the test holds.

/// D-14 FIFO hand-off: the waiters `hs` were parked with their tokens going to `slots`. The
/// token goes to each waiter of `order` in turn, which resumes from the ready queue (nothing
/// runs inside a release) while the later ones still wait, and then lets it go; the last one
/// keeps it.
template <class Token, class Release>
void hand_down(loop_fixture& f, const log_t& log, const std::vector<task_handle<>>& hs,
               std::vector<std::optional<Token>>& slots, const std::vector<std::size_t>& order,
               Release release) {
    for (std::size_t k = 0; k < order.size(); ++k) {
        const std::size_t logged = log.size(); // the log only grows
        if (k == 0) {
            release();
        } else {
            slots[order[k - 1]].reset();
        }
        CHECK(log.size() == logged);
        f.run_all();
        CHECK(hs[order[k]].done());
        for (std::size_t later = k + 1; later < order.size(); ++later) {
            CHECK_FALSE(hs[order[later]].done());
        }
    }
}

/// D-2: "a" waits with a checkpoint after it, "b" waits behind it; `release()` hands the token to
/// "a", which is cancelled ("late") before it resumes: it gets the token, raises at the
/// checkpoint and lets the token go unwinding, to "b".
template <class W, class Release>
void late_cancel_passes_on(loop_fixture& f, W a, W b, Release release) {
    log_t log;
    task_handle<> ha = f.rt->spawn(wait_then_checkpoint(std::move(a), log, "a"));
    task_handle<> hb = f.rt->spawn(wait_and_log(std::move(b), log, "b"));
    f.run_all();
    release();
    CHECK(ha.cancel("late"));
    f.run_all();
    CHECK(ha.cancelled());
    CHECK(hb.done());
    CHECK(log == log_t{"a waits", "b waits", "a got", "b got"});
}

/// A token handed to a waiter whose frame is destroyed before it resumes goes back: "a" and "b"
/// park on a loop of their own; `release()` hands the token to "a" (ready, not run), and a
/// shutdown with no grace destroys both frames without resuming them. Returns how many tasks
/// the shutdown reported.
template <class W, class Release>
std::size_t destroy_before_resuming(W a, W b, Release release) {
    runtime_options o = loop_fixture::virtual_clock();
    o.shutdown_grace = std::chrono::milliseconds(0);
    loop_fixture f(o);
    log_t log;
    std::vector<task_handle<>> hs = park_waiters(f, log, std::move(a), std::move(b));
    release();
    f.rt->shutdown();
    const std::size_t reported = f.reported.size();
    CHECK(log == log_t{"a waits", "b waits"});
    f.reported.clear();
    return reported;
}

/// 5.6: `timeout(5ms, w.wait())` on a wait that nothing completes throws timeout_error at its
/// deadline.
template <class W>
void times_out(loop_fixture& f, W w) {
    const deadline start = f.now();
    CHECK(f.run(wait_with_timeout(std::move(w), std::chrono::milliseconds(5))) == "timeout");
    CHECK(f.now() - start == std::chrono::milliseconds(5));
}

/// 4.8 on a manual clock: a task cancellation passes through a timeout around the wait as
/// cancelled_error, not timeout_error.
template <class W>
void cancel_through_timeout(loop_fixture& f, W w) {
    task_handle<std::string> h =
        f.rt->spawn(wait_with_timeout(std::move(w), std::chrono::hours(1)));
    f.run_all();
    CHECK_FALSE(h.done());
    CHECK(h.cancel("outer"));
    f.run_until([&] { return h.done(); });
    CHECK(h.cancelled());
}

} // namespace uvasync::test
