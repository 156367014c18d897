// SPDX-License-Identifier: MIT
// Tutorial step 3 (docs/tutorial.md): timeouts, move_on_after, and the time left.
#include <chrono>
#include <cstdio>
#include <optional>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

task<int> slow_answer(std::chrono::milliseconds takes) {
    co_await sleep(takes);
    co_return 42;
}

task<> main_task() {
    // timeout: the result, or timeout_error when the deadline passes first. The slow task is
    // cancelled at its sleep and has finished by the time the exception reaches us.
    try {
        int v = co_await timeout(100ms, slow_answer(1s));
        std::printf("answer %d\n", v);
    } catch (const timeout_error&) {
        std::printf("timed out after 100 ms\n");
    }

    // move_on_after: no exception, an empty optional instead.
    std::optional<int> quick = co_await move_on_after(100ms, slow_answer(10ms));
    std::optional<int> slow = co_await move_on_after(100ms, slow_answer(1s));
    std::printf("quick: %d, slow: %s\n", quick.value_or(-1), slow ? "done" : "gave up");

    // Timeouts nest and the tighter deadline wins; code inside asks how much time is left.
    auto inner = [](timeout_scope&) -> task<> {
        std::printf("time left: %lld ms\n", static_cast<long long>(remaining().count()));
        co_return;
    };
    co_await timeout(500ms, timeout(200ms, inner)); // prints 200 ms
}

int main() {
    run(main_task());
}
