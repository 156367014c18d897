// SPDX-License-Identifier: MIT
// Tutorial step 4 (docs/tutorial.md): cancelling a task, and cleaning up after a cancellation.
#include <chrono>
#include <cstdio>
#include <exception>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

task<> worker() {
    std::exception_ptr cancellation;
    try {
        for (int step = 0;; ++step) {
            std::printf("worker: step %d\n", step);
            co_await sleep(100ms); // a cancellation point: cancel() raises cancelled_error here
        }
    } catch (const cancelled_error&) {
        cancellation = std::current_exception(); // C++ cannot co_await inside a catch block
    }
    // Cleanup that awaits runs shielded: the task is still cancelled, so an unshielded await
    // would raise again at once. Bound it with a timeout so it cannot hang.
    co_await shielded(timeout(1s, sleep(10ms)));
    std::printf("worker: cleaned up\n");
    std::rethrow_exception(cancellation); // a cancellation is for cleanup, not for swallowing
}

task<> main_task() {
    task_handle<> w = spawn(worker());
    co_await sleep(250ms);
    w.cancel(); // asks; the worker sees it at its next cancellation point
    try {
        co_await w;
    } catch (const cancelled_error&) {
        std::printf("main: the worker was cancelled\n");
    }
}

int main() {
    run(main_task());
}
