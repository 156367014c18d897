// SPDX-License-Identifier: MIT
// Interposes the three entry points of C++ unwinding to count them (throw_counter.hpp). The
// executable's definitions take precedence over libstdc++'s (the executable comes first in
// symbol lookup), and each forwards to the next definition: libstdc++'s, or the sanitizer's
// interceptor (a shared libasan is found by RTLD_NEXT; clang's static runtime defines its
// interceptors in the executable as `__interceptor_<name>`, which is called directly).
#include "throw_counter.hpp"

#include <cstddef>
#include <cstdlib>
#include <exception>
#include <utility>

#include <dlfcn.h>

namespace {

std::size_t unwinds = 0;
bool seen_wrapper = false;

template <class F>
F next(const char* name) {
    void* f = dlsym(RTLD_NEXT, name);
    if (f == nullptr) {
        std::abort(); // no real definition: the process cannot throw at all
    }
    return reinterpret_cast<F>(f);
}

using throw_fn = void (*)(void*, void*, void (*)(void*));
using rethrow_fn = void (*)();
using rethrow_exception_fn = void (*)(std::exception_ptr);

} // namespace

extern "C" {

// Weak: present only when a sanitizer runtime is linked statically (clang). The type is
// `std::type_info*`; it is spelled `void*` as the compiler's own implicit declaration does.
// NOLINTNEXTLINE(bugprone-reserved-identifier,readability-identifier-naming): the ABI's name
void __interceptor___cxa_throw(void*, void*, void (*)(void*)) __attribute__((weak));

// NOLINTNEXTLINE(bugprone-reserved-identifier,readability-identifier-naming): the ABI's name
[[noreturn]] void __cxa_throw(void* object, void* type, void (*destroy)(void*)) {
    ++unwinds;
    seen_wrapper = true;
    if (&__interceptor___cxa_throw != nullptr) {
        __interceptor___cxa_throw(object, type, destroy);
    } else {
        static const auto real = next<throw_fn>("__cxa_throw");
        real(object, type, destroy);
    }
    std::abort(); // not reached
}

// NOLINTNEXTLINE(bugprone-reserved-identifier,readability-identifier-naming): the ABI's name
[[noreturn]] void __cxa_rethrow() {
    ++unwinds;
    seen_wrapper = true;
    static const auto real = next<rethrow_fn>("__cxa_rethrow");
    real();
    std::abort(); // not reached
}

} // extern "C"

namespace std {

// libstdc++ defines it out of line (exception_ptr.h declares it); the executable's definition
// is the one every caller in the process binds to.
// (No [[noreturn]] here: the library's first declaration carries it.)
void rethrow_exception(exception_ptr p) {
    ++unwinds;
    seen_wrapper = true;
    static const auto real =
        next<rethrow_exception_fn>("_ZSt17rethrow_exceptionNSt15__exception_ptr13exception_ptrE");
    real(std::move(p));
    std::abort(); // not reached
}

} // namespace std

namespace uvasync::test {

std::size_t throw_counter::total() noexcept {
    return unwinds;
}

bool throw_counter::active() noexcept {
    if (!seen_wrapper) {
        try {
            throw 0; // probes the wrapper once
        } catch (int) {
        }
    }
    return seen_wrapper;
}

} // namespace uvasync::test
