// SPDX-License-Identifier: MIT
// to_thread over uv_queue_work, and the request protocol every request awaiter shares
// (SEMANTICS 14.6, D-2). Runs with UV_THREADPOOL_SIZE=2 (meson) and in the TSan suite.

#include <atomic>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/dns.hpp>
#include <uvasync/io/fs.hpp>
#include <uvasync/io/work.hpp>
#include <uvasync/uvasync.hpp>

#include "handle_checks.hpp"
#include "loop_fixture.hpp"
#include "request_support.hpp"

#include <fcntl.h>

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;

task<std::thread::id> thread_of_work() {
    co_return co_await to_thread([] { return std::this_thread::get_id(); });
}

task<std::unique_ptr<int>> move_only_result() {
    co_return co_await to_thread([] { return std::make_unique<int>(42); });
}

/// A function with an owning capture, named before the co_await. g++ 12.2 destroys a lambda
/// temporary with a non-trivial destructor twice when it is written inside the co_await
/// expression, also for to_thread, which is not a coroutine ("free(): double free detected";
/// docs/toolchain.md section 2, decision 0023): name it first.
task<int> owning_capture() {
    auto fn = [p = std::make_unique<int>(41)] { return *p + 1; };
    co_return co_await to_thread(std::move(fn));
}

task<int> void_result(std::atomic<int>& ran) {
    co_await to_thread([&ran] { ran.fetch_add(1); });
    co_return ran.load();
}

task<void> throwing_work() {
    co_await to_thread([]() -> int { throw std::runtime_error("boom on the pool"); });
}

/// Counts whether its function ran; `armed` is set just before the request is made.
task<int> counted_work(std::atomic<int>& ran, bool& armed) {
    armed = true;
    co_return co_await to_thread([&ran] {
        ran.fetch_add(1);
        return 1;
    });
}

/// Cancels its own task, then makes the request: the request must never be made.
task<int> cancelled_then_work(task_handle<int>& self, std::atomic<int>& ran, bool& armed) {
    self.cancel("before start");
    armed = true;
    co_return co_await to_thread([&ran] {
        ran.fetch_add(1);
        return 1;
    });
}

/// Takes the result of a job, then reaches one more cancellation point.
task<void> result_then_checkpoint(task<int> job, int& delivered) {
    delivered = co_await std::move(job);
    co_await yield();
    delivered += 1000; // not reached when the scope was cancelled
}

task<void> run_n_iterations(int n) {
    for (int i = 0; i < n; ++i) {
        co_await yield();
    }
}

