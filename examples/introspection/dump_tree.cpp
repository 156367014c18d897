// SPDX-License-Identifier: MIT
// The task tree dump (docs/introspection.md): a named main task with a task group of two
// workers, a connection-like task it spawned on its own, and a watcher that prints
// runtime::dump() after one second. Run with --virtual for exact times.
#include <chrono>
#include <cstdio>
#include <string_view>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

task<> download(loop_clock::duration takes) {
    co_await sleep(takes);
}

task<> wait_for_slot(semaphore& slots) {
    const semaphore::permit p = co_await timeout(5s, slots.acquire());
}

task<> print_dump() {
    co_await sleep(1s);
    std::fputs(runtime::current().dump().c_str(), stdout);
}

task<> main_task() {
    semaphore slots(0);
    task_handle<> watcher = spawn(print_dump(), "watcher");
    auto workers = [&](task_group& g) -> task<> {
        g.spawn(download(2s), "download");
        g.spawn(wait_for_slot(slots), "queued");
        co_await move_on_after(1500ms, watcher);
        g.cancel();
    };
    co_await task_group::run(workers);
}

int main(int argc, char** argv) {
    runtime_options options;
    options.virtual_clock = argc > 1 && std::string_view(argv[1]) == "--virtual";
    uvasync::run(main_task(), std::move(options));
}
