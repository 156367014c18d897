// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <vector>

#include <uv.h>
#include <uvasync/clock.hpp>
#include <uvasync/detail/deadline_queue.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/intrusive_list.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/detail/timed_call_node.hpp>

/// Loop-thread checks (SEMANTICS 3.8): on unless NDEBUG is defined; define
/// UVASYNC_THREAD_CHECKS to 1 or 0 to choose. Cost: one `pthread_self()` and a compare per
/// checked call (the runtime's synchronous entry points, `task_handle::cancel`, scope
/// operations, cancel registrations, stream control calls). Awaiting from another thread
/// needs no check: no task runs there, so every awaitable already throws `invalid_state`.
#ifndef UVASYNC_THREAD_CHECKS
#ifdef NDEBUG
#define UVASYNC_THREAD_CHECKS 0
#else
#define UVASYNC_THREAD_CHECKS 1
#endif
#endif

namespace uvasync {
class runtime;
class tracer;
} // namespace uvasync

namespace uvasync::detail {

class inbox;
struct loop_handles;
struct runtime_cold;
struct thread_context;
struct introspection_access;

/// Which clock a runtime's deadlines use (SEMANTICS 18).
enum class clock_kind : std::uint8_t { loop, virtual_time };

/// The runtime's machinery, shared by the public `runtime` and every awaitable.
/// Everything here is loop-thread only unless it says otherwise.
class UVASYNC_API runtime_state {
public:
    /// The runtime's options as the scheduler keeps them (src/runtime_cold.hpp).
    struct config;

    runtime_state(uv_loop_t* loop, bool owns_loop, config cfg);
    runtime_state(const runtime_state&) = delete;
    runtime_state& operator=(const runtime_state&) = delete;
    runtime_state(runtime_state&&) = delete;
    runtime_state& operator=(runtime_state&&) = delete;
    ~runtime_state();

    [[nodiscard]] uv_loop_t* loop() const noexcept { return loop_; }

    [[nodiscard]] deadline now() const noexcept {
        return deadline(
            loop_clock::duration(virtual_ ? virtual_now_ : std::int64_t(uv_now(loop_))));
    }

    /// The loop clock refreshed first (`uv_update_time`), for computing a relative deadline:
    /// a delay is measured from the moment of entry, even after synchronous work earlier in
    /// the same loop iteration (SEMANTICS 13.2). One `clock_gettime` (vDSO) per call; the
    /// virtual clock is never refreshed.
    [[nodiscard]] deadline fresh_now() noexcept {
        if (!virtual_) {
            uv_update_time(loop_);
        }
        return now();
    }

    /// Throws `invalid_state` naming `what` when called from a thread other than the loop
    /// thread (with UVASYNC_THREAD_CHECKS; see above).
    void check_thread([[maybe_unused]] const char* what) const {
#if UVASYNC_THREAD_CHECKS
        const uv_thread_t self = uv_thread_self(); // libuv's, so users need not compile <thread>
        if (uv_thread_equal(&self, &loop_thread_) == 0) {
            wrong_thread(what);
        }
#endif
    }

    /// The tracer of runtime_options, or null: every trace point is one branch on this
    /// pointer (trace.hpp, docs/introspection.md).
    [[nodiscard]] uvasync::tracer* tracing() const noexcept {
        return tracer_;
    }

    /// The public object wrapping this state (null for a state made without one).
    [[nodiscard]] uvasync::runtime* facade() const noexcept {
        return facade_;
    }

    void set_facade(uvasync::runtime* r) noexcept {
        facade_ = r;
    }

    /// Makes `core` ready to resume at `h` (SEMANTICS D-14: never resumes inline).
    void schedule(task_core* core, std::coroutine_handle<> h) noexcept {
        core->resume_point = h;
        ready_.push_back(core);
        if (!idle_active_ && !drain_follows_) {
            start_idle();
        }
    }

