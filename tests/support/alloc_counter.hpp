// SPDX-License-Identifier: MIT
#pragma once
// Counts every allocation of the test program, for tests of allocation guarantees. Include it
// in exactly one file of a test executable: it replaces the global operators
// (replace_operators.hpp).

#include <atomic>
#include <cstddef>
#include <cstdlib>

#include "replace_operators.hpp"

namespace uvasync::test {

/// False when the global operators could not be replaced (TSan): the counts stay 0.
inline constexpr bool counting_allocations = replacing_allocations;

/// Every allocation of the program, from any thread (relaxed: counts, not ordering).
inline std::atomic<std::size_t> allocations{0};

/// The largest single allocation since the test last stored 0 here.
inline std::atomic<std::size_t> largest_allocation{0};

// Defined here, not inline: this header is included once per program (see above).
void* replaced_alloc(std::size_t n) noexcept { // NOLINT(misc-definitions-in-headers)
    allocations.fetch_add(1, std::memory_order_relaxed);
    std::size_t seen = largest_allocation.load(std::memory_order_relaxed);
    while (n > seen &&
           !largest_allocation.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
    }
    return std::malloc(n);
}

} // namespace uvasync::test
