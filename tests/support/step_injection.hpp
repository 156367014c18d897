// SPDX-License-Identifier: MIT
// Cancellation injection per suspension point (docs/reliability.md): cancels a task after the
// k-th task step of its runtime, counted by the runtime's step observer
// (runtime_state::observe_steps). A step is one resumption of a task from the run queue, which
// runs until that task parks again at a suspension point or finishes; the cancellation happens
// between two steps, where another task's `cancel()` could. k == 0 cancels before the first.
#pragma once

#include <uvasync/runtime.hpp>
#include <uvasync/task_handle.hpp>

namespace uvasync::test {

class step_injector {
public:
    /// Observes `rt`'s steps from now on, and cancels `target` after the k-th.
    step_injector(runtime& rt, task_handle<>& target, long k)
        : rt_(rt)
        , target_(target)
        , k_(k) {
        rt_.state().observe_steps(&on_step, this);
        if (k_ == 0) {
            injected_ = target_.cancel("injected");
        }
    }

    step_injector(const step_injector&) = delete;
    step_injector& operator=(const step_injector&) = delete;
    step_injector(step_injector&&) = delete;
    step_injector& operator=(step_injector&&) = delete;

    ~step_injector() { rt_.state().observe_steps(nullptr, nullptr); }

    /// True if the cancellation was made (the target had not finished by step k).
    [[nodiscard]] bool injected() const noexcept { return injected_; }

    /// Steps seen so far.
    [[nodiscard]] long steps() const noexcept { return steps_; }

private:
    static void on_step(void* arg) noexcept {
        auto* self = static_cast<step_injector*>(arg);
        if (++self->steps_ == self->k_ && !self->target_.done()) {
            self->injected_ = self->target_.cancel("injected");
        }
    }

    runtime& rt_;
    task_handle<>& target_;
    long k_;
    long steps_ = 0;
    bool injected_ = false;
};

} // namespace uvasync::test
