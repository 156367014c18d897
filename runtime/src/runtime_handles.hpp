// SPDX-License-Identifier: MIT
#pragma once

#include <functional>

#include <uv.h>
#include <uvasync/detail/runtime_state.hpp>

#include "inbox.hpp"

// Private to the runtime's own files (runtime_state.cpp, run_queue.cpp, deadline_timer.cpp,
// cross_thread.cpp, shutdown.cpp): the libuv handles behind the scheduler.

namespace uvasync::detail {

/// The runtime's libuv handles. They live apart from the runtime and free themselves in the
/// last close callback, because libuv may touch a handle until its close callback has run
/// (handle.rst), which can be after the runtime object is gone.
struct loop_handles {
    uv_timer_t timer{};     // the deadline queue's one timer (real clock)
    uv_timer_t threshold{}; // virtual clock with an autojump threshold only
    bool has_threshold = false;
    uv_idle_t idle{};       // keeps the poll from blocking while tasks are ready
    uv_prepare_t prepare{}; // drains the run queue before the poll
    uv_check_t check{};     // drains it after the poll; virtual autojump
    uv_async_t async{};     // the inbox wake-up
    uv_signal_t dump{};     // runtime_options::dump_signal only (introspection.cpp)
    bool has_dump = false;
    int open = 0;
    runtime_state* owner = nullptr;
    bool* all_closed = nullptr;      // set by close_handles while it waits
    std::function<void()> on_closed; // close_from_callback: runs after the last close
};

/// The libuv callback of each runtime handle: forwards to the runtime while it still owns the
/// handle (after shutdown nothing is forwarded).
template <class Handle, void (runtime_state::*Member)() noexcept>
void forward(Handle* h) {
    if (runtime_state* rt =
            static_cast<loop_handles*>(reinterpret_cast<uv_handle_t*>(h)->data)->owner) {
        (rt->*Member)();
    }
}

/// Makes `rt` the thread's current runtime for the duration of a callback.
class runtime_scope {
public:
    explicit runtime_scope(runtime_state* rt) noexcept
        : context_(this_thread_context()) // one thread-local lookup per loop callback
        , saved_(context_.runtime) {
        context_.runtime = rt;
    }

    runtime_scope(const runtime_scope&) = delete;
    runtime_scope& operator=(const runtime_scope&) = delete;
    runtime_scope(runtime_scope&&) = delete;
    runtime_scope& operator=(runtime_scope&&) = delete;

    ~runtime_scope() { context_.runtime = saved_; }

    /// The calling thread's context, for the drain.
    [[nodiscard]] thread_context& context() const noexcept { return context_; }

private:
    thread_context& context_;
    runtime_state* saved_;
};

/// Runs one message of the inbox on the loop thread (cross_thread.cpp).
void run_message(inbox::message& m, runtime_state& rt) noexcept;

} // namespace uvasync::detail
