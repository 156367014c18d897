// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <cstddef>

#include <uvasync/task.hpp>

namespace uvasync::test {

/// Counts live instances, so a test can check that every frame-held object was destroyed
/// exactly once (cppcoro's `counted`).
struct counted {
    static std::atomic<std::ptrdiff_t>& live() noexcept {
        static std::atomic<std::ptrdiff_t> n{0};
        return n;
    }

    counted() noexcept { ++live(); }

    counted(const counted&) noexcept { ++live(); }

    counted(counted&&) noexcept { ++live(); }

    counted& operator=(const counted&) = default;
    counted& operator=(counted&&) = default;

    ~counted() { --live(); }
};

/// Sets `ran` and returns 1: a lazy task whose by-value `counted` argument lets a test check
/// that a task that never starts still destroys its arguments exactly once.
[[nodiscard]] inline task<int> note_run(bool& ran, counted /*param*/) {
    ran = true;
    co_return 1;
}

} // namespace uvasync::test
