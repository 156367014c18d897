// SPDX-License-Identifier: MIT
// Tutorial step 1 (docs/tutorial.md): a coroutine, a sleep, and uvasync::run.
#include <cstdio>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;

// A task is a lazy coroutine: calling answer() only creates it; it runs when awaited.
uvasync::task<int> answer() {
    co_await uvasync::sleep(100ms); // suspends this task; the loop is free meanwhile
    co_return 42;
}

uvasync::task<> main_task() {
    int v = co_await answer(); // starts answer() and waits for its result
    std::printf("the answer is %d\n", v);
}

int main() {
    // Creates a libuv loop, runs main_task to its end, closes the loop; rethrows its error.
    uvasync::run(main_task());
}
