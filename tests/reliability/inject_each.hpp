// SPDX-License-Identifier: MIT
// The outer loop of the cancellation-injection tests (cancel_injection_test.cpp over the C++
// seed scenarios, capi_seed_injection_test.cpp over the C seeds): one injection sweep per named
// scenario, each of which must find at least one point to inject at.
#pragma once

#include <string>

#include <doctest/doctest.h>

namespace uvasync::test {

/// Runs `inject(scenario)`, which returns how many injections it made, for every
/// `{name, scenario}` entry of `scenarios`; checks that each made at least one and reports the
/// counts. Returns the total.
template <class Scenarios, class Inject>
long inject_into_each(const Scenarios& scenarios, Inject inject) {
    long total = 0;
    for (const auto& [label, scenario] : scenarios) {
        const std::string name = label; // CAPTURE prints a string, not a pointer
        CAPTURE(name);
        const long n = inject(scenario);
        CHECK(n > 0);
        MESSAGE(name << ": " << n << " injections");
        total += n;
    }
    return total;
}

} // namespace uvasync::test
