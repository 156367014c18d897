// SPDX-License-Identifier: MIT
// The cancellation contract of pipe streams and listeners (docs/io/streams.md, SEMANTICS 14),
// the rows that tests/io/pipe_test.cpp does not cover: fails to start (read, write, shutdown,
// accept), cancelled before start (read, read_until, write, shutdown, connect, accept),
// completion wins (read, write, shutdown, connect, accept) and cancelled twice (read, write).
// Streams over socketpair() ends, connections over a Unix domain socket in a temporary
// directory. docs/reliability.md has the whole table.
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/pipe.hpp>
#include <uvasync/uvasync.hpp>

#include "stream_support.hpp"
#include "temp_dir.hpp"

#include <poll.h>
#include <sys/socket.h>

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;

/// True if a connection waits on `l`: in the kernel's queue (the listening socket polls
/// readable) or taken by libuv and held for the next accept (`accepted_fd`, a private field of
/// libuv's stream, read by the test only). A local connect completes in the kernel inside
/// connect(2), so no loop iteration is needed for it to show.
bool connection_waits(pipe_listener& l) {
    uv_os_fd_t fd = -1;
    REQUIRE(uv_fileno(reinterpret_cast<uv_handle_t*>(l.native_handle()), &fd) == 0);
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, 0);
    REQUIRE(ready >= 0);
    return ready > 0 || l.native_handle()->accepted_fd != -1;
}

TEST_CASE_FIXTURE(io_fixture, "pipe_operations_on_closed_streams_and_listeners_fail_to_start") {
    socket_pair p = make_socket_pair();
    run(close_stream(p.a));
    const failure r = run(failure_of(read_chunk(p.a)));
    CHECK(r.code == UV_EBADF);
    const failure w = run(failure_of(write_text(p.a, "x")));
    CHECK(w.code == UV_EBADF);
    CHECK(contains(w.what, "pipe_stream::write"));
    const failure sd = run(failure_of(shut_down(p.a)));
    CHECK(sd.code == UV_EBADF);
    pipe_listener closed;
    const failure a = run(failure_of(accept_one(closed)));
    CHECK(a.code == UV_EBADF);
    // connect: pipe_test's pipe_connect_to_a_missing_path_and_bind_in_use_fail.
}

TEST_CASE_FIXTURE(io_fixture, "pipe_connect_accept_and_shutdown_cancelled_before_start") {
    temp_dir dir;
    const std::string path = dir / "early.sock";
    pipe_listener l = pipe_listener::bind(path);

    // connect: no connect(2) is made, so nothing reaches the listener.
    CHECK(run(cancelled_before_start(
        [&]() -> task<void> { pipe_stream s = co_await pipe_stream::connect(path); })));
    run(nap(1ms));
    CHECK_FALSE(connection_waits(l));

    // accept: a queued connection stays for the next accept.
    task_handle<pipe_stream> c = rt->spawn(pipe_stream::connect(path));
    run_until([&] { return c.done(); });
    pipe_stream client = c.result();
    CHECK(connection_waits(l));
    CHECK(
        run(cancelled_before_start([&]() -> task<void> { pipe_stream s = co_await l.accept(); })));
    CHECK(connection_waits(l));
    pipe_stream server = run(accept_one(l));
    CHECK_FALSE(connection_waits(l));
    run(write_text(client, "q"));
    CHECK(run(read_chunk(server)) == "q"); // the queued connection, not another one

    // shutdown: the write side stays open (a shutdown would make the write fail).
    CHECK(run(cancelled_before_start([&]() -> task<void> { co_await client.shutdown(); })));
    CHECK(client.is_open());
    run(write_text(client, "Z"));
    CHECK(run(read_chunk(server)) == "Z");
}

task<pipe_stream> flag_then_connect(bool& started, std::string path) {
    started = true; // the connect below starts in this same step
    co_return co_await pipe_stream::connect(std::move(path));
}

TEST_CASE_FIXTURE(io_fixture,
                  "pipe_connect_completed_then_cancelled_in_the_same_turn_is_delivered") {
    temp_dir dir;
    const std::string path = dir / "late.sock";
    pipe_listener l = pipe_listener::bind(path);
    for (int round = 0; round < 2; ++round) {
        bool started = false;
        task_handle<pipe_stream> c = rt->spawn(flag_then_connect(started, path));
        // The check after the iteration whose pending phase ran the connect callback, before
        // the task resumes.
        check_hook hook(loop(), [&] {
            return started && connecting_handles(loop(), UV_NAMED_PIPE) == 0 && c.cancel("late");
        });
        run_until([&] { return c.done(); });
        CHECK(hook.fired());
        CHECK_FALSE(c.cancelled());
        pipe_stream client = c.result(); // completion wins
        CHECK(client.is_open());
        pipe_stream server = run(accept_one(l));
        run(write_text(client, "c"));
        CHECK(run(read_chunk(server)) == "c");
    }
}