    /// `yield()` (SEMANTICS 4.1): makes `core` ready to resume at `h` only after the loop's next
    /// poll for I/O. The check drain takes these tasks first; a task that yields from the check
    /// drain therefore waits one whole iteration, one that yields from the prepare drain
    /// resumes after the poll of the same iteration.
    void schedule_after_poll(task_core* core, std::coroutine_handle<> h) noexcept {
        core->resume_point = h;
        if (before_poll_drain_) {
            yielded_before_poll_.push_back(core); // the next drain after this poll (4.1)
        } else {
            yielded_.push_back(core);
            if (!check_active_) {
                start_check();
            }
        }
        if (!idle_active_) {
            start_idle(); // the poll must not block while a yielded task waits
        }
    }

    std::uint64_t next_scope_id() noexcept {
        return ++scope_ids_;
    }

    // The deadline queue (deadline_timer.cpp): the earliest entry arms the loop's timer.
    void add_deadline(deadline_entry& e) noexcept;
    void remove_deadline(deadline_entry& e) noexcept;

    /// Makes room for one `add_deadline` (throws `std::bad_alloc`): called by the throwing entry
    /// points (sleep, timeout scope entry, periodic timer wait) before they change any state.
    void reserve_deadline() {
        deadlines_.reserve_one();
    }

    /// Holds room for one deadline that a noexcept path adds later (deadline_queue::hold_one;
    /// throws `std::bad_alloc`); `release_deadline_room` gives it back, right before that
    /// `add_deadline` or when it is no longer needed.
    void hold_deadline_room() {
        deadlines_.hold_one();
    }

    void release_deadline_room() noexcept {
        deadlines_.release_one();
    }

    /// Entries in the deadline queue (SEMANTICS 20.4).
    [[nodiscard]] std::size_t pending_deadlines() const noexcept {
        return deadlines_.size();
    }

    // Timed callbacks (SEMANTICS 20; timed_call.cpp): nodes come from a pool the runtime owns,
    // so a node outlives every handle that names it until the runtime is destroyed.
    timed_call_node& acquire_timed_call();
    void release_timed_call(timed_call_node& n) noexcept;
    /// Removes every pending timed callback without running it (at shutdown).
    void drop_timed_calls() noexcept;

    /// Virtual clock only: moves time forward by `d` and runs one deadline pass.
    void advance(loop_clock::duration d);

    /// Runs one deadline pass: every entry due at now(), in (deadline, registration) order.
    void run_deadline_pass() noexcept;

    /// Resumes the tasks that were ready when the drain started (SEMANTICS 13.6); false when
    /// none was.
    bool drain(thread_context& ctx) noexcept;

    /// After a drain: stops the loop's timer if the deadline heap emptied and nothing was added
    /// back (remove_deadline leaves it armed, unreferenced, until then).
    void stop_idle_timer() noexcept;

    /// Called after each task step, for tests that inject an event between two steps
    /// (tests/reliability/cancel_per_step_test.cpp): a step is one resumption of a task from
    /// the run queue, which runs until the task is parked again at a suspension point or
    /// finishes, so the observer sees every state the program rests in, in a deterministic
    /// order on the virtual clock. It runs on the loop thread, outside any task (like a libuv
    /// callback): it may cancel tasks and set events, which never runs task code inline. Null
    /// (the default) turns it off; the cost is one test of a pointer per step.
    using step_observer = void (*)(void* arg) noexcept;

    void observe_steps(step_observer observer, void* arg) noexcept {
        step_observer_ = observer;
        step_arg_ = arg;
        instrumented_ = tracer_ != nullptr || step_observer_ != nullptr;
    }

    /// Registers a new task (created by spawn) and queues its first step.
    void adopt(task_core* core) noexcept;

    /// Called by task_core::finish.
    void task_finished(task_core* core) noexcept;

    /// Hands an exception nobody can observe to the exception handler. Never throws.
    void report(std::exception_ptr e) noexcept;

    /// Thread-safe: queue `fn` for the loop thread. False once the runtime has shut down.
    bool post(std::function<void()> fn);

    /// The runtime's inbox (for binding cancel sources; see cancel_node::bind).
    [[nodiscard]] inbox* mailbox() const noexcept;

    [[nodiscard]] bool accepting() const noexcept {
        return phase_ == phase::running;
    }

    [[nodiscard]] bool shut_down() const noexcept {
        return phase_ == phase::closed;
    }