TEST_SUITE("work") {
    TEST_CASE("work_to_thread_runs_f_on_a_threadpool_thread") {
        loop_fixture f;
        CHECK(f.run(thread_of_work()) != std::this_thread::get_id());
    }

    TEST_CASE("work_to_thread_returns_move_only_and_void_results") {
        loop_fixture f;
        CHECK(*f.run(move_only_result()) == 42);
        CHECK(f.run(owning_capture()) == 42);
        std::atomic<int> ran{0};
        CHECK(f.run(void_result(ran)) == 1);
    }

    TEST_CASE("work_to_thread_rethrows_the_exception_of_f") {
        loop_fixture f;
        CHECK_THROWS_WITH_AS(f.run(throwing_work()), "boom on the pool", std::runtime_error);
    }

    TEST_CASE("work_to_thread_rejects_a_null_function") {
        loop_fixture f;
        int (*null_fn)() = nullptr;
        CHECK_THROWS_AS((void)to_thread(null_fn), std::invalid_argument);
        CHECK_THROWS_AS((void)to_thread(std::function<void()>{}), std::invalid_argument);
    }

    TEST_CASE("work_cancelled_before_start_never_queues_f") {
        loop_fixture f;
        std::atomic<int> ran{0};
        bool armed = false;
        task_handle<int> h;
        h = f.rt->spawn(cancelled_then_work(h, ran, armed));
        f.run_until([&] { return h.done(); });
        CHECK(armed); // the body reached the request
        check_cancelled(h);
        CHECK(ran.load() == 0);
    }

    TEST_CASE("work_cancelled_while_queued_never_runs_f") {
        loop_fixture f;
        pool_gate gate;
        pool_gate::blockers held = gate.occupy(f);

        std::atomic<int> ran{0};
        bool armed = false;
        auto h = f.rt->spawn(counted_work(ran, armed));
        f.run_until([&] { return armed; });
        CHECK(h.cancel("queued"));
        CHECK_FALSE(h.cancel("queued, again")); // cancelled twice: one abort
        f.run_until([&] { return h.done(); });
        check_cancelled(h);

        gate.open();
        f.run_until([&] { return held.first.done() && held.second.done(); });
        CHECK(held.first.result() == 1);
        CHECK(held.second.result() == 2);
        CHECK(ran.load() == 0); // uv_cancel took it back: f never ran
    }

    TEST_CASE("work_cancelled_while_running_delivers_the_result_then_raises") {
        loop_fixture f;
        pool_gate gate;
        int delivered = 0;
        auto h = f.rt->spawn(result_then_checkpoint(gate.block(7), delivered));
        f.run(gate.wait_running(1));
        CHECK(h.cancel("while running"));
        CHECK_FALSE(h.cancel("twice"));
        f.run(run_n_iterations(3));
        CHECK_FALSE(h.done()); // uv_cancel returned UV_EBUSY: it keeps waiting
        gate.open();
        f.run_until([&] { return h.done(); });
        CHECK(delivered == 7); // completion wins (D-2)
        check_cancelled(h);    // ... and the next suspension raised
    }

    TEST_CASE("work_cancelled_after_completion_before_resumption_delivers_the_result") {
        loop_fixture f;
        bool armed = false;
        bool resumed_at_cancel = true;
        int delivered = 0;
        std::atomic<int> ran{0};
        task_handle<void> h;
        after_completion hook(f.loop(), armed, [&] {
            resumed_at_cancel = delivered != 0;
            h.cancel("after completion");
        });
        h = f.rt->spawn(result_then_checkpoint(counted_work(ran, armed), delivered));
        f.run_until([&] { return h.done(); });
        CHECK(hook.fired());
        CHECK_FALSE(resumed_at_cancel); // the cancel came between the callback and resumption
        CHECK(delivered == 1);
        check_cancelled(h);
    }

    TEST_CASE("work_token_of_f_is_cancelled_while_it_runs") {
        loop_fixture f;
        std::atomic<bool> started{false};
        int delivered = 0;
        auto polling = [&started](const cancel_token& token) {
            started.store(true);
            int spins = 0;
            while (!token.cancel_requested()) {
                std::this_thread::yield();
                ++spins;
            }
            return 5;
        };
        auto job = [](auto fn) -> task<int> { co_return co_await to_thread(std::move(fn)); };
        auto h = f.rt->spawn(result_then_checkpoint(job(polling), delivered));
        f.run(pool_gate::wait_for(started));
        h.cancel("stop polling");
        f.run_until([&] { return h.done(); });
        CHECK(delivered == 5);
        check_cancelled(h);
    }
}

/// A request whose libuv call fails: no callback comes (libuv's rule).
struct failing_op final : detail::request_op {
    static constexpr int cancelled_status = UV_ECANCELED;
    static constexpr bool throws_status = true;

    explicit failing_op(int& destroyed)
        : destroyed_(destroyed) {}

    ~failing_op() override { ++destroyed_; }

    failing_op(const failing_op&) = delete;
    failing_op& operator=(const failing_op&) = delete;
    failing_op(failing_op&&) = delete;
    failing_op& operator=(failing_op&&) = delete;

    int start(uv_loop_t*) noexcept override { return UV_EINVAL; }

    uv_req_t* request() noexcept override { return nullptr; }

    void take() {}

