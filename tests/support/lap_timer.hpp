// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include <uvasync/uvasync.hpp>

namespace uvasync::test {

/// Records, at each call, the loop-clock milliseconds since the previous call (since
/// construction for the first): for tests that check how long each await took.
class lap_timer {
public:
    explicit lap_timer(std::vector<std::int64_t>& laps)
        : laps_(&laps)
        , mark_(loop_clock::now()) {}

    void operator()() {
        const deadline t = loop_clock::now();
        laps_->push_back((t - mark_).count());
        mark_ = t;
    }

    /// When the last lap ended.
    [[nodiscard]] deadline mark() const noexcept { return mark_; }

private:
    std::vector<std::int64_t>* laps_;
    deadline mark_;
};

/// Sleeps that SEMANTICS 6.2.3 rounds up to whole milliseconds, each followed by a lap:
/// 300 µs (lap 1), 1.2 ms (lap 2) and 1 ns (lap 1).
[[nodiscard]] inline task<void> sub_millisecond_sleeps(lap_timer& lap) {
    co_await sleep(std::chrono::microseconds(300));
    lap();
    co_await sleep(std::chrono::duration<double, std::milli>(1.2));
    lap();
    co_await sleep(std::chrono::nanoseconds(1));
    lap();
}

} // namespace uvasync::test
