// SPDX-License-Identifier: MIT
// pipe_stream and pipe_listener: Unix domain sockets in a temporary directory, and fds from
// socketpair() (SEMANTICS 14.2 - 14.5).

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/pipe.hpp>
#include <uvasync/uvasync.hpp>

#include "stream_support.hpp"
#include "temp_dir.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;

task<void> pipe_echo(pipe_listener& l, std::string path) {
    pipe_pair p = co_await connect_pipe_pair(l, path);
    CHECK(p.client.is_open());
    CHECK(p.client.native_handle() != nullptr);
    co_await p.client.write(std::string("ping\n"));
    const std::string line = co_await p.server.read_until("\n", 64);
    CHECK(line == "ping\n");
    co_await p.server.write(std::span<const char>(line));
    CHECK(co_await read_n(p.client, 5) == "ping\n");
    co_await p.client.shutdown();
    CHECK(co_await p.server.read_until("\n", 64) == ""); // EOF
    co_await p.server.close();
    co_await p.client.close();
}

TEST_CASE_FIXTURE(io_fixture, "pipe_listener_connect_accept_echo") {
    temp_dir dir;
    const std::string path = dir / "echo.sock";
    pipe_listener l = pipe_listener::bind(path);
    CHECK(l.is_open());
    for (int round = 0; round < 2; ++round) {
        run(pipe_echo(l, path));
    }
    run([](pipe_listener& x) -> task<void> { co_await x.close(); }(l));
    CHECK_FALSE(l.is_open());
}

TEST_CASE_FIXTURE(io_fixture, "pipe_connect_to_a_missing_path_and_bind_in_use_fail") {
    temp_dir dir;
    const std::string missing = dir / "missing.sock";
    const failure f = run(failure_of(pipe_stream::connect(missing)));
    CHECK(f.code == UV_ENOENT);
    CHECK(f.what == "pipe_stream::connect " + missing + ": no such file or directory");

    const std::string path = dir / "taken.sock";
    pipe_listener l = pipe_listener::bind(path);
    try {
        pipe_listener again = pipe_listener::bind(path);
        FAIL("bound twice");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == UV_EADDRINUSE);
        CHECK(contains(e.what(), "pipe_listener::bind " + path));
    }
}

task<std::string> connect_error(std::string path) {
    try {
        [[maybe_unused]] pipe_stream p = co_await pipe_stream::connect(std::move(path));
    } catch (const std::invalid_argument& e) {
        co_return e.what();
    }
    co_return "<connected>";
}

/// Entries in `dir` other than . and ..
std::size_t entries_in(const std::string& dir) {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) {
        ++n;
    }
    return n;
}

