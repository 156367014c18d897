// SPDX-License-Identifier: MIT
#pragma once

#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/uvasync.hpp>

#include "counted.hpp"

namespace uvasync::test {

/// Every test runs on a private loop owned by this fixture (never the default loop), with a
/// runtime borrowing it. The destructor is libuv's MAKE_VALGRIND_HAPPY with reporting: it shuts
/// the runtime down, names every handle still open, checks that `uv_loop_close` returns 0, and
/// checks that no coroutine frame and no `counted` object is still alive.
///
/// Unobserved errors reported by the runtime are collected in `reported` instead of printed.
class loop_fixture {
public:
    explicit loop_fixture(runtime_options options = virtual_clock())
        : frames_before_(detail::live_frame_counter().load())
        , counted_before_(counted::live().load()) {
        REQUIRE(uv_loop_init(&loop_) == 0);
        options.exception_handler = [this](std::exception_ptr e) {
            reported.push_back(std::move(e));
        };
        rt.emplace(&loop_, std::move(options));
    }

    loop_fixture(const loop_fixture&) = delete;
    loop_fixture& operator=(const loop_fixture&) = delete;
    loop_fixture(loop_fixture&&) = delete;
    loop_fixture& operator=(loop_fixture&&) = delete;

    ~loop_fixture() {
        rt.reset();
        std::vector<std::string> open;
        uv_walk(
            &loop_,
            [](uv_handle_t* h, void* arg) {
                static_cast<std::vector<std::string>*>(arg)->emplace_back(
                    uv_handle_type_name(uv_handle_get_type(h)));
                if (uv_is_closing(h) == 0) {
                    uv_close(h, nullptr);
                }
            },
            &open);
        for (const auto& name : open) {
            CHECK_MESSAGE(false, "handle left open: " << name);
        }
        uv_run(&loop_, UV_RUN_DEFAULT);
        CHECK(uv_loop_close(&loop_) == 0);
        CHECK(detail::live_frame_counter().load() == frames_before_);
        CHECK(counted::live().load() == counted_before_);
    }

    static runtime_options virtual_clock() {
        runtime_options o;
        o.virtual_clock = true;
        return o;
    }

    /// A virtual clock that moves only when the test calls `rt->advance()`, so several
    /// deadlines, completions and cancellations can be recorded in one iteration before any
    /// task runs.
    static runtime_options manual_clock() {
        runtime_options o = virtual_clock();
        o.autojump = false;
        return o;
    }

    static runtime_options real_clock() { return runtime_options{}; }

    /// Spawns `t` and runs the loop until it is done; returns its value or rethrows.
    template <class T>
    T run(task<T> t) {
        task_handle<T> h = rt->spawn(std::move(t));
        run_until([&] { return h.done(); });
        return h.result();
    }

    /// Runs loop iterations until `done()` holds (the fixture is the host here). The loop is
    /// kept alive meanwhile, so a wake-up from another thread is waited for, not spun on.
    template <class Pred>
    void run_until(Pred done) {
        rt->keep_loop_alive(true);
        while (!done()) {
            uv_run(&loop_, UV_RUN_ONCE);
        }
        rt->keep_loop_alive(false);
    }

    /// Runs the loop until it has nothing left to do.
    void run_all() { uv_run(&loop_, UV_RUN_DEFAULT); }

    /// Spawns `make(handle)`, a task given its own handle (to cancel itself, say), runs the
    /// loop until it has nothing left to do, requires the task to be done (it holds a reference
    /// to the handle, which is returned) and returns the handle.
    template <class Make>
    task_handle<> run_given_own_handle(Make make) {
        task_handle<> self;
        self = rt->spawn(make(self));
        run_all();
        REQUIRE(self.done());
        return self;
    }

    [[nodiscard]] deadline now() const { return rt->now(); }

    uv_loop_t* loop() noexcept { return &loop_; }

    std::optional<runtime> rt;
    std::vector<std::exception_ptr> reported;

private:
    uv_loop_t loop_{};
    std::ptrdiff_t frames_before_;
    std::ptrdiff_t counted_before_;
};

/// How many handles of `type` on `loop` are active (the runtime's deadline timer is the only
/// UV_TIMER it starts).
inline int active_handles(uv_loop_t* loop, uv_handle_type type) {
    struct acc {
        uv_handle_type type;
        int n = 0;
    } a{type};

    uv_walk(
        loop,
        [](uv_handle_t* h, void* arg) {
            auto* a = static_cast<acc*>(arg);
            if (uv_handle_get_type(h) == a->type && uv_is_active(h) != 0) {
                ++a->n;
            }
        },
        &a);
    return a.n;
}

/// Milliseconds elapsed on the loop clock since `start`.
inline long long ms_since(deadline start) {
    return (loop_clock::now() - start).count();
}

} // namespace uvasync::test
