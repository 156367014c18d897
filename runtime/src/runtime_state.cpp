// SPDX-License-Identifier: MIT
// The scheduler's construction and teardown, and the thread's current runtime. The run queue,
// the deadline timer, the cross-thread inbox and shutdown each have their own file.
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/trace_points.hpp>
#include <uvasync/error.hpp>
#include <uvasync/uv_error.hpp>

#include "inbox.hpp"
#include "runtime_cold.hpp"
#include "runtime_handles.hpp"

namespace uvasync::detail {

namespace {

void default_exception_handler(std::exception_ptr e) {
    std::string what = "unknown error";
    try {
        std::rethrow_exception(std::move(e));
    } catch (const std::exception& ex) {
        what = ex.what();
    } catch (const cancelled_error& c) {
        what = std::string("cancelled: ") + c.what();
    } catch (...) {
    }
    std::fprintf(stderr, "uvasync: unobserved error: %s\n", what.c_str());
}

} // namespace

runtime_state::runtime_state(uv_loop_t* loop, bool owns_loop, config cfg)
    : loop_(loop)
    , tracer_(cfg.tracer.get())
    , instrumented_(tracer_ != nullptr)
    , plain_adopt_(tracer_ == nullptr)
    , owns_loop_(owns_loop)
    , virtual_(cfg.clock == clock_kind::virtual_time)
    , autojump_(cfg.autojump)
    , cold_(std::make_unique<runtime_cold>()) {
    cold_->autojump_threshold_ms = cfg.autojump_threshold.count();
    cold_->shutdown_grace_ms = cfg.shutdown_grace.count();
    // Here, not in the member initializers: after cold_, so that if either allocation fails
    // the other is not leaked (handles_ is a raw pointer the close callbacks free).
    handles_ = new loop_handles; // NOLINT(cppcoreguidelines-prefer-member-initializer)
    cold_->exception_handler = std::move(cfg.exception_handler);
    cold_->tracer_owner = std::move(cfg.tracer);
    cold_->slow_wait_threshold = cfg.slow_wait_threshold;
    if (tracer_ != nullptr) {
        observe_propagations(&trace_propagation); // cancellations tell the tracer (trace.hpp)
    }
    if (loop_ == nullptr) {
        delete handles_;
        throw std::invalid_argument("uvasync: runtime needs a loop (got a null uv_loop_t*)");
    }
    try {
        // Room for the shutdown grace deadline, which is added where nothing may throw (the
        // runtime's destructor): held from here until shutdown adds it.
        deadlines_.hold_one();
    } catch (...) {
        delete handles_;
        throw;
    }
    if (!cold_->exception_handler) {
        cold_->exception_handler = &default_exception_handler;
    }
    uv_update_time(loop_);
    virtual_now_ = static_cast<std::int64_t>(uv_now(loop_));
    cold_->started_at = now();
    handles_->owner = this;
    auto init = [&](uv_handle_t* h, int rc, const char* what) {
        check_uv(rc, what);
        h->data = handles_;
        ++handles_->open;
    };
    init(reinterpret_cast<uv_handle_t*>(&handles_->timer), uv_timer_init(loop_, &handles_->timer),
         "uvasync: uv_timer_init");
    if (virtual_ && cold_->autojump_threshold_ms > 0) {
        // Only a virtual clock with an autojump threshold needs this timer (SEMANTICS 18.4).
        init(reinterpret_cast<uv_handle_t*>(&handles_->threshold),
             uv_timer_init(loop_, &handles_->threshold), "uvasync: uv_timer_init");
        handles_->has_threshold = true;
    }
    init(reinterpret_cast<uv_handle_t*>(&handles_->idle), uv_idle_init(loop_, &handles_->idle),
         "uvasync: uv_idle_init");
    init(reinterpret_cast<uv_handle_t*>(&handles_->prepare),
         uv_prepare_init(loop_, &handles_->prepare), "uvasync: uv_prepare_init");
    init(reinterpret_cast<uv_handle_t*>(&handles_->check), uv_check_init(loop_, &handles_->check),
         "uvasync: uv_check_init");
    init(reinterpret_cast<uv_handle_t*>(&handles_->async),
         uv_async_init(loop_, &handles_->async, &forward<uv_async_t, &runtime_state::on_async>),
         "uvasync: uv_async_init");
    if (cfg.dump_signal != 0) {
        // Only a runtime asked for it has this handle; unreferenced, it never keeps the loop
        // alive, and close_handles closes it with the others.
        init(reinterpret_cast<uv_handle_t*>(&handles_->dump),
             uv_signal_init(loop_, &handles_->dump), "uvasync: uv_signal_init");
        handles_->has_dump = true;
        check_uv(uv_signal_start(
                     &handles_->dump,
                     [](uv_signal_t* h, int) {
                         forward<uv_signal_t, &runtime_state::on_dump_signal>(h);
                     },
                     cfg.dump_signal),
                 "uvasync: uv_signal_start (runtime_options::dump_signal)");
        uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->dump));
    }
    cold_->mailbox = new inbox(&handles_->async);

    // Prepare and check always run while the loop runs, but must never keep it alive; the
    // async handle only keeps an owned loop alive while run() waits for its main task.
    uv_prepare_start(&handles_->prepare, &forward<uv_prepare_t, &runtime_state::on_prepare>);
    uv_check_start(&handles_->check, &forward<uv_check_t, &runtime_state::on_check>);
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->prepare));
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->check));
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->async));

    thread_context& ctx = this_thread_context();
    cold_->previous_current = ctx.runtime;
    ctx.runtime = this;
}

