// SPDX-License-Identifier: MIT
// Tracing hooks that only count (docs/introspection.md): how many tasks were spawned, started,
// finished (by outcome) and cancelled, how many timeout scopes expired and converted, and how
// many waits were slow, for a burst of 1,000 tasks. Run with --virtual for the virtual clock.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string_view>
#include <vector>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

struct counting_tracer : tracer {
    void task_spawned(const task_event&) noexcept override { ++spawned; }

    void task_started(const task_event&) noexcept override { ++started; }

    void task_finished(const task_event&, task_end how) noexcept override {
        ++(how == task_end::value ? values : how == task_end::error ? errors : cancelled);
    }

    void task_cancel_requested(const task_event&, const cancel_event& why) noexcept override {
        ++cancel_requests;
        deadline_requests += why.cause == cancel_cause::deadline ? 1 : 0;
    }

    void scope_entered(const scope_event&) noexcept override { ++scopes; }

    void scope_expired(const scope_event&) noexcept override { ++expired; }

    void scope_exited(const scope_event& s) noexcept override { converted += s.converted ? 1 : 0; }

    void slow_wait(const task_event&, const slow_wait_event&) noexcept override { ++slow; }

    long spawned = 0, started = 0, values = 0, errors = 0, cancelled = 0, cancel_requests = 0;
    long deadline_requests = 0;
    long scopes = 0, expired = 0, converted = 0, slow = 0;
};

/// Task i sleeps i % 10 * 10 ms under a 45 ms timeout: 5 of every 10 time out.
task<> job(int i) {
    try {
        co_await timeout(45ms, sleep(std::chrono::milliseconds(i % 10 * 10)));
    } catch (const timeout_error&) {
    }
}

task<> idle() {
    co_await sleep(1h);
}

task<> burst() {
    std::vector<task_handle<>> jobs;
    for (int i = 0; i < 1000; ++i) {
        jobs.push_back(spawn(job(i)));
    }
    task_handle<> idler = spawn(idle());
    for (task_handle<>& h : jobs) {
        co_await h;
    }
    idler.cancel();
}

int main(int argc, char** argv) {
    auto counts = std::make_shared<counting_tracer>();
    runtime_options options;
    options.virtual_clock = argc > 1 && std::string_view(argv[1]) == "--virtual";
    options.tracer = counts;
    options.slow_wait_threshold = 40ms;
    uvasync::run(burst(), std::move(options));
    std::printf("spawned %ld, started %ld\n", counts->spawned, counts->started);
    std::printf("finished: %ld with a value, %ld failed, %ld cancelled\n", counts->values,
                counts->errors, counts->cancelled);
    std::printf("cancel requests %ld, %ld of them by a deadline\n", counts->cancel_requests,
                counts->deadline_requests);
    std::printf("timeout scopes %ld, expired %ld, converted %ld\n", counts->scopes, counts->expired,
                counts->converted);
    std::printf("slow waits %ld\n", counts->slow);
}
