// SPDX-License-Identifier: MIT
// Tutorial step 2 (docs/tutorial.md): running tasks at the same time with spawn and gather.
#include <chrono>
#include <cstdio>
#include <string>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

// Coroutine parameters by value: the task may run after the caller's arguments are gone.
task<std::string> fetch(std::string name, std::chrono::milliseconds delay) {
    co_await sleep(delay);
    co_return name + " after " + std::to_string(delay.count()) + " ms";
}

task<> main_task() {
    // spawn: the task starts now and runs on its own; the handle gives its result later.
    task_handle<std::string> a = spawn(fetch("a", 200ms));
    task_handle<std::string> b = spawn(fetch("b", 100ms));
    std::printf("%s\n", (co_await b).c_str()); // at 100 ms
    std::printf("%s\n", (co_await a).c_str()); // at 200 ms: a ran meanwhile

    // gather: await several at once; the results come in argument order.
    auto [x, y] = co_await gather(fetch("x", 50ms), fetch("y", 10ms));
    std::printf("%s, %s\n", x.c_str(), y.c_str()); // at 250 ms
}

int main() {
    run(main_task());
}
