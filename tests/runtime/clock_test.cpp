// SPDX-License-Identifier: MIT
// The loop clock and the duration-to-deadline conversion: SEMANTICS sections 6 and 13, D-6.
//
// Conversion tests call `detail::deadline_after(now, d)` directly, for every kind of
// `std::chrono` duration; the suite also runs under UBSan, so an overflowing conversion shows up
// as a failure there. Timing tests on the virtual clock assert exact loop-clock times; the few
// that must use the real clock (13.1-13.6) assert only lower bounds on the loop clock and bound
// everything else by loop iterations.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <ratio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

#include "lap_timer.hpp"
#include "loop_fixture.hpp"
#include "string_makers.hpp"

using namespace std::chrono_literals;
using namespace uvasync;
using uvasync::test::active_handles;
using uvasync::test::lap_timer;
using uvasync::test::loop_fixture;
using uvasync::test::sub_millisecond_sleeps;

namespace {

using std::chrono::duration;

using megaseconds = duration<std::int64_t, std::ratio<1000000>>;
using picoseconds = duration<std::int64_t, std::pico>;
using thirds = duration<std::int64_t, std::ratio<1, 3>>;

constexpr std::int64_t int64_max = std::numeric_limits<std::int64_t>::max();
constexpr std::uint64_t uint64_max = std::numeric_limits<std::uint64_t>::max();

template <class T>
constexpr T inf = std::numeric_limits<T>::infinity();

template <class T>
constexpr T qnan = std::numeric_limits<T>::quiet_NaN();

deadline at_ms(std::int64_t ms) {
    return deadline(loop_clock::duration(ms));
}

/// Milliseconds that `deadline_after` adds to `now`.
template <class Rep, class Period>
std::int64_t added(deadline now, duration<Rep, Period> d) {
    return (detail::deadline_after(now, d) - now).count();
}

/// The loop's own cached time, as a deadline.
deadline uv_time(uv_loop_t* loop) {
    return at_ms(static_cast<std::int64_t>(uv_now(loop)));
}

/// loop_clock::now(), which refreshes the loop's time (13.2), read before uv_now, then compared:
/// the two sides of an == are unsequenced, and uv_now read first can be a millisecond behind.
bool clock_now_is_uv_now(uv_loop_t* loop) {
    const deadline t = loop_clock::now();
    return t == uv_time(loop);
}

/// The single active timer of `loop`, or null when there is none or more than one.
uv_timer_t* only_active_timer(uv_loop_t* loop) {
    struct acc {
        uv_timer_t* timer = nullptr;
        int n = 0;
    } a;

    uv_walk(
        loop,
        [](uv_handle_t* h, void* arg) {
            auto* a = static_cast<acc*>(arg);
            if (uv_handle_get_type(h) == UV_TIMER && uv_is_active(h) != 0) {
                a->timer = reinterpret_cast<uv_timer_t*>(h);
                ++a->n;
            }
        },
        &a);
    return a.n == 1 ? a.timer : nullptr;
}

task<int> count_run(int& runs) {
    ++runs;
    co_return 1;
}

task<int> quick(int v) {
    co_await yield();
    co_return v;
}

runtime_options virtual_without_autojump() {
    runtime_options o = loop_fixture::virtual_clock();
    o.autojump = false;
    return o;
}

} // namespace

