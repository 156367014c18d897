// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <uvasync/detail/export.hpp>

// **Thread:** the exception types here are plain values: thread-safe like any standard
// exception (copy them freely, rethrow them on any thread).
namespace uvasync {

/// Raised at a cancellation point inside a cancelled scope.
///
/// It deliberately does **not** derive from `std::exception`, so `catch (const std::exception&)`
/// cannot swallow it (Python made `CancelledError` a `BaseException` for the same reason).
/// `catch (...)` still catches it; such a block must rethrow. The exception records which scope
/// owns it (the outermost cancelled scope around the point where it was raised, SEMANTICS 4.8):
/// only that scope converts it (a timeout into `timeout_error`, a task into "cancelled").
class UVASYNC_API cancelled_error {
public:
    cancelled_error() = default;

    explicit cancelled_error(std::string_view message)
        : message_(message.empty() ? nullptr : std::make_shared<const std::string>(message)) {}

    /// The first message the owning scope was cancelled with; empty for a deadline.
    [[nodiscard]] std::string_view message() const noexcept {
        return message_ ? std::string_view(*message_) : std::string_view();
    }

    /// Same as `message()`, for code written against the `std::exception` shape.
    [[nodiscard]] const char* what() const noexcept {
        return message_ ? message_->c_str() : "cancelled";
    }

    /// Identity of the owning scope, or 0 when no scope of the current task owns it.
    [[nodiscard]] std::uint64_t owner() const noexcept { return owner_; }

    /// Used by the runtime when it raises a delivery.
    cancelled_error(std::shared_ptr<const std::string> message, std::uint64_t owner) noexcept
        : message_(std::move(message))
        , owner_(owner) {}

    [[nodiscard]] const std::shared_ptr<const std::string>& shared_message() const noexcept {
        return message_;
    }

private:
    std::shared_ptr<const std::string> message_;
    std::uint64_t owner_ = 0;
};

namespace detail {

/// A `std::runtime_error` saying "operation timed out", made on first use and never destroyed.
/// A default `timeout_error` copies it, sharing its reference-counted text: built afresh, the
/// text cost an allocation, a copy and a free per timeout (bench/NOTES.md, fourth pass).
UVASYNC_API const std::runtime_error& timed_out_prototype();

} // namespace detail

/// Thrown by `timeout`/`timeout_at`/`wait_for` when the scope's own deadline (or its own
/// `cancel()`) ended the body. When a `cancelled_error` unwound the body it is nested in it
/// (`std::rethrow_if_nested`); around a leaf awaitable (a sleep, an I/O operation, ...) nothing
/// unwound and nothing is nested: the `timeout_error` is the only throw (SEMANTICS 19.4).
/// An ordinary, catchable failure.
class timeout_error : public std::runtime_error {
public:
    timeout_error()
        : std::runtime_error(detail::timed_out_prototype()) {} // what(): "operation timed out"

    explicit timeout_error(const std::string& what)
        : std::runtime_error(what) {}
};

/// Misuse of the API that can only be detected at run time: awaiting a task twice, entering a
/// scope twice or outside a task, rescheduling an expired scope, spawning into a finished group.
class UVASYNC_API invalid_state : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

/// Reported to the runtime's exception handler for a task that was still running when the
/// shutdown grace period ran out (SEMANTICS 15.3). Its frame is destroyed without resuming it.
class UVASYNC_API leaked_task_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

} // namespace uvasync
