// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>

namespace uvasync::test {

/// Counts every C++ unwind the process starts: `__cxa_throw` (a `throw`), `__cxa_rethrow` (a
/// `throw;`) and `std::rethrow_exception` (the runtime raises delivered cancellations through
/// it, and a `__cxa_throw` hook never sees those). The wrappers live in throw_counter.cpp,
/// which a test executable links as one of its own sources (not through the support library,
/// so the linker always takes it); they forward to the real functions found with
/// `dlsym(RTLD_NEXT)`, or to the sanitizer's interceptor when one is linked in statically.
///
/// Counting is per process and not synchronised: use it from the loop thread only.
struct throw_counter {
    /// Every unwind started so far.
    static std::size_t total() noexcept;

    /// False when the wrappers are not in effect (then tests that count must not run).
    static bool active() noexcept;
};

/// The unwinds started between its construction and `count()`.
class throws_since {
public:
    throws_since() noexcept
        : start_(throw_counter::total()) {}

    [[nodiscard]] std::size_t count() const noexcept { return throw_counter::total() - start_; }

private:
    std::size_t start_;
};

} // namespace uvasync::test
