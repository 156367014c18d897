// SPDX-License-Identifier: MIT
// The uvasync implementation of the workloads in bench/README.md.
//
//   bench_uvasync <workload> <n> [--outcome]
//
// Prints one line: `<workload> uvasync n=<n> <metric>=<value> ...`. Runs on the real loop
// clock. Every global operator new is counted (alloc_count.hpp), so lines also report
// allocations per operation, and every C++ throw or rethrow (throw_count.cpp), so W2, W2b and
// W3 report throws per task.
//
// --outcome runs the form that observes a cancellation without unwinding, where the workload
// has one, and prints `uvasync-outcome`: W2 and W2b with `move_on_after` instead of `timeout`,
// W3 with `as_outcome` (exit status 3 when this build of the library has no `as_outcome`).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <uvasync/uvasync.hpp>

#include "alloc_count.hpp"
#include "throw_count.hpp"

using namespace std::chrono_literals;
using uvasync::task;
using uvasync::task_handle;

namespace {

using bench_clock = std::chrono::steady_clock;

double elapsed_ns(bench_clock::time_point t0) {
    return std::chrono::duration<double, std::nano>(bench_clock::now() - t0).count();
}

struct result {
    double ns = 0;
    std::uint64_t allocations = 0;
    long extra = 0; // workload-specific count (fired timeouts, ...)
    std::uint64_t throws = 0;
};

// W1: n sequential yield() round trips in one task.
task<result> w1(long n) {
    co_await uvasync::yield(); // warm up: the run queue and idle handle exist
    const std::uint64_t a0 = bench::allocations;
    const auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        co_await uvasync::yield();
    }
    co_return result{elapsed_ns(t0), bench::allocations - a0, 0};
}

long fired = 0;
bool outcome_form = false;

// `as_outcome(aw)` (SEMANTICS 19), used when this build of the library has it.
#if __has_include(<uvasync/as_outcome.hpp>)
constexpr bool has_as_outcome = true;
#else
constexpr bool has_as_outcome = false;
#endif

task<> w2_task() {
    co_await uvasync::timeout(10s, uvasync::sleep(1ms));
}

task<> w2b_task() {
    try {
        co_await uvasync::timeout(1ms, uvasync::sleep(10s));
    } catch (const uvasync::timeout_error&) {
        ++fired;
    }
}

task<> w2_outcome_task() {
    (void)co_await uvasync::move_on_after(10s, uvasync::sleep(1ms));
}

task<> w2b_outcome_task() {
    // Named first: with GCC 12, `if (!co_await move_on_after(...))` never resumes (the result
    // temporary of a co_await in a condition).
    const auto r = co_await uvasync::move_on_after(1ms, uvasync::sleep(10s));
    if (!r) {
        ++fired;
    }
}

task<> w2_spawned(bool every_timeout_fires) {
    if (outcome_form) {
        return every_timeout_fires ? w2b_outcome_task() : w2_outcome_task();
    }
    return every_timeout_fires ? w2b_task() : w2_task();
}

// W2 / W2b: spawn n tasks, then wait for all of them.
task<result> spawn_and_wait(long n, bool every_timeout_fires) {
    const std::uint64_t a0 = bench::allocations;
    const std::uint64_t u0 = bench::throws();
    const auto t0 = bench_clock::now();
    std::vector<task_handle<>> handles;
    handles.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) {
        handles.push_back(uvasync::spawn(w2_spawned(every_timeout_fires)));
    }
    for (auto& h : handles) {
        co_await h;
    }
    const double ns = elapsed_ns(t0);
    const std::uint64_t allocs = bench::allocations - a0 - 1; // minus the vector
    co_return result{ns, allocs, fired, bench::throws() - u0};
}

long parked_count = 0; // W3: tasks that reached their sleep

task<> parked() {
    ++parked_count;
    co_await uvasync::sleep(1h);
}

long observed = 0;

task<> parked_outcome() {
#if __has_include(<uvasync/as_outcome.hpp>)
    ++parked_count;
    auto o = co_await uvasync::as_outcome(uvasync::sleep(1h));
    observed += o.cancelled() ? 1 : 0;
#endif
    co_return;
}

// W3: n tasks parked on a long sleep; cancel them all at once; time until the last is done.
task<result> w3(long n) {
    std::vector<task_handle<>> handles;
    handles.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) {
        handles.push_back(uvasync::spawn(outcome_form ? parked_outcome() : parked()));
    }
    // Wait until every task has run and parked: a yield resumes after the next poll (SEMANTICS
    // 4.1), possibly before tasks spawned in the same drain ran; cancelling those would only
    // measure "cancelled before it started" (SEMANTICS 2.7).
    while (parked_count < n) {
        co_await uvasync::yield();
    }
    const std::uint64_t a0 = bench::allocations;
    const std::uint64_t u0 = bench::throws();
    const auto t0 = bench_clock::now();
    for (auto& h : handles) {
        h.cancel();
    }
    for (auto& h : handles) {
        while (!h.done()) {
            co_await uvasync::yield();
        }
    }
    co_return result{elapsed_ns(t0), bench::allocations - a0, observed, bench::throws() - u0};
}

