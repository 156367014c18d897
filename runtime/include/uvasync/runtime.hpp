// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <uv.h>
#include <uvasync/cancel.hpp>
#include <uvasync/clock.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/detail/root.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/spawn.hpp>
#include <uvasync/introspection.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_handle.hpp>
#include <uvasync/timed_call.hpp>

namespace uvasync {

namespace detail {
/// `uvasync::run`'s shutdown: a loop that cannot be closed throws; the main task's own error
/// (if any) then goes to the exception handler first.
UVASYNC_API void shutdown_after_main(runtime_state& rt, std::exception_ptr main_failure);
} // namespace detail

/// How a runtime is set up. The defaults are what production code wants.
struct runtime_options {
    /// Use a deterministic virtual clock for every deadline (tests; SEMANTICS 18). Real I/O,
    /// threadpool work, signals and `uv_timer_t`s you start yourself keep real time.
    bool virtual_clock = false;

    /// Virtual clock only: jump to the next deadline whenever every task is blocked.
    bool autojump = true;

    /// Virtual clock only: how long (real time) the loop must find no I/O before a jump.
    std::chrono::milliseconds autojump_threshold{0};

    /// How long shutdown waits (on the runtime's clock) for cancelled tasks to finish before
    /// it reports them as leaked and destroys their frames (SEMANTICS 15.3).
    std::chrono::milliseconds shutdown_grace{5000};

    /// Receives errors nobody can observe any more: a detached task's failure, a leaked task.
    /// Default: print to stderr. Called on the loop thread; must not throw.
    std::function<void(std::exception_ptr)> exception_handler;

    /// Tracing hooks (trace.hpp, docs/introspection.md); null: none, and every trace point
    /// costs one branch.
    std::shared_ptr<uvasync::tracer> tracer;

    /// With a tracer: report a parked wait that waited at least this long
    /// (`tracer::slow_wait`); zero: no slow-wait check.
    std::chrono::milliseconds slow_wait_threshold{0};

    /// A signal number (e.g. SIGUSR1) on which the loop thread prints `runtime::dump()` to
    /// stderr; 0: none. Its libuv signal handle exists only then, is unreferenced (it never
    /// keeps the loop alive) and is closed at shutdown. Out of range: `std::invalid_argument`.
    int dump_signal = 0;
};

/// Runs coroutines on a libuv loop: either a loop it owns, or a host's loop it borrows.
///
/// A runtime that borrows a loop never takes it over: it adds an idle, a prepare, a check, an
/// async and two timer handles (deadlines; the virtual clock's autojump threshold), keeps them
/// unreferenced or stopped while it has nothing to do,
/// and the host keeps calling `uv_run`. Shutdown (explicit or in the destructor) cancels every
/// task, waits for them up to `shutdown_grace`, closes the handles and runs the loop just long
/// enough for their close callbacks, so the host's `uv_loop_close()` then returns 0
/// (docs/decisions/0002-borrowed-loop-shutdown.md).
///
/// **Thread:** the thread that creates it is its loop thread; only `post()` and
/// `cancel_source::request_cancel()` may be called from others. With thread checks on (debug
/// builds, UVASYNC_THREAD_CHECKS) `spawn`, `call_at`, `call_later`, `advance` and `shutdown`
/// called from another thread throw `invalid_state` (SEMANTICS 3.8).
class UVASYNC_API runtime {
public:
    /// Owns a fresh loop.
    runtime()
        : runtime(runtime_options{}) {}

    explicit runtime(runtime_options options);

    /// Borrows `host` (not null; throws `std::invalid_argument`). The runtime must be shut down
    /// or destroyed before the host closes the loop.
    explicit runtime(uv_loop_t* host)
        : runtime(host, runtime_options{}) {}

    runtime(uv_loop_t* host, runtime_options options);

    runtime(const runtime&) = delete;
    runtime& operator=(const runtime&) = delete;
    runtime(runtime&&) = delete;
    runtime& operator=(runtime&&) = delete;

    /// Shuts down (see `shutdown()`), then closes an owned loop.
    ~runtime();

    [[nodiscard]] uv_loop_t* loop() const noexcept { return state_->loop(); }

    /// The runtime of the running task; outside a task, the runtime of the calling thread (the
    /// innermost one alive on it, set while its callbacks run). Throws `invalid_state` on a
    /// thread with none. `runtime::current().loop()` is the loop to start raw libuv handles
    /// on from inside a task.
    [[nodiscard]] static runtime& current();

    /// Starts `t` as an independent task. Its body starts in a later loop turn, in spawn order
    /// (SEMANTICS 2.1). It is not inside any scope of the caller (2.8): only its handle, and
    /// shutdown, cancel it. After shutdown began, the task is born cancelled and never runs.
    template <class T>
    task_handle<T> spawn(task<T> t) {
        state_->check_thread("runtime::spawn()");
        return detail::spawn_in(*state_, detail::current_task(), std::move(t), nullptr, nullptr);
    }

