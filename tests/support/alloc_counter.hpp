// SPDX-License-Identifier: MIT
#pragma once
// Counts every allocation of the test program, for tests of allocation guarantees. Include it
// in exactly one file of a test executable: it replaces the global operators
// (replace_operators.hpp). Under ThreadSanitizer, whose runtime defines the operators itself,
// it counts through the sanitizer allocator's malloc hook instead, which sees every allocation
// the allocator makes: the operators' and malloc's alike, so there the counts also include the
// allocations of C code (libuv), a superset of the operators' (documented in
// docs/reliability.md).

#include <atomic>
#include <cstddef>
#include <cstdlib>

#include "replace_operators.hpp"

namespace uvasync::test {

/// True: every build counts (through the operators, or under TSan through the malloc hook).
inline constexpr bool counting_allocations = true;

/// Every allocation of the program, from any thread (relaxed: counts, not ordering).
inline std::atomic<std::size_t> allocations{0};

/// The largest single allocation since the test last stored 0 here.
inline std::atomic<std::size_t> largest_allocation{0};

/// Records one allocation of `n` bytes.
inline void count_allocation(std::size_t n) noexcept {
    allocations.fetch_add(1, std::memory_order_relaxed);
    std::size_t seen = largest_allocation.load(std::memory_order_relaxed);
    while (n > seen &&
           !largest_allocation.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
    }
}

// Defined here, not inline: this header is included once per program (see above).
void* replaced_alloc(std::size_t n) noexcept { // NOLINT(misc-definitions-in-headers)
    count_allocation(n);
    return std::malloc(n);
}

} // namespace uvasync::test

#if UVASYNC_TEST_UNDER_TSAN
// sanitizer_common's hook API (sanitizer/allocator_interface.h, which GCC does not install):
// the hooks run for every allocation and deallocation of the sanitizer's allocator.
extern "C" int __sanitizer_install_malloc_and_free_hooks( // NOLINT(readability-identifier-naming)
    void (*malloc_hook)(const volatile void*, std::size_t),
    void (*free_hook)(const volatile void*));

namespace uvasync::test {

/// Installs the counting hook before main (the count starts with the program).
inline const bool allocation_hook_installed =
    __sanitizer_install_malloc_and_free_hooks(
        [](const volatile void* /*p*/, std::size_t n) { count_allocation(n); },
        [](const volatile void* /*p*/) {}) != 0;

} // namespace uvasync::test
#endif // UVASYNC_TEST_UNDER_TSAN
