// SPDX-License-Identifier: MIT
// Tutorial step 5 (docs/tutorial.md): a task group; a failure cancels the other children.
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

task<> job(int id, std::chrono::milliseconds takes, bool fails) {
    try {
        co_await sleep(takes);
    } catch (const cancelled_error&) {
        std::printf("job %d: cancelled\n", id);
        throw;
    }
    if (fails) {
        throw std::runtime_error("job " + std::to_string(id) + " failed");
    }
    std::printf("job %d: done\n", id);
}

task<> main_task() {
    // run returns only after every child has finished. The body is named before the co_await
    // (see docs/toolchain.md, section 2).
    auto body = [](task_group& g) -> task<> {
        g.spawn(job(1, 50ms, false));
        g.spawn(job(2, 100ms, true));
        g.spawn(job(3, 1s, false)); // cancelled when job 2 fails, at 100 ms
        co_return;
    };
    try {
        co_await task_group::run(body);
    } catch (const exception_group& errors) {
        std::printf("%s\n", errors.what()); // every failure, here only job 2's
    }
}

int main() {
    run(main_task());
}