runtime_state::~runtime_state() {
    const bool close_failure_thrown = phase_ == phase::closed && owns_loop_ && !cold_->loop_closed;
    try {
        shutdown(); // retries closing the loop after a failure shutdown() threw
    } catch (...) {
        // The owned loop could not be closed (SEMANTICS 15.6). A destructor cannot throw: the
        // error goes to the exception handler unless shutdown() already threw it to the
        // caller. The loop memory stays allocated rather than being freed under libuv's feet:
        // whoever still holds `loop()` may close the handles and the loop itself.
        if (!close_failure_thrown) {
            report(std::current_exception());
        }
    }
    cold_->mailbox->release();
    thread_context& ctx = this_thread_context();
    if (ctx.runtime == this) {
        ctx.runtime = cold_->previous_current;
    }
    if (owns_loop_ && cold_->loop_closed) {
        delete loop_;
    }
}

void runtime_state::wrong_thread(const char* what) {
    throw invalid_state(std::string("uvasync: ") + what +
                        " called from a thread that is not the runtime's loop thread; only "
                        "post(), cancel_source::request_cancel() and the functions documented "
                        "as thread-safe may be called from other threads (SEMANTICS 3.8)");
}

void runtime_state::report(std::exception_ptr e) noexcept {
    try {
        cold_->exception_handler(std::move(e));
    } catch (...) {
        std::fprintf(stderr, "uvasync: the exception handler threw\n");
    }
}

void runtime_state::keep_alive(bool on) noexcept {
    cold_->keep_alive_holders += on ? 1 : -1;
    if (handles_ == nullptr) {
        return; // closed
    }
    auto* h = reinterpret_cast<uv_handle_t*>(&handles_->async);
    if (cold_->keep_alive_holders > 0) {
        uv_ref(h);
    } else {
        uv_unref(h);
    }
}

thread_context& this_thread_context() noexcept {
    thread_local thread_context context;
    return context;
}

inbox* runtime_state::mailbox() const noexcept {
    return cold_->mailbox;
}

deadline runtime_state::started_at() const noexcept {
    return cold_->started_at;
}

inbox* current_inbox() noexcept {
    runtime_state* rt = this_thread_context().runtime;
    return rt != nullptr ? rt->mailbox() : nullptr;
}

runtime_state& current_runtime(const char* what) {
    if (task_core* core = current_task()) {
        return *core->rt;
    }
    if (runtime_state* rt = this_thread_context().runtime) {
        return *rt;
    }
    throw_no_runtime(what);
}

void throw_no_runtime(const char* what) {
    throw invalid_state(std::string("uvasync: ") + what + " needs a runtime on this thread");
}

} // namespace uvasync::detail
