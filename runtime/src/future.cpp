// SPDX-License-Identifier: MIT
#include <exception>
#include <future>

#include <uvasync/sync/future.hpp>

namespace uvasync::detail {

std::exception_ptr broken_promise_error() {
    return std::make_exception_ptr(std::future_error(std::future_errc::broken_promise));
}

} // namespace uvasync::detail
