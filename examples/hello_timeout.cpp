// SPDX-License-Identifier: MIT
// The README's example: a timeout around slow work, a move_on_after, and cleanup that awaits.
#include <cstdio>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

task<int> slow_answer(loop_clock::duration how_long) {
    co_await sleep(how_long); // stands for a slow request
    co_return 42;
}

task<> main_task() {
    const deadline start = loop_clock::now();
    auto at = [&] { return static_cast<long long>((loop_clock::now() - start).count()); };

    try {
        int v = co_await timeout(200ms, slow_answer(500ms));
        std::printf("answer %d\n", v);
    } catch (const timeout_error&) {
        std::printf("[%4lld ms] slow_answer timed out\n", at());
    }

    std::optional<int> quick = co_await move_on_after(200ms, slow_answer(50ms));
    std::printf("[%4lld ms] quick answer: %d\n", at(), quick.value_or(-1));
}

int main() {
    run(main_task());
    return 0;
}
