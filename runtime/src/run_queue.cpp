// SPDX-License-Identifier: MIT
// The run queue: tasks made ready by schedule() run from the loop's prepare (or idle, see
// start_idle) and check phases, one batch per drain (SEMANTICS 13.6, D-14), and the idle handle
// keeps the poll from blocking while any is ready. Tasks that yielded wait in their own queues
// for the first drain after the next poll, so every yield lets the loop poll once (SEMANTICS
// 4.1). The virtual clock's autojump is decided here, after each drain.
#include <algorithm>
#include <cstdint>

#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/trace_points.hpp>
#include <uvasync/task.hpp>

#include "inbox.hpp"
#include "runtime_cold.hpp"
#include "runtime_handles.hpp"

namespace uvasync::detail {

// On a real clock the runtime keeps only the loop handles the work needs (decision 0041):
// * While the idle handle is active (a task is ready, so the poll must not block), its
//   callback does the drain before the poll and the prepare handle is stopped. libuv runs idle
//   callbacks right before prepare callbacks, with nothing in between, so that drain happens at
//   the same point of the iteration as before.
// * A task that yields in that drain resumes in the next idle drain: the poll of this
//   iteration comes in between, and no other (SEMANTICS 4.1). A task that yields in the check
//   drain resumes in the next check drain, as before.
// * The check handle stops itself after a check drain that ran no woken task (only yields, or
//   nothing) when the idle handle stays active and no task waits for the next check drain; a
//   task made ready during the poll then runs in the next idle drain, which also comes after
//   that poll. It starts again when a task yields outside an idle drain, and with the prepare
//   handle when the idle handle stops.
// A loop of yields thus runs one of the runtime's handles per iteration, like a raw uv_idle
// callback. A virtual clock keeps prepare and check active (its autojump is decided there).
void runtime_state::start_idle() noexcept {
    idle_active_ = true;
    uv_idle_start(&handles_->idle, &forward<uv_idle_t, &runtime_state::on_idle>);
    if (!virtual_) {
        uv_prepare_stop(&handles_->prepare);
    }
}

void runtime_state::update_idle() noexcept {
    const bool want =
        !ready_.empty() || !yielded_.empty() || !yielded_before_poll_.empty() ||
        (virtual_ && !deadlines_.empty() &&
         ((autojump_ && cold_->autojump_threshold_ms == 0) || deadlines_.top().when <= now()));
    if (want && !idle_active_) {
        start_idle();
    } else if (!want && idle_active_) {
        idle_active_ = false;
        uv_idle_stop(&handles_->idle);
        if (!virtual_) {
            uv_prepare_start(&handles_->prepare,
                             &forward<uv_prepare_t, &runtime_state::on_prepare>);
            start_check();
        }
    }
}

void runtime_state::start_check() noexcept {
    if (!check_active_) {
        check_active_ = true;
        uv_check_start(&handles_->check, &forward<uv_check_t, &runtime_state::on_check>);
    }
}

// `flatten`: the drain, settle() and update_idle() are compiled into this callback, the one
// a loop of yields runs per iteration (bench/NOTES.md, W1: 12 instructions per yield in
// calls, spills and reloads). The other callbacks call them.
[[gnu::flatten]] void runtime_state::on_idle() noexcept {
    if (virtual_) {
        return; // the prepare callback drains on a virtual clock
    }
    // The drain before the poll (the prepare handle is stopped while this one is active).
    runtime_scope current(this);
    ready_.splice_front(yielded_before_poll_); // the last poll came after their yield (4.1)
    before_poll_drain_ = true;
    const bool ran = drain(current.context());
    before_poll_drain_ = false;
    settle(ran);
    drain_follows_ = check_active_;
}

bool runtime_state::drain(thread_context& ctx) noexcept {
    if (ready_.empty()) {
        return false;
    }
    auto batch = ready_.take();
    task_core* const saved = ctx.task;
    while (task_core* core = batch.pop_front()) {
        ctx.task = core;
        core->transfer_budget = transfer_budget_per_resume;
        core->deliveries_without_suspending = 0;
        if (instrumented_) [[unlikely]] {
            instrumented_step(ctx, core, saved); // the tracer's and the step observer's step
            continue;
        }
        if (!core->started) [[unlikely]] {
            if (core->cancelled_before_start()) {
                continue; // never ran, and may be gone (SEMANTICS 2.7)
            }
        }
        core->resume_point.resume(); // may destroy *core
    }
    ctx.task = saved;
    return true;
}

// One step with a tracer or a step observer set: the same step as drain()'s, plus the trace
// points that belong to a step (trace_points.hpp: started, the slow-wait check at resume,
// finished at the end of the step in which the task finished) and the step observer. A
// reference keeps the core alive over the step so its end can be reported.
void runtime_state::instrumented_step(thread_context& ctx, task_core* core,
                                      task_core* outside) noexcept {
    core->add_ref();
    const std::uint64_t group = tracer_ != nullptr ? trace_group(*core) : 0;
    if (!core->started) [[unlikely]] {
        if (core->cancelled_before_start()) {
            if (tracer_ != nullptr) {
                trace_finished(*core, group);
            }
            core->release();
            return; // never ran (SEMANTICS 2.7)
        }
        if (tracer_ != nullptr) {
            trace_started(*core);
        }
    } else if (tracer_ != nullptr) {
        trace_resumed(*core);
    }
    core->resume_point.resume();
    if (tracer_ != nullptr) {
        if (core->done()) {
            trace_finished(*core, group);
        } else {
            trace_suspended(*core);
        }
    }
    core->release();
    if (step_observer_ != nullptr) {
        ctx.task = outside; // outside any task, as a libuv callback
        step_observer_(step_arg_);
    }
}

void runtime_state::adopt(task_core* core) noexcept {
    if (!plain_adopt_) [[unlikely]] {
        adopt_slow(core); // shutting down or shut down, or a tracer to tell
        return;
    }
    tasks_.push_back(*core);
    ++live_tasks_;
    schedule(core, core->frame());
}

void runtime_state::adopt_slow(task_core* core) noexcept {
    if (phase_ == phase::closed) {
        // Nothing will ever run it: it ends cancelled before its first step (SEMANTICS 2.7),
        // and its frame goes with its last handle.
        core->rt = nullptr;
        core->cancel_message = make_message("runtime is shut down");
        core->result = outcome::cancelled;
        core->finish();
        return;
    }
    tasks_.push_back(*core);
    ++live_tasks_;
    if (tracer_ != nullptr) {
        trace_spawned(*core);
    }
    if (phase_ != phase::running) {
        // Spawned while shutting down: born cancelled, so the body never runs (SEMANTICS 2.7).
        core->task_scope.node.request_cancel(make_message("runtime is shutting down"));
    }
    schedule(core, core->frame());
}

void runtime_state::task_finished(task_core* /*core*/) noexcept {
    --live_tasks_;
    if (live_tasks_ == 0 && cold_->grace != nullptr) {
        // Shutdown is waiting and nothing is left: the grace deadline must not be reached (a
        // virtual clock would otherwise jump to it).
        remove_deadline(*cold_->grace);
    }
}

void runtime_state::on_prepare() noexcept {
    if (ready_.empty() && !virtual_) {
        // Nothing to run and no autojump to decide: the idle handle is already as the last
        // drain (or schedule()) left it. Yielded tasks wait for the check drain (4.1).
        drain_follows_ = true;
        return;
    }
    runtime_scope current(this);
    before_poll_drain_ = true;
    const bool ran = drain(current.context());
    before_poll_drain_ = false;
    settle(ran);
    drain_follows_ = true;
}

void runtime_state::on_check() noexcept {
    runtime_scope current(this);
    const bool woken = !ready_.empty(); // by the poll's callbacks, or earlier
    // The loop has polled since these tasks yielded: they run first (SEMANTICS 4.1). On a real
    // clock the tasks that yielded before the poll wait for the next idle drain instead.
    if (virtual_) {
        ready_.splice_front(yielded_before_poll_);
    }
    ready_.splice_front(yielded_);
    if (virtual_ && autojump_ && cold_->autojump_threshold_ms == 0 && ready_.empty() &&
        !deadlines_.empty() && !cold_->mailbox->pending()) {
        // Every task is blocked and only deadlines are pending: jump (SEMANTICS 18.4).
        virtual_now_ = std::max(virtual_now_, deadlines_.top().when.time_since_epoch().count());
        run_deadline_pass();
    } else if (virtual_ && !deadlines_.empty() && deadlines_.top().when <= now()) {
        // An entry registered already due (call_at with a past deadline): the virtual clock
        // does not move, but the entry runs in this iteration's pass.
        run_deadline_pass();
    }
    const bool ran = drain(current.context());
    settle(ran);
    // Closing callbacks and whatever runs outside the loop come next: from here on a task
    // made ready starts the idle handle itself.
    drain_follows_ = false;
    if (idle_active_ && !woken && !virtual_ && yielded_.empty()) {
        // Nothing but yields ran here, no task waits for the next check drain, and the idle
        // handle stays active: the next idle drain comes after the next poll too. (A drain
        // that ran woken tasks keeps the handle: a server's next request wakes one again.)
        check_active_ = false;
        uv_check_stop(&handles_->check);
    }
}

void runtime_state::settle(bool ran) noexcept {
    if (timer_unreferenced_) {
        stop_idle_timer();
    }
    if (virtual_ && autojump_) [[unlikely]] {
        update_threshold(ran);
    }
    update_idle();
    if (ran && stop_check_ != nullptr && stop_check_(stop_arg_)) {
        uv_stop(loop_); // run_until is done: uv_run returns after this iteration
    }
}

void runtime_state::update_threshold(bool ran) noexcept {
    if (cold_->autojump_threshold_ms <= 0) {
        return; // no threshold: the check drain jumps at once
    }
    // The threshold measures real time in which no task ran. It is decided after the drain:
    // tasks that just ran may have blocked on I/O, and with nothing ready the poll then sleeps
    // until the threshold timer (or I/O) wakes it. Deciding before the drain left the poll
    // with no timer at all.
    // The threshold timer exists only on a virtual clock with a threshold.
    auto* threshold = reinterpret_cast<uv_handle_t*>(&handles_->threshold);
    if (!ready_.empty() || !yielded_.empty() || !yielded_before_poll_.empty() ||
        deadlines_.empty() || cold_->mailbox->pending()) {
        uv_timer_stop(&handles_->threshold);
    } else if (ran || uv_is_active(threshold) == 0) {
        uv_timer_start(&handles_->threshold,
                       &forward<uv_timer_t, &runtime_state::on_threshold_timer>,
                       static_cast<std::uint64_t>(cold_->autojump_threshold_ms), 0);
    }
}

void runtime_state::on_threshold_timer() noexcept {
    runtime_scope current(this);
    if (ready_.empty() && yielded_.empty() && yielded_before_poll_.empty() && !deadlines_.empty()) {
        virtual_now_ = std::max(virtual_now_, deadlines_.top().when.time_since_epoch().count());
        run_deadline_pass();
    }
    update_idle();
}

} // namespace uvasync::detail
