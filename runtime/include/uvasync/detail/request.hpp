// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <utility>

#include <uv.h>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/io/error.hpp>

namespace uvasync::detail {

class request_wait;

/// The heap half of an awaitable libuv request (fs, getaddrinfo, getnameinfo, work): it owns
/// the `uv_req_t`, every buffer libuv may touch and the result (SEMANTICS 14.6; layer 4 of
/// docs/runtime-layout.md). It outlives the awaiting frame when it has to: the request callback
/// frees it if its awaiter is gone ("orphaned"), otherwise the awaiter frees it after taking the
/// result.
///
/// The destructor of a derived operation disposes of a result nobody took: it closes an opened
/// fd, frees an addrinfo, destroys a value computed on the threadpool. It runs on the loop
/// thread, after the request callback (or when the request never started).
class UVASYNC_API request_op {
public:
    request_op() = default;
    request_op(const request_op&) = delete;
    request_op& operator=(const request_op&) = delete;
    request_op(request_op&&) = delete;
    request_op& operator=(request_op&&) = delete;
    virtual ~request_op() = default;

    /// Returned by `start` for an operation that had nothing to do and completed with status 0
    /// without a request (closing a closed file).
    static constexpr int completed_inline = 1;

    /// Makes the libuv call with the operation's callback. A negative status means libuv did
    /// not accept the request and no callback will come (libuv's rule, errors.rst).
    virtual int start(uv_loop_t* loop) noexcept = 0;

    /// The request, for `uv_cancel`.
    virtual uv_req_t* request() noexcept = 0;

    /// Called when `uv_cancel` could not take the request back (it runs or ran already), and
    /// when the awaiter orphans the operation. to_thread uses it to tell the function to stop.
    virtual void on_busy() noexcept {}

    /// The status the operation completed with: 0 or a negative libuv code.
    [[nodiscard]] int status() const noexcept { return status_; }

    [[nodiscard]] bool done() const noexcept { return done_; }

    /// Called by the derived request callback, last, after it collected the result and
    /// released libuv's own request memory (`uv_fs_req_cleanup`). Frees the operation when its
    /// awaiter is gone; `this` must not be used after the call.
    void finished(int status) noexcept;

    /// The awaiter is being destroyed before the callback came (its frame was destroyed while
    /// suspended): asks libuv to drop the request and lets the callback free the operation.
    /// `cancel` is false when an earlier `uv_cancel` already took the request back (its
    /// callback is on its way, and a second `uv_cancel` would queue it again).
    void orphan(bool cancel) noexcept {
        waiter_ = nullptr;
        if (cancel && uv_cancel(request()) != 0) {
            on_busy();
        }
    }

private:
    friend class request_wait;

    request_wait* waiter_ = nullptr;
    runtime_state* rt_ = nullptr; // counts the request in flight, from start to callback
    int status_ = 0;
    bool done_ = false;
};

/// The awaiter half of a request, in the awaiting frame: the abort protocol of `parked_wait`
/// with `uv_cancel` as the abort hook. It owns the operation until the callback (then the
/// operation owns itself if the awaiter is gone) and frees it after taking the result.
class UVASYNC_API request_wait : protected parked_wait {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    request_wait(const request_wait&) = delete;
    request_wait& operator=(const request_wait&) = delete;
    request_wait& operator=(request_wait&&) = delete;

    /// Only before it is awaited (like every awaiter).
    request_wait(request_wait&& other) noexcept
        : parked_wait(std::move(other))
        , op_(std::exchange(other.op_, nullptr))
        , what_(other.what_)
        , cancelled_status_(other.cancelled_status_) {}

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller) {
        if (!park(caller, what_)) {
            return false; // cancelled before start: the libuv call is never made
        }
        op_->waiter_ = this;
        const int rc = op_->start(core()->rt->loop());
        if (rc < 0 || rc == request_op::completed_inline) {
            op_->waiter_ = nullptr;
            op_->done_ = true;
            start_error_ = rc < 0 ? rc : 0;
            unpark();
            return false;
        }
        started_ = true;
        op_->rt_ = core()->rt;
        op_->rt_->request_started(); // shutdown waits for the callback (SEMANTICS 15.5)
        return true;
    }

protected:
    request_wait(request_op* op, const char* what, int cancelled_status) noexcept
        : parked_wait(&on_abort, kind)
        , op_(op)
        , what_(what)
        , cancelled_status_(cancelled_status) {}

    // runtime::dump: "request" (a libuv request: fs, threadpool work, DNS) and which one.
    static const wait_kind kind;

    static void describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
        out += static_cast<const request_wait&>(w).what_;
    }

    ~request_wait() {
        if (op_ == nullptr) {
            return;
        }
        if (started_ && !op_->done()) {
            op_->orphan(!cancel_sent_); // the callback frees it
        } else {
            delete op_; // never started, or completed and never resumed: disposes the result
        }
    }

    /// Step 4 for a request: raises `cancelled_error` when aborted (before start, or the
    /// request came back with the cancelled status), the start error, or the request's error
    /// status when `throw_status` is set. Otherwise hands over the finished operation, which
    /// the caller deletes after taking the result.
    request_op* resume_op(bool throw_status = true) {
        request_op* op = std::exchange(op_, nullptr);

        struct guard {
            request_op* op;

            ~guard() { delete op; }
        } g{op};

        finish();
        if (start_error_ < 0) {
            throw_uv_error(start_error_, what_);
        }
        if (throw_status && op->status() < 0) {
            throw_uv_error(op->status(), what_);
        }
        g.op = nullptr;
        return op;
    }

    [[nodiscard]] const char* what() const noexcept { return what_; }

private:
    friend class request_op;

    void on_done(int status) noexcept {
        if (status == cancelled_status_ && cancel_sent_) {
            aborted(); // uv_cancel returned 0: the request never ran
        } else {
            complete(); // completion wins, also after an abort that found it running (D-2)
        }
    }

    static void on_abort(parked_wait* p) noexcept {
        auto* self = static_cast<request_wait*>(p);
        if (uv_cancel(self->op_->request()) == 0) {
            self->cancel_sent_ = true; // the callback comes with the cancelled status
        } else {
            self->op_->on_busy(); // UV_EBUSY: it runs; keep waiting for the real result
        }
    }

    request_op* op_;
    const char* what_;
    int cancelled_status_;
    int start_error_ = 0;
    bool started_ = false;
    bool cancel_sent_ = false;
};

inline void request_op::finished(int status) noexcept {
    status_ = status;
    done_ = true;
    if (rt_ != nullptr) {
        rt_->request_finished();
        rt_ = nullptr;
    }
    if (waiter_ == nullptr) {
        delete this; // orphaned: nobody takes the result, the destructor disposes of it
        return;
    }
    waiter_->on_done(status);
}

/// The typed awaiter: `Op` is a `request_op` with `static constexpr int cancelled_status`
/// and `take()`, which returns the result (called on the loop thread, after the callback).
inline const wait_kind request_wait::kind{"request", &request_wait::describe};

template <class Op>
class [[nodiscard]] request_awaiter : public request_wait {
public:
    explicit request_awaiter(Op* op, const char* what) noexcept
        : request_wait(op, what, Op::cancelled_status) {}

    decltype(auto) await_resume() {
        Op* op = static_cast<Op*>(resume_op(Op::throws_status));

        struct guard {
            Op* op;

            ~guard() { delete op; }
        } g{op};

        return op->take();
    }
};

} // namespace uvasync::detail
