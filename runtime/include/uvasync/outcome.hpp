// SPDX-License-Identifier: MIT
#pragma once

#include <exception>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include <uvasync/error.hpp>
#include <uvasync/task.hpp>

namespace uvasync {

/// How an operation ended, as a value: a value, an error (`std::exception_ptr`) or cancelled
/// (a `cancelled_error` with the owner's message). `void` operations hold `unit`.
///
/// `gather(return_exceptions, ...)` returns one per child; `as_outcome(aw)` returns one for a
/// single awaitable (SEMANTICS 19). Building one never throws anything but `std::bad_alloc`.
template <class T>
class outcome {
public:
    using value_type = std::conditional_t<std::is_void_v<T>, unit, T>;

    explicit outcome(value_type v)
        : v_(std::in_place_index<0>, std::move(v)) {}

    explicit outcome(std::exception_ptr e)
        : v_(std::in_place_index<1>, std::move(e)) {}

    explicit outcome(cancelled_error c)
        : v_(std::in_place_index<2>, std::move(c)) {}

    [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }

    [[nodiscard]] bool has_error() const noexcept { return v_.index() == 1; }

    [[nodiscard]] bool cancelled() const noexcept { return v_.index() == 2; }

    explicit operator bool() const noexcept { return has_value(); }

    /// The value; rethrows the error or the `cancelled_error` otherwise.
    value_type& value() & {
        rethrow_unless_value();
        return std::get<0>(v_);
    }

    value_type&& value() && {
        rethrow_unless_value();
        return std::get<0>(std::move(v_));
    }

    /// The cancellation's message (empty unless `cancelled()`, and for a deadline).
    [[nodiscard]] std::string_view message() const noexcept {
        return cancelled() ? std::get<2>(v_).message() : std::string_view();
    }

    /// The error (null unless `has_error()`).
    [[nodiscard]] std::exception_ptr error() const noexcept {
        return has_error() ? std::get<1>(v_) : nullptr;
    }

private:
    void rethrow_unless_value() const {
        if (v_.index() == 1) {
            std::rethrow_exception(std::get<1>(v_));
        }
        if (v_.index() == 2) {
            throw std::get<2>(v_);
        }
    }

    std::variant<value_type, std::exception_ptr, cancelled_error> v_;
};

} // namespace uvasync