    int& destroyed_;
};

task<void> await_failing(int& destroyed) {
    co_await detail::request_awaiter<failing_op>(new failing_op(destroyed), "failing request");
}

TEST_SUITE("work") {
    TEST_CASE("work_request_that_fails_to_start_resumes_at_once_with_system_error") {
        loop_fixture f;
        int destroyed = 0;
        try {
            f.run(await_failing(destroyed));
            FAIL("not thrown");
        } catch (const std::system_error& e) {
            CHECK((e.code() == uv_error_code(UV_EINVAL)));
            CHECK(std::string(e.what()).find("failing request") != std::string::npos);
        }
        CHECK(destroyed == 1);
    }
}

// ---------------------------------------------------------------------------------------------
// The scenario: a saturated threadpool, one request running and one queued.

task<void> open_then_checkpoint(std::string path, int& fd_seen) {
    fs::file file = co_await fs::open(std::move(path), UV_FS_O_RDONLY);
    fd_seen = file.fd();
    co_await yield(); // raises; `file` closes its fd while the frame unwinds
}

task<void> resolve_queued(bool& armed, int& count) {
    armed = true;
    address_list list = co_await resolve("localhost", "80");
    count = static_cast<int>(list.size());
}

TEST_SUITE("work") {
    TEST_CASE("work_saturated_pool_queued_never_runs_running_delivers_results_are_released") {
        const int fds_before = fds_baseline();
        temp_dir dir;
        fifo pipe(dir);
        {
            loop_fixture f;
            pool_gate gate;
            // Thread 1 blocks in open(2) of the FIFO, thread 2 in a to_thread job.
            int fd_seen = -1;
            auto opener = f.rt->spawn(open_then_checkpoint(pipe.path(), fd_seen));
            f.run(fifo::wait_blocked());
            int delivered = 0;
            auto runner = f.rt->spawn(result_then_checkpoint(gate.block(9), delivered));
            f.run(gate.wait_running(1));
            // A third request waits in the queue.
            std::atomic<int> ran{0};
            bool armed = false;
            auto queued = f.rt->spawn(counted_work(ran, armed));
            bool lookup_armed = false;
            int count = -1;
            auto lookup = f.rt->spawn(resolve_queued(lookup_armed, count));
            f.run_until([&] { return armed && lookup_armed; });

            opener.cancel("cancel all");
            runner.cancel("cancel all");
            queued.cancel("cancel all");
            lookup.cancel("cancel all");
            f.run_until([&] { return queued.done() && lookup.done(); });
            check_cancelled(queued);
            check_cancelled(lookup); // UV_EAI_CANCELED: no addrinfo was made
            CHECK(count == -1);
            CHECK_FALSE(opener.done());
            CHECK_FALSE(runner.done());

            pipe.release();
            gate.open();
            f.run_until([&] { return opener.done() && runner.done(); });
            CHECK(delivered == 9); // the running job's result was delivered
            check_cancelled(runner);
            CHECK(fd_seen >= 0); // the fd reached the task, which unwound and closed it
            check_cancelled(opener);
            CHECK(ran.load() == 0);
        }
        pipe.close_writer();
        CHECK(open_fds() == fds_before);
    }

    TEST_CASE("work_shutdown_waits_for_running_requests_before_destroying_frames") {
        const int fds_before = fds_baseline();
        temp_dir dir;
        fifo pipe(dir);
        std::atomic<int> ran{0};
        std::atomic<bool> shutting_down{false};
        int fd_seen = -1;
        int delivered = 0;
        {
            runtime_options o = loop_fixture::virtual_clock();
            o.shutdown_grace = 0ms; // past the grace at once: only the running requests remain
            loop_fixture f(o);
            pool_gate gate;
            auto opener = f.rt->spawn(open_then_checkpoint(pipe.path(), fd_seen));
            f.run(fifo::wait_blocked());
            auto runner = f.rt->spawn(result_then_checkpoint(gate.block(3), delivered));
            f.run(gate.wait_running(1));
            bool armed = false;
            auto queued = f.rt->spawn(counted_work(ran, armed));
            f.run_until([&] { return armed; });

            // The requests finish only once the shutdown has begun; it must wait for them.
            std::thread releaser([&] {
                while (!shutting_down.load()) {
                    std::this_thread::yield();
                }
                pipe.release();
                gate.open();
            });
            shutting_down.store(true);
            f.rt->shutdown();
            releaser.join();
            f.reported.clear();
        }
        CHECK(fd_seen >= 0);   // the open completed and was delivered (D-2) ...
        CHECK(delivered == 3); // ... and so was the running job's value
        // The queued job may be taken back or may run: the releaser can free a thread before
        // the shutdown's uv_cancel reaches it. Either way its task ends.
        CHECK(ran.load() <= 1);
        pipe.close_writer();
        CHECK(open_fds() == fds_before);
    }

    TEST_CASE("work_owned_loop_shutdown_waits_for_a_running_function_using_frame_locals") {
        // SEMANTICS 15.5: f ignores its token and runs past the grace period; it reads the
        // awaiting frame's vector, which must outlive it. ASan reports a use after free
        // otherwise, and an owned loop must still deliver the callback that destroys f.
        static std::atomic<int> destroyed{0};

        struct noisy {
            bool live = true;
            noisy() = default;
            noisy(const noisy&) = default;

            noisy(noisy&& o) noexcept { o.live = false; }

            noisy& operator=(const noisy&) = delete;
            noisy& operator=(noisy&&) = delete;

            ~noisy() {
                if (live) {
                    destroyed.fetch_add(1);
                }
            }
        };

        destroyed = 0;
        std::atomic<bool> started{false};
        long result = 0;
        {
            runtime_options o;
            o.shutdown_grace = 1ms;
            o.exception_handler = [](const std::exception_ptr&) {};
            runtime rt(o);
            auto worker = [&]() -> task<long> {
                std::vector<long> bytes(1000, 1);
                auto fn = [&bytes, &started, n = noisy{}] {
                    started.store(true);
                    std::this_thread::sleep_for(100ms); // not polling any token
                    long s = 0;
                    for (long b : bytes) {
                        s += b;
                    }
                    return s;
                };
                result = co_await to_thread(std::move(fn));
                co_return result;
            };
            auto main_task = [&]() -> task<int> {
                auto h = spawn(worker());
                auto is_started = [&] { return started.load(); };
                co_await yield_until(is_started, "to_thread function started");
                co_return 0;
            };
            CHECK(rt.run(main_task()) == 0);
        }
        CHECK(result == 1000);        // completion wins: the frame got the value
        CHECK(destroyed.load() == 1); // the function was destroyed before the loop closed
    }

    TEST_CASE("work_owned_loop_shutdown_with_an_fs_open_in_flight_leaks_no_fd") {
        const int fds_before = fds_baseline();
        temp_dir dir;
        fifo pipe(dir);
        std::atomic<bool> shutting_down{false};
        int fd_seen = -1;
        std::thread releaser;
        {
            runtime_options o;
            o.shutdown_grace = 0ms;
            o.exception_handler = [](const std::exception_ptr&) {};
            runtime rt(o);
            auto main_task = [&]() -> task<int> {
                auto h = spawn(open_then_checkpoint(pipe.path(), fd_seen));
                co_await fifo::wait_blocked();
                co_return 0;
            };
            CHECK(rt.run(main_task()) == 0);
            releaser = std::thread([&] {
                while (!shutting_down.load()) {
                    std::this_thread::yield();
                }
                pipe.release();
            });
            shutting_down.store(true);
        } // the destructor shuts down and closes the owned loop
        releaser.join();
        CHECK(fd_seen >= 0);
        pipe.close_writer();
        CHECK(open_fds() == fds_before);
    }
}

} // namespace
} // namespace uvasync::test