    /// Starts `t` inside a scope bound to `token` (SEMANTICS 11.12): cancelling the token
    /// cancels the task; cancelling the task does not cancel the token. A token already
    /// cancelled means the body never runs.
    template <class T>
    task_handle<T> spawn(task<T> t, const cancel_token& token) {
        state_->check_thread("runtime::spawn()");
        return detail::spawn_in(*state_, detail::current_task(), std::move(t), token.node(),
                                nullptr);
    }

    /// `spawn(t)` naming the task `name` and recording where it was spawned (`where`), for
    /// `tasks()`, `dump()` and the tracer. The name costs one allocation (the task's side
    /// record); unnamed spawns allocate nothing for introspection.
    template <class T>
    task_handle<T> spawn(task<T> t, std::string_view name, spawn_site where = spawn_site::here()) {
        state_->check_thread("runtime::spawn()");
        const detail::spawn_label label{name, where};
        return detail::spawn_in(*state_, detail::current_task(), std::move(t), nullptr, nullptr,
                                &label);
    }

    /// Owned loop only: runs `t` to completion (like `asyncio.run` without the shutdown) and
    /// returns its value or rethrows its error; a cancelled task raises `cancelled_error`.
    /// Other tasks keep running afterwards. Throws `invalid_state` on a borrowed loop.
    template <class T>
    T run(task<T> t) {
        if (!state_->owns_loop()) {
            throw invalid_state("uvasync: runtime::run needs an owned loop; run the host loop");
        }
        if (detail::task_core* t = detail::current_task(); t != nullptr && t->rt == state_.get()) {
            throw invalid_state("uvasync: runtime::run cannot be called from inside its own task");
        }
        task_handle<T> main = spawn(std::move(t));
        state_->run_until([&] { return main.done(); });
        return main.state()->take_outcome();
    }

    /// Thread-safe: runs `fn` on the loop thread, in posting order. Returns false (and drops
    /// `fn`) once shutdown has closed the runtime.
    bool post(std::function<void()> fn) { return state_->post(std::move(fn)); }

    /// Cancels every unfinished task in spawn order, lets them finish for up to
    /// `shutdown_grace` (then reports each straggler as a `leaked_task_error` and destroys its
    /// frame without resuming it), reports unobserved errors, closes the runtime's handles and
    /// lets their close callbacks run. Idempotent. Must not be called from inside a task or a
    /// callback of this loop.
    ///
    /// An owned loop is then run until it is empty, like `uv_run`, including handles the
    /// program started on `loop()` (one that stays active and referenced keeps shutdown
    /// waiting, as in libuv), and closed (SEMANTICS 15.6). Returning normally means the loop is
    /// closed (owned) or holds nothing of the runtime's (borrowed). If the owned loop cannot be
    /// closed (an unreferenced handle left open), throws `invalid_state` naming the open
    /// handles; calling `shutdown()` again after closing them retries.
    void shutdown() {
        state_->check_thread("runtime::shutdown()");
        state_->shutdown();
    }

    /// Shutdown for a runtime on a borrowed loop that has nothing left to wait for, callable
    /// from inside a callback of that loop (where `shutdown()` would run the loop reentrantly):
    /// with no unfinished task and no request in flight (else `invalid_state`), it closes the
    /// runtime's handles without running the loop and calls `on_closed` from the last close
    /// callback. The runtime object may be destroyed right after this returns.
    void close_from_callback(std::function<void()> on_closed) {
        state_->close_from_callback(std::move(on_closed));
    }

    /// While on, the runtime's cross-thread wake-up handle keeps the loop alive, so `uv_run`
    /// waits for `post()` and `request_cancel()` from other threads instead of returning when
    /// nothing else is active. Off by default (a borrowed loop is never kept alive by an idle
    /// runtime); `run()` turns it on while it waits. Calls nest.
    void keep_loop_alive(bool on) noexcept { state_->keep_alive(on); }

    /// The runtime's clock (virtual, or `uv_now` refreshed first so that `now() + d` is
    /// measured from this moment, SEMANTICS 13.2).
    [[nodiscard]] deadline now() const noexcept { return state_->fresh_now(); }

    /// Runs `f()` once on the loop thread, outside any task, when the clock reaches `when`
    /// (SEMANTICS 20): from the deadline queue that also holds sleeps and scope deadlines,
    /// equal deadlines in registration order, and every entry due in one pass runs before any
    /// task it woke. A deadline already due runs in the next pass (next loop iteration).
    /// An exception thrown by `f` goes to the exception handler. Shutdown drops callbacks that
    /// have not run. Allocates nothing when `f` fits the node's 48-byte buffer and the pool
    /// has a free node (nodes are reused), else only `f`'s storage or one node.
    /// `when == never` registers nothing and returns an empty handle.
    /// **Thread:** loop thread only.
    template <class F>
    timed_call call_at(deadline when, F&& f) {
        static_assert(std::is_invocable_v<std::decay_t<F>&>, "call_at needs a callable f()");
        state_->check_thread("runtime::call_at()");
        if (when == never) {
            return timed_call();
        }
        state_->reserve_deadline(); // may throw bad_alloc: add_deadline below must not
        detail::timed_call_node& n = state_->acquire_timed_call();
        try {
            n.store(std::forward<F>(f));
        } catch (...) {
            state_->release_timed_call(n);
            throw;
        }
        n.when = when;
        state_->add_deadline(n);
        return timed_call(&n);
    }