TEST_SUITE("clock") {

    // ---------------------------------------------------------------------------------------------
    // 6.2 / D-6: the conversion itself

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-6 6.2.1 a NaN delay throws std::invalid_argument for every floating-point "
                      "representation and period") {
        const deadline now = this->now();
        CHECK_THROWS_AS(detail::deadline_after(now, duration<float>(qnan<float>)),
                        std::invalid_argument);
        CHECK_THROWS_AS(detail::deadline_after(now, duration<double, std::milli>(qnan<double>)),
                        std::invalid_argument);
        CHECK_THROWS_AS(
            detail::deadline_after(now, duration<long double, std::nano>(qnan<long double>)),
            std::invalid_argument);
        CHECK_THROWS_AS(
            detail::deadline_after(now, duration<double, std::ratio<3600>>(qnan<double>)),
            std::invalid_argument);
        CHECK_THROWS_AS(detail::deadline_after(now, duration<double>(-qnan<double>)),
                        std::invalid_argument);
        CHECK_THROWS_AS(detail::deadline_after(
                            now, duration<double>(std::numeric_limits<double>::signaling_NaN())),
                        std::invalid_argument);
        CHECK_THROWS_AS(detail::deadline_after(never, duration<float, std::micro>(qnan<float>)),
                        std::invalid_argument);
        CHECK_THROWS_AS(detail::deadline_after(deadline{}, duration<double>(qnan<double>)),
                        std::invalid_argument);
    }

    namespace {

    task<void> reschedule_to_nan(timeout_scope& s, bool& threw) {
        const deadline before = s.when();
        try {
            s.reschedule(duration<double, std::milli>(qnan<double>));
        } catch (const std::invalid_argument&) {
            threw = true;
        }
        CHECK(s.when() == before);
        CHECK_FALSE(s.expired());
        co_return;
    }

    task<void> nan_everywhere(int& runs, bool& reschedule_threw) {
        const duration<double, std::milli> nan{qnan<double>};
        CHECK_THROWS_AS((void)uvasync::sleep(nan), std::invalid_argument);
        CHECK_THROWS_AS((void)timeout(nan, count_run(runs)), std::invalid_argument);
        CHECK_THROWS_AS((void)move_on_after(nan, count_run(runs)), std::invalid_argument);
        auto factory = [&runs](timeout_scope&) { return count_run(runs); };
        CHECK_THROWS_AS((void)timeout(nan, factory), std::invalid_argument);
        CHECK_THROWS_AS((void)move_on_after(nan, factory), std::invalid_argument);

        auto resched = [&reschedule_threw](timeout_scope& s) {
            return reschedule_to_nan(s, reschedule_threw);
        };
        co_await timeout(10s, resched);
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2.1 a NaN delay throws from sleep, timeout, move_on_after and reschedule "
                      "before anything runs") {
        int runs = 0;
        bool reschedule_threw = false;
        const deadline start = now();
        run(nan_everywhere(runs, reschedule_threw));
        CHECK(runs == 0); // no body started
        CHECK(reschedule_threw);
        CHECK(now() == start); // and nothing waited
    }

    TEST_CASE_FIXTURE(
        loop_fixture,
        "D-6 6.2.2 zero and negative delays, minus infinity included, are due at once") {
        for (const deadline now : {deadline{}, this->now(), at_ms(123456789), never}) {
            CAPTURE(now.time_since_epoch().count());
            CHECK(detail::deadline_after(now, 0ms) == now);
            CHECK(detail::deadline_after(now, 0ns) == now);
            CHECK(detail::deadline_after(now, -1ns) == now);
            CHECK(detail::deadline_after(now, -1ms) == now);
            CHECK(detail::deadline_after(now, -5s) == now);
            CHECK(detail::deadline_after(now, std::chrono::hours::min()) == now);
            CHECK(detail::deadline_after(now, std::chrono::nanoseconds::min()) == now);
            CHECK(detail::deadline_after(now, megaseconds::min()) == now);
            CHECK(detail::deadline_after(now, duration<int, std::milli>::min()) == now);
            CHECK(detail::deadline_after(now, duration<std::int8_t>(-128)) == now);
            CHECK(detail::deadline_after(now, duration<unsigned, std::milli>(0U)) == now);
            CHECK(detail::deadline_after(now, duration<std::uint64_t, std::nano>(0U)) == now);
            CHECK(detail::deadline_after(now, duration<double>(0.0)) == now);
            CHECK(detail::deadline_after(now, duration<double>(-0.0)) == now);
            CHECK(detail::deadline_after(now, duration<double>(-1e-300)) == now);
            CHECK(detail::deadline_after(
                      now, duration<double>(-std::numeric_limits<double>::denorm_min())) == now);
            CHECK(detail::deadline_after(
                      now, duration<double>(std::numeric_limits<double>::lowest())) == now);
            CHECK(detail::deadline_after(now, duration<float, std::milli>(-inf<float>)) == now);
            CHECK(detail::deadline_after(now, duration<double>(-inf<double>)) == now);
            CHECK(detail::deadline_after(
                      now, duration<long double, std::ratio<3600>>(-inf<long double>)) == now);
            CHECK(detail::deadline_after(now, duration<long double, std::nano>(
                                                  std::numeric_limits<long double>::lowest())) ==
                  now);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-6 6.2.3 a positive delay rounds up to whole milliseconds: 300us is 1 ms, "
                      "1.2 ms is 2 ms, 1 ns is 1 ms") {
        for (const deadline now : {deadline{}, this->now(), at_ms(987654321)}) {
            CAPTURE(now.time_since_epoch().count());
            CHECK(added(now, 300us) == 1);
            CHECK(added(now, duration<double, std::milli>(1.2)) == 2);
            CHECK(added(now, duration<float, std::milli>(1.2F)) == 2);
            CHECK(added(now, 1ns) == 1);
            CHECK(added(now, picoseconds(1)) == 1);
            CHECK(added(now, 999us) == 1);
            CHECK(added(now, 1000us) == 1);
            CHECK(added(now, 1001us) == 2);
            CHECK(added(now, 999'999ns) == 1);
            CHECK(added(now, 1'000'001ns) == 2);
            CHECK(added(now, picoseconds(1'000'000'000)) == 1);
            CHECK(added(now, picoseconds(1'000'000'001)) == 2);
            CHECK(added(now, 1ms) == 1);
            CHECK(added(now, 1s) == 1000);
            CHECK(added(now, 1min) == 60'000);
            CHECK(added(now, 1h) == 3'600'000);
            CHECK(added(now, std::chrono::hours(1000)) == 3'600'000'000);
            CHECK(added(now, thirds(1)) == 334);
            CHECK(added(now, thirds(2)) == 667);
            CHECK(added(now, thirds(3)) == 1000);
            CHECK(added(now, duration<std::int64_t, std::ratio<7, 3>>(1)) == 2334);
            CHECK(added(now, duration<double>(0.0015)) == 2);
            CHECK(added(now, duration<double>(1.5)) == 1500);
            CHECK(added(now, duration<double, std::micro>(0.001)) == 1);
            CHECK(added(now, duration<long double, std::micro>(1500.5L)) == 2);
            CHECK(added(now, duration<double, std::milli>(1.0)) == 1);
            CHECK(added(now, duration<double, std::milli>(2.0000001)) == 3);
            // The smallest positive values are still positive: never due at once (6.2.3).
            CHECK(added(now, duration<double>(std::numeric_limits<double>::denorm_min())) == 1);
            CHECK(added(now,
                        duration<float, std::nano>(std::numeric_limits<float>::denorm_min())) == 1);
            // The smallest positive long double, where long double arithmetic has its declared
            // range: valgrind computes long double in 64 bits, in which this value is 0, and a
            // zero delay is rightly due at once. The probe reads it as the library would.
            CHECK(added(now, duration<long double>(std::numeric_limits<double>::denorm_min())) ==
                  1);
            const volatile long double smallest = std::numeric_limits<long double>::min();
            if (smallest > 0.0L) {
                CHECK(added(now, duration<long double>(smallest)) == 1);
            } else {
                MESSAGE("long double arithmetic is narrower than declared here (valgrind): the "
                        "smallest positive long double is not checked");
            }
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2.3 rounding up agrees with exact arithmetic over a sweep of nanosecond, "
                      "microsecond and fractional delays") {
        const deadline now = this->now();
        std::int64_t mismatches = 0;
        for (std::int64_t ns = 1; ns <= 5'000'000; ns += 7919) {
            mismatches += added(now, std::chrono::nanoseconds(ns)) != (ns + 999'999) / 1'000'000;
        }
        for (std::int64_t us = 1; us <= 100'000; us += 37) {
            mismatches += added(now, std::chrono::microseconds(us)) != (us + 999) / 1000;
        }
        for (std::int64_t i = 1; i <= 5000; ++i) {
            const double ms = static_cast<double>(i) * 0.37;
            mismatches += added(now, duration<double, std::milli>(ms)) !=
                          static_cast<std::int64_t>(std::ceil(ms));
        }
        CHECK(mismatches == 0);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2.3 large delays that fit the loop clock convert exactly, whatever the "
                      "representation") {
        for (const deadline now : {deadline{}, this->now()}) {
            CAPTURE(now.time_since_epoch().count());
            // 9223372036854775807 ns = 9223372036854.775807 ms, rounded up.
            CHECK(added(now, std::chrono::nanoseconds::max()) == 9'223'372'036'855);
            CHECK(added(now, std::chrono::microseconds::max()) == 9'223'372'036'854'776);
            CHECK(added(now, duration<std::uint64_t, std::nano>(uint64_max)) == 18'446'744'073'710);
            CHECK(added(now, megaseconds(1)) == 1'000'000'000);
            CHECK(added(now, megaseconds(1'000'000)) == 1'000'000'000'000'000);
            CHECK(added(now, std::chrono::hours(1'000'000'000)) == 3'600'000'000'000'000);
            // 1000 years of 365.25 days, as a floating count of days.
            CHECK(added(now, duration<double, std::ratio<86400>>(365'250.0)) == 31'557'600'000'000);
            CHECK(added(now, duration<double, std::milli>(1e15)) == 1'000'000'000'000'000);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2.3 unsigned and narrow representations convert without wrapping") {
        const deadline now = this->now();
        CHECK(added(now, duration<unsigned, std::milli>(5U)) == 5);
        CHECK(added(now, duration<unsigned, std::micro>(1U)) == 1);
        CHECK(added(now, duration<unsigned, std::micro>(4'294'967'295U)) == 4'294'968);
        CHECK(added(now, duration<std::uint8_t, std::milli>(255)) == 255);
        CHECK(added(now, duration<std::uint8_t, std::ratio<3600>>(255)) == 918'000'000);
        CHECK(added(now, duration<std::int8_t, std::ratio<3600>>(127)) == 457'200'000);
        CHECK(added(now, duration<std::uint16_t, std::ratio<60>>(65535)) == 3'932'100'000);
        CHECK(added(now, duration<std::int16_t, std::nano>(32767)) == 1);
        CHECK(added(now, duration<unsigned long long, std::ratio<1, 3>>(1)) == 334);
        CHECK(added(now, duration<std::uint64_t, std::milli>(1)) == 1);
        CHECK(added(now, duration<std::uint64_t>(1'000'000)) == 1'000'000'000);
        CHECK(added(deadline{}, duration<std::uint64_t, std::milli>(std::uint64_t{1} << 40)) ==
              std::int64_t{1} << 40);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "D-6 6.2.4 a delay beyond the loop clock's range saturates to never: "
                      "hours::max(), huge megaseconds, +infinity, unsigned maxima") {
        for (const deadline now : {deadline{}, this->now(), at_ms(int64_max / 2)}) {
            CAPTURE(now.time_since_epoch().count());
            CHECK(detail::deadline_after(now, std::chrono::hours::max()) == never);
            CHECK(detail::deadline_after(now, std::chrono::minutes::max()) == never);
            CHECK(detail::deadline_after(now, std::chrono::seconds::max()) == never);
            CHECK(detail::deadline_after(now, megaseconds::max()) == never);
            CHECK(detail::deadline_after(now, megaseconds(10'000'000'000'000)) == never);
            CHECK(detail::deadline_after(now, duration<std::uint64_t, std::milli>(uint64_max)) ==
                  never);
            CHECK(detail::deadline_after(now, duration<std::uint64_t>(uint64_max)) == never);
            CHECK(detail::deadline_after(
                      now, duration<std::uint64_t, std::ratio<3600>>(uint64_max)) == never);
            CHECK(detail::deadline_after(
                      now, duration<std::uint64_t, std::milli>(std::uint64_t{1} << 63)) == never);
            CHECK(detail::deadline_after(now, duration<float>(inf<float>)) == never);
            CHECK(detail::deadline_after(now, duration<double, std::nano>(inf<double>)) == never);
            CHECK(detail::deadline_after(
                      now, duration<long double, std::milli>(inf<long double>)) == never);
            CHECK(detail::deadline_after(now, duration<double>(1e300)) == never);
            CHECK(detail::deadline_after(
                      now, duration<double>(std::numeric_limits<double>::max())) == never);
            CHECK(detail::deadline_after(now, duration<float, std::ratio<3600>>(
                                                  std::numeric_limits<float>::max())) == never);
            CHECK(detail::deadline_after(
                      now, duration<long double>(std::numeric_limits<long double>::max())) ==
                  never);
            CHECK(detail::deadline_after(now, duration<long double, std::milli>(1e19L)) == never);
            CHECK(detail::deadline_after(now, duration<float, std::milli>(9.3e18F)) == never);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2.4 now + delay overflowing the time point saturates to never") {
        const deadline late = never - 5ms;
        CHECK(detail::deadline_after(late, 6ms) == never);
        CHECK(detail::deadline_after(late, 1h) == never);
        CHECK(detail::deadline_after(late, std::chrono::milliseconds::max()) == never);
        CHECK(detail::deadline_after(late, duration<double>(1.0)) == never);
        CHECK(detail::deadline_after(late, duration<std::uint64_t, std::micro>(6001)) == never);
        CHECK(detail::deadline_after(now(), std::chrono::milliseconds::max()) == never);
        CHECK(detail::deadline_after(at_ms(1), std::chrono::milliseconds::max()) == never);
        CHECK(detail::deadline_after(never, 1ns) == never);
        CHECK(detail::deadline_after(never, 1h) == never);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2.4 only a deadline beyond the loop clock's range saturates: a delay that "
                      "still fits near the edge gives the exact deadline") {
        // 6.2.4: `never` when the rounded delay cannot be represented or now + delay overflows;
        // otherwise 6.2.3 applies and the deadline is now + the rounded delay.
        CHECK(detail::deadline_after(deadline{}, std::chrono::milliseconds(int64_max - 1)) ==
              at_ms(int64_max - 1));
        CHECK(detail::deadline_after(never - 10ms, 9ms) == never - 1ms);
        CHECK(detail::deadline_after(never - 10ms, 1ns) == never - 9ms);
        CHECK(detail::deadline_after(deadline{}, megaseconds(9'000'000'000)) ==
              at_ms(9'000'000'000'000'000'000));
        CHECK(detail::deadline_after(deadline{}, duration<double, std::milli>(9.2e18)) ==
              at_ms(9'200'000'000'000'000'000));
        CHECK(detail::deadline_after(at_ms(int64_max / 2),
                                     std::chrono::milliseconds(int64_max / 2)) ==
              at_ms(int64_max / 2 * 2));
    }

    // ---------------------------------------------------------------------------------------------
    // 6.2 applied: sleep, timeout, move_on_after, when()

    namespace {

    task<void> timed_rules(std::vector<std::int64_t>& laps) {
        lap_timer lap(laps);
        co_await sub_millisecond_sleeps(lap); // 1, 2, 1
        co_await uvasync::sleep(0ms);
        lap(); // 0
        co_await uvasync::sleep(-5s);
        lap(); // 0
        co_await uvasync::sleep(duration<double>(-inf<double>));
        lap(); // 0
        co_await uvasync::sleep(duration<float, std::micro>(1500.5F));
        lap(); // 2
        try {
            co_await timeout(300us, uvasync::sleep(1h));
            CHECK(false);
        } catch (const timeout_error&) {
        }
        lap(); // 1
        auto r = co_await move_on_after(duration<double, std::milli>(1.2), uvasync::sleep(1h));
        CHECK_FALSE(r.has_value());
        lap(); // 2
        CHECK(co_await timeout(std::chrono::hours::max(), quick(5)) == 5);
        lap(); // 0
        CHECK(co_await timeout(duration<double>(inf<double>), quick(6)) == 6);
        lap(); // 0
        CHECK(co_await move_on_after(megaseconds::max(), quick(7)) == std::optional<int>(7));
        lap(); // 0
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.2 the duration rules apply to sleep, timeout and move_on_after: exact "
                      "loop-clock times") {
        std::vector<std::int64_t> laps;
        run(timed_rules(laps));
        CHECK(laps == std::vector<std::int64_t>{1, 2, 1, 0, 0, 0, 2, 1, 2, 0, 0, 0});
    }

    namespace {

    task<void> expect_never_and_no_timer(timeout_scope& s, uv_loop_t* loop, int& checked) {
        CHECK(s.when() == never);
        CHECK_FALSE(s.expired());
        CHECK(current_deadline() == never);
        CHECK(active_handles(loop, UV_TIMER) == 0);
        co_await yield();
        CHECK(active_handles(loop, UV_TIMER) == 0);
        ++checked;
    }

    task<void> saturated_scopes(uv_loop_t* loop, int& checked) {
        auto body = [loop, &checked](timeout_scope& s) {
            return expect_never_and_no_timer(s, loop, checked);
        };
        co_await timeout(std::chrono::hours::max(), body);
        co_await timeout(duration<double>(inf<double>), body);
        co_await move_on_after(megaseconds::max(), body);
        co_await timeout(duration<std::uint64_t, std::milli>(uint64_max), body);
        co_await move_on_after(duration<long double, std::ratio<3600>>(1e300L), body);
    }

    } // namespace

    TEST_CASE("6.2.4 6.4 a saturated delay gives when() == never and arms no timer") {
        loop_fixture f{loop_fixture::real_clock()};
        int checked = 0;
        f.run(saturated_scopes(f.loop(), checked));
        CHECK(checked == 5);
        CHECK(active_handles(f.loop(), UV_TIMER) == 0);
    }

    namespace {

    struct entry_record {
        deadline when{};
        bool expired_at_entry = false;
        int reached = 0;
        bool passed_first_point = false;
    };

    task<void> note_then_yield(timeout_scope& s, entry_record& r) {
        r.when = s.when();
        r.expired_at_entry = s.expired();
        ++r.reached; // code up to the first cancellation point runs (5.3)
        co_await yield();
        r.passed_first_point = true;
    }

    /// Enters a scope made by `make` around note_then_yield and reports whether it threw
    /// timeout_error.
    template <class Make>
    task<bool> enter_expecting_timeout(Make make, entry_record& r) {
        auto body = [&r](timeout_scope& s) { return note_then_yield(s, r); };
        try {
            co_await make(body);
        } catch (const timeout_error&) {
            co_return true;
        }
        co_return false;
    }

    task<void> due_at_entry(std::vector<entry_record>& records, std::vector<bool>& threw,
                            std::vector<deadline>& expected_when) {
        const deadline now = loop_clock::now();
        records.resize(5);
        auto at_now = [now](auto& body) { return timeout_at(now, body); };
        auto in_past = [now](auto& body) { return timeout_at(now - 5ms, body); };
        auto zero = [](auto& body) { return timeout(0ms, body); };
        auto negative = [](auto& body) { return timeout(-1s, body); };
        auto minus_inf = [](auto& body) { return timeout(duration<double>(-inf<double>), body); };
        threw.push_back(co_await enter_expecting_timeout(at_now, records[0]));
        threw.push_back(co_await enter_expecting_timeout(in_past, records[1]));
        threw.push_back(co_await enter_expecting_timeout(zero, records[2]));
        threw.push_back(co_await enter_expecting_timeout(negative, records[3]));
        threw.push_back(co_await enter_expecting_timeout(minus_inf, records[4]));
        expected_when = {now, now - 5ms, now, now, now};
        CHECK(loop_clock::now() == now); // nothing waited for a deadline
    }

    } // namespace

    TEST_CASE_FIXTURE(
        loop_fixture,
        "6.1 6.2.2 a deadline at or before now at entry expires the scope at once; the "
        "body starts and is cancelled at its first cancellation point (D-5)") {
        std::vector<entry_record> records;
        std::vector<bool> threw;
        std::vector<deadline> expected_when;
        run(due_at_entry(records, threw, expected_when));
        REQUIRE(records.size() == 5);
        REQUIRE(threw.size() == 5);
        for (std::size_t i = 0; i < records.size(); ++i) {
            CAPTURE(i);
            CHECK(threw[i]);
            CHECK(records[i].expired_at_entry);
            CHECK(records[i].reached == 1);
            CHECK_FALSE(records[i].passed_first_point);
            CHECK(records[i].when == expected_when[i]);
        }
    }

    namespace {

    task<int> never_scope_body(timeout_scope& s, uv_loop_t* loop, int& checked) {
        CHECK(s.when() == never);
        CHECK_FALSE(s.expired());
        CHECK(active_handles(loop, UV_TIMER) == 0);
        co_await yield();
        CHECK(active_handles(loop, UV_TIMER) == 0);
        ++checked;
        co_return 11;
    }

    task<int> enter_never(uv_loop_t* loop, int& checked) {
        auto body = [loop, &checked](timeout_scope& s) {
            return never_scope_body(s, loop, checked);
        };
        const int a = co_await timeout_at(never, body);
        const std::optional<int> b = co_await move_on_at(never, body);
        co_return a + b.value_or(0);
    }

    } // namespace

    TEST_CASE("6.1 timeout_at(never) adds no deadline entry and arms no timer") {
        loop_fixture f{loop_fixture::real_clock()};
        int checked = 0;
        CHECK(f.run(enter_never(f.loop(), checked)) == 22);
        CHECK(checked == 2);
        CHECK(uv_run(f.loop(), UV_RUN_NOWAIT) == 0);
    }

    namespace {

    task<void> record_when(timeout_scope& s, std::vector<deadline>& out) {
        out.push_back(s.when());
        co_return;
    }

    task<void> reschedule_and_record(timeout_scope& s, std::vector<deadline>& out, deadline entry) {
        const deadline now = loop_clock::now();
        s.reschedule(duration<double, std::milli>(1.2));
        out.push_back(s.when() - (now - entry)); // as if entered at `entry`
        s.reschedule(300us);
        out.push_back(s.when() - (now - entry));
        s.reschedule(entry + 50ms);
        out.push_back(s.when());
        s.reschedule(std::chrono::hours::max());
        out.push_back(s.when());
        s.reschedule(entry + 40ms);
        out.push_back(s.when());
        s.reschedule(never);
        out.push_back(s.when());
        co_return;
    }

    task<void> when_values(std::vector<deadline>& out, deadline& entry) {
        entry = loop_clock::now();
        auto rec = [&out](timeout_scope& s) { return record_when(s, out); };
        co_await timeout(duration<double, std::milli>(1.2), rec);
        co_await timeout(300us, rec);
        co_await timeout(1ns, rec);
        co_await timeout(10s, rec);
        co_await timeout(thirds(1), rec);
        co_await timeout_at(entry + 7ms, rec);
        co_await move_on_after(duration<float>(0.25F), rec);
        co_await timeout_at(never, rec);
        auto resched = [&out, e = entry](timeout_scope& s) {
            return reschedule_and_record(s, out, e);
        };
        co_await timeout(1h, resched);
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture,
                      "6.4 when() returns exactly the stored deadline, after rounding") {
        std::vector<deadline> out;
        deadline entry{};
        run(when_values(out, entry));
        const std::vector<deadline> expected{
            entry + 2ms, entry + 1ms, entry + 1ms, entry + 10s, entry + 334ms, entry + 7ms,
            entry + 250ms, never,
            // reschedule: 1.2 ms, 300 us, an absolute deadline, hours::max(), absolute, never
            entry + 2ms, entry + 1ms, entry + 50ms, never, entry + 40ms, never};
        CHECK(out == expected);
    }

    // ---------------------------------------------------------------------------------------------
    // 6.3 / 13.4: conversion to libuv

    namespace {

    struct sleeper_state {
        deadline start{};
        bool parked = false;
    };

    task<void> sleep_recording(sleeper_state& s, loop_clock::duration d) {
        s.start = loop_clock::now();
        s.parked = true;
        // sleep_until, not sleep(d): sleep reads the clock again, a millisecond later at
        // valgrind's speed, and the deadline would no longer be start + d.
        co_await uvasync::sleep_until(s.start + d);
    }

    } // namespace

    TEST_CASE("6.3 13.4 the runtime arms its one timer for the earliest deadline minus the cached "
              "loop time") {
        loop_fixture f{loop_fixture::real_clock()};
        sleeper_state a;
        sleeper_state b;
        task_handle<> ha = f.rt->spawn(sleep_recording(a, 400ms));
        for (int i = 0; i < 5 && !a.parked; ++i) {
            uv_run(f.loop(), UV_RUN_NOWAIT);
        }
        REQUIRE(a.parked);
        uv_timer_t* timer = only_active_timer(f.loop());
        REQUIRE(timer != nullptr);
        // due_in is relative to the cached loop time, so due_in + uv_now is the absolute deadline.
        CHECK(static_cast<std::int64_t>(uv_timer_get_due_in(timer)) ==
              (a.start + 400ms - uv_time(f.loop())).count());

        task_handle<> hb = f.rt->spawn(sleep_recording(b, 100ms));
        for (int i = 0; i < 5 && !b.parked; ++i) {
            uv_run(f.loop(), UV_RUN_NOWAIT);
        }
        REQUIRE(b.parked);
        timer = only_active_timer(f.loop());
        REQUIRE(timer != nullptr);
        CHECK(static_cast<std::int64_t>(uv_timer_get_due_in(timer)) ==
              (b.start + 100ms - uv_time(f.loop())).count());

        ha.cancel();
        hb.cancel();
        f.run_until([&] { return ha.done() && hb.done(); });
        CHECK(ha.cancelled());
        CHECK(hb.cancelled());
    }

    // ---------------------------------------------------------------------------------------------
    // 6.5: ordering

    namespace {

    struct order_log {
        deadline at{};
        std::string order;
    };

    task<void> sleep_until_then_log(order_log& log, char name, loop_clock::duration first) {
        if (first > 0ms) {
            co_await uvasync::sleep(first);
        }
        co_await sleep_until(log.at);
        log.order.push_back(name);
    }

    } // namespace

    TEST_CASE("6.5 equal deadlines fire in registration order") {
        // The virtual clock: on the real one, the shared deadline could pass before the last
        // registration at valgrind's speed.
        loop_fixture f;
        order_log log;
        log.at = f.now() + 10ms;
        // A is spawned first but registers its deadline last, after a 1 ms sleep.
        auto a = f.rt->spawn(sleep_until_then_log(log, 'A', 1ms));
        auto b = f.rt->spawn(sleep_until_then_log(log, 'B', 0ms));
        auto c = f.rt->spawn(sleep_until_then_log(log, 'C', 0ms));
        f.run_until([&] { return a.done() && b.done() && c.done(); });
        CHECK(log.order == "BCA");
        CHECK(f.now() >= log.at);
    }

    namespace {

    task<void> scope_sleep_forever(timeout_scope& s, bool reschedule_first) {
        if (reschedule_first) {
            co_await yield(); // lets the other task enter its scope first
            s.reschedule(s.when());
        }
        co_await uvasync::sleep(1h);
    }

    task<void> timeout_then_log(order_log& log, char name, bool reschedule_first) {
        auto body = [reschedule_first](timeout_scope& s) {
            return scope_sleep_forever(s, reschedule_first);
        };
        try {
            co_await timeout_at(log.at, body);
        } catch (const timeout_error&) {
            log.order.push_back(name);
        }
    }

    } // namespace

    TEST_CASE("6.5 a reschedule counts as a new registration") {
        // The virtual clock: on the real one, a slow start (valgrind) let the shared deadline
        // pass before the second task entered its scope, which then expired at entry.
        loop_fixture f;
        for (const bool reschedule : {false, true}) {
            CAPTURE(reschedule);
            order_log log;
            log.at = f.now() + 5ms;
            auto p = f.rt->spawn(timeout_then_log(log, 'P', reschedule));
            auto q = f.rt->spawn(timeout_then_log(log, 'Q', false));
            f.run_until([&] { return p.done() && q.done(); });
            CHECK(log.order == (reschedule ? "QP" : "PQ"));
        }
    }

    namespace {

    struct pass_probe {
        deadline at{};
        timeout_scope* b_scope = nullptr;
        bool b_expired_when_a_ran = false;
        bool b_resumed_before_a = false;
        bool a_ran = false;
        bool b_timed_out = false;
    };

    task<void> probe_a(pass_probe& p) {
        co_await sleep_until(p.at);
        p.a_ran = true;
        REQUIRE(p.b_scope != nullptr);
        p.b_expired_when_a_ran = p.b_scope->expired();
    }

    task<void> probe_b_body(timeout_scope& s, pass_probe& p) {
        p.b_scope = &s;
        try {
            co_await uvasync::sleep(1h);
        } catch (const cancelled_error&) {
            p.b_resumed_before_a = !p.a_ran;
            throw;
        }
    }

    task<void> probe_b(pass_probe& p) {
        auto body = [&p](timeout_scope& s) { return probe_b_body(s, p); };
        try {
            co_await timeout_at(p.at, body);
        } catch (const timeout_error&) {
            p.b_timed_out = true;
        }
        p.b_scope = nullptr;
    }

    } // namespace

    TEST_CASE("6.5 D-14 every entry due in one pass is processed before any task it woke runs") {
        // The virtual clock: on the real one, a slow start (valgrind) let p.at pass before b
        // entered its scope, which then expired at entry instead of in the shared pass.
        loop_fixture f;
        pass_probe p;
        p.at = f.now() + 5ms;
        auto a = f.rt->spawn(probe_a(p)); // registers first, so it fires and runs first
        auto b = f.rt->spawn(probe_b(p));
        f.run_until([&] { return a.done() && b.done(); });
        CHECK(p.a_ran);
        CHECK(p.b_expired_when_a_ran);
        CHECK_FALSE(p.b_resumed_before_a);
        CHECK(p.b_timed_out);
    }

    namespace {

    /// A deadline entry that registers `next` (due at once) while it fires.
    struct chaining_entry : detail::deadline_entry {
        chaining_entry()
            : deadline_entry(&on_fire) {}

        static void on_fire(detail::deadline_entry* e) noexcept {
            auto* self = static_cast<chaining_entry*>(e);
            ++self->fired;
            if (self->next != nullptr) {
                self->next->when = self->rt->now();
                self->rt->add_deadline(*self->next);
            }
        }

        detail::runtime_state* rt = nullptr;
        chaining_entry* next = nullptr;
        int fired = 0;
    };

    } // namespace

    TEST_CASE("6.5 an entry registered during a deadline pass waits for the next pass") {
        loop_fixture f{virtual_without_autojump()};
        detail::runtime_state& rt = f.rt->state();
        chaining_entry second;
        chaining_entry first;
        first.rt = &rt;
        first.next = &second;
        first.when = rt.now() + 5ms;
        rt.add_deadline(first);

        f.rt->advance(5ms); // one pass: `first` fires and registers `second`, already due
        CHECK(first.fired == 1);
        CHECK(second.fired == 0);
        CHECK(second.queued());

        f.rt->advance(0ms); // the next pass
        CHECK(second.fired == 1);
        CHECK_FALSE(second.queued());

        rt.remove_deadline(first); // no-ops unless a check above failed
        rt.remove_deadline(second);
    }

    // ---------------------------------------------------------------------------------------------
    // 13.1: the loop clock

    namespace {

    task<void> compare_with_uv_now(uv_loop_t* loop, int& samples, int& mismatches, int& backwards) {
        deadline previous = loop_clock::now();
        for (int i = 0; i < 20; ++i) {
            if (i % 2 == 0) {
                co_await yield();
            } else {
                co_await uvasync::sleep(1ms);
            }
            const deadline t = loop_clock::now();
            mismatches += t != uv_time(loop);
            backwards += t < previous;
            previous = t;
            ++samples;
        }
    }

    } // namespace

    TEST_CASE(
        "13.1 loop_clock::now() is uv_now() of the runtime's loop on the real clock, inside and "
        "outside tasks") {
        static_assert(std::is_same_v<loop_clock::rep, std::int64_t>);
        static_assert(std::is_same_v<loop_clock::period, std::milli>);
        static_assert(loop_clock::is_steady);
        static_assert(std::is_same_v<deadline, loop_clock::time_point>);
        static_assert(never == deadline::max());

        loop_fixture f{loop_fixture::real_clock()};
        CHECK_FALSE(f.rt->uses_virtual_clock());
        // loop_clock::now() and runtime::now() refresh the loop's time first (13.2), so each is
        // read before uv_now: the two sides of == are unsequenced, and uv_now read first could
        // be a millisecond behind the refresh.
        const deadline from_clock = loop_clock::now();
        CHECK(from_clock == uv_time(f.loop()));
        const deadline from_runtime = f.now();
        CHECK(from_runtime == uv_time(f.loop()));
        uv_update_time(f.loop());
        CHECK(clock_now_is_uv_now(f.loop()));

        int samples = 0;
        int mismatches = 0;
        int backwards = 0;
        f.run(compare_with_uv_now(f.loop(), samples, mismatches, backwards));
        CHECK(samples == 20);
        CHECK(mismatches == 0);
        CHECK(backwards == 0);
        CHECK(clock_now_is_uv_now(f.loop()));
    }

    TEST_CASE("13.1 loop_clock::now() throws invalid_state outside any runtime") {
        CHECK_THROWS_AS((void)loop_clock::now(), invalid_state);
        {
            loop_fixture f{loop_fixture::real_clock()};
            CHECK(clock_now_is_uv_now(f.loop()));

            // Another thread has no runtime, even while this one has.
            bool threw = false;
            std::thread other([&threw] {
                try {
                    (void)loop_clock::now();
                } catch (const invalid_state&) {
                    threw = true;
                }
            });
            other.join();
            CHECK(threw);
        }
        CHECK_THROWS_AS((void)loop_clock::now(), invalid_state); // the runtime is gone again
    }

    // ---------------------------------------------------------------------------------------------
    // 13.2 / 13.3: never early (real clock, lower bounds only)

    namespace {

    struct early_check {
        int checked = 0;
        int early = 0;
    };

    template <class Rep, class Period>
    task<void> sleep_and_check(early_check& c, duration<Rep, Period> d, std::int64_t at_least_ms) {
        const deadline start = loop_clock::now();
        co_await uvasync::sleep(d);
        const std::int64_t slept = (loop_clock::now() - start).count();
        CAPTURE(slept);
        CAPTURE(at_least_ms);
        CHECK(slept >= at_least_ms);
        c.early += slept < at_least_ms;
        ++c.checked;
    }

    task<void> sequential_sleeps(early_check& c) {
        for (const std::int64_t n : {1, 2, 3, 5, 8, 13, 21}) {
            co_await sleep_and_check(c, std::chrono::milliseconds(n), n);
        }
        const deadline target = loop_clock::now() + 7ms;
        co_await sleep_until(target);
        CHECK(loop_clock::now() >= target);
        ++c.checked;
    }

    } // namespace

    TEST_CASE("13.2 never early: on the real clock a sleep of N ms resumes at loop_clock::now() >= "
              "start + N") {
        loop_fixture f{loop_fixture::real_clock()};
        early_check c;
        f.run(sequential_sleeps(c));
        CHECK(c.checked == 8);

        // Concurrent sleepers, each against its own start.
        std::vector<task_handle<>> hs;
        for (const std::int64_t n : {9, 1, 4, 4, 15, 2}) {
            hs.push_back(f.rt->spawn(sleep_and_check(c, std::chrono::milliseconds(n), n)));
        }
        f.run_until([&] {
            for (auto& h : hs) {
                if (!h.done()) {
                    return false;
                }
            }
            return true;
        });
        CHECK(c.checked == 14);
        CHECK(c.early == 0);
    }

    namespace {

    task<void> small_sleeps(early_check& c) {
        co_await sleep_and_check(c, 1ns, 1);
        co_await sleep_and_check(c, 300us, 1);
        co_await sleep_and_check(c, 999us, 1);
        co_await sleep_and_check(c, 1001us, 2);
        co_await sleep_and_check(c, duration<double, std::milli>(1.2), 2);
        co_await sleep_and_check(c, duration<double, std::milli>(2.5), 3);
        co_await sleep_and_check(c, duration<float>(0.0031F), 4);
    }

    } // namespace

    TEST_CASE("13.2 13.3 sub-millisecond and fractional sleeps on the real clock take at least the "
              "rounded-up milliseconds") {
        loop_fixture f{loop_fixture::real_clock()};
        early_check c;
        f.run(small_sleeps(c));
        CHECK(c.checked == 7);
        CHECK(c.early == 0);
    }

    namespace {

    task<void> timeouts_not_early(int& checked) {
        for (const auto d : {1ms, 4ms, 9ms}) {
            const deadline entry = loop_clock::now();
            try {
                co_await timeout(d, uvasync::sleep(1h));
                CHECK(false);
            } catch (const timeout_error&) {
                CHECK(loop_clock::now() >= entry + d);
                ++checked;
            }
        }
        const deadline entry = loop_clock::now();
        const auto r = co_await move_on_after(500us, uvasync::sleep(1h));
        CHECK_FALSE(r.has_value());
        CHECK(loop_clock::now() >= entry + 1ms);
        ++checked;
    }

    } // namespace

    TEST_CASE("13.2 a timeout scope on the real clock expires no earlier than entry + d") {
        loop_fixture f{loop_fixture::real_clock()};
        int checked = 0;
        f.run(timeouts_not_early(checked));
        CHECK(checked == 4);
    }

    // ---------------------------------------------------------------------------------------------
    // 13.5: far deadlines keep nothing alive

    namespace {

    task<int> fail_after_yield(bool fail) {
        co_await yield();
        if (fail) {
            throw std::runtime_error("body failed");
        }
        co_return 0;
    }

    task<int> far_deadlines(uv_loop_t* loop, int& armed_inside) {
        auto probe = [loop, &armed_inside](timeout_scope&) -> task<int> {
            return [](uv_loop_t* l, int& armed) -> task<int> {
                armed += active_handles(l, UV_TIMER);
                co_return co_await quick(1);
            }(loop, armed_inside);
        };
        int sum = co_await timeout(std::chrono::hours(1000), quick(1));
        sum += co_await timeout(std::chrono::hours(1000), probe);
        sum += (co_await move_on_after(std::chrono::hours(2000), quick(1))).value_or(0);
        // A scope left by an exception removes its entry too.
        try {
            auto failing = [](timeout_scope&) { return fail_after_yield(true); };
            co_await timeout(std::chrono::hours(1000), failing);
        } catch (const std::runtime_error&) {
            ++sum;
        }
        co_return sum;
    }

    template <class Rep, class Period>
    task<void> sleep_far(duration<Rep, Period> d, bool& parked) {
        parked = true;
        co_await uvasync::sleep(d);
    }

    } // namespace

    TEST_CASE(
        "13.5 a far deadline keeps nothing alive: after timeout(hours(1000), quick()) no timer "
        "is active and uv_run NOWAIT returns 0") {
        loop_fixture f{loop_fixture::real_clock()};
        int armed_inside = 0;
        CHECK(f.run(far_deadlines(f.loop(), armed_inside)) == 4);
        CHECK(armed_inside == 1); // the far deadline was a real entry while its scope was active
        CHECK(active_handles(f.loop(), UV_TIMER) == 0);
        CHECK(uv_loop_alive(f.loop()) == 0);
        CHECK(uv_run(f.loop(), UV_RUN_NOWAIT) == 0);

        // A far sleep that is cancelled leaves nothing either.
        bool parked = false;
        auto h = f.rt->spawn(sleep_far(std::chrono::hours(1000), parked));
        f.run_until([&] { return parked; });
        uv_run(f.loop(), UV_RUN_NOWAIT);
        CHECK(active_handles(f.loop(), UV_TIMER) == 1);
        h.cancel();
        f.run_until([&] { return h.done(); });
        CHECK(h.cancelled());
        CHECK(active_handles(f.loop(), UV_TIMER) == 0);
        CHECK(uv_run(f.loop(), UV_RUN_NOWAIT) == 0);
    }

    namespace {

    task<void> sleep_until_never(bool& parked) {
        parked = true;
        co_await sleep_until(never);
    }

    } // namespace

    TEST_CASE(
        "13.5 6.2.4 a task sleeping until never keeps nothing alive: uv_run returns while it is "
        "parked") {
        loop_fixture f{loop_fixture::real_clock()};
        bool p1 = false;
        bool p2 = false;
        bool p3 = false;
        auto h1 = f.rt->spawn(sleep_far(std::chrono::hours::max(), p1));
        auto h2 = f.rt->spawn(sleep_far(duration<double>(inf<double>), p2));
        auto h3 = f.rt->spawn(sleep_until_never(p3));
        CHECK(uv_run(f.loop(), UV_RUN_DEFAULT) == 0); // returns: nothing keeps the loop alive
        CHECK(p1);
        CHECK(p2);
        CHECK(p3);
        CHECK_FALSE(h1.done());
        CHECK_FALSE(h2.done());
        CHECK_FALSE(h3.done());
        CHECK(active_handles(f.loop(), UV_TIMER) == 0);
        h1.cancel();
        h2.cancel();
        h3.cancel();
        f.run_until([&] { return h1.done() && h2.done() && h3.done(); });
        CHECK(h1.cancelled());
        CHECK(h2.cancelled());
        CHECK(h3.cancelled());
    }

    // ---------------------------------------------------------------------------------------------
    // 13.6: deadlines are processed every iteration

    namespace {

    struct starvation_probe {
        bool sleeper_done = false;
        long yields = 0;
        long yields_at_wake = -1;
        deadline start{};
        deadline woke{};
    };

    task<void> yield_until_sleeper_done(starvation_probe& p, long limit) {
        while (!p.sleeper_done && p.yields < limit) {
            co_await yield();
            ++p.yields;
        }
    }

    task<void> sleeper(starvation_probe& p, loop_clock::duration d) {
        p.start = loop_clock::now();
        co_await uvasync::sleep(d);
        p.woke = loop_clock::now();
        p.yields_at_wake = p.yields;
        p.sleeper_done = true;
    }

    } // namespace

    TEST_CASE("13.6 a task looping on yield() does not starve a sleeping task on the real clock") {
        loop_fixture f{loop_fixture::real_clock()};
        // The bound is a number of yields (loop iterations), not time: the sleeper must wake long
        // before the yielder runs out of iterations.
        constexpr long limit = 1'000'000;
        starvation_probe p;
        auto y = f.rt->spawn(yield_until_sleeper_done(p, limit));
        auto s = f.rt->spawn(sleeper(p, 2ms));
        f.run_until([&] { return y.done() && s.done(); });
        CHECK(p.sleeper_done);
        CHECK(p.yields_at_wake >= 1); // the yielder really was looping meanwhile
        CHECK(p.yields_at_wake < limit);
        CHECK(p.woke >= p.start + 2ms);
    }

    namespace {

    task<void> yield_steps(long& steps, std::string& trace, char name, long limit) {
        for (long i = 0; i < limit; ++i) {
            trace.push_back(name);
            ++steps;
            co_await yield();
        }
    }

    } // namespace

    TEST_CASE_FIXTURE(loop_fixture,
                      "13.6 D-14 each drain runs only the tasks that were ready when it started: a "
                      "yielding task advances a bounded number of steps per loop iteration") {
        long steps_a = 0;
        long steps_b = 0;
        std::string trace;
        auto a = rt->spawn(yield_steps(steps_a, trace, 'A', 200));
        auto b = rt->spawn(yield_steps(steps_b, trace, 'B', 200));
        uv_run(loop(), UV_RUN_NOWAIT);
        int stalled = 0;
        int unbounded = 0;
        for (int i = 0; i < 40; ++i) {
            const long before = steps_a;
            uv_run(loop(), UV_RUN_NOWAIT);
            stalled += steps_a == before;
            unbounded += steps_a - before > 3; // one step per drain; an iteration has a few drains
        }
        CHECK(stalled == 0);
        CHECK(unbounded == 0);
        run_until([&] { return a.done() && b.done(); });
        CHECK(steps_a == 200);
        CHECK(steps_b == 200);
        // FIFO: the two yielders alternate strictly.
        std::string expected;
        for (int i = 0; i < 200; ++i) {
            expected += "AB";
        }
        CHECK(trace == expected);
    }

    // ---------------------------------------------------------------------------------------------
    // 13.2 a relative delay is measured from entry, not from the start of the loop iteration

    namespace {

    /// Synchronous work: the loop's cached time stays where the iteration started.
    void busy_for(std::chrono::milliseconds d) {
        const auto until = std::chrono::steady_clock::now() + d;
        while (std::chrono::steady_clock::now() < until) {
        }
    }

    struct entry_times {
        deadline loop_entry{};                        // loop_clock::now() at entry
        std::chrono::steady_clock::time_point wall{}; // wall clock at entry
        deadline loop_exit{};
        std::chrono::steady_clock::time_point wall_exit{};
    };

    task<void> move_on_after_busy_work(entry_times& t) {
        co_await yield(); // start a fresh step, then work synchronously in it
        busy_for(100ms);
        t.loop_entry = loop_clock::now();
        t.wall = std::chrono::steady_clock::now();
        auto r = co_await move_on_after(120ms, uvasync::sleep(1h));
        t.loop_exit = loop_clock::now();
        t.wall_exit = std::chrono::steady_clock::now();
        CHECK_FALSE(r.has_value());
    }

    task<void> sleep_after_busy_work(entry_times& t) {
        co_await yield();
        busy_for(100ms);
        t.wall = std::chrono::steady_clock::now();
        co_await uvasync::sleep(120ms);
        t.wall_exit = std::chrono::steady_clock::now();
    }

    } // namespace

    TEST_CASE("13.2 after 100 ms of synchronous work, move_on_after(120ms) fires 120 ms after "
              "entry, not 20 ms") {
        loop_fixture f{loop_fixture::real_clock()};
        entry_times t;
        f.run(move_on_after_busy_work(t));
        // Never early by the loop clock; now() returned the refreshed time at entry.
        CHECK(t.loop_exit - t.loop_entry >= 120ms);
        // Measured from entry on the wall clock too (the defect fired after ~20 ms); lateness
        // is bounded only from above, with a wide tolerance for a loaded machine.
        CHECK(t.wall_exit - t.wall >= 119ms);
        CHECK(t.wall_exit - t.wall < 5s);
    }

    TEST_CASE("13.2 after 100 ms of synchronous work, sleep(120ms) lasts 120 ms from entry") {
        loop_fixture f{loop_fixture::real_clock()};
        entry_times t;
        f.run(sleep_after_busy_work(t));
        CHECK(t.wall_exit - t.wall >= 119ms);
        CHECK(t.wall_exit - t.wall < 5s);
    }

    TEST_CASE("13.2 call_later and loop_clock::now() after synchronous work measure from the "
              "call") {
        loop_fixture f{loop_fixture::real_clock()};
        busy_for(50ms);
        const auto wall = std::chrono::steady_clock::now();
        const deadline entry = f.rt->now();
        std::chrono::steady_clock::time_point ran{};
        deadline ran_at{};
        timed_call h = f.rt->call_later(60ms, [&] {
            ran = std::chrono::steady_clock::now();
            ran_at = f.rt->now();
        });
        f.run_until([&] { return !h.pending(); });
        CHECK(ran_at - entry >= 60ms);
        CHECK(ran - wall >= 59ms);
    }

    TEST_CASE("13.2 the virtual clock is not refreshed by synchronous work") {
        loop_fixture f;
        const deadline before = f.rt->now();
        busy_for(5ms);
        CHECK(f.rt->now() == before);
    }

} // TEST_SUITE
