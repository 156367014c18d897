// SPDX-License-Identifier: MIT
// Counts every C++ throw and rethrow in the process (throw_count.cpp).
#pragma once

#include <cstdint>

namespace bench {

/// Unwinds started so far: `throw`, `throw;` and `std::rethrow_exception` (GCC's runtime starts
/// each through `_Unwind_RaiseException` or `_Unwind_Resume_or_Rethrow`).
std::uint64_t throws() noexcept;

} // namespace bench
