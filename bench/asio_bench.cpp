// SPDX-License-Identifier: MIT
// The Boost.Asio (1.81, C++20 coroutines, one single-threaded io_context) implementation of the
// workloads in bench/README.md, in Asio's two styles of cancellation:
//
// * `asio` (the default): cancellation slots and error codes. Timeouts use a parallel group of
//   the operation and a timer, which cancels the loser through its cancellation slot (what `||`
//   does, without the extra co_spawn per operand); a cancelled wait is an error code
//   (`as_tuple`), never an exception.
// * `asio-exc` (--exceptions): the idiomatic exception form. Timeouts are the awaitable
//   operator `||` over two `use_awaitable` waits, and a cancelled wait throws
//   `operation_aborted`.
//
//   bench_asio <workload> <n> [--exceptions]
//
// Prints one line: `<workload> asio n=<n> <metric>=<value> ...` (or `asio-exc`).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using asio::awaitable;
using asio::use_awaitable;

namespace {

using bench_clock = std::chrono::steady_clock;

double elapsed_ns(bench_clock::time_point t0) {
    return std::chrono::duration<double, std::nano>(bench_clock::now() - t0).count();
}

struct result {
    double ns = 0;
};

result last;
long fired = 0;
long done = 0;

awaitable<void> w1(long n) {
    auto ex = co_await asio::this_coro::executor;
    co_await asio::post(ex, use_awaitable);
    const auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        co_await asio::post(ex, use_awaitable);
    }
    last = {elapsed_ns(t0)};
}

// A timeout around a sleep: whichever timer completes first cancels the other.
awaitable<void> sleep_with_timeout(std::chrono::milliseconds sleep_for,
                                   std::chrono::milliseconds timeout_after) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer sleep(ex, sleep_for);
    asio::steady_timer timeout(ex, timeout_after);
    auto [order, e1, e2] = co_await asio::experimental::make_parallel_group(
                               sleep.async_wait(asio::deferred), timeout.async_wait(asio::deferred))
                               .async_wait(asio::experimental::wait_for_one(), use_awaitable);
    if (order[0] == 1) {
        ++fired;
    }
}

// The same with exceptions: `||` co_spawns each operand, and the loser's wait throws
// `operation_aborted` inside its own coroutine.
awaitable<void> sleep_with_timeout_exc(std::chrono::milliseconds sleep_for,
                                       std::chrono::milliseconds timeout_after) {
    using namespace asio::experimental::awaitable_operators;
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer sleep(ex, sleep_for);
    asio::steady_timer timeout(ex, timeout_after);
    auto winner = co_await (sleep.async_wait(use_awaitable) || timeout.async_wait(use_awaitable));
    if (winner.index() == 1) {
        ++fired;
    }
}

bool exceptions = false;

void w2(asio::io_context& io, long n, bool every_timeout_fires) {
    const auto sleep_for = every_timeout_fires ? 10000ms : 1ms;
    const auto timeout_after = every_timeout_fires ? 1ms : 10000ms;
    const auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        asio::co_spawn(io,
                       exceptions ? sleep_with_timeout_exc(sleep_for, timeout_after)
                                  : sleep_with_timeout(sleep_for, timeout_after),
                       [](std::exception_ptr) { ++done; });
    }
    io.run();
    last = {elapsed_ns(t0)};
}

awaitable<void> parked_exc() {
    asio::steady_timer t(co_await asio::this_coro::executor, 1h);
    co_await t.async_wait(use_awaitable); // throws operation_aborted when cancelled
}

awaitable<void> parked() {
    asio::steady_timer t(co_await asio::this_coro::executor, 1h);
    auto [error] = co_await t.async_wait(asio::as_tuple(use_awaitable)); // operation_aborted
    (void)error;
}

void w3(asio::io_context& io, long n) {
    std::unique_ptr<asio::cancellation_signal[]> signals(new asio::cancellation_signal[n]);
    for (long i = 0; i < n; ++i) {
        asio::co_spawn(
            io, exceptions ? parked_exc() : parked(),
            asio::bind_cancellation_slot(signals[i].slot(), [](std::exception_ptr) { ++done; }));
    }
    io.poll(); // every task starts and parks on its timer
    const auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        signals[i].emit(asio::cancellation_type::terminal);
    }
    io.run();
    last = {elapsed_ns(t0)};
}

struct counting_handler {
    explicit counting_handler(long* c) noexcept
        : calls(c) {}

    void operator()(asio::cancellation_type) const noexcept { ++*calls; }

    long* calls;
};

void w5_registration(long n) {
    asio::cancellation_signal signal;
    asio::cancellation_slot slot = signal.slot();
    long calls = 0;
    slot.emplace<counting_handler>(&calls); // the signal keeps the handler memory from now on
    slot.clear();
    const auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        slot.emplace<counting_handler>(&calls);
        asm volatile("" ::: "memory");
        slot.clear();
    }
    last = {elapsed_ns(t0)};
}

awaitable<void> empty_body() {
    co_return;
}

awaitable<void> w5_scope(long n) {
    auto ex = co_await asio::this_coro::executor;
    co_await asio::post(ex, use_awaitable);
    const auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        asio::steady_timer timeout(ex, 10s);
        co_await asio::experimental::make_parallel_group(
            asio::co_spawn(ex, empty_body(), asio::deferred), timeout.async_wait(asio::deferred))
            .async_wait(asio::experimental::wait_for_one(), use_awaitable);
    }
    last = {elapsed_ns(t0)};
}

void rethrow(std::exception_ptr e) {
    if (e) {
        std::rethrow_exception(e);
    }
}

} // namespace

int main(int argc, char** argv) {
    exceptions = argc == 4 && std::string_view(argv[3]) == "--exceptions";
    if ((argc != 3 && !exceptions) || std::atol(argv[2]) <= 0) {
        std::fprintf(stderr, "usage: bench_asio W1|W2|W2b|W3|W5reg|W5scope <n> [--exceptions]\n");
        return 2;
    }
    const std::string_view w = argv[1];
    const char* name = argv[1];
    const char* impl = exceptions ? "asio-exc" : "asio";
    if (exceptions && w != "W2" && w != "W2b" && w != "W3") {
        std::fprintf(stderr, "bench_asio: --exceptions is for W2, W2b and W3\n");
        return 2;
    }
    const long n = std::atol(argv[2]);
    asio::io_context io(1);
    if (w == "W1" || w == "W5scope") {
        asio::co_spawn(io, w == "W1" ? w1(n) : w5_scope(n), rethrow);
        io.run();
        std::printf("%s asio n=%ld ns_per_op=%.2f\n", name, n, last.ns / n);
    } else if (w == "W2" || w == "W2b") {
        w2(io, n, w == "W2b");
        std::printf("%s %s n=%ld ms=%.3f fired=%ld\n", name, impl, n, last.ns / 1e6, fired);
    } else if (w == "W3") {
        w3(io, n);
        std::printf("W3 %s n=%ld ms=%.3f\n", impl, n, last.ns / 1e6);
    } else if (w == "W5reg") {
        w5_registration(n);
        std::printf("W5reg asio n=%ld ns_per_op=%.2f\n", n, last.ns / n);
    } else {
        std::fprintf(stderr, "bench_asio: unknown workload %s\n", name);
        return 2;
    }
    if ((w == "W2" || w == "W2b" || w == "W3") && done != n) {
        std::fprintf(stderr, "bench_asio: %ld of %ld tasks finished\n", done, n);
        return 1;
    }
    return 0;
}
