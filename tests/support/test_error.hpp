// SPDX-License-Identifier: MIT
#pragma once

#include <stdexcept>
#include <string>

namespace uvasync::test {

/// An ordinary error with a payload, to check that the object rethrown is the one thrown.
struct my_error : std::runtime_error {
    explicit my_error(int c)
        : std::runtime_error("my_error " + std::to_string(c))
        , code(c) {}

    int code;
};

} // namespace uvasync::test
