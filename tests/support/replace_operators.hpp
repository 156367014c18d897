// SPDX-License-Identifier: MIT
#pragma once
// Replaces the global allocation operators of a test program with ones that allocate through
// `uvasync::test::replaced_alloc`, which the program defines (alloc_counter.hpp counts; the
// fault-injection test fails the k-th allocation). Include it in exactly one file of a test
// executable. Every form of the unaligned operators is replaced, so no allocation is paired
// with a sanitizer's own operator; deallocation is `std::free`.

#include <cstddef>
#include <cstdlib>
#include <new>

// ThreadSanitizer's static runtime defines the global operators itself (the link would fail
// with multiple definitions), so under TSan nothing is replaced: `replaced_alloc` is never
// called, and tests that need it skip themselves with `doctest::skip(!replacing_allocations)`.
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

/// False when the global operators could not be replaced (TSan).
inline constexpr bool replacing_allocations = UVASYNC_TEST_UNDER_TSAN == 0;

/// Defined by the test program: `n` bytes (never 0) from `std::malloc`, or null to make the
/// allocation fail (`std::bad_alloc` from the throwing forms).
void* replaced_alloc(std::size_t n) noexcept;

} // namespace uvasync::test

#if !UVASYNC_TEST_UNDER_TSAN

// g++ 12 flags the free() below once it inlines a replaced operator into a caller of the other
// (-Wmismatched-new-delete); the pair is consistent: both replaced, malloc/free.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

void* operator new(std::size_t n) {
    if (void* p = uvasync::test::replaced_alloc(n == 0 ? 1 : n)) {
        return p;
    }
    throw std::bad_alloc();
}

void* operator new[](std::size_t n) {
    if (void* p = uvasync::test::replaced_alloc(n == 0 ? 1 : n)) {
        return p;
    }
    throw std::bad_alloc();
}

void* operator new(std::size_t n, const std::nothrow_t& /*tag*/) noexcept {
    return uvasync::test::replaced_alloc(n == 0 ? 1 : n);
}

void* operator new[](std::size_t n, const std::nothrow_t& /*tag*/) noexcept {
    return uvasync::test::replaced_alloc(n == 0 ? 1 : n);
}

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
