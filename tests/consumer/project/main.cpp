// SPDX-License-Identifier: MIT
// Smallest useful uvasync program: run one task that sleeps, check the result.
#include <chrono>
#include <cstdio>
#include <exception>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;

namespace {

uvasync::task<int> sleep_then_answer() {
    co_await uvasync::sleep(1ms);
    co_return 42;
}

} // namespace

int main() {
    try {
        const int answer = uvasync::run(sleep_then_answer());
        if (answer != 42) {
            std::fprintf(stderr, "consumer: expected 42, got %d\n", answer);
            return 1;
        }
        std::puts("consumer: ok");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "consumer: exception: %s\n", e.what());
        return 1;
    }
}
