// SPDX-License-Identifier: MIT
#include <uvasync/error.hpp>

namespace uvasync::detail {

const std::runtime_error& timed_out_prototype() {
    // Never destroyed, so that a timeout_error made during static destruction still finds it.
    static const std::runtime_error* const prototype =
        new std::runtime_error("operation timed out");
    return *prototype;
}

} // namespace uvasync::detail
