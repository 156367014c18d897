// SPDX-License-Identifier: MIT
// Shutdown (SEMANTICS 15): cancel every task, wait for them within the grace period, leak
// what is left, wait for libuv requests in flight, close the runtime's handles.
#include <chrono>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/trace_points.hpp>
#include <uvasync/error.hpp>
#include <uvasync/task.hpp>

#include "inbox.hpp"
#include "runtime_cold.hpp"
#include "runtime_handles.hpp"

namespace uvasync::detail {

namespace {

void on_handle_closed(uv_handle_t* h) {
    auto* handles = static_cast<loop_handles*>(h->data);
    if (--handles->open == 0) {
        if (handles->all_closed != nullptr) {
            *handles->all_closed = true;
        }
        std::function<void()> done = std::move(handles->on_closed);
        delete handles;
        if (done) {
            done();
        }
    }
}

} // namespace

void runtime_state::shutdown() {
    if (phase_ == phase::closed) {
        if (owns_loop_ && !cold_->loop_closed) {
            runtime_scope current(this);
            close_owned_loop(); // an earlier attempt found handles open: retry
        }
        return;
    }
    if (task_core* t = current_task(); t != nullptr && t->rt == this) {
        throw invalid_state("uvasync: a runtime cannot be shut down from inside one of its tasks");
    }
    runtime_scope current(this);
    if (phase_ == phase::running) {
        set_phase(phase::shutting_down);
        on_async(); // what other threads posted before the shutdown still runs
        tasks_.for_each([this](task_core& t) {
            if (!t.done()) {
                t.cancel(make_message("runtime shutdown"));
            }
        });
        if (live_tasks_ > 0) {
            wait_for_tasks();
        }
    }
    wait_for_requests(); // orphaned requests of frames destroyed earlier
    // Unobserved errors of finished tasks that handles still refer to (SEMANTICS 15.4); from
    // here on those tasks no longer know the runtime.
    tasks_.for_each([this](task_core& t) {
        if (t.result == outcome::error && !t.retrieved) {
            t.retrieved = true;
            report(t.error);
        }
        t.rt = nullptr;
        static_cast<list_hook<all_tasks_tag>&>(t).unlink();
    });
    drop_timed_calls(); // callbacks that have not run never will (SEMANTICS 20)
    set_phase(phase::closed);
    for (auto& m : cold_->mailbox->close()) {
        run_message(m, *this);
    }
    close_handles();
    if (owns_loop_) {
        close_owned_loop();
    }
}

void runtime_state::close_owned_loop() {
    // Like uv_run: the loop runs until nothing active and referenced is left, including the
    // program's own handles on loop() (SEMANTICS 15.6); then it must close.
    while (uv_run(loop_, UV_RUN_DEFAULT) != 0) {
    }
    if (uv_loop_close(loop_) == 0) {
        cold_->loop_closed = true;
        return;
    }
    std::string names;
    uv_walk(
        loop_,
        [](uv_handle_t* h, void* arg) {
            auto& out = *static_cast<std::string*>(arg);
            out += out.empty() ? "" : ", ";
            out += uv_handle_type_name(uv_handle_get_type(h));
            if (uv_is_closing(h) != 0) {
                out += " (closing)";
            }
        },
        &names);
    throw invalid_state("uvasync: the runtime's loop could not be closed; handles still open: " +
                        names + " (close them, then call shutdown() again)");
}

void runtime_state::close_from_callback(std::function<void()> on_closed) {
    if (phase_ == phase::closed) {
        throw invalid_state("uvasync: the runtime is already shut down");
    }
    if (owns_loop_) {
        throw invalid_state("uvasync: close_from_callback() needs a borrowed loop");
    }
    {
        runtime_scope current(this);
        on_async(); // posted work may still start tasks: checked below
    }
    if (live_tasks_ > 0 || pending_requests_ > 0) {
        throw invalid_state("uvasync: close_from_callback() needs a runtime with no unfinished "
                            "task and no request in flight");
    }
    cold_->on_closed = std::move(on_closed);
    shutdown(); // nothing to wait for: only close_handles, which does not run the loop now
}

void runtime_state::wait_for_tasks() {
    struct grace_entry : deadline_entry {
        bool expired = false;

        grace_entry()
            : deadline_entry([](deadline_entry* e) noexcept {
                static_cast<grace_entry*>(e)->expired = true;
            }) {}
    } grace;

    grace.when = deadline_after(now(), std::chrono::milliseconds(cold_->shutdown_grace_ms));
    deadlines_.release_one(); // the room the constructor held: add_deadline does not allocate
    if (grace.when == now()) {
        grace.expired = true;
    } else if (grace.when != never) {
        add_deadline(grace);
        cold_->grace = &grace;
    }
    // A virtual clock must be able to reach the grace deadline on its own.
    const bool saved_autojump = autojump_;
    autojump_ = true;
    update_idle();
    // Threadpool requests that uv_cancel could not take back still run and may use the frames
    // of these tasks: past the grace period, keep running the loop until their callbacks came,
    // before any frame is destroyed (SEMANTICS 15.3, 15.5).
    while (live_tasks_ > 0 && (!grace.expired || pending_requests_ > 0)) {
        uv_run(loop_, UV_RUN_ONCE);
    }
    autojump_ = saved_autojump;
    remove_deadline(grace);
    cold_->grace = nullptr;
    if (live_tasks_ > 0) {
        leak_remaining();
    }
    update_idle();
}

void runtime_state::leak_remaining() noexcept {
    // These tasks are never resumed again (D-12): drop the run queue, detach the waiters (all
    // of them are among these tasks), then destroy each body frame; its awaiters unregister
    // themselves as they are destroyed.
    // Each is pinned by a reference while frames are destroyed, since destroying one frame may
    // drop the last handle to another.
    // Nothing here may throw: without memory for the list of tasks or for a report, the tasks
    // are still destroyed (one at a time, or unreported).
    const auto drop_queues = [this]() noexcept {
        (void)ready_.take();
        (void)yielded_.take();
        (void)yielded_before_poll_.take();
    };
    drop_queues();
    const auto leak = [this](task_core& t) noexcept {
        try {
            report(std::make_exception_ptr(leaked_task_error(
                "uvasync: a task was still running when the shutdown grace period ended; its "
                "frame was destroyed without resuming it")));
        } catch (const std::bad_alloc&) {
            // No memory for the report: the task goes unreported, and is destroyed all the same.
        }
        t.destroy_frame();
        t.result = outcome::cancelled;
        t.error = nullptr; // a delivery the body may have caught (task_core's outcome slots)
        t.cancel_message = make_message("leaked at runtime shutdown");
        if (tracer_ != nullptr) {
            // Finished outside a step (instrumented_step reports the others).
            trace_finished(t, trace_group(t));
        }
        t.finish();
    };
    std::size_t count = 0;
    tasks_.for_each([&](task_core& t) {
        if (!t.done()) {
            t.waiters.clear();
            ++count;
        }
    });
    std::vector<task_core*> leaked;
    try {
        leaked.reserve(count);
    } catch (const std::bad_alloc&) {
        // No memory for the list: one task at a time, each found again among the tasks. A task
        // that is not done is kept alive by the runtime's own reference, so only the one being
        // destroyed needs a pin; the run queue is emptied before its pin goes.
        for (;;) {
            task_core* next = nullptr;
            tasks_.for_each([&](task_core& t) {
                if (next == nullptr && !t.done()) {
                    next = &t;
                }
            });
            if (next == nullptr) {
                return;
            }
            next->add_ref();
            leak(*next);
            drop_queues();
            next->release();
            drop_queues();
        }
    }
    tasks_.for_each([&](task_core& t) {
        if (!t.done()) {
            t.add_ref();
            leaked.push_back(&t); // never allocates: reserved above
        }
    });
    for (task_core* t : leaked) {
        leak(*t);
    }
    // Destroying a frame may have woken a waiter in another leaked task (an awaiter destructor
    // that completes a wait, e.g. closing a stream another task reads): such a task was pushed
    // onto the run queue after it was emptied above, and must not stay there once it is freed.
    // The pins keep every leaked core alive until after this point.
    drop_queues();
    for (task_core* t : leaked) {
        t->release();
    }
    drop_queues(); // releasing runs no task code, but nothing leaked may stay queued
}

void runtime_state::wait_for_requests() noexcept {
    // Every request of a cancelled task was uv_cancel'ed already: queued ones call back at
    // once with the cancelled status, only running ones remain. A to_thread function that
    // never returns blocks here.
    while (pending_requests_ > 0) {
        uv_run(loop_, UV_RUN_ONCE);
    }
}

void runtime_state::close_handles() noexcept {
    handles_->owner = nullptr; // callbacks that still come find no runtime
    loop_handles* h = handles_;
    bool all_closed = false;
    h->all_closed = &all_closed;
    for (uv_handle_t* handle :
         {reinterpret_cast<uv_handle_t*>(&h->timer), reinterpret_cast<uv_handle_t*>(&h->idle),
          reinterpret_cast<uv_handle_t*>(&h->prepare), reinterpret_cast<uv_handle_t*>(&h->check),
          reinterpret_cast<uv_handle_t*>(&h->async)}) {
        uv_close(handle, &on_handle_closed);
    }
    if (h->has_threshold) {
        uv_close(reinterpret_cast<uv_handle_t*>(&h->threshold), &on_handle_closed);
    }
    if (h->has_dump) {
        uv_close(reinterpret_cast<uv_handle_t*>(&h->dump), &on_handle_closed);
    }
    handles_ = nullptr;
    if (cold_->on_closed) {
        h->all_closed = nullptr;
        h->on_closed = std::move(cold_->on_closed);
        return; // close_from_callback: the loop is already running
    }
    // Run the loop just long enough for the close callbacks (the closing phase of one
    // iteration); the host's own handles are left alone.
    while (!all_closed) {
        uv_run(loop_, UV_RUN_NOWAIT);
    }
    // An owned loop is closed next: the callbacks of orphaned requests and the close of I/O
    // handles (a killed child waits for its exit callback) must run first, so they release
    // what they hold and uv_loop_close succeeds.
    if (owns_loop_) {
        while (pending_requests_ > 0 || closing_handles_ > 0) {
            uv_run(loop_, UV_RUN_ONCE);
        }
    }
}

} // namespace uvasync::detail
