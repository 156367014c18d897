// SPDX-License-Identifier: MIT
// A `co_await` in the condition of an `if` / `while` (docs/toolchain.md, section 2): g++ 12.2
// miscompiles it in a coroutine without any local variable (GCC bug 106188: the task is never
// started). These cases keep the documented workarounds checked on both compilers; the form
// without a local runs only under clang, which compiles it correctly.

#include <chrono>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/uvasync.hpp>

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;

task<int> three() {
    co_await yield();
    co_return 3;
}

// The first workaround: any local variable in the coroutine.
task<std::string> if_with_a_local() {
    std::string seen = "started";
    if (co_await three() == 3) {
        seen += ", three";
    }
    co_return seen;
}

// The second: await into a variable, then test it.
task<bool> awaited_into_a_variable() {
    auto finished = co_await move_on_after(1ms, sleep(10s));
    if (!finished) {
        co_return false;
    }
    co_return true;
}

task<int> while_with_a_local(std::vector<int> items) {
    std::size_t next = 0;
    int sum = 0;
    auto more = [&]() -> task<bool> {
        co_await yield();
        co_return next < items.size();
    };
    while (co_await more()) {
        sum += items[next++];
    }
    co_return sum;
}

TEST_CASE("an awaiting if condition in a coroutine with a local runs") {
    CHECK(uvasync::run(if_with_a_local()) == "started, three");
}

TEST_CASE("awaiting into a variable before the if runs") {
    CHECK_FALSE(uvasync::run(awaited_into_a_variable()));
}

TEST_CASE("an awaiting while condition in a coroutine with a local runs") {
    auto body = while_with_a_local({1, 2, 3, 4});
    CHECK(uvasync::run(std::move(body)) == 10);
}

#if defined(__clang__)
// The form g++ 12.2 miscompiles: no local anywhere in the body.
task<int> if_without_a_local() {
    if (co_await three() == 3) {
        co_return 1;
    }
    co_return 0;
}

TEST_CASE("an awaiting if condition without any local runs (clang)") {
    CHECK(uvasync::run(if_without_a_local()) == 1);
}
#endif

} // namespace
} // namespace uvasync::test
