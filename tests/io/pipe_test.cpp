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

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;

/// A fresh temporary directory, removed (with the sockets in it) at the end of the test.
class temp_dir {
public:
    temp_dir() {
        char pattern[] = "/tmp/uvasync-pipe-XXXXXX";
        REQUIRE(::mkdtemp(pattern) != nullptr);
        path_ = pattern;
    }

    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    temp_dir(temp_dir&&) = delete;
    temp_dir& operator=(temp_dir&&) = delete;

    ~temp_dir() {
        for (const auto& f : files_) {
            ::unlink(f.c_str());
        }
        ::rmdir(path_.c_str());
    }

    [[nodiscard]] const std::string& path() const noexcept { return path_; }

    std::string file(const std::string& name) {
        files_.push_back(path_ + "/" + name);
        return files_.back();
    }

private:
    std::string path_;
    std::vector<std::string> files_;
};

struct pipe_pair {
    pipe_stream client;
    pipe_stream server;
};

task<pipe_pair> connect_pipe_pair(pipe_listener& l, std::string path) {
    task_handle<pipe_stream> connecting = spawn(pipe_stream::connect(path));
    pipe_stream server = co_await l.accept();
    pipe_stream client = co_await connecting;
    co_return pipe_pair{std::move(client), std::move(server)};
}

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
    const std::string path = dir.file("echo.sock");
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
    const std::string missing = dir.file("missing.sock");
    const failure f = run(failure_of(pipe_stream::connect(missing)));
    CHECK(f.code == UV_ENOENT);
    CHECK(f.what == "pipe_stream::connect " + missing + ": no such file or directory");

    const std::string path = dir.file("taken.sock");
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
    const std::string base = dir.file("");
    const std::string longest = dir.file(std::string(max - base.size(), 'a'));
    REQUIRE(longest.size() == max);
    const std::string too_long = dir.file(std::string(max - base.size() + 1, 'b'));
    const std::string with_nul = base + std::string("x\0y.sock", 8);

    CHECK_THROWS_WITH_AS(pipe_listener::bind(too_long), doctest::Contains("at most 107"),
                         std::invalid_argument);
    CHECK_THROWS_WITH_AS(pipe_listener::bind(with_nul), doctest::Contains("NUL"),
                         std::invalid_argument);
    CHECK(entries_in(dir.path()) == 0); // no socket file under a truncated name
    CHECK(contains(run(connect_error(too_long)), "at most 107"));
    CHECK(contains(run(connect_error(with_nul)), "NUL"));

    {
        pipe_listener fits = pipe_listener::bind(longest); // the longest path that fits works
        CHECK(entries_in(dir.path()) == 1);
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
    const std::string path = dir.file("cancel.sock");
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
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    pipe_stream a = pipe_stream::open(fds[0]);
    pipe_stream b = pipe_stream::open(fds[1]);
    CHECK(fill_until_eagain(a) > 0);
    std::vector<char> big(1 << 20, 'p');
    task_handle<std::string> w =
        rt->spawn([](pipe_stream& s, std::span<const char> d) -> task<std::string> {
            try {
                co_await s.write(d);
                co_return "written";
            } catch (const cancelled_error&) {
                co_return "cancelled";
            }
        }(a, big));
    run(nap(5ms));
    CHECK_FALSE(w.done());
    w.cancel();
    run_until([&] { return w.done(); });
    CHECK(w.result() == "cancelled");
    CHECK_FALSE(a.is_open());
    const failure f =
        run(failure_of([](pipe_stream& s) -> task<void> { co_await s.write("x"); }(a)));
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

// A local connect succeeds in the kernel at once, but libuv reports it from the next loop
// iteration: cancelled between the two, it is pending. One delivery: the first cancellation
// (the socket closed by the abort) or, if the report came first, the connection.
TEST_CASE_FIXTURE(io_fixture, "pipe_connect_cancelled_twice_delivers_once") {
    temp_dir dir;
    const std::string path = dir.file("twice.sock");
    pipe_listener l = pipe_listener::bind(path);
    for (int round = 0; round < 2; ++round) {
        task_handle<std::string> c = rt->spawn(connect_and_report(path));
        uv_run(loop(), UV_RUN_NOWAIT); // the connect is issued and parked
        REQUIRE_FALSE(c.done());
        CHECK(c.cancel("first"));
        CHECK_FALSE(c.cancel("second"));
        run_until([&] { return c.done(); });
        const std::string r = c.result();
        CHECK((r == "cancelled: first" || r == "connected"));
    }
}

TEST_CASE_FIXTURE(io_fixture, "pipe_shutdown_cancelled_twice_closes_the_stream_once") {
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    pipe_stream a = pipe_stream::open(fds[0]);
    pipe_stream b = pipe_stream::open(fds[1]);
    CHECK(fill_until_eagain(a) > 0);
    std::vector<char> big(1 << 20, 'p');
    task_handle<std::string> w =
        rt->spawn([](pipe_stream& s, std::span<const char> d) -> task<std::string> {
            try {
                co_await s.write(d);
                co_return "written";
            } catch (const std::system_error& e) {
                co_return std::string("error: ") + e.what();
            }
        }(a, big));
    task_handle<std::string> sd = rt->spawn(shutdown_and_report(a));
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
    CHECK_FALSE(a.is_open());
}

} // namespace
} // namespace uvasync::test
