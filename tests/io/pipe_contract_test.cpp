// SPDX-License-Identifier: MIT
// The cancellation contract of pipe streams (docs/io/streams.md, SEMANTICS 14), the rows that
// tests/io/pipe_test.cpp does not cover: cancelled before start (read, read_until, write),
// completion wins (read, write), and cancelled twice (read, write). Over socketpair() ends.
#include <span>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/pipe.hpp>
#include <uvasync/uvasync.hpp>

#include "stream_support.hpp"

#include <sys/socket.h>

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;

struct pipe_pair {
    pipe_stream a;
    pipe_stream b;
};

pipe_pair make_pair() {
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    return pipe_pair{pipe_stream::open(fds[0]), pipe_stream::open(fds[1])};
}

/// Runs `op` in a scope that is already cancelled (a 0 ms move_on: expired at entry, so `op`
/// is cancelled at its first cancellation point, before it starts). True if it was.
template <class Op>
task<bool> cancelled_before_start(Op op) {
    auto r = co_await move_on_after(0ms, op());
    co_return !r.has_value();
}

TEST_CASE_FIXTURE(io_fixture, "pipe_cancelled_before_start_consumes_and_sends_nothing") {
    pipe_pair p = make_pair();
    // A first one-byte read starts reading; then wait until the rest is buffered.
    run([](pipe_pair& pp) -> task<void> {
        co_await pp.a.write("zab\n");
        char one[1];
        CHECK(co_await pp.b.read_some(one) == 1);
        while (pp.b.buffered() < 3) {
            co_await sleep(1ms);
        }
    }(p));
    // read_some: raises although data is there; nothing is consumed.
    CHECK(run(cancelled_before_start([&]() -> task<void> {
        char b[4];
        (void)co_await p.b.read_some(b);
    })));
    // read_until: the same.
    CHECK(run(
        cancelled_before_start([&]() -> task<void> { (void)co_await p.b.read_until("\n", 100); })));
    CHECK(run(p.b.read_until("\n", 100)) == "ab\n");
    // write: nothing is sent, and the stream stays open (only a pending write closes it).
    CHECK(run(cancelled_before_start([&]() -> task<void> { co_await p.a.write("X"); })));
    CHECK(p.a.is_open());
    run([](pipe_pair& pp) -> task<void> { co_await pp.a.write("Y"); }(p));
    CHECK(run(read_chunk(p.b)) == "Y"); // no X before it
}

TEST_CASE_FIXTURE(io_fixture, "pipe_read_completed_then_cancelled_in_the_same_turn_is_delivered") {
    pipe_pair p = make_pair();
    for (int round = 0; round < 2; ++round) {
        task_handle<std::string> r = rt->spawn(
            [](stream& s) -> task<std::string> { co_return co_await read_chunk(s, 1); }(p.b));
        run(nap(5ms));
        REQUIRE_FALSE(r.done());
        // Two bytes, a one-byte read: the byte left in the buffer shows the read completed.
        check_hook hook(loop(), [&] { return p.b.buffered() == 1 && r.cancel("late"); });
        uv_buf_t buf = uv_buf_init(const_cast<char*>("xy"), 2);
        REQUIRE(uv_try_write(p.a.native_stream(), &buf, 1) == 2);
        run_until([&] { return r.done(); });
        CHECK(hook.fired());
        CHECK(r.result() == "x"); // completion wins
        CHECK(run(read_chunk(p.b)) == "y");
    }
}

TEST_CASE_FIXTURE(io_fixture, "pipe_write_completed_then_cancelled_in_the_same_turn_is_delivered") {
    pipe_pair p = make_pair();
    CHECK(fill_until_eagain(p.a) > 0);
    std::vector<char> data(1000, 'w');
    task_handle<std::string> w =
        rt->spawn([](pipe_stream& s, std::span<const char> d) -> task<std::string> {
            try {
                co_await s.write(d);
                co_return "written";
            } catch (const cancelled_error&) {
                co_return "cancelled";
            }
        }(p.a, data));
    run(nap(5ms));
    REQUIRE_FALSE(w.done());
    // Drain the peer; the write then completes in a poll, and the hook cancels the writer in
    // the same iteration, before it resumes.
    task_handle<void> drain = rt->spawn([](pipe_stream& s) -> task<void> {
        std::vector<char> buf(1 << 16);
        while (co_await s.read_some(buf) > 0) {
        }
    }(p.b));
    check_hook hook(loop(), [&] { return w.cancel("late"); });
    run_until([&] { return w.done(); });
    CHECK(hook.fired());
    // Either the cancellation found the write still queued (the stream closed) or the write
    // had completed (completion wins, the stream stays open): never both.
    if (w.result() == "written") {
        CHECK(p.a.is_open());
    } else {
        CHECK_FALSE(p.a.is_open());
    }
    drain.cancel();
    run_until([&] { return drain.done(); });
}

task<std::string> read_and_report(stream& s) {
    try {
        co_return "read " + co_await read_chunk(s);
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    }
}

TEST_CASE_FIXTURE(io_fixture, "pipe_read_cancelled_twice_delivers_once_then_reads_again") {
    pipe_pair p = make_pair();
    for (int round = 0; round < 2; ++round) {
        task_handle<std::string> r = rt->spawn(read_and_report(p.b));
        run(nap(5ms)); // the read is parked
        CHECK_FALSE(r.done());
        CHECK(r.cancel("first"));
        CHECK_FALSE(r.cancel("second")); // one delivery, the first message
        run_until([&] { return r.done(); });
        CHECK(r.result() == "cancelled: first");
        run([](pipe_pair& pp) -> task<void> { co_await pp.a.write("later"); }(p));
        CHECK(run(read_chunk(p.b)) == "later");
    }
}

TEST_CASE_FIXTURE(io_fixture, "pipe_write_cancelled_twice_closes_the_stream_once") {
    pipe_pair p = make_pair();
    CHECK(fill_until_eagain(p.a) > 0);
    std::vector<char> big(1 << 20, 'p');
    task_handle<std::string> w =
        rt->spawn([](pipe_stream& s, std::span<const char> d) -> task<std::string> {
            try {
                co_await s.write(d);
                co_return "written";
            } catch (const cancelled_error& e) {
                co_return "cancelled: " + std::string(e.message());
            }
        }(p.a, big));
    run(nap(5ms));
    CHECK_FALSE(w.done());
    CHECK(w.cancel("first"));
    CHECK_FALSE(w.cancel("second"));
    run_until([&] { return w.done(); });
    CHECK(w.result() == "cancelled: first");
    CHECK_FALSE(p.a.is_open());
}

} // namespace
} // namespace uvasync::test
