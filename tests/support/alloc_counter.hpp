// SPDX-License-Identifier: MIT
#pragma once
// Counts every allocation of the test program, for tests of allocation guarantees. Include it
// in exactly one file of a test executable: it replaces the global operators. Every form of
// the unaligned operators is replaced, so no allocation is paired with a sanitizer's own
// operator.

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

// ThreadSanitizer's static runtime defines the global operators itself (the link would fail
// with multiple definitions), so under TSan nothing is replaced and nothing is counted: tests
// that need the counts skip themselves with `doctest::skip(!counting_allocations)`.
#if defined(__SANITIZE_THREAD__)
#define UVASYNC_TEST_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UVASYNC_TEST_UNDER_TSAN 1
#endif
#endif
#ifndef UVASYNC_TEST_UNDER_TSAN
#define UVASYNC_TEST_UNDER_TSAN 0
#endif

namespace uvasync::test {

/// False when the global operators could not be replaced (TSan): the counts stay 0.
inline constexpr bool counting_allocations = UVASYNC_TEST_UNDER_TSAN == 0;

/// Every allocation of the program, from any thread (relaxed: counts, not ordering).
inline std::atomic<std::size_t> allocations{0};

/// The largest single allocation since the test last stored 0 here.
inline std::atomic<std::size_t> largest_allocation{0};

inline void* counted_alloc(std::size_t n) noexcept {
    allocations.fetch_add(1, std::memory_order_relaxed);
    std::size_t seen = largest_allocation.load(std::memory_order_relaxed);
    while (n > seen &&
           !largest_allocation.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
    }
    return std::malloc(n == 0 ? 1 : n);
}

} // namespace uvasync::test

#if !UVASYNC_TEST_UNDER_TSAN
void* operator new(std::size_t n) {
    if (void* p = uvasync::test::counted_alloc(n)) {
        return p;
    }
    throw std::bad_alloc();
}

void* operator new[](std::size_t n) {
    if (void* p = uvasync::test::counted_alloc(n)) {
        return p;
    }
    throw std::bad_alloc();
}

void* operator new(std::size_t n, const std::nothrow_t& /*tag*/) noexcept {
    return uvasync::test::counted_alloc(n);
}

void* operator new[](std::size_t n, const std::nothrow_t& /*tag*/) noexcept {
    return uvasync::test::counted_alloc(n);
}

// g++ 12 flags the free() below once it inlines a replaced operator delete into a caller of
// operator new (-Wmismatched-new-delete); the pair is consistent: both replaced, malloc/free.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void operator delete(void* p) noexcept {
    std::free(p);
}

void operator delete[](void* p) noexcept {
    std::free(p);
}

void operator delete(void* p, std::size_t /*n*/) noexcept {
    std::free(p);
}

void operator delete[](void* p, std::size_t /*n*/) noexcept {
    std::free(p);
}

void operator delete(void* p, const std::nothrow_t& /*tag*/) noexcept {
    std::free(p);
}

void operator delete[](void* p, const std::nothrow_t& /*tag*/) noexcept {
    std::free(p);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif // !UVASYNC_TEST_UNDER_TSAN
