// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <vector>

#include <uvasync/clock.hpp>
#include <uvasync/detail/deadline_entry.hpp>
#include <uvasync/detail/intrusive_list.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/detail/timed_call_node.hpp>

// Private to the runtime's own files: what the scheduler keeps that no installed header needs
// (decision 0050). The inline members of runtime_state and the hot paths of the run queue and
// the deadline timer use only runtime_state's own members.

namespace uvasync {
class tracer;
} // namespace uvasync

namespace uvasync::detail {

class inbox;

/// The runtime's options as the scheduler keeps them (made by runtime.cpp from
/// `runtime_options`).
struct runtime_state::config {
    clock_kind clock = clock_kind::loop;
    bool autojump = true;
    std::chrono::milliseconds autojump_threshold{0};
    std::chrono::milliseconds shutdown_grace{5000};
    std::function<void(std::exception_ptr)> exception_handler;
    std::shared_ptr<uvasync::tracer> tracer; // trace.hpp
    std::chrono::milliseconds slow_wait_threshold{0};
    int dump_signal = 0; // introspection.hpp
};

/// The scheduler's cold part, owned by its runtime_state (`cold_`): loop thread only.
struct runtime_cold {
    inbox* mailbox = nullptr; // one reference, released by the destructor
    std::function<void(std::exception_ptr)> exception_handler;
    std::shared_ptr<uvasync::tracer> tracer_owner; // runtime_state::tracer_ points into it
    loop_clock::duration slow_wait_threshold{0};   // introspection.cpp
    std::int64_t autojump_threshold_ms = 0;        // virtual clock only (run_queue.cpp)
    std::int64_t shutdown_grace_ms = 0;
    deadline_entry* grace = nullptr; // shutdown's grace deadline while it waits
    std::function<void()> on_closed; // close_from_callback: handed to the handles
    int keep_alive_holders = 0;
    runtime_state* previous_current = nullptr; // the thread's runtime before this one
    std::vector<std::unique_ptr<timed_call_node>> timed_calls; // the pool, every node made
    timed_call_node* free_timed_calls = nullptr;
    bool loop_closed = false;
    deadline started_at; // the origin of the times runtime::dump writes
};

} // namespace uvasync::detail