    [[nodiscard]] bool owns_loop() const noexcept {
        return owns_loop_;
    }

    [[nodiscard]] bool is_virtual() const noexcept {
        return virtual_;
    }

    /// The clock when the runtime was made: the origin of the times `runtime::dump` writes.
    [[nodiscard]] deadline started_at() const noexcept;

    /// Cancels every task, waits (bounded) for them, closes the internal handles and lets
    /// their close callbacks run; an owned loop is then run until empty and closed, else
    /// `invalid_state` naming the open handles (a later call retries). Idempotent.
    void shutdown();

    /// Shutdown from inside a callback of the loop, for a runtime with no unfinished task and
    /// no request in flight (else `invalid_state`): closes the handles without running the
    /// loop; `on_closed` runs from the last close callback.
    void close_from_callback(std::function<void()> on_closed);

    /// Runs the owned loop until `done()` holds.
    template <class Pred>
    void run_until(Pred done) {
        keep_alive(true);
        // One uv_run for the whole wait: the drain after which `done()` holds stops the loop
        // (settle), instead of one UV_RUN_ONCE per iteration, whose extra clock update and
        // timer pass cost about a tenth of a yield (bench/NOTES.md, W1).
        const auto saved_check = stop_check_;
        void* const saved_arg = stop_arg_;
        stop_check_ = [](void* p) noexcept -> bool { return (*static_cast<Pred*>(p))(); };
        stop_arg_ = &done;
        while (!done()) {
            uv_run(loop_, UV_RUN_DEFAULT);
        }
        stop_check_ = saved_check;
        stop_arg_ = saved_arg;
        keep_alive(false);
    }

    /// Keeps the loop alive (or not) for posts and requests from other threads; see
    /// runtime::keep_loop_alive. Counted, so nested holders compose.
    void keep_alive(bool on) noexcept;

    /// Number of tasks not yet finished.
    [[nodiscard]] std::size_t live_tasks() const noexcept {
        return live_tasks_;
    }

    /// Pending external work: libuv requests whose callback is still to come (whoever made
    /// them: fs, getaddrinfo, getnameinfo, work), counted from the accepted libuv call to its
    /// callback; loop thread only. Shutdown runs the loop until none is left, so no request
    /// callback or threadpool function outlives a frame or the runtime (SEMANTICS 15.3, 15.5).
    void request_started() noexcept {
        ++pending_requests_;
    }

    void request_finished() noexcept {
        --pending_requests_;
    }

    /// Pending external work: handles whose close callback (or, for a child process, exit then
    /// close callback) is still to come; loop thread only. An owned loop is run until none is
    /// left before it is closed.
    void handle_closing() noexcept {
        ++closing_handles_;
    }

    void handle_closed() noexcept {
        --closing_handles_;
    }

    void on_async() noexcept;
    void on_timer() noexcept;
    void on_check() noexcept;
    void on_prepare() noexcept;
    void on_idle() noexcept;
    void start_check() noexcept;
    /// After a drain: arms or restarts the autojump threshold, and the idle handle.
    void settle(bool ran) noexcept;
    void on_threshold_timer() noexcept;
    void on_dump_signal() noexcept;

private:
    friend struct introspection_access;

    enum class phase : std::uint8_t { running, shutting_down, closed };

    void start_idle() noexcept;
    void update_idle() noexcept;
    /// settle() on a virtual clock with autojump: arms or stops the threshold timer.
    void update_threshold(bool ran) noexcept;
    void rearm_timer() noexcept;
    void instrumented_step(thread_context& ctx, task_core* core, task_core* outside) noexcept;
    void adopt_slow(task_core* core) noexcept;

    void set_phase(phase p) noexcept {
        phase_ = p;
        plain_adopt_ = p == phase::running && tracer_ == nullptr;
    }

    static void on_deadlines_emptied(void* self) noexcept;
    void close_handles() noexcept;
    void close_owned_loop();
    [[noreturn]] static void wrong_thread(const char* what);
    void wait_for_tasks();
    void leak_remaining() noexcept;
    void wait_for_requests() noexcept;

