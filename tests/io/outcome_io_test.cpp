// SPDX-License-Identifier: MIT
// as_outcome and move_on_after around I/O leaves (SEMANTICS 19.2, 19.4): reads, writes, accept,
// connect, UDP, timers, signals, processes and fs requests; cancelled, error and value outcomes,
// counted by unwinds (throw_counter.hpp), never by timing.

#include <array>
#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/fs.hpp>
#include <uvasync/io/pipe.hpp>
#include <uvasync/io/process.hpp>
#include <uvasync/io/signal.hpp>
#include <uvasync/io/tcp.hpp>
#include <uvasync/io/udp.hpp>
#include <uvasync/timer.hpp>
#include <uvasync/uvasync.hpp>

#include "stream_support.hpp"
#include "string_makers.hpp"
#include "throw_counter.hpp"

#include <sys/socket.h>

using namespace std::chrono_literals;

namespace uvasync::test {
namespace {

task<void> read_outcomes(pipe_stream& a, pipe_stream& b) {
    std::array<char, 16> buf{};
    {
        // Cancelled while parked, by the scope's own deadline.
        const throws_since n;
        auto m = co_await move_on_after(5ms, as_outcome(b.read_some(buf)));
        REQUIRE(m.has_value());
        CHECK(m->cancelled());
        CHECK(n.count() == 0);
    }
    {
        // Cancelled before start: the scope is expired at entry (D-5).
        const throws_since n;
        auto m = co_await move_on_after(0ms, as_outcome(b.read_some(buf)));
        REQUIRE(m.has_value());
        CHECK(m->cancelled());
        CHECK(n.count() == 0);
    }
    {
        // move_on_after around the read itself: no throw when its deadline fires (19.4).
        const throws_since n;
        auto m = co_await move_on_after(5ms, b.read_some(buf));
        CHECK_FALSE(m.has_value());
        CHECK(n.count() == 0);
    }
    {
        // timeout around the read: exactly one throw, the timeout_error.
        const throws_since n;
        std::size_t seen = 0;
        try {
            co_await timeout(5ms, b.read_some(buf));
        } catch (const timeout_error&) {
            seen = n.count();
        }
        CHECK(seen == 1);
    }
    co_await a.write("hi");
    auto v = co_await as_outcome(b.read_some(buf));
    REQUIRE(v.has_value());
    CHECK(v.value() == 2);
    co_await a.close();
    co_await b.close();
}

task<void> fs_outcomes(std::string missing) {
    {
        const throws_since n;
        auto m = co_await move_on_after(0ms, as_outcome(fs::stat(missing)));
        REQUIRE(m.has_value());
        CHECK(m->cancelled());
        CHECK(n.count() == 0);
    }
    auto e = co_await as_outcome(fs::stat(missing));
    CHECK(e.has_error());
    auto ok = co_await as_outcome(fs::stat("."));
    CHECK(ok.has_value());
}

/// What one `as_outcome` produced and how many unwinds it took.
struct seen_outcome {
    std::string what;
    std::size_t throws = 0;
};

template <class T>
std::string kind_of(const outcome<T>& o) {
    return o.has_value() ? "value" : o.has_error() ? "error" : "cancelled";
}

/// `as_outcome(make())` three ways: cancelled while parked (a 5 ms `move_on_after` around it:
/// its own deadline), cancelled before it starts (an expired scope, D-5), and as it ends by
/// itself (`make_final`, awaited outside any scope).
template <class Make, class MakeFinal>
task<std::vector<seen_outcome>> three_ways(Make make, MakeFinal make_final, bool parks = true) {
    std::vector<seen_outcome> out;
    if (parks) {
        const throws_since n;
        auto m = co_await move_on_after(5ms, as_outcome(make()));
        const std::size_t count = n.count();
        out.push_back({m.has_value() ? kind_of(*m) : "no outcome", count});
    }
    {
        const throws_since n;
        auto m = co_await move_on_after(0ms, as_outcome(make()));
        const std::size_t count = n.count();
        out.push_back({m.has_value() ? kind_of(*m) : "no outcome", count});
    }
    {
        const throws_since n;
        auto o = co_await as_outcome(make_final());
        const std::size_t count = n.count();
        out.push_back({kind_of(o), count});
    }
    co_return out;
}

std::string show(const std::vector<seen_outcome>& v) {
    std::string s;
    for (const auto& o : v) {
        s += o.what + "/" + std::to_string(o.throws) + " ";
    }
    return s;
}

} // namespace

TEST_CASE_FIXTURE(io_fixture, "19.2 19.4 a read on a socketpair: cancelled without a throw") {
    REQUIRE(throw_counter::active());
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    pipe_stream a = pipe_stream::open(fds[0]);
    pipe_stream b = pipe_stream::open(fds[1]);
    run(read_outcomes(a, b));
}

TEST_CASE_FIXTURE(io_fixture, "19.2 a fs request: cancelled before start without a throw; "
                              "errors and values as outcomes") {
    REQUIRE(throw_counter::active());
    run(fs_outcomes("/nonexistent/uvasync-outcome-test"));
}

} // namespace uvasync::test