TEST_CASE_FIXTURE(io_fixture,
                  "pipe_accept_completed_then_cancelled_in_the_same_turn_is_delivered") {
    temp_dir dir;
    const std::string path = dir / "late.sock";
    pipe_listener l = pipe_listener::bind(path);
    task_handle<std::string> a = rt->spawn(accept_and_report(l));
    run(nap(5ms));
    REQUIRE_FALSE(a.done());
    const int before = open_handles(loop(), UV_NAMED_PIPE);
    // The client's handle and then the accepted connection's: the latter appears in the poll
    // phase that completes the accept.
    check_hook hook(loop(), [&] {
        return open_handles(loop(), UV_NAMED_PIPE) > before + 1 && a.cancel("late");
    });
    task_handle<pipe_stream> c = rt->spawn(pipe_stream::connect(path));
    run_until([&] { return a.done() && c.done(); });
    CHECK(hook.fired());
    CHECK(a.result() == "accepted"); // completion wins
    pipe_stream client = c.result();
    CHECK(client.is_open());
}

TEST_CASE_FIXTURE(io_fixture,
                  "pipe_shutdown_completed_then_cancelled_in_the_same_turn_is_delivered") {
    socket_pair p = make_socket_pair();
    bool started = false;
    task_handle<std::string> s = rt->spawn(flag_then_shutdown(started, p.a));
    // libuv clears shutdown_req (a private field, read by the test only) just before it calls
    // the shutdown callback.
    check_hook hook(loop(), [&] {
        return started && p.a.native_stream()->shutdown_req == nullptr && s.cancel("late");
    });
    run_until([&] { return s.done(); });
    CHECK(hook.fired());
    CHECK(s.result() == "shut down"); // completion wins
    CHECK(p.a.is_open());
    CHECK(run(read_chunk(p.b)).empty()); // the peer sees EOF
}

TEST_CASE_FIXTURE(io_fixture, "pipe_cancelled_before_start_consumes_and_sends_nothing") {
    socket_pair p = make_socket_pair();
    // A first one-byte read starts reading; then wait until the rest is buffered.
    run([](socket_pair& pp) -> task<void> {
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
    run([](socket_pair& pp) -> task<void> { co_await pp.a.write("Y"); }(p));
    CHECK(run(read_chunk(p.b)) == "Y"); // no X before it
}

TEST_CASE_FIXTURE(io_fixture, "pipe_read_completed_then_cancelled_in_the_same_turn_is_delivered") {
    socket_pair p = make_socket_pair();
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
    socket_pair p = make_socket_pair();
    std::vector<char> data(1000, 'w');
    task_handle<std::string> w = start_pending_write(*this, p.a, data);
    // Drain the peer; the write then completes in a poll, and the hook cancels the writer in
    // the same iteration, before it resumes.
    task_handle<void> drain = rt->spawn(drain_until_eof(p.b));
    check_hook hook(loop(), [&] { return w.cancel("late"); });
    run_until([&] { return w.done(); });
    CHECK(hook.fired());
    // Either the cancellation found the write still queued (the stream closed) or the write
    // had completed (completion wins, the stream stays open): never both.
    if (w.result() == "written") {
        CHECK(p.a.is_open());
    } else {
        CHECK(w.result() == "cancelled: late");
        CHECK_FALSE(p.a.is_open());
    }
    drain.cancel();
    run_until([&] { return drain.done(); });
}

TEST_CASE_FIXTURE(io_fixture, "pipe_read_cancelled_twice_delivers_once_then_reads_again") {
    socket_pair p = make_socket_pair();
    for (int round = 0; round < 2; ++round) {
        task_handle<std::string> r = rt->spawn(read_and_report(p.b));
        run(nap(5ms)); // the read is parked
        CHECK_FALSE(r.done());
        CHECK(r.cancel("first"));
        CHECK_FALSE(r.cancel("second")); // one delivery, the first message
        run_until([&] { return r.done(); });
        CHECK(r.result() == "cancelled: first");
        run([](socket_pair& pp) -> task<void> { co_await pp.a.write("later"); }(p));
        CHECK(run(read_chunk(p.b)) == "later");
    }
}

TEST_CASE_FIXTURE(io_fixture, "pipe_write_cancelled_twice_closes_the_stream_once") {
    socket_pair p = make_socket_pair();
    std::vector<char> big(1 << 20, 'p');
    task_handle<std::string> w = start_pending_write(*this, p.a, big);
    CHECK(w.cancel("first"));
    CHECK_FALSE(w.cancel("second"));
    run_until([&] { return w.done(); });
    CHECK(w.result() == "cancelled: first");
    CHECK_FALSE(p.a.is_open());
}

} // namespace
} // namespace uvasync::test