    // What the inline members above and the hot paths of the compiled scheduler (run queue,
    // spawn, deadline timer) use. Everything else the scheduler keeps (the inbox, shutdown's
    // state, the exception handler, the tracer's ownership, the timed-call pool, ...) is in
    // `cold_`, whose type only runtime/src/ sees (runtime_cold.hpp).
    uv_loop_t* loop_;
    uvasync::tracer* tracer_; // owned by cold_, or null
    // The two flags that keep the scheduler's hot paths at one test each (trace.hpp, "Cost"):
    // a drain step tests `instrumented_` (a tracer or a step observer is set, the step goes
    // through instrumented_step), and adopt() tests `plain_adopt_` (running and no tracer).
    bool instrumented_;
    bool plain_adopt_;
    bool owns_loop_;
    bool virtual_;
    bool autojump_;
    bool idle_active_ = false;
    bool check_active_ = true;       // real clock: the check handle stops itself (run_queue.cpp)
    bool before_poll_drain_ = false; // in the idle or prepare drain
    bool in_deadline_pass_ = false;
    bool timer_unreferenced_ = false; // armed for a deadline that left (deadline_timer.cpp)
    // From the end of the prepare callback to the end of the check callback (the poll, I/O
    // callbacks, the check drain): the check drain and its settle() come before the loop
    // blocks again, so a task made ready meanwhile needs no idle handle (run_queue.cpp).
    bool drain_follows_ = false;
    phase phase_ = phase::running;
    std::int64_t virtual_now_ = 0;
    deadline armed_for_ = never;
    std::uint64_t scope_ids_ = 0;
    std::size_t live_tasks_ = 0;
    std::size_t pending_requests_ = 0;
    std::size_t closing_handles_ = 0;
    intrusive_queue<task_core> ready_;
    intrusive_queue<task_core> yielded_; // resume in the check drain after the next poll
    // Yielded in a drain before the poll: resume in the first drain after it (the next idle
    // drain on a real clock, this iteration's check drain on a virtual one).
    intrusive_queue<task_core> yielded_before_poll_;
    bool (*stop_check_)(void*) noexcept = nullptr; // run_until's predicate, checked by settle
    void* stop_arg_ = nullptr;
    step_observer step_observer_ = nullptr; // observe_steps
    void* step_arg_ = nullptr;
    deadline_queue deadlines_{&on_deadlines_emptied, this};
    // Every task (adopt() links it on each spawn), and the libuv handles whose type only
    // runtime/src/ sees (runtime_handles.hpp): the idle and timer handles are reached on each
    // schedule() that starts the idle handle and each arming of the loop timer.
    intrusive_list<task_core, all_tasks_tag> tasks_;
    loop_handles* handles_ = nullptr;
    uvasync::runtime* facade_ = nullptr;
    uv_thread_t loop_thread_ = uv_thread_self();
    std::unique_ptr<runtime_cold> cold_;
};

/// The runtime of the calling thread while one exists (set by the runtime's constructor and
/// by its callbacks), and the task being resumed by the run queue.
struct thread_context {
    runtime_state* runtime = nullptr;
    task_core* task = nullptr;
};

UVASYNC_API thread_context& this_thread_context() noexcept;

inline task_core* current_task() noexcept {
    return this_thread_context().task;
}

/// The running task's runtime, else the calling thread's, else `invalid_state`.
UVASYNC_API runtime_state& current_runtime(const char* what);

/// `invalid_state`: `what` needs a runtime on this thread.
[[noreturn]] UVASYNC_API void throw_no_runtime(const char* what);

/// Where a free `spawn` runs: the runtime (as `current_runtime`) and the spawning task (null
/// outside a task), from one read of the thread's context.
struct spawner {
    runtime_state& rt;
    task_core* task;
};

inline spawner current_spawner(const char* what) {
    const thread_context& ctx = this_thread_context();
    if (ctx.task != nullptr) {
        return {*ctx.task->rt, ctx.task};
    }
    if (ctx.runtime == nullptr) [[unlikely]] {
        throw_no_runtime(what);
    }
    return {*ctx.runtime, nullptr};
}

} // namespace uvasync::detail
