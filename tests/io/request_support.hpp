// SPDX-License-Identifier: MIT
// Helpers shared by the request tests (fs, dns, work): a threadpool that can be filled on
// purpose, an fd counter, a FIFO whose open blocks on a threadpool thread, and a hook that
// cancels a task between its request's callback and its resumption.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <latch>
#include <string>
#include <system_error>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/work.hpp>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "temp_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace uvasync::test {

/// The tests know the pool's size: two threads (meson sets it for work_test; the others set
/// it here, before libuv starts its threadpool on the first request).
inline const bool pool_size_set = [] {
    // Overwrite an inherited size: the tests rely on 2. Static initialization, before any
    // thread exists, so setenv's lack of thread safety does not matter.
    ::setenv("UV_THREADPOOL_SIZE", "2", 1); // NOLINT(concurrency-mt-unsafe)
    return true;
}();

inline constexpr int pool_size = 2;

/// Yields to the loop until `done()` holds. The real-time bound only turns a hang (a broken
/// premise, such as a kernel that hides wait channels) into a failure; no test relies on it.
template <class Pred>
task<void> yield_until(Pred done, const char* what) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!done()) {
        if (std::chrono::steady_clock::now() > give_up) {
            FAIL("gave up waiting: " << what);
        }
        co_await yield();
    }
}

/// Occupies threadpool threads with `to_thread` jobs that wait until `open()` is called.
class pool_gate {
public:
    /// A job for one threadpool thread: counts itself as running, waits for the gate,
    /// returns `value`.
    pool_gate() {
        // Nothing calls setenv once threads run (see pool_size_set).
        const char* size = ::getenv("UV_THREADPOOL_SIZE"); // NOLINT(concurrency-mt-unsafe)
        REQUIRE(pool_size_set);
        REQUIRE(size != nullptr);
        REQUIRE(std::string(size) == std::to_string(pool_size));
    }

    task<int> block(int value) {
        co_return co_await to_thread([this, value] {
            running_.fetch_add(1);
            gate_.wait();
            return value;
        });
    }

    /// The jobs that hold every threadpool thread (`pool_size` of them): see `occupy`.
    struct blockers {
        task_handle<int> first;
        task_handle<int> second;
    };

    /// Spawns a job for each threadpool thread on `f`'s runtime (returning 1 and 2) and runs
    /// the loop until all of them run: a request made next waits in libuv's queue.
    [[nodiscard]] blockers occupy(loop_fixture& f) {
        static_assert(pool_size == 2, "one job per threadpool thread");
        blockers b{f.rt->spawn(block(1)), f.rt->spawn(block(2))};
        f.run(wait_running(pool_size));
        return b;
    }

    /// Suspends (yielding to the loop) until `n` jobs run on threadpool threads.
    task<void> wait_running(int n) {
        auto running = [this, n] { return running_.load() >= n; };
        co_await yield_until(running, "threadpool jobs running");
    }

    void open() noexcept { gate_.count_down(); }

    /// Suspends (yielding to the loop) until `flag` is set by another thread.
    static task<void> wait_for(const std::atomic<bool>& flag) {
        auto set = [&flag] { return flag.load(); };
        co_await yield_until(set, "flag set by a threadpool thread");
    }

    [[nodiscard]] int running() const noexcept { return running_.load(); }

private:
    std::latch gate_{1};
    std::atomic<int> running_{0};
};

/// The number of open file descriptors of this process.
inline int open_fds() {
    int n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
        ++n;
    }
    return n;
}

/// `open_fds()` before a test: it first lets libuv make its process-wide descriptors (the
/// signal lock pipe, made with the first loop), so they are not counted as the test's.
inline int fds_baseline() {
    uv_loop_t loop;
    REQUIRE(uv_loop_init(&loop) == 0);
    REQUIRE(uv_loop_close(&loop) == 0);
    return open_fds();
}

/// True while some thread of this process is blocked in open(2) of a FIFO without a peer
/// (the kernel's wait channel is `wait_for_partner`).
inline bool blocked_in_fifo_open() {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        std::ifstream in(e.path() / "wchan");
        std::string w;
        in >> w;
        if (w == "wait_for_partner") {
            return true;
        }
    }
    return false;
}

/// A FIFO in `dir`: opening it for reading blocks on a threadpool thread until `release()`
/// opens the write end, which makes a "running" fs request on demand.
class fifo {
public:
    explicit fifo(const temp_dir& dir)
        : path_(dir / "fifo") {
        REQUIRE(::mkfifo(path_.c_str(), 0600) == 0);
    }

    fifo(const fifo&) = delete;
    fifo& operator=(const fifo&) = delete;
    fifo(fifo&&) = delete;
    fifo& operator=(fifo&&) = delete;

    ~fifo() {
        if (writer_ >= 0) {
            ::close(writer_);
        }
    }

    /// Opens the write end without blocking: succeeds only while a reader is in open(2), and
    /// lets that open complete.
    void release() {
        writer_ = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK);
        REQUIRE(writer_ >= 0);
    }

    void close_writer() {
        if (writer_ >= 0) {
            ::close(writer_);
            writer_ = -1;
        }
    }

    [[nodiscard]] const std::string& path() const noexcept { return path_; }

    /// Suspends (yielding) until a threadpool thread is blocked opening the FIFO.
    static task<void> wait_blocked() {
        auto blocked = [] { return blocked_in_fifo_open(); };
        co_await yield_until(blocked, "a threadpool thread blocked in open(2) of the FIFO");
    }

private:
    std::string path_;
    int writer_ = -1;
};

/// Calls `action` once, in the loop's check phase, as soon as `armed` is set and the loop has
/// no active request left: after the request's callback ran and before the runtime's own check
/// handle resumes the task (libuv runs the check handle started last first, and the runtime
/// starts its own in its constructor). This places a cancellation exactly between completion
/// and resumption.
template <class Action>
class after_completion {
public:
    after_completion(uv_loop_t* loop, const bool& armed, Action action)
        : armed_(armed)
        , action_(std::move(action)) {
        uv_check_init(loop, &check_);
        check_.data = this;
        uv_check_start(&check_, [](uv_check_t* h) {
            auto* self = static_cast<after_completion*>(h->data);
            if (!self->fired_ && self->armed_ && h->loop->active_reqs.count == 0) {
                self->fired_ = true;
                self->action_();
            }
        });
        uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
    }

    after_completion(const after_completion&) = delete;
    after_completion& operator=(const after_completion&) = delete;
    after_completion(after_completion&&) = delete;
    after_completion& operator=(after_completion&&) = delete;

    ~after_completion() {
        uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
        uv_run(check_.loop, UV_RUN_NOWAIT); // its close callback; the memory is ours
    }

    [[nodiscard]] bool fired() const noexcept { return fired_; }

private:
    uv_check_t check_{};
    const bool& armed_;
    Action action_;
    bool fired_ = false;
};

} // namespace uvasync::test
