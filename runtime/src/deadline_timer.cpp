// SPDX-License-Identifier: MIT
// The runtime's side of the clock and the deadline queue: `loop_clock::now`, registering
// entries, arming the loop's one timer for the earliest (real clock), deadline passes, and
// advancing the virtual clock (SEMANTICS 6, 13, 18). The queue itself is deadline_queue.cpp.
#include <algorithm>
#include <cstdint>

#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/error.hpp>

#include "runtime_handles.hpp"

namespace uvasync {

// Declared with the clock (layer 1) and defined here: what time it is depends on the calling
// thread's runtime, which sits above the clock.
loop_clock::time_point loop_clock::now() {
    return detail::current_runtime("loop_clock::now()").fresh_now(); // SEMANTICS 13.2
}

} // namespace uvasync

namespace uvasync::detail {

void runtime_state::add_deadline(deadline_entry& e) noexcept {
    deadlines_.push(e);
    if (virtual_) {
        update_idle();
        return;
    }
    if (timer_unreferenced_) {
        // Armed for a deadline that left (see on_deadlines_emptied): it counts again.
        uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->timer));
        timer_unreferenced_ = false;
    }
    if (e.when < armed_for_ && !in_deadline_pass_) {
        rearm_timer();
    }
}

void runtime_state::remove_deadline(deadline_entry& e) noexcept {
    deadlines_.erase(e); // on_deadlines_emptied runs if it was the last
}

// The queue's `emptied` hook: a removal (a cancelled sleep or scope, a fired entry, a timed call
// taken back) left no deadline. While entries remain the timer may stay armed for an earlier
// deadline that left: it then fires once for nothing and rearms, which is cheaper than
// rearming on every removal.
void runtime_state::on_deadlines_emptied(void* self) noexcept {
    auto* rt = static_cast<runtime_state*>(self);
    if (rt->virtual_) {
        rt->update_idle();
        if (rt->handles_->has_threshold) {
            uv_timer_stop(&rt->handles_->threshold);
        }
    } else if (!rt->in_deadline_pass_ && rt->armed_for_ != never && !rt->timer_unreferenced_) {
        // An armed timer would keep uv_run alive for a deadline nobody waits for
        // (SEMANTICS 13.5). Unreferenced, it no longer does; it stays armed until the end of the
        // check drain (settle() stops it then if no deadline came back), so that a deadline added
        // meanwhile (the next request's timeout, usually later than the one that left) needs no
        // uv_timer_start and uv_timer_stop pair.
        uv_unref(reinterpret_cast<uv_handle_t*>(&rt->handles_->timer));
        rt->timer_unreferenced_ = true;
    }
}

void runtime_state::rearm_timer() noexcept {
    if (deadlines_.empty()) {
        if (armed_for_ != never) {
            uv_timer_stop(&handles_->timer);
            armed_for_ = never;
        }
        return;
    }
    const deadline top = deadlines_.top().when;
    if (top == armed_for_) {
        return;
    }
    // Relative to the cached loop time, which is what uv_timer_start adds it to, so the
    // absolute deadline stays exact (SEMANTICS 6.3).
    const std::int64_t delay = std::max<std::int64_t>(0, (top - now()).count());
    uv_timer_start(&handles_->timer, &forward<uv_timer_t, &runtime_state::on_timer>,
                   static_cast<std::uint64_t>(delay), 0);
    armed_for_ = top;
}

void runtime_state::on_timer() noexcept {
    runtime_scope current(this);
    armed_for_ = never; // a one-shot timer that fired is no longer armed
    run_deadline_pass();
}

void runtime_state::run_deadline_pass() noexcept {
    const deadline t = now();
    const std::uint32_t last_before_pass = deadlines_.last_seq();
    in_deadline_pass_ = true;
    // Every entry due now, in (deadline, registration) order; an entry registered during the
    // pass waits for the next one (SEMANTICS 6.5). Firing only records and makes tasks ready.
    while (!deadlines_.empty() && deadlines_.top().when <= t &&
           !seq_before(last_before_pass, deadlines_.top().seq)) {
        deadline_entry* e = &deadlines_.top();
        remove_deadline(*e);
        e->fire(e);
    }
    in_deadline_pass_ = false;
    if (virtual_) {
        update_idle();
    } else {
        rearm_timer();
    }
}

void runtime_state::advance(loop_clock::duration d) {
    if (!virtual_) {
        throw invalid_state("uvasync: advance() needs a runtime with a virtual clock");
    }
    runtime_scope current(this);
    // Saturates: advancing past the end of the clock stops at `never`, never overflows.
    virtual_now_ = add_saturated(deadline(loop_clock::duration(virtual_now_)),
                                 std::max(loop_clock::duration(0), d))
                       .time_since_epoch()
                       .count();
    run_deadline_pass();
}

void runtime_state::stop_idle_timer() noexcept {
    // No deadline came back since the heap emptied: nothing stays armed (SEMANTICS 13.5).
    if (timer_unreferenced_ && deadlines_.empty() && armed_for_ != never) {
        uv_timer_stop(&handles_->timer);
        armed_for_ = never;
    }
}

} // namespace uvasync::detail
