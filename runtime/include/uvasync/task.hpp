// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include <uvasync/detail/export.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/error.hpp>

namespace uvasync {

template <class T = void>
class task;

/// The value of a `void` result where a value is needed (`std::optional<unit>`, tuples).
struct unit {
    friend constexpr bool operator==(unit, unit) noexcept { return true; }
};

namespace detail {

/// Live coroutine frames of this library's coroutine types, for leak checks in tests. Counted
/// only in builds without NDEBUG (one relaxed increment per frame).
UVASYNC_API std::atomic<std::ptrdiff_t>& live_frame_counter() noexcept;

/// Continues with `next` directly, or, when this task has chained too many transfers since it
/// was last resumed from the run queue, queues `next` and unwinds the native stack.
/// The bounce is not a cancellation point: nothing is checked and nothing is delivered.
inline std::coroutine_handle<> transfer(std::coroutine_handle<> next) noexcept {
    task_core* core = current_task();
    if (core == nullptr || --core->transfer_budget != 0) {
        return next;
    }
    core->rt->schedule(core, next);
    return std::noop_coroutine();
}

/// The allocation of a `task<T>` frame (decision 0021): room for a `task_core`, a small
/// header, then the coroutine frame. A task that is awaited inline never constructs the core;
/// `spawn` constructs it in place, so a spawned task is one allocation. The block is freed when
/// both the frame and the core are gone: a task destroyed at shutdown keeps its core (and the
/// block) for its handles, and a finished task's core outlives its frame.
struct task_frame_header {
    bool core_live = false; // spawn constructed a task_core in front of the frame
    bool frame_live = true; // the coroutine frame has not been destroyed yet
};

inline constexpr std::size_t task_frame_align = 16;
// The core, then the header right in front of the frame, rounded up so that the frame stays
// aligned: the header usually fits in the core's rounding and costs nothing.
inline constexpr std::size_t task_frame_prefix =
    (sizeof(task_core) + sizeof(task_frame_header) + task_frame_align - 1) / task_frame_align *
    task_frame_align;

inline task_frame_header& frame_header(void* frame) noexcept {
    return *reinterpret_cast<task_frame_header*>(static_cast<char*>(frame) -
                                                 sizeof(task_frame_header));
}

/// The storage of the core of the task whose frame is `frame` (constructed by spawn only).
inline void* core_storage(void* frame) noexcept {
    return static_cast<char*>(frame) - task_frame_prefix;
}

inline task_core* spawned_core(void* frame) noexcept {
    return std::launder(static_cast<task_core*>(core_storage(frame)));
}

inline std::coroutine_handle<> task_core::frame() const noexcept {
    return std::coroutine_handle<>::from_address(
        const_cast<char*>(reinterpret_cast<const char*>(this)) + task_frame_prefix);
}

/// Frees the block of a frame whose coroutine was destroyed and whose core is gone.
void free_task_block(void* frame) noexcept;

class UVASYNC_API task_promise_base {
public:
    struct final_awaiter {
        [[nodiscard]] bool await_ready() const noexcept { return false; }

        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
            if (frame_header(h.address()).core_live) [[unlikely]] {
                // A spawned task's body ended: record its outcome; may destroy this frame.
                spawned_core(h.address())
                    ->body_finished(h.promise().error_, P::holds_value && !h.promise().error_);
                return std::noop_coroutine();
            }
            return transfer(h.promise().continuation_);
        }

        void await_resume() const noexcept {}
    };

    // Counted in builds without NDEBUG (live_frame_counter). Defined out of line: inlined, GCC
    // 12 reports a false -Wmismatched-new-delete on coroutine frames.
    static void* operator new(std::size_t size);
    static void operator delete(void* frame, std::size_t size) noexcept;

    std::suspend_always initial_suspend() const noexcept { return {}; }

    final_awaiter final_suspend() const noexcept { return {}; }

    void unhandled_exception() noexcept { error_ = std::current_exception(); }

    void rethrow_if_failed() const {
        if (error_) {
            std::rethrow_exception(error_);
        }
    }

    std::coroutine_handle<> continuation_;
    std::exception_ptr error_;
};

template <class T>
class task_promise final : public task_promise_base {
public:
    static constexpr bool holds_value = true;

    task<T> get_return_object() noexcept;

    /// For a spawned task's handles: the value the body returned (kept until the last handle).
    std::optional<T>& value_slot() noexcept { return value_; }

    template <class U = T>
    requires std::is_convertible_v<U&&, T>

    void return_value(U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
        value_.emplace(std::forward<U>(value));
    }

    T take() {
        rethrow_if_failed();
        return std::move(*value_);
    }

private:
    std::optional<T> value_;
};

template <>
class task_promise<void> final : public task_promise_base {
public:
    static constexpr bool holds_value = false;