namespace uvasync::test {
namespace {

task<void> accept_connect_write(std::vector<std::string>& report) {
    tcp_listener l = tcp_listener::bind(loopback());
    const socket_address at = l.local_address();
    // accept: cancelled while parked and before start, without a throw.
    auto r = co_await three_ways([&] { return l.accept(); },
                                 [&] {
                                     spawn(tcp_stream::connect(at)); // detached
                                     return l.accept();
                                 });
    report.push_back("accept " + show(r));
    // connect is a task<tcp_stream>: cancelled before start, its body raises once, caught at
    // the boundary (19.2); a refused connection is an error outcome (the body's one throw).
    {
        const throws_since n;
        auto m = co_await move_on_after(0ms, as_outcome(tcp_stream::connect(at)));
        const std::size_t count = n.count();
        report.push_back(std::string("connect cancelled ") +
                         (m.has_value() ? kind_of(*m) : "no outcome") + "/" +
                         std::to_string(count));
    }
    tcp_stream client;
    {
        task<tcp_stream> connecting = tcp_stream::connect(at);
        auto c = co_await as_outcome(std::move(connecting));
        report.push_back("connect " + kind_of(c));
        if (c.has_value()) {
            client = std::move(c.value());
        }
    }
    tcp_stream server = co_await l.accept();
    co_await l.close();
    {
        auto refused = co_await as_outcome(tcp_stream::connect(at)); // nobody listens now
        report.push_back("connect to a closed port " + kind_of(refused));
    }
    // write: completes at once into the kernel buffer (a value); cancelled before start
    // without a throw; on a closed stream an error.
    {
        const throws_since n;
        auto m = co_await move_on_after(0ms, as_outcome(client.write("x")));
        const std::size_t count = n.count();
        report.push_back(std::string("write cancelled ") +
                         (m.has_value() ? kind_of(*m) : "no outcome") + "/" +
                         std::to_string(count));
        auto v = co_await as_outcome(client.write("hello"));
        report.push_back("write " + kind_of(v));
    }
    co_await client.close();
    {
        const throws_since n;
        auto e = co_await as_outcome(client.write("late"));
        report.push_back("write on a closed stream " + kind_of(e) + "/" +
                         std::to_string(n.count()));
    }
    co_await server.close();
}

task<void> send_one(udp_socket& s, socket_address to) {
    co_await s.send("d", to);
}

task<void> udp_outcomes(std::vector<std::string>& report) {
    udp_socket a = udp_socket::bind(loopback());
    udp_socket b = udp_socket::bind(loopback());
    const socket_address to_b = b.local_address();
    std::array<char, 16> buf{};
    auto r = co_await three_ways([&] { return b.receive(buf); },
                                 [&] {
                                     // A datagram is on its way: the receive is a value.
                                     spawn(send_one(a, to_b));
                                     return b.receive(buf);
                                 });
    report.push_back("receive " + show(r));
    // send cannot be taken back once started (14.5): only "before start" is a cancellation.
    auto s = co_await three_ways([&] { return a.send("x", to_b); },
                                 [&] { return a.send("y", to_b); }, false);
    report.push_back("send " + show(s));
    co_await a.close();
    {
        const throws_since n;
        auto e = co_await as_outcome(a.send("z", to_b));
        report.push_back("send on a closed socket " + kind_of(e) + "/" + std::to_string(n.count()));
        auto e2 = co_await as_outcome(a.receive(buf));
        report.push_back("receive on a closed socket " + kind_of(e2));
    }
    co_await b.close();
}

task<void> timer_signal_process_outcomes(std::vector<std::string>& report) {
    {
        timer slow(std::chrono::hours(1));
        timer fast(std::chrono::milliseconds(1));
        auto r = co_await three_ways([&] { return slow.tick(); }, [&] { return fast.tick(); });
        report.push_back("tick " + show(r));
        co_await slow.close();
        co_await fast.close();
    }
    {
        signal_set set{SIGUSR2};
        auto r = co_await three_ways([&] { return set.wait(); },
                                     [&] {
                                         std::raise(SIGUSR2); // queued: the wait is a value
                                         return set.wait();
                                     });
        report.push_back("signal " + show(r));
        co_await set.close();
    }
    {
        process_options o;
        o.file = "sleep";
        o.args = {"sleep", "30"};
        process p = process::spawn(std::move(o));
        // Cancelling wait() stops the child (14.7) and resumes once it exited: still no throw.
        {
            const throws_since n;
            auto m = co_await move_on_after(5ms, as_outcome(p.wait()));
            report.push_back(std::string("process wait cancelled ") +
                             (m.has_value() ? kind_of(*m) : "no outcome") + "/" +
                             std::to_string(n.count()));
        }
        auto v = co_await as_outcome(p.wait()); // it has exited: the status again
        report.push_back("process wait " + kind_of(v));
    }
}

} // namespace

TEST_CASE_FIXTURE(io_fixture, "19.2 accept, connect and write: cancelled, error and value "
                              "outcomes, counted unwinds") {
    REQUIRE(throw_counter::active());
    std::vector<std::string> report;
    run(accept_connect_write(report));
    CHECK(report == std::vector<std::string>{
                        "accept cancelled/0 cancelled/0 value/0 ",
                        "connect cancelled cancelled/1", // the task body's delivery, caught
                        "connect value",
                        "connect to a closed port error",
                        "write cancelled cancelled/0",
                        "write value",
                        // SEMANTICS 19.2 makes the cancelled outcome throw-free; an error is
                        // raised inside the leaf's resumption and caught there: one unwind.
                        "write on a closed stream error/1",
                    });
}

TEST_CASE_FIXTURE(io_fixture, "19.2 UDP send and receive: cancelled, error and value outcomes "
                              "without a throw") {
    REQUIRE(throw_counter::active());
    std::vector<std::string> report;
    run(udp_outcomes(report));
    CHECK(report == std::vector<std::string>{
                        "receive cancelled/0 cancelled/0 value/0 ",
                        "send cancelled/0 value/0 ",
                        "send on a closed socket error/1", // see above: errors unwind once
                        "receive on a closed socket error",
                    });
}

TEST_CASE_FIXTURE(io_fixture, "19.2 timer tick, signal wait, process wait: cancelled and value "
                              "outcomes without a throw") {
    REQUIRE(throw_counter::active());
    std::vector<std::string> report;
    run(timer_signal_process_outcomes(report));
    CHECK(report == std::vector<std::string>{
                        "tick cancelled/0 cancelled/0 value/0 ",
                        "signal cancelled/0 cancelled/0 value/0 ",
                        "process wait cancelled cancelled/0",
                        "process wait value",
                    });
}

} // namespace uvasync::test
