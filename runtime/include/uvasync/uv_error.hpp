// SPDX-License-Identifier: MIT
#pragma once

#include <string>
#include <system_error>

#include <uvasync/detail/export.hpp>

// **Thread:** the exception types here are plain values: thread-safe like any standard
// exception (copy them freely, rethrow them on any thread).
namespace uvasync {

/// The error category of libuv status codes. An `std::error_code` in it holds libuv's own
/// negative code (`UV_ECONNREFUSED`, `UV_EOF`, ...); `message()` is `uv_strerror`, and
/// `uv_error_name(code)` gives `uv_err_name` ("ECONNREFUSED").
///
/// Every failure of a libuv call (an I/O operation, or the runtime's own handles) is thrown as
/// `std::system_error` with a code in this category, so a caller can compare against libuv's
/// constants: `e.code() == uv_error_code(UV_ECONNREFUSED)`. The code also compares equal to the
/// matching `std::errc` where libuv maps an errno
/// (`e.code() == std::errc::connection_refused`).
UVASYNC_API const std::error_category& uv_category() noexcept;

/// `status` (a negative libuv code) as an `std::error_code` in `uv_category()`.
UVASYNC_API std::error_code uv_error_code(int status) noexcept;

/// libuv's name for `status`, for example "ECANCELED" (`uv_err_name`).
UVASYNC_API std::string uv_error_name(int status);

/// Throws `std::system_error(uv_error_code(status), what)`.
[[noreturn]] UVASYNC_API void throw_uv_error(int status, const char* what);

namespace detail {

/// Throws `std::system_error` when a libuv call returned a negative status; returns `status`.
inline int check_uv(int status, const char* what) {
    if (status < 0) {
        throw_uv_error(status, what);
    }
    return status;
}

} // namespace detail

} // namespace uvasync
