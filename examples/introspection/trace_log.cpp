// SPDX-License-Identifier: MIT
// Tracing hooks fed to a log on stderr (docs/introspection.md): every task, scope and slow-wait
// event of a small program, one line each, with the time since the first event. Run with
// --virtual to use the virtual clock (the test compares the log line for line).
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

class stderr_log : public tracer {
public:
    void task_spawned(const task_event& t) noexcept override { log(t, "spawned"); }

    void task_started(const task_event& t) noexcept override { log(t, "started"); }

    void task_finished(const task_event& t, task_end how) noexcept override {
        log(t, how == task_end::value   ? "finished"
               : how == task_end::error ? "failed"
                                        : "finished cancelled");
    }

    void task_cancel_requested(const task_event& t, const cancel_event& why) noexcept override {
        log(t, (std::string("cancel requested (") + to_string(why.cause) + ")").c_str());
    }

    void scope_entered(const scope_event& s) noexcept override { log(s, "entered"); }

    void scope_expired(const scope_event& s) noexcept override { log(s, "expired"); }

    void scope_exited(const scope_event& s) noexcept override {
        log(s, !s.converted ? "exited" : s.move_on ? "exited, moved on" : "exited, timed out");
    }

    void slow_wait(const task_event& t, const slow_wait_event& w) noexcept override {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(w.waited).count();
        log(t, (std::string("waited ") + std::to_string(ms) + " ms on " + w.kind).c_str());
    }

private:
    void stamp(deadline at) {
        if (!started_) {
            origin_ = at;
            started_ = true;
        }
        std::fprintf(stderr, "[%7.3fs] ", std::chrono::duration<double>(at - origin_).count());
    }

    void log(const task_event& t, const char* what) {
        stamp(t.at);
        std::fprintf(stderr, "task #%llu %s%.*s%s%s\n", static_cast<unsigned long long>(t.id),
                     t.name.empty() ? "" : "\"", static_cast<int>(t.name.size()), t.name.data(),
                     t.name.empty() ? "" : "\" ", what);
    }

    void log(const scope_event& s, const char* what) {
        stamp(s.at);
        std::fprintf(stderr, "scope #%llu in task #%llu %s\n",
                     static_cast<unsigned long long>(s.scope),
                     static_cast<unsigned long long>(s.task), what);
    }

    deadline origin_{};
    bool started_ = false;
};

task<> fetch(loop_clock::duration takes) {
    co_await sleep(takes);
}

task<> program() {
    task_handle<> fast = spawn(fetch(100ms), "fast");
    task_handle<> slow = spawn(fetch(2s), "slow");
    co_await fast;
    try {
        co_await timeout(500ms, slow); // gives up on the slow one (and cancels it)
    } catch (const timeout_error&) {
    }
    co_await move_on_after(50ms, sleep(1s));
}

int main(int argc, char** argv) {
    runtime_options options;
    options.virtual_clock = argc > 1 && std::string_view(argv[1]) == "--virtual";
    options.tracer = std::make_shared<stderr_log>();
    options.slow_wait_threshold = 250ms;
    uvasync::run(program(), std::move(options));
}
