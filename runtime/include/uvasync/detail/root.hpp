// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <optional>
#include <type_traits>

#include <uvasync/detail/task_core.hpp>
#include <uvasync/error.hpp>
#include <uvasync/task.hpp>

namespace uvasync::detail {

/// A spawned task's state seen with its result type. The core lives in front of the task's
/// own frame (decision 0021); a value the body returned stays in the frame's promise, which is
/// kept until the last handle is gone, so this type adds no members to `task_core`.
template <class T>
class task_state : public task_core {
public:
    /// The value slot of a task whose outcome is `value`.
    std::optional<T>& value() noexcept {
        return std::coroutine_handle<task_promise<T>>::from_address(frame().address())
            .promise()
            .value_slot();
    }

    /// For a finished task, taken once by its single owner (`run`): the value, or the error
    /// rethrown, or `cancelled_error` with the task's message.
    T take_outcome() {
        rethrow_unless_value();
        return std::move(*value());
    }
};

template <>
class task_state<void> : public task_core {
public:
    void take_outcome() { rethrow_unless_value(); }
};

/// Constructs the state of a spawned task in front of `body`'s frame and takes the frame
/// over: from now on the state owns it. One allocation per spawned task: the frame's.
template <class T>
task_state<T>* adopt_frame(task<T>& body) noexcept {
    static_assert(sizeof(task_state<T>) == sizeof(task_core));
    std::coroutine_handle<> h = body.release();
    auto* st = new (core_storage(h.address())) task_state<T>();
    frame_header(h.address()).core_live = true;
    st->resume_point = h;
    return st;
}

} // namespace uvasync::detail
