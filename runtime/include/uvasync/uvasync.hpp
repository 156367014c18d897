// SPDX-License-Identifier: MIT
// The core and composition API of uvasync; the I/O layer is <uvasync/io.hpp>, so a program
// that only uses tasks, timeouts and cancellation does not compile it.
#pragma once
// **Thread:** this header only includes others; each states which of its functions are
// thread-safe (only `runtime::post`, `cancel_source::request_cancel` and the copying of
// tokens and sources are; everything else is loop-thread only, SEMANTICS 3.8).

// clang-format off: this include stays first
#include <uvasync/detail/requires_cxx20.hpp> // a clear error without C++20
// clang-format on

#include <uvasync/as_completed.hpp>
#include <uvasync/as_outcome.hpp>
#include <uvasync/cancel.hpp>
#include <uvasync/clock.hpp>
#include <uvasync/error.hpp>
#include <uvasync/exception_group.hpp>
#include <uvasync/gather.hpp>
#include <uvasync/introspection.hpp>
#include <uvasync/outcome.hpp>
#include <uvasync/runtime.hpp>
#include <uvasync/shield.hpp>
#include <uvasync/sleep.hpp>
#include <uvasync/sync/barrier.hpp>
#include <uvasync/sync/condition.hpp>
#include <uvasync/sync/event.hpp>
#include <uvasync/sync/future.hpp>
#include <uvasync/sync/mutex.hpp>
#include <uvasync/sync/queue.hpp>
#include <uvasync/sync/semaphore.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_group.hpp>
#include <uvasync/task_handle.hpp>
#include <uvasync/task_local.hpp>
#include <uvasync/timeout.hpp>
#include <uvasync/timer.hpp>
#include <uvasync/trace.hpp>
#include <uvasync/wait_any.hpp>
#include <uvasync/wait_for.hpp>