    task<void> get_return_object() noexcept;

    void return_void() const noexcept {}

    void take() const { rethrow_if_failed(); }
};

/// Type-erased owner of a lazy task's frame.
class task_base {
public:
    task_base() noexcept = default;

    explicit task_base(std::coroutine_handle<> h) noexcept
        : handle_(h) {}

    task_base(task_base&& other) noexcept
        : handle_(std::exchange(other.handle_, nullptr))
        , awaited_(std::exchange(other.awaited_, false)) {}

    task_base& operator=(task_base&& other) noexcept {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, nullptr);
            awaited_ = std::exchange(other.awaited_, false);
        }
        return *this;
    }

    task_base(const task_base&) = delete;
    task_base& operator=(const task_base&) = delete;

    ~task_base() { reset(); }

    /// Destroys the frame (suspended or never started). Destructors of live locals run.
    void reset() noexcept {
        if (handle_) {
            std::exchange(handle_, nullptr).destroy();
        }
    }

    [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(handle_); }

    /// For `spawn`: gives up the frame without destroying it (the spawned core owns it now).
    std::coroutine_handle<> release() noexcept { return std::exchange(handle_, nullptr); }

protected:
    std::coroutine_handle<> handle_;
    bool awaited_ = false;
};

} // namespace detail

/// A lazy coroutine: nothing runs until it is awaited (inline, as a call, in the awaiting task)
/// or spawned with `runtime::spawn` (as its own task).
///
/// Awaiting a `task` is not a cancellation point; its suspensions inside are. A task can be
/// awaited once: awaiting it again, or awaiting a moved-from task, throws `invalid_state`.
/// Destroying a task that never ran destroys its frame and its parameters without running it.
///
/// **Thread:** loop thread only.
template <class T>
class [[nodiscard]] task : public detail::task_base {
public:
    using promise_type = detail::task_promise<T>;
    using value_type = T;

    task() noexcept = default;

    explicit task(std::coroutine_handle<promise_type> h) noexcept
        : task_base(h) {}

    class awaiter {
    public:
        explicit awaiter(task& t) noexcept
            : task_(t) {}

        [[nodiscard]] bool await_ready() const noexcept { return !task_.handle_ || task_.awaited_; }

        std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) noexcept {
            started_ = true;
            return task_.start_inline(caller);
        }

        T await_resume() {
            if (!started_) {
                throw invalid_state("uvasync: this task was already awaited or is empty");
            }
            return task_.take_result();
        }

    private:
        task& task_;
        bool started_ = false;
    };

    awaiter operator co_await() & noexcept { return awaiter(*this); }

    awaiter operator co_await() && noexcept { return awaiter(*this); }

    /// For library code: starts this unstarted task inline with `caller` as its continuation.
    std::coroutine_handle<> start_inline(std::coroutine_handle<> caller) noexcept {
        awaited_ = true;
        handle().promise().continuation_ = caller;
        return detail::transfer(handle());
    }

    /// For library code: the finished task's value, or its exception rethrown; the frame is
    /// destroyed either way.
    T take_result() {
        struct destroy_after {
            task& t;

            ~destroy_after() { t.reset(); }
        } guard{*this};

        if constexpr (std::is_void_v<T>) {
            handle().promise().take();
        } else {
            return handle().promise().take();
        }
    }

    /// For library code: the typed handle (null when empty).
    [[nodiscard]] std::coroutine_handle<promise_type> handle() const noexcept {
        return std::coroutine_handle<promise_type>::from_address(handle_.address());
    }
};

namespace detail {

template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
    return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}

inline task<void> task_promise<void>::get_return_object() noexcept {
    return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}

template <class T>
struct is_task : std::false_type {};

template <class T>
struct is_task<task<T>> : std::true_type {};

/// The awaiter that `co_await a` uses: `a.operator co_await()` when it has one, else `a`.
template <class A>
decltype(auto) get_awaiter(A&& a) {
    if constexpr (requires { std::forward<A>(a).operator co_await(); }) {
        return std::forward<A>(a).operator co_await();
    } else {
        return std::forward<A>(a);
    }
}

/// The result type of `co_await`ing an `A` from a task.
template <class A>
using await_result_t = decltype(get_awaiter(std::declval<A>()).await_resume());

/// Wraps any awaitable in a lazy task so scopes can run it inline. Tasks pass through.
template <class A>
auto as_task(A&& a) {
    if constexpr (is_task<std::remove_cvref_t<A>>::value) {
        return std::forward<A>(a);
    } else {
        return [](std::remove_cvref_t<A> aw) -> task<await_result_t<std::remove_cvref_t<A>>> {
            co_return co_await std::move(aw);
        }(std::forward<A>(a));
    }
}

} // namespace detail
} // namespace uvasync
