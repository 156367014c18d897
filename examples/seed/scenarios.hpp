// SPDX-License-Identifier: MIT
// The scenarios of the article "Advanced Asyncio Python: Timeouts and Cancellation", written
// with uvasync. Each example program in this folder runs one of them and prints the article's
// lines, word for word and in the same order, each prefixed with its loop-clock time.
// examples/seed/expected/ holds each program's output on the virtual clock (checked by the
// examples suite); tests/runtime/seed_test.cpp runs the scenarios again and checks every line and
// its loop-clock time, then injects cancellations.
#pragma once

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

namespace seed {

using namespace std::chrono_literals;
using uvasync::task;

/// Collects what a scenario prints, with the loop-clock time of each line (ms since start).
class log {
public:
    explicit log(bool echo)
        : echo_(echo)
        , start_(uvasync::loop_clock::now()) {}

    void line(std::string text) {
        const long long at = (uvasync::loop_clock::now() - start_).count();
        if (echo_) {
            std::printf("[%6.3fs] %s\n", static_cast<double>(at) / 1000.0, text.c_str());
            std::fflush(stdout);
        }
        lines.emplace_back(at, std::move(text));
    }

    std::vector<std::pair<long long, std::string>> lines;

private:
    bool echo_;
    uvasync::deadline start_;
};

// 1. A 2 s timeout around a 5 s operation.
inline task<> long_running_task(log& out) {
    out.line("task starting, will take 5s");
    co_await uvasync::sleep(5s);
    out.line("task completed"); // never reached
}

inline task<> basic_timeout(log& out) {
    try {
        co_await uvasync::timeout(2s, long_running_task(out));
    } catch (const uvasync::timeout_error&) {
        out.line("Operation timed out!");
    }
}

// 2. Nested stage timeouts inside an overall envelope.
inline task<> stage(log& out, const char* name, const char* action, std::chrono::seconds takes) {
    out.line(std::string(name) + ": " + action);
    co_await uvasync::sleep(takes);
    out.line(std::string(name) + " done");
}

inline task<> staged_work(log& out) {
    co_await uvasync::timeout(3s, stage(out, "Stage 1", "fetching", 2s));
    co_await uvasync::timeout(2s, stage(out, "Stage 2", "processing", 1s));
    co_await uvasync::timeout(5s, stage(out, "Stage 3", "saving", 3s));
}

inline task<> nested_timeouts(log& out) {
    try {
        co_await uvasync::timeout(10s, staged_work(out));
    } catch (const uvasync::timeout_error&) {
        out.line("overall operation timed out");
    }
}

// 2b. The envelope (5 s, too short for 6 s of work) is extended from inside once the first
// stage shows how long the work will take. The scope form's callable lives as long as the
// scope, so this coroutine lambda may capture.
inline task<> rescheduled_envelope(log& out) {
    try {
        co_await uvasync::timeout(5s, [&out](uvasync::timeout_scope& envelope) -> task<> {
            co_await uvasync::timeout(3s, stage(out, "Stage 1", "fetching", 2s));
            envelope.reschedule(uvasync::loop_clock::now() + 8s);
            out.line("envelope extended");
            co_await uvasync::timeout(2s, stage(out, "Stage 2", "processing", 1s));
            co_await uvasync::timeout(5s, stage(out, "Stage 3", "saving", 3s));
        });
        out.line("all stages completed");
    } catch (const uvasync::timeout_error&) {
        out.line("overall operation timed out");
    }
}

// 3. A worker cancelled from outside at 2.5 s cleans up; the awaiter sees it cancelled.
inline task<> worker(log& out) {
    try {
        for (int step = 0;; ++step) {
            out.line("worker: step " + std::to_string(step));
            co_await uvasync::sleep(1s);
        }
    } catch (const uvasync::cancelled_error&) {
        out.line("worker: cancellation received, cleaning up");
        throw; // catching a cancellation is for cleanup only
    }
}

inline task<> cancel_worker(log& out) {
    uvasync::task_handle<> w = uvasync::spawn(worker(out));
    co_await uvasync::sleep(2500ms);
    out.line("Cancelling task...");
    w.cancel();
    try {
        co_await w;
    } catch (const uvasync::cancelled_error&) {
        out.line("Task was cancelled");
    }
}

// 4. asyncio.wait_for with a 2 s limit on a 5 s operation.
inline task<std::string> slow_operation() {
    co_await uvasync::sleep(5s);
    co_return "slow result";
}

inline task<> wait_for_timeout(log& out) {
    try {
        std::string r = co_await uvasync::wait_for(slow_operation(), 2s);
        out.line("result: " + r); // never reached
    } catch (const uvasync::timeout_error&) {
        out.line("wait_for timed out");
    }
}

// 5. Deadline tracking: each step checks the time left in the effective deadline and stops
// cleanly when the next step cannot finish in time.
inline task<> process_steps(log& out, int steps, std::chrono::seconds per_step) {
    for (int i = 0; i < steps; ++i) {
        // A step that would end exactly at the deadline loses to it: ask for more than that.
        if (uvasync::remaining() <= per_step) {
            out.line("Out of time; aborting remaining steps");
            co_return;
        }
        out.line("Step " + std::to_string(i) + ": doing work");
        co_await uvasync::sleep(per_step);
    }
}

inline task<> deadline_tracking(log& out) {
    co_await uvasync::timeout(5s, process_steps(out, 10, 1s));
}

// 6. The server pattern: one task per request, each with its own 5 s timeout, in a group.
inline task<> handle_request(log& out, std::string id, std::chrono::seconds takes) {
    out.line("Request " + id + " starting");
    try {
        co_await uvasync::timeout(5s, uvasync::sleep(takes));
        out.line("Request " + id + " done");
    } catch (const uvasync::timeout_error&) {
        out.line("Request " + id + " timed out");
    }
}

inline task<> server_pattern(log& out) {
    co_await uvasync::task_group::run([&out](uvasync::task_group& g) -> task<> {
        g.spawn(handle_request(out, "req1", 2s));
        g.spawn(handle_request(out, "req2", 6s));
        g.spawn(handle_request(out, "req3", 3s));
        co_return;
    });
}

// 7. wait_for(gather(...)) cancels every child and waits for their cleanup.
inline task<int> child(log& out, int id, std::chrono::seconds takes) {
    std::exception_ptr cancellation;
    try {
        co_await uvasync::sleep(takes);
        out.line("child " + std::to_string(id) + " finished");
        co_return id;
    } catch (const uvasync::cancelled_error&) {
        out.line("child " + std::to_string(id) + " cancelled, cleaning up");
        cancellation = std::current_exception(); // C++ cannot co_await inside a handler
    }
    // Cleanup that awaits runs shielded (it would raise again otherwise), bounded by a timeout.
    co_await uvasync::shielded(uvasync::timeout(1s, uvasync::sleep(100ms)));
    out.line("child " + std::to_string(id) + " cleanup done");
    std::rethrow_exception(cancellation);
}

inline task<> gather_timeout(log& out) {
    try {
        co_await uvasync::wait_for(
            uvasync::gather(child(out, 1, 1s), child(out, 2, 5s), child(out, 3, 10s)), 3s);
    } catch (const uvasync::timeout_error&) {
        out.line("gather timed out; every child has finished");
    }
}

/// Runs one scenario as a program: the real clock by default, `--virtual` for the virtual one.
inline int main_for(task<> (*scenario)(log&), int argc, char** argv) {
    uvasync::runtime_options options;
    options.virtual_clock = argc > 1 && std::string(argv[1]) == "--virtual";
    uvasync::run(
        [](task<> (*s)(log&)) -> task<> {
            log out(true);
            co_await s(out);
        }(scenario),
        options);
    return 0;
}

} // namespace seed
