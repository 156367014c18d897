// SPDX-License-Identifier: MIT
#pragma once

#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <uv.h>
#include <uvasync/cancel.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/request.hpp>

namespace uvasync {

namespace detail {

template <class F>
struct is_std_function : std::false_type {};

template <class Sig>
struct is_std_function<std::function<Sig>> : std::true_type {};

/// True when `F` is called with the operation's own token.
template <class F>
inline constexpr bool wants_token = std::is_invocable_v<F&, const cancel_token&>;

template <class F>
struct work_result {
    using type = std::invoke_result_t<F&>;
};

template <class F>
requires wants_token<F>

struct work_result<F> {
    using type = std::invoke_result_t<F&, const cancel_token&>;
};

/// The operation behind `to_thread`: owns `f`, the `uv_work_t` and the result. `f` is built
/// and destroyed on the loop thread and called on a threadpool thread; libuv's work queue
/// mutex orders the three.
template <class F>
class UVASYNC_API work_op final : public request_op {
public:
    using result_type = typename work_result<F>::type;
    static constexpr int cancelled_status = UV_ECANCELED;
    static constexpr bool throws_status = true;

    explicit work_op(F f)
        : f_(std::move(f)) {
        req_.data = this;
        if constexpr (wants_token<F>) {
            source_.emplace();
            token_ = source_->token();
        }
    }

    int start(uv_loop_t* loop) noexcept override {
        return uv_queue_work(loop, &req_, &on_work, &on_after_work);
    }

    uv_req_t* request() noexcept override { return reinterpret_cast<uv_req_t*>(&req_); }

    void on_busy() noexcept override {
        if constexpr (wants_token<F>) {
            source_->request_cancel("to_thread: cancelled while running");
        }
    }

    result_type take() {
        if (error_) {
            std::rethrow_exception(error_);
        }
        if constexpr (!std::is_void_v<result_type>) {
            return std::move(*value_);
        }
    }

private:
    static void on_work(uv_work_t* req) noexcept {
        // A threadpool thread: touches only f_, value_ and error_ (and the token's atomic).
        auto* self = static_cast<work_op*>(req->data);
        try {
            self->invoke();
        } catch (...) {
            self->error_ = std::current_exception();
        }
    }

    static void on_after_work(uv_work_t* req, int status) noexcept {
        static_cast<work_op*>(req->data)->finished(status);
    }

    void invoke() {
        if constexpr (std::is_void_v<result_type>) {
            call();
        } else {
            value_.emplace(call());
        }
    }

    decltype(auto) call() {
        if constexpr (wants_token<F>) {
            return std::invoke(f_, std::as_const(token_));
        } else {
            return std::invoke(f_);
        }
    }

    using stored = std::conditional_t<std::is_void_v<result_type>, bool, result_type>;

    uv_work_t req_{};
    F f_;
    std::optional<cancel_source> source_; // only when f takes a token
    cancel_token token_;
    std::optional<stored> value_;
    std::exception_ptr error_;
};

} // namespace detail

/// Runs `f()` on libuv's threadpool (`uv_queue_work`) and resumes with its result once it
/// has returned. The result may be `void` or a move-only type; a reference result is not
/// supported (return a value or a pointer). An exception thrown by `f` is transported and
/// rethrown here.
///
/// If `f` is invocable with a `const cancel_token&`, it is called with a token owned by the
/// operation. That token becomes cancelled when the awaiting task is cancelled while `f` runs
/// (or when the awaiting frame is destroyed meanwhile), and `f` may poll
/// `token.cancel_requested()` (an atomic load, safe on the threadpool thread) to stop early;
/// its `cancelled()` awaitable and `on_cancel` stay loop-thread only.
/// Unlike `current_token()`, this token stays valid as long as `f` holds it, even if the
/// awaiting frame is destroyed.
///
/// ```cpp
/// std::uint64_t sum = co_await uvasync::to_thread([&] { return checksum(bytes); });
/// ```
///
/// On g++ 12, name a function that owns something (a capture with a non-trivial destructor)
/// before the `co_await`: g++ 12.2 destroys such a lambda temporary twice when it is written
/// inside the `co_await` expression, whatever it is passed to (docs/toolchain.md section 2).
///
/// **Cancellation:** a cancellation point. Before the call, nothing is queued. While `f` is
/// queued, `uv_cancel` removes it, `f` never runs and `cancelled_error` is raised. While `f`
/// runs it cannot be stopped: the awaiter waits for it and returns its real result (or
/// rethrows its exception; completion wins, D-2); the cancellation then raises at the task's
/// next cancellation point. If the awaiting frame is destroyed while `f` is queued or running,
/// the operation outlives it, and the result is destroyed on the loop thread afterwards.
/// Runtime shutdown waits for a running `f` to return before it destroys any frame (so `f`
/// may capture the awaiting frame's locals by reference) and before it closes an owned loop:
/// a function that never returns blocks the shutdown, so a long one should take the token and
/// poll it (SEMANTICS 15.5).
///
/// **Errors:** `std::invalid_argument` (from this call) for a null function pointer or an
/// empty `std::function`; `std::system_error` (uv category) if libuv refuses the request;
/// whatever `f` throws.
///
/// **Thread:** the awaiter is loop-thread only, inside a task; `f` runs on a threadpool
/// thread, and is moved from and destroyed on the loop thread. `f` must not touch the
/// runtime or any task.
template <class F>
[[nodiscard]] detail::request_awaiter<detail::work_op<std::decay_t<F>>> to_thread(F&& f) {
    using fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<fn&> || detail::wants_token<fn>,
                  "to_thread: f must be callable as f() or f(const cancel_token&)");
    static_assert(!std::is_reference_v<typename detail::work_result<fn>::type>,
                  "to_thread: f must return a value, not a reference");
    if constexpr (std::is_pointer_v<fn> || std::is_member_pointer_v<fn> ||
                  detail::is_std_function<fn>::value) {
        if (f == nullptr) {
            throw std::invalid_argument("uvasync::to_thread: null function");
        }
    }
    return detail::request_awaiter<detail::work_op<fn>>(new detail::work_op<fn>(std::forward<F>(f)),
                                                        "to_thread");
}

} // namespace uvasync
