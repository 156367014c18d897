// SPDX-License-Identifier: MIT
// A program that owns its libuv loop lends it to uvasync: the host keeps calling uv_run, a
// plain libuv timer of the host's runs beside the coroutines, and after shutdown the host's
// uv_loop_close() returns 0.
#include <cstdio>

#include <uv.h>
#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

task<> worker(int id) {
    try {
        for (int step = 0;; ++step) {
            co_await sleep(30ms);
            std::printf("worker %d: step %d\n", id, step);
        }
    } catch (const cancelled_error& e) {
        std::printf("worker %d: cancelled (%s)\n", id, e.what());
        throw; // a cancellation is caught only to clean up
    }
}

int main() {
    uv_loop_t loop;
    uv_loop_init(&loop);

    // The host's own libuv code, untouched by uvasync.
    uv_timer_t host_timer;
    uv_timer_init(&loop, &host_timer);
    uv_timer_start(
        &host_timer, [](uv_timer_t*) { std::printf("host timer fired\n"); }, 50, 0);

    {
        runtime rt(&loop);
        task_handle<> a = rt.spawn(worker(1));
        task_handle<> stopper = rt.spawn([](task_handle<> victim) -> task<> {
            co_await sleep(100ms);
            victim.cancel("stopped by the host");
        }(a));

        uv_run(&loop, UV_RUN_DEFAULT); // returns once nothing is left to do
        std::printf("worker cancelled: %s\n", a.cancelled() ? "yes" : "no");
    } // the runtime shuts down and closes its handles here

    uv_close(reinterpret_cast<uv_handle_t*>(&host_timer), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    const int rc = uv_loop_close(&loop);
    std::printf("uv_loop_close: %d\n", rc);
    return rc == 0 ? 0 : 1;
}
