// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>

#include <uvasync/detail/task_core.hpp>
#include <uvasync/error.hpp>
#include <uvasync/task.hpp>

namespace uvasync::detail {

/// A spawned task's state plus its result slot.
template <class T>
class task_state : public task_core {
public:
    std::optional<T> value;

    /// For a finished task, taken once by its single owner (`run`): the value, or the error
    /// rethrown, or `cancelled_error` with the task's message.
    T take_outcome() {
        rethrow_unless_value();
        return std::move(*value);
    }
};

template <>
class task_state<void> : public task_core {
public:
    void take_outcome() { rethrow_unless_value(); }
};

/// The root frame of a spawned task: it owns the task's state (in its promise) and awaits the
/// user's `task<T>` inline, turning whatever comes out into the task's outcome (SEMANTICS 2.3).
template <class T>
class root_frame {
public:
    struct promise_type : frame_allocation {
        task_state<T> state;

        root_frame get_return_object() noexcept {
            return root_frame{std::coroutine_handle<promise_type>::from_promise(*this)};
        }

        std::suspend_always initial_suspend() const noexcept { return {}; }

        struct final_awaiter {
            [[nodiscard]] bool await_ready() const noexcept { return false; }

            void await_suspend(std::coroutine_handle<promise_type> h) const noexcept {
                h.promise().state.finish(); // may destroy this frame
            }

            void await_resume() const noexcept {}
        };

        final_awaiter final_suspend() const noexcept { return {}; }

        void return_void() const noexcept {}

        // The body catches everything; an exception here would be a bug in the runtime.
        [[noreturn]] void unhandled_exception() const noexcept { std::terminate(); }
    };

    std::coroutine_handle<promise_type> handle;
};

template <class T>
struct own_state {
    task_state<T>* state = nullptr;

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<typename root_frame<T>::promise_type> h) noexcept {
        state = &h.promise().state;
        return false;
    }

    task_state<T>& await_resume() const noexcept { return *state; }
};

/// Starts a lazy task inline and resumes the caller when it has finished, without taking its
/// result (the caller inspects it).
template <class T>
struct run_inline {
    task<T>& body;

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
        return body.start_inline(caller);
    }

    void await_resume() const noexcept {}
};

template <class T>
root_frame<T> root_body(task<T> body) {
    task_state<T>& st = co_await own_state<T>{};
    if (st.task_scope.cancelled()) {
        // Cancelled before its first step: the body never runs (SEMANTICS 2.7).
        st.cancel_message = owner_of(&st.task_scope)->node.message();
        st.result = outcome::cancelled;
        body.reset();
        co_return;
    }
    st.body = &body;
    co_await run_inline<T>{body};
    if (const std::exception_ptr& e = body.handle().promise().error_;
        e != nullptr && e == st.last_delivery) {
        // The body ended with the cancellation the runtime delivered (the very object, not a
        // copy): the outcome is known without rethrowing it (bench/NOTES.md, W3).
        st.cancel_message = std::move(st.last_delivery_message);
        st.result = outcome::cancelled;
        body.reset();
    } else {
        try {
            if constexpr (std::is_void_v<T>) {
                body.take_result();
            } else {
                st.value.emplace(body.take_result());
            }
            st.result = outcome::value;
        } catch (const cancelled_error& e) {
            st.cancel_message = e.shared_message();
            st.result = outcome::cancelled;
        } catch (...) {
            st.error = std::current_exception();
            st.result = outcome::error;
        }
    }
    st.last_delivery = nullptr;
    st.last_delivery_message = nullptr;
    st.body = nullptr;
}

} // namespace uvasync::detail