TEST_CASE_FIXTURE(io_fixture, "pipe_paths_longer_than_sun_path_or_with_a_nul_are_rejected") {
    temp_dir dir;
    const std::size_t max = sizeof(sockaddr_un{}.sun_path) - 1; // 107 on Linux
    const std::string base = dir / "";
    const std::string longest = dir / (std::string(max - base.size(), 'a'));
    REQUIRE(longest.size() == max);
    const std::string too_long = dir / (std::string(max - base.size() + 1, 'b'));
    const std::string with_nul = base + std::string("x\0y.sock", 8);

    CHECK_THROWS_WITH_AS(pipe_listener::bind(too_long), doctest::Contains("at most 107"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(pipe_listener::bind(with_nul), doctest::Contains("NUL"),
                         std::invalid_argument);
    CHECK(entries_in(dir.str()) == 0); // no socket file under a truncated name
    CHECK(contains(run(connect_error(too_long)), "at most 107"));
    CHECK(contains(run(connect_error(with_nul)), "NUL"));

    {
        pipe_listener fits = pipe_listener::bind(longest); // the longest path that fits works
        CHECK(entries_in(dir.str()) == 1);
    }
}

task<void> socketpair_echo(pipe_stream& a, pipe_stream& b) {
    co_await a.write("over a socketpair");
    CHECK(co_await read_n(b, 17) == "over a socketpair");
    co_await b.write(std::string("back"));
    CHECK(co_await read_n(a, 4) == "back");
    co_await a.close();
    char c[4];
    CHECK(co_await b.read_some(c) == 0);
}

TEST_CASE_FIXTURE(io_fixture, "pipe_open_wraps_existing_fds") {
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    pipe_stream a = pipe_stream::open(fds[0]);
    pipe_stream b = pipe_stream::open(fds[1]); // the streams own the fds from here on
    CHECK(a.is_open());
    run(socketpair_echo(a, b));
    CHECK_THROWS_AS((void)pipe_stream::open(-1), std::system_error);
}

TEST_CASE_FIXTURE(io_fixture, "pipe_create_gives_an_initialised_unconnected_pipe") {
    pipe_stream p = pipe_stream::create();
    CHECK(p.is_open());
    REQUIRE(p.native_handle() != nullptr);
    CHECK(uv_handle_get_type(reinterpret_cast<uv_handle_t*>(p.native_handle())) == UV_NAMED_PIPE);
    pipe_stream ipc = pipe_stream::create(true);
    CHECK(ipc.native_handle()->ipc == 1);
    // Writing to an unconnected pipe fails cleanly.
    const failure f =
        run(failure_of([](pipe_stream& s) -> task<void> { co_await s.write("x"); }(p)));
    CHECK(f.code != 0);
    CHECK(contains(f.what, "pipe_stream::write"));
}

TEST_CASE_FIXTURE(io_fixture, "pipe_accept_and_read_cancelled_while_pending") {
    temp_dir dir;
    const std::string path = dir / "cancel.sock";
    pipe_listener l = pipe_listener::bind(path);
    task_handle<std::string> a = rt->spawn([](pipe_listener& x) -> task<std::string> {
        try {
            pipe_stream s = co_await x.accept();
            co_return "accepted";
        } catch (const cancelled_error& e) {
            co_return "cancelled: " + std::string(e.message());
        }
    }(l));
    run(nap(5ms));
    CHECK(a.cancel("first"));
    CHECK_FALSE(a.cancel("second"));
    run_until([&] { return a.done(); });
    CHECK(a.result() == "cancelled: first");

    // The connection made afterwards waits for the next accept.
    pipe_pair p = run(connect_pipe_pair(l, path));
    task_handle<std::string> r = rt->spawn([](pipe_stream& s) -> task<std::string> {
        try {
            co_return co_await read_chunk(s);
        } catch (const cancelled_error& e) {
            co_return "cancelled: " + std::string(e.message());
        }
    }(p.server));
    run(nap(5ms));
    CHECK(r.cancel("stop"));
    run_until([&] { return r.done(); });
    CHECK(r.result() == "cancelled: stop");
    run([](pipe_pair& pp) -> task<void> { co_await pp.client.write("after"); }(p));
    CHECK(run(read_chunk(p.server)) == "after");
}

TEST_CASE_FIXTURE(io_fixture, "pipe_write_cancelled_under_backpressure_closes_the_stream") {
    socket_pair p = make_socket_pair();
    std::vector<char> big(1 << 20, 'p');
    task_handle<std::string> w = start_pending_write(*this, p.a, big);
    w.cancel("stop");
    run_until([&] { return w.done(); });
    CHECK(w.result() == "cancelled: stop");
    CHECK_FALSE(p.a.is_open());
    const failure f =
        run(failure_of([](pipe_stream& s) -> task<void> { co_await s.write("x"); }(p.a)));
    CHECK(f.what == "pipe_stream::write: the stream was closed because a pending write was "
                    "cancelled: bad file descriptor");
}

task<std::string> connect_and_report(std::string path) {
    try {
        pipe_stream s = co_await pipe_stream::connect(std::move(path));
        co_await s.close();
        co_return "connected";
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    }
}

task<std::string> connect_and_keep(std::string path, std::vector<pipe_stream>& keep) {
    try {
        keep.push_back(co_await pipe_stream::connect(std::move(path)));
        co_return "connected";
    } catch (const std::system_error& e) {
        co_return e.what();
    }
}

/// Cancels `h` twice, recording what each cancel() returned.
task<void> cancel_twice(task_handle<std::string>& h, std::string& log) {
    log += h.cancel("first") ? "true" : "false";
    log += h.cancel("second") ? " true" : " false";
    co_return;
}

// A connect to a Unix domain socket cannot stay pending for long: the kernel completes it (or,
// with the listener's backlog full, fails it with EAGAIN: a non-blocking AF_UNIX connect never
// returns EINPROGRESS on Linux) inside uv_pipe_connect, and libuv reports the result from the
// next loop iteration. So the pending window is the rest of the iteration that issued it. The
// canceller runs there: spawned after the connecting task, it runs in the same drain, right
// after the connect was issued and parked, before libuv's report. That forces the abort path
// every time: one delivery, with the first message; the second cancel() returns false; the
// socket is closed (no pipe handle is left open) and the listener accepts the next connection.
TEST_CASE_FIXTURE(io_fixture, "pipe_connect_cancelled_twice_delivers_once") {
    temp_dir dir;
    const std::string path = dir / "twice.sock";
    pipe_listener l = pipe_listener::bind(path);
    const int pipes_before = open_handles(loop(), UV_NAMED_PIPE);
    for (int round = 0; round < 2; ++round) {
        std::string log;
        task_handle<std::string> c = rt->spawn(connect_and_report(path));
        task_handle<void> canceller = rt->spawn(cancel_twice(c, log));
        run_until([&] { return c.done() && canceller.done(); });
        CHECK(log == "true false");
        CHECK(c.result() == "cancelled: first"); // the abort path, not the connection
        CHECK(open_handles(loop(), UV_NAMED_PIPE) == pipes_before);
        pipe_pair p = run(connect_pipe_pair(l, path)); // the listener still accepts
        CHECK(p.client.is_open());
    }
}

// With the listener's backlog full the kernel refuses at once: the connect fails (UV_EAGAIN,
// reported from the next iteration) instead of waiting, so this is a "fails" row, not a pending
// one. The accepted connections are never taken, so the backlog stays full.
TEST_CASE_FIXTURE(io_fixture, "pipe_connect_to_a_full_backlog_fails_at_once_with_eagain") {
    temp_dir dir;
    const std::string path = dir / "full.sock";
    pipe_listener l = pipe_listener::bind(path, 1);
    std::vector<pipe_stream> queued; // kept open: the kernel's queue and libuv's held one
    std::string last;
    for (int i = 0; i < 16 && !contains(last, "resource temporarily unavailable"); ++i) {
        task_handle<std::string> c = rt->spawn(connect_and_keep(path, queued));
        run_until([&] { return c.done(); });
        last = c.result();
    }
    CHECK_FALSE(queued.empty()); // the first connections fit
    CHECK(contains(last, "pipe_stream::connect " + path + ": resource temporarily unavailable"));
}

TEST_CASE_FIXTURE(io_fixture, "pipe_shutdown_cancelled_twice_closes_the_stream_once") {
    socket_pair p = make_socket_pair();
    std::vector<char> big(1 << 20, 'p');
    task_handle<std::string> w = start_pending_write(*this, p.a, big);
    task_handle<std::string> sd = rt->spawn(shutdown_and_report(p.a));
    run(nap(5ms));
    CHECK_FALSE(w.done());
    CHECK_FALSE(sd.done()); // a shutdown waits for the queued writes
    CHECK(sd.cancel("first"));
    CHECK_FALSE(sd.cancel("second"));
    run_until([&] { return sd.done() && w.done(); });
    CHECK(sd.result() == "cancelled: first");
    CHECK(w.result() ==
          "error: pipe_stream::write: the stream was closed because a pending shutdown was "
          "cancelled: operation canceled");
    CHECK_FALSE(p.a.is_open());
}

} // namespace
} // namespace uvasync::test