    /// `call_at(now() + d, f)`, with the duration rules of `sleep` (rounded up to
    /// milliseconds; zero or negative: the next pass).
    template <class Rep, class Period, class F>
    timed_call call_later(std::chrono::duration<Rep, Period> d, F&& f) {
        return call_at(detail::deadline_after(state_->fresh_now(), d), std::forward<F>(f));
    }

    /// Entries in the deadline queue: sleeps, scope deadlines, timed callbacks, periodic
    /// timers (SEMANTICS 20.4). For tests and introspection.
    [[nodiscard]] std::size_t pending_deadlines() const noexcept {
        return state_->pending_deadlines();
    }

    /// Virtual clock only: advances time by `d` (rounded up to milliseconds) and fires what is
    /// due. Throws `invalid_state` on a real clock.
    template <class Rep, class Period>
    void advance(std::chrono::duration<Rep, Period> d) {
        state_->check_thread("runtime::advance()");
        const deadline origin{};
        const deadline to = detail::deadline_after(origin, d);
        state_->advance(to - origin);
    }

    [[nodiscard]] bool uses_virtual_clock() const noexcept { return state_->is_virtual(); }

    /// Unfinished tasks.
    [[nodiscard]] std::size_t task_count() const noexcept { return state_->live_tasks(); }

    /// A snapshot of the unfinished tasks, in spawn order (docs/introspection.md). Loop
    /// thread only (from a task, a callback, or between runs); allocates the vector and names.
    [[nodiscard]] std::vector<task_snapshot> tasks() const;

    /// Writes the task tree (docs/introspection.md: tasks and task groups, each task's scopes
    /// with deadlines, what it is parked on) to `out`. Loop thread only. The format is stable.
    void dump(std::ostream& out) const;

    /// `dump(out)` as a string.
    [[nodiscard]] std::string dump() const;

    /// For library code.
    [[nodiscard]] detail::runtime_state& state() noexcept { return *state_; }

private:
    std::unique_ptr<detail::runtime_state> state_;
};

/// Spawns `t` on the runtime of the running task (asyncio's `create_task`); see
/// `runtime::spawn`. Outside a task it uses the calling thread's runtime; with none,
/// `invalid_state`.
template <class T>
task_handle<T> spawn(task<T> t) {
    const detail::spawner from = detail::current_spawner("spawn()");
    return detail::spawn_in(from.rt, from.task, std::move(t), nullptr, nullptr);
}

/// Spawns `t` named `name`; see `runtime::spawn(t, name)`.
template <class T>
task_handle<T> spawn(task<T> t, std::string_view name, spawn_site where = spawn_site::here()) {
    const detail::spawn_label label{name, where};
    const detail::spawner from = detail::current_spawner("spawn()");
    return detail::spawn_in(from.rt, from.task, std::move(t), nullptr, nullptr, &label);
}

/// Spawns `t` inside a scope bound to `token`; see `runtime::spawn(t, token)`.
template <class T>
task_handle<T> spawn(task<T> t, const cancel_token& token) {
    const detail::spawner from = detail::current_spawner("spawn()");
    return detail::spawn_in(from.rt, from.task, std::move(t), token.node(), nullptr);
}

/// Like `asyncio.run`: makes a runtime with its own loop, runs `t` to completion, shuts the
/// runtime down (cancelling what is left), closes the loop, and returns the value or rethrows.
/// If the loop cannot be closed (SEMANTICS 15.6), throws that error after the main task's
/// outcome was taken; an error of the main task is then passed to the exception handler.
template <class T>
T run(task<T> t, runtime_options options = {}) {
    runtime rt(std::move(options));
    std::exception_ptr failure;
    if constexpr (std::is_void_v<T>) {
        try {
            rt.run(std::move(t));
        } catch (...) {
            failure = std::current_exception();
        }
        detail::shutdown_after_main(rt.state(), failure);
        if (failure) {
            std::rethrow_exception(failure);
        }
    } else {
        std::optional<T> value;
        try {
            value.emplace(rt.run(std::move(t)));
        } catch (...) {
            failure = std::current_exception();
        }
        detail::shutdown_after_main(rt.state(), failure);
        if (failure) {
            std::rethrow_exception(failure);
        }
        return std::move(*value);
    }
}

} // namespace uvasync
