// SPDX-License-Identifier: MIT
#include <stdexcept>
#include <utility>

#include <uvasync/error.hpp>
#include <uvasync/timer.hpp>

namespace uvasync {

namespace detail {

/// The timer's schedule. It is a deadline-heap entry only while a task waits; otherwise the
/// ticks that came due are counted lazily from the clock when the next wait starts.
class timer_state final : public handle_state, public deadline_entry {
public:
    timer_state(runtime_state& rt, loop_clock::duration interval) noexcept
        : handle_state("timer")
        , deadline_entry(&on_fire)
        , rt_(&rt)
        , interval_(interval)
        , due_(rt.fresh_now() + interval) {} // from now, SEMANTICS 13.2

    void on_close_requested() noexcept override { stop(); }

    /// No libuv handle: the close finishes at once.
    unsigned close_handles() noexcept override { return 0; }

    void stop() noexcept {
        stopped_ = true;
        rt_->remove_deadline(*this);
        if (tick_awaiter* w = std::exchange(waiter_, nullptr)) {
            w->deliver(0);
        }
    }

    [[nodiscard]] bool stopped() const noexcept { return stopped_; }

    /// When the next tick is due.
    [[nodiscard]] deadline due() const noexcept { return due_; }

    [[nodiscard]] runtime_state& rt() const noexcept { return *rt_; }

    /// How many ticks are due at `now()`; advances the schedule past them.
    std::uint64_t take_due() noexcept {
        const deadline now = rt_->now();
        if (due_ == never || now < due_) {
            return 0;
        }
        // k * interval <= now - due_, so only the sums can pass the end of the clock: they
        // saturate at `never` (advance(hours::max()) is allowed), after which no tick is due.
        const loop_clock::rep k = (now - due_) / interval_;
        due_ = add_saturated(add_saturated(due_, interval_ * k), interval_);
        return static_cast<std::uint64_t>(k) + 1;
    }

    /// Hands `w` the ticks due now, or registers it and arms the deadline for the next tick.
    void wait(tick_awaiter* w) noexcept {
        if (const std::uint64_t due = take_due(); due > 0) {
            w->deliver(due);
            return;
        }
        waiter_ = w;
        if (due_ != never) { // past the end of the clock: waits until stopped or cancelled
            when = due_;
            rt_->add_deadline(*this);
        }
    }

    void forget(tick_awaiter* w) noexcept {
        if (waiter_ == w) {
            waiter_ = nullptr;
            rt_->remove_deadline(*this);
        }
    }

    [[nodiscard]] bool busy() const noexcept { return waiter_ != nullptr; }

private:
    static void on_fire(deadline_entry* e) noexcept {
        auto* self = static_cast<timer_state*>(e);
        if (tick_awaiter* w = std::exchange(self->waiter_, nullptr)) {
            w->deliver(self->take_due());
        }
    }

    runtime_state* rt_;
    loop_clock::duration interval_;
    deadline due_;
    tick_awaiter* waiter_ = nullptr;
    bool stopped_ = false;
};

const wait_kind tick_awaiter::kind{"timer tick", &tick_awaiter::describe};

// "timer tick at 1500 ms": the next tick's time, in ms since the runtime started.
void tick_awaiter::describe(const parked_wait& w, deadline origin, std::string& out) {
    if (const timer_state* s = static_cast<const tick_awaiter&>(w).state_; s != nullptr) {
        out +=
            "at " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::milliseconds>(s->due() - origin).count()) +
            " ms";
    }
}

tick_awaiter::tick_awaiter(timer_state* state) noexcept
    : single_waiter(state, kind) {
}

tick_awaiter::~tick_awaiter() {
    leave_slot();
}

bool tick_awaiter::await_suspend(std::coroutine_handle<> caller) {
    if (state_ == nullptr || state_->stopped()) {
        throw invalid_state("uvasync: timer::tick on a stopped, closed or moved-from timer");
    }
    if (state_->busy()) {
        throw invalid_state("uvasync: timer::tick is already awaited by another task");
    }
    state_->rt().reserve_deadline(); // may throw bad_alloc: before anything changes
    return park_and_wait(caller, "timer::tick");
}

std::uint64_t tick_awaiter::await_resume() {
    finish();
    if (stopped_) {
        throw invalid_state("uvasync: the timer was stopped while tick() waited");
    }
    return ticks_;
}

void tick_awaiter::deliver(std::uint64_t ticks) noexcept {
    ticks_ = ticks;
    stopped_ = ticks == 0;
    complete();
}

} // namespace detail

timer::timer(std::chrono::milliseconds interval)
    : interval_(interval) {
    if (interval.count() <= 0) {
        throw std::invalid_argument("uvasync: a timer interval must be positive");
    }
    detail::runtime_state& rt = detail::current_runtime("timer");
    // Half the room left on the clock, so advancing the schedule can never overflow.
    if (interval.count() >= (never - rt.now()).count() / 2) {
        throw std::invalid_argument("uvasync: the timer interval is too large for the loop clock");
    }
    state_.reset(new detail::timer_state(rt, loop_clock::duration(interval.count())));
}

detail::tick_awaiter timer::tick() {
    return detail::tick_awaiter(state_.get());
}

void timer::stop() noexcept {
    if (state_ != nullptr) {
        state_->stop();
    }
}

detail::close_awaiter timer::close() noexcept {
    return detail::close_awaiter::owning(state_.take());
}

bool timer::running() const noexcept {
    return state_ != nullptr && !state_->stopped();
}

} // namespace uvasync
