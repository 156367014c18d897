// SPDX-License-Identifier: MIT
#pragma once

#include <system_error>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

namespace uvasync::test {

/// Checks, from outside any task, how a finished task ended.

/// `h` is done and ended cancelled.
template <class T>
void check_cancelled(task_handle<T>& h) {
    REQUIRE(h.done());
    CHECK_THROWS_AS(h.result(), cancelled_error);
}

/// `h` is done and ended with the libuv error `code` (a `std::system_error`).
template <class T>
void check_uv_error(task_handle<T>& h, int code) {
    REQUIRE(h.done());
    try {
        h.result();
        FAIL("no error");
    } catch (const std::system_error& e) {
        CHECK_MESSAGE(e.code() == uv_error_code(code), e.what());
    }
}

} // namespace uvasync::test
