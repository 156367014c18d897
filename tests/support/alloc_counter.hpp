// SPDX-License-Identifier: MIT
#pragma once
// Counts every allocation of the test program, for tests of allocation guarantees. Include it
// in exactly one file of a test executable: it replaces the global operators. Every form of
// the unaligned operators is replaced, so no allocation is paired with a sanitizer's own
// operator.

#include <cstddef>
#include <cstdlib>
#include <new>

namespace uvasync::test {

inline std::size_t allocations = 0; // loop thread only: the tests that read it are single-threaded

inline void* counted_alloc(std::size_t n) noexcept {
    ++allocations;
    return std::malloc(n == 0 ? 1 : n);
}

} // namespace uvasync::test

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
