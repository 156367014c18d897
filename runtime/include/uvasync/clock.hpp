// SPDX-License-Identifier: MIT
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include <uvasync/detail/export.hpp>

namespace uvasync {

/// The loop clock: `uv_now()` of the current runtime's loop, in whole milliseconds from an
/// arbitrary origin (or the runtime's virtual clock, SEMANTICS 18). It is not wall-clock time.
/// `now()` refreshes the loop time first (`uv_update_time`), so `now() + d` is measured from
/// the call even after synchronous work in the same iteration (SEMANTICS 13.2).
///
/// **Thread:** `now()` reads the runtime of the calling thread (inside a task, the task's
/// runtime); outside any runtime it throws `invalid_state`.
struct UVASYNC_API loop_clock {
    using rep = std::int64_t;
    using period = std::milli;
    using duration = std::chrono::duration<rep, period>;
    using time_point = std::chrono::time_point<loop_clock, duration>;
    static constexpr bool is_steady = true;

    static time_point now();
};

/// An absolute point on the loop clock.
using deadline = loop_clock::time_point;

/// The far future: no deadline entry, no armed timer, nothing that keeps the loop alive.
inline constexpr deadline never = deadline::max();

namespace detail {

/// Converts a relative delay into a deadline after `now` with the rules of SEMANTICS 6.2:
/// NaN throws `std::invalid_argument`; zero and negative are due at once (`now`); a positive
/// delay rounds up to whole milliseconds; anything that does not fit saturates to `never`.
/// The range check comes before any conversion, so no step overflows or converts an
/// out-of-range floating value.
template <class Rep, class Period>
deadline deadline_after(deadline now, std::chrono::duration<Rep, Period> d) {
    static_assert(std::is_arithmetic_v<Rep>, "durations must have an arithmetic representation");
    const auto count = d.count();
    if constexpr (std::is_floating_point_v<Rep>) {
        // NaN, the one value neither below nor at or above zero (std::isnan needs <cmath>, which
        // would cost every user of this header about 8,000 preprocessed lines).
        if (!(count < Rep(0)) && !(count >= Rep(0))) {
            throw std::invalid_argument("uvasync: a NaN duration is not a delay");
        }
    }
    if (!(count > Rep(0))) {
        return now;
    }
    const std::int64_t room = (never - now).count(); // milliseconds until `never`
    // Milliseconds = count * num * 1000 / den, rounded up. A long double estimate rejects what
    // is far out of range (and +inf) before anything is converted; the exact value decides.
    constexpr long double scale =
        1000.0L * static_cast<long double>(Period::num) / static_cast<long double>(Period::den);
    const long double approx = static_cast<long double>(count) * scale;
    const auto room_ld = static_cast<long double>(room);
    if (!(approx < room_ld * 2)) {
        return never;
    }
    std::int64_t ms = 0;
    if constexpr (std::is_floating_point_v<Rep>) {
        // ceil(approx) < room, without <cmath>: at or past `room` saturates; below it the
        // value fits in 64 bits and truncating then adding one for a fraction rounds up.
        if (!(approx < room_ld)) {
            return never;
        }
        ms = static_cast<std::int64_t>(approx);
        if (static_cast<long double>(ms) < approx) {
            ++ms;
        }
        if (!(ms < room)) {
            return never;
        }
    } else {
        // Exact in 128 bits: count * num * 1000 stays below 2^127 for any standard ratio
        // once the estimate above is in range.
        __extension__ using wide = __int128;
        const wide num = static_cast<wide>(count) * Period::num * 1000;
        const wide up = (num + Period::den - 1) / Period::den;
        if (up >= static_cast<wide>(room)) {
            return never;
        }
        ms = static_cast<std::int64_t>(up);
    }
    if (ms < 1) {
        ms = 1; // a positive delay is never due at once
    }
    return now + loop_clock::duration(ms);
}

/// `now + delay` for an already rounded, non-negative delay, saturating to `never`.
inline deadline add_saturated(deadline now, loop_clock::duration delay) noexcept {
    return delay >= never - now ? never : now + delay;
}

} // namespace detail
} // namespace uvasync
