// SPDX-License-Identifier: MIT
// The scenarios of the article "Advanced Asyncio Python: Timeouts and Cancellation", written
// with uvasync. Each example program in this folder runs one of them; tests/runtime/seed_test.cpp
// runs all of them on the virtual clock and checks every line and its loop-clock time.
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
inline task<> stage(log& out, const char* name, std::chrono::seconds takes) {
    out.line(std::string("starting ") + name);
    co_await uvasync::sleep(takes);
    out.line(std::string(name) + " complete");
}

inline task<> staged_work(log& out) {
    co_await uvasync::timeout(3s, stage(out, "stage 1", 2s));
    co_await uvasync::timeout(2s, stage(out, "stage 2", 1s));
    co_await uvasync::timeout(5s, stage(out, "stage 3", 3s));
}

inline task<> nested_timeouts(log& out) {
    try {
        co_await uvasync::timeout(10s, staged_work(out));
        out.line("all stages completed");
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
            co_await uvasync::timeout(3s, stage(out, "stage 1", 2s));
            envelope.reschedule(uvasync::loop_clock::now() + 8s);
            out.line("envelope extended");
            co_await uvasync::timeout(2s, stage(out, "stage 2", 1s));
            co_await uvasync::timeout(5s, stage(out, "stage 3", 3s));
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
            out.line("working... step " + std::to_string(step));
            co_await uvasync::sleep(1s);
        }
    } catch (const uvasync::cancelled_error&) {
        out.line("worker cancelled, cleaning up");
        throw; // catching a cancellation is for cleanup only
    }
}

inline task<> cancel_worker(log& out) {
    uvasync::task_handle<> w = uvasync::spawn(worker(out));
    co_await uvasync::sleep(2500ms);
    w.cancel();
    try {
        co_await w;
    } catch (const uvasync::cancelled_error&) {
        out.line("main: worker was cancelled");
    }
}

// 4. asyncio.wait_for with a 2 s limit on a 5 s operation.
inline task<std::string> slow_operation(log& out) {
    out.line("slow operation started");
    co_await uvasync::sleep(5s);
    co_return "slow result";
}

inline task<> wait_for_timeout(log& out) {
    try {
        std::string r = co_await uvasync::wait_for(slow_operation(out), 2s);
        out.line("result: " + r);
    } catch (const uvasync::timeout_error&) {
        out.line("wait_for timed out after 2s");
    }
}

// 5. Deadline tracking: each step checks the time left in the effective deadline and stops
// cleanly when the next step cannot finish in time.
inline task<> process_items(log& out, int items, std::chrono::seconds per_item) {
    for (int i = 0; i < items; ++i) {
        // A step that would end exactly at the deadline loses to it: ask for more than that.
        if (uvasync::remaining() <= per_item) {
            out.line("not enough time for item " + std::to_string(i) + ", stopping early");
            co_return;
        }
        co_await uvasync::sleep(per_item);
        out.line("processed item " + std::to_string(i));
    }
    out.line("processed all items");
}

inline task<> deadline_tracking(log& out) {
    co_await uvasync::timeout(5s, process_items(out, 10, 1s));
    out.line("done within the deadline");
}

// 6. The server pattern: one task per request, each with its own 5 s timeout, in a group.
inline task<> handle_request(log& out, int id, std::chrono::seconds takes) {
    try {
        co_await uvasync::timeout(5s, uvasync::sleep(takes));
        out.line("request " + std::to_string(id) + " done");
    } catch (const uvasync::timeout_error&) {
        out.line("request " + std::to_string(id) + " timed out");
    }
}

inline task<> server_pattern(log& out) {
    co_await uvasync::task_group::run([&out](uvasync::task_group& g) -> task<> {
        g.spawn(handle_request(out, 1, 2s));
        g.spawn(handle_request(out, 2, 6s));
        g.spawn(handle_request(out, 3, 3s));
        co_return;
    });
    out.line("all requests handled");
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