// W5reg: register and unregister a callback on a token, n times.
result w5_registration(long n) {
    uvasync::cancel_source source;
    const uvasync::cancel_token token = source.token();
    long calls = 0;
    const std::uint64_t a0 = bench::allocations;
    const auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        auto cb = token.on_cancel([&calls]() noexcept { ++calls; });
        asm volatile("" ::: "memory"); // keep the loop from being folded away
    }
    return result{elapsed_ns(t0), bench::allocations - a0, calls};
}

task<> empty_body() {
    co_return;
}

// W5scope: enter and exit a timeout scope that does not fire, n times (the body is an empty
// coroutine, whose frame is the one allocation allowed).
task<result> w5_scope(long n) {
    co_await uvasync::yield();
    const std::uint64_t a0 = bench::allocations;
    const auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        co_await uvasync::timeout(10s, empty_body());
    }
    co_return result{elapsed_ns(t0), bench::allocations - a0, 0};
}

// W5sleep: n sequential 1 ms sleeps in one task; only the allocations are of interest.
task<result> w5_sleep(long n) {
    co_await uvasync::sleep(1ms); // the deadline heap has its slot
    const std::uint64_t a0 = bench::allocations;
    const auto t0 = bench_clock::now();
    for (long i = 0; i < n; ++i) {
        co_await uvasync::sleep(1ms);
    }
    co_return result{elapsed_ns(t0), bench::allocations - a0, 0};
}

// W5tree: a tree of n linked cancel sources under one root (1000 children, each with n/1000 - 1
// children of its own); time to cancel the root, which reaches every node.
result w5_tree(long n) {
    const long fanout = n >= 1000 ? 1000 : 1;
    uvasync::cancel_source root;
    std::vector<uvasync::cancel_source> nodes;
    nodes.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < fanout; ++i) {
        nodes.emplace_back(root.token());
    }
    for (long i = fanout; i < n; ++i) {
        nodes.emplace_back(nodes[static_cast<std::size_t>(i % fanout)].token());
    }
    const std::uint64_t a0 = bench::allocations;
    const auto t0 = bench_clock::now();
    root.request_cancel();
    const double ns = elapsed_ns(t0);
    long cancelled = 0;
    for (auto& s : nodes) {
        cancelled += s.cancel_requested() ? 1 : 0;
    }
    return result{ns, bench::allocations - a0, cancelled};
}

int usage() {
    std::fprintf(
        stderr, "usage: bench_uvasync W1|W2|W2b|W3|W5reg|W5scope|W5sleep|W5tree <n> [--outcome]\n");
    return 2;
}

} // namespace

int main(int argc, char** argv) {
    if (argc == 4 && std::string_view(argv[3]) == "--outcome") {
        outcome_form = true;
    } else if (argc != 3) {
        return usage();
    }
    const std::string_view w = argv[1];
    const long n = std::strtol(argv[2], nullptr, 10);
    if (n <= 0) {
        return usage();
    }
    const char* name = argv[1];
    const char* impl = outcome_form ? "uvasync-outcome" : "uvasync";
    if (outcome_form && w == "W3" && !has_as_outcome) {
        std::fprintf(stderr, "bench_uvasync: this build has no as_outcome\n");
        return 3;
    }
    if (outcome_form && w != "W2" && w != "W2b" && w != "W3") {
        return usage();
    }
    if (w == "W1" || w == "W5scope" || w == "W5sleep") {
        uvasync::runtime rt;
        const result r = w == "W1"        ? rt.run(w1(n))
                         : w == "W5scope" ? rt.run(w5_scope(n))
                                          : rt.run(w5_sleep(n));
        std::printf("%s uvasync n=%ld ns_per_op=%.2f allocs_per_op=%.3f\n", name, n, r.ns / n,
                    double(r.allocations) / n);
    } else if (w == "W2" || w == "W2b") {
        uvasync::runtime rt;
        const result r = rt.run(spawn_and_wait(n, w == "W2b"));
        std::printf("%s %s n=%ld ms=%.3f allocs_per_task=%.3f throws_per_task=%.3f fired=%ld\n",
                    name, impl, n, r.ns / 1e6, double(r.allocations) / n, double(r.throws) / n,
                    r.extra);
    } else if (w == "W3") {
        uvasync::runtime rt;
        const result r = rt.run(w3(n));
        std::printf("%s %s n=%ld ms=%.3f allocs_per_task=%.3f throws_per_task=%.3f\n", name, impl,
                    n, r.ns / 1e6, double(r.allocations) / n, double(r.throws) / n);
    } else if (w == "W5reg") {
        uvasync::runtime rt;
        const result r = w5_registration(n);
        std::printf("%s uvasync n=%ld ns_per_op=%.2f allocs_per_op=%.3f\n", name, n, r.ns / n,
                    double(r.allocations) / n);
    } else if (w == "W5tree") {
        uvasync::runtime rt;
        const result r = w5_tree(n);
        std::printf("%s uvasync n=%ld ms=%.3f allocs=%llu cancelled=%ld\n", name, n, r.ns / 1e6,
                    static_cast<unsigned long long>(r.allocations), r.extra);
    } else {
        return usage();
    }
    return 0;
}
