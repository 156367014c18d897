// SPDX-License-Identifier: MIT
// The README's first example, exactly as the README shows it (examples/check_doc_blocks.py
// checks that): a timeout around slow work, and a move_on_after.
#include <cstdio>

#include <uvasync/uvasync.hpp>
using namespace std::chrono_literals;
using namespace uvasync;

task<int> slow_answer(loop_clock::duration how_long) {
    co_await sleep(how_long); // stands for a slow request
    co_return 42;
}

task<> main_task() {
    try {
        int v = co_await timeout(200ms, slow_answer(500ms));
        std::printf("answer %d\n", v);
    } catch (const timeout_error&) {
        std::printf("slow_answer timed out\n"); // after 200 ms on the loop clock
    }
    std::optional<int> quick = co_await move_on_after(200ms, slow_answer(50ms));
    std::printf("quick answer: %d\n", quick.value_or(-1));
}

int main() {
    uvasync::run(main_task());
}
