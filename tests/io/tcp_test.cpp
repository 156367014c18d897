// SPDX-License-Identifier: MIT
// tcp_stream and tcp_listener over loopback (SEMANTICS 14.2, 14.3, 14.4, 14.5, D-2).
//
// For each operation (connect, accept, read_some, read_until, write, shutdown): it completes;
// it fails to start; cancelled before start (no libuv call); cancelled while pending;
// cancelled after completion but before resumption (completion wins); cancelled twice.

#include <chrono>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/tcp.hpp>
#include <uvasync/uvasync.hpp>

#include "io/stream_state.hpp"
#include "io/uv_buf.hpp"
#include "stream_support.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Completes

task<void> echo_round(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    CHECK(p.client.is_open());
    CHECK(p.client.peer_address() == l.local_address());
    CHECK(p.server.peer_address() == p.client.local_address());
    CHECK(p.server.local_address() == l.local_address());
    p.client.set_nodelay(true);
    p.client.set_keepalive(true, 30s);

    co_await p.client.write(std::string("hello")); // owning
    CHECK(co_await read_n(p.server, 5) == "hello");
    const std::string reply = "world!";
    co_await p.server.write(std::span<const char>(reply)); // borrowed
    CHECK(co_await read_n(p.client, 6) == "world!");
    co_await p.server.write("literal");
    CHECK(co_await read_n(p.client, 7) == "literal");

    co_await p.client.shutdown();
    char b[8];
    CHECK(co_await p.server.read_some(b) == 0);  // EOF is 0
    CHECK(co_await p.server.read_some(b) == 0);  // repeatedly
    co_await p.server.write("after half-close"); // the other direction still works
    CHECK(co_await read_n(p.client, 16) == "after half-close");
    co_await p.server.close();
    CHECK_FALSE(p.server.is_open());
    CHECK(co_await p.client.read_some(b) == 0);
    co_await p.client.close();
    co_await p.client.close(); // idempotent
    CHECK_FALSE(p.client.is_open());
}

TEST_CASE_FIXTURE(io_fixture, "tcp_connect_accept_write_read_shutdown_close") {
    tcp_listener l = tcp_listener::bind(loopback());
    CHECK(l.is_open());
    CHECK(l.local_address().port() != 0);
    for (int round = 0; round < 2; ++round) {
        run(echo_round(l));
    }
}

task<void> keepalive_limits(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    const auto over = std::chrono::seconds(std::int64_t(std::numeric_limits<unsigned>::max()) + 1);
    CHECK_THROWS_WITH_AS(p.client.set_keepalive(true, over), doctest::Contains("1 to 4294967295"),
                         std::invalid_argument);
    CHECK_THROWS_AS(p.client.set_keepalive(true, std::chrono::seconds(-1)), std::invalid_argument);
    CHECK_THROWS_AS(p.client.set_keepalive(true, std::chrono::seconds(0)), std::invalid_argument);
    p.client.set_keepalive(false, over); // disabling ignores the delay
    p.client.set_keepalive(true, 1s);
}

TEST_CASE_FIXTURE(io_fixture, "tcp_set_keepalive_rejects_delays_libuv_would_wrap") {
    tcp_listener l = tcp_listener::bind(loopback());
    run(keepalive_limits(l));
}

/// A C-style accept loop of the test's own: a raw uv_tcp_t listener that accepts into a raw
/// uv_tcp_t, to be handed to a task.
struct raw_acceptor {
    uv_tcp_t listener{};
    uv_tcp_t conn{};
    bool accepted = false;
    int closed = 0;

    explicit raw_acceptor(uv_loop_t* loop) {
        REQUIRE(uv_tcp_init(loop, &listener) == 0);
        REQUIRE(uv_tcp_init(loop, &conn) == 0);
        listener.data = this;
        conn.data = this;
        REQUIRE(uv_tcp_bind(&listener, loopback().data(), 0) == 0);
        REQUIRE(
            uv_listen(reinterpret_cast<uv_stream_t*>(&listener), 8, [](uv_stream_t* l, int status) {
                auto* self = static_cast<raw_acceptor*>(l->data);
                // CHECK, not REQUIRE: nothing may throw through libuv's C frames.
                CHECK(status == 0);
                self->accepted = uv_accept(l, reinterpret_cast<uv_stream_t*>(&self->conn)) == 0;
            }) == 0);
    }

    [[nodiscard]] socket_address address() const {
        sockaddr_storage ss{};
        int len = sizeof ss;
        uv_tcp_getsockname(&listener, reinterpret_cast<sockaddr*>(&ss), &len);
        return socket_address::from(reinterpret_cast<const sockaddr*>(&ss));
    }

    void close_all() {
        for (uv_tcp_t* h : {&listener, &conn}) {
            uv_close(reinterpret_cast<uv_handle_t*>(h),
                     [](uv_handle_t* x) { ++static_cast<raw_acceptor*>(x->data)->closed; });
        }
    }
};

task<std::string> adopt_accepted(raw_acceptor& a) {
    tcp_stream client = co_await tcp_stream::connect(a.address());
    while (!a.accepted) {
        co_await sleep(1ms);
    }
    tcp_stream server = tcp_stream::adopt(&a.conn);
    a.close_all(); // the caller closes its own handles; the connection lives on in `server`
    co_await client.write(std::string("ping"));
    std::string got = co_await read_n(server, 4);
    co_await server.write(std::string("pong"));
    got += co_await read_n(client, 4);
    CHECK(server.peer_address() == client.local_address());
    co_return got;
}

TEST_CASE_FIXTURE(io_fixture, "tcp_stream_adopts_a_connection_accepted_by_c_code") {
    raw_acceptor a(loop());
    CHECK(run(adopt_accepted(a)) == "pingpong");
    run_until([&] { return a.closed == 2; });
    CHECK_THROWS_AS(tcp_stream::adopt(nullptr), std::system_error);
}

task<void> large_transfer(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    std::string big(std::size_t{3} * 1024 * 1024, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) {
        big[i] = static_cast<char>('a' + i % 26);
    }
    // The write cannot finish before the peer reads: uv_write takes the remainder.
    task_handle<void> w = spawn([](tcp_stream& s, const std::string& data) -> task<void> {
        co_await s.write(std::span<const char>(data));
        co_await s.shutdown();
    }(p.client, big));
    std::string got;
    std::string chunk(100000, '\0');
    for (;;) {
        const std::size_t n = co_await p.server.read_some(chunk);
        if (n == 0) {
            break;
        }
        got.append(chunk.data(), n);
    }
    co_await w;
    CHECK(got.size() == big.size());
    CHECK(got == big);
}

TEST_CASE_FIXTURE(io_fixture, "tcp_large_write_goes_through_uv_write_in_order") {
    tcp_listener l = tcp_listener::bind(loopback());
    run(large_transfer(l));
}

// ---------------------------------------------------------------------------------------------
// Fails to start

TEST_CASE_FIXTURE(io_fixture, "tcp_connect_refused_names_the_call_and_address") {
    const failure f = run(failure_of(tcp_stream::connect(loopback(1))));
    CHECK(f.code == UV_ECONNREFUSED);
    CHECK(f.what == "tcp_stream::connect 127.0.0.1:1: connection refused");
}

TEST_CASE_FIXTURE(io_fixture, "tcp_bind_in_use_and_unspecified_addresses_fail") {
    tcp_listener l = tcp_listener::bind(loopback());
    const socket_address taken = l.local_address();
    try {
        tcp_listener again = tcp_listener::bind(taken);
        FAIL("bound twice");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == UV_EADDRINUSE);
        CHECK(contains(e.what(), "tcp_listener::bind " + taken.to_string()));
    }
    CHECK_THROWS_AS(tcp_listener::bind(socket_address()), std::system_error);
    const failure f = run(failure_of(tcp_stream::connect(socket_address())));
    CHECK(f.code == UV_EINVAL);
}

task<void> closed_stream_operations(tcp_listener& l) {
    tcp_stream never;
    CHECK_FALSE(never.is_open());
    CHECK(never.buffered() == 0);
    CHECK(never.native_stream() == nullptr);
    co_await never.close(); // resumes at once
    char b[4];
    failure f = co_await failure_of([](tcp_stream& s, std::span<char> buf) -> task<std::size_t> {
        co_return co_await s.read_some(buf);
    }(never, b));
    CHECK(f.code == UV_EBADF);
    CHECK(f.what == "stream::read_some: the stream is not open: bad file descriptor");

    tcp_pair p = co_await connect_pair(l);
    co_await p.client.close();
    f = co_await failure_of([](tcp_stream& s) -> task<void> { co_await s.write("x"); }(p.client));
    CHECK(f.code == UV_EBADF);
    CHECK(f.what == "tcp_stream::write: the stream was closed: bad file descriptor");
    f = co_await failure_of([](tcp_stream& s) -> task<void> { co_await s.shutdown(); }(p.client));
    CHECK(f.code == UV_EBADF);
    f = co_await failure_of([](tcp_stream& s, std::span<char> buf) -> task<std::size_t> {
        co_return co_await s.read_some(buf);
    }(p.client, b));
    CHECK(f.code == UV_EBADF);
    CHECK_THROWS_AS(p.client.set_nodelay(true), std::system_error);
    CHECK_THROWS_AS((void)p.client.peer_address(), std::system_error);
    CHECK_THROWS_AS((void)p.client.read_some(std::span<char>()), std::invalid_argument);
    CHECK_THROWS_AS((void)p.server.read_some(std::span<char>()), std::invalid_argument);
    CHECK_THROWS_AS((void)p.server.read_until("", 10), std::invalid_argument);
    CHECK_THROWS_AS((void)p.server.read_until("\n", 0), std::invalid_argument);

    tcp_listener closed;
    f = co_await failure_of(
        [](tcp_listener& x) -> task<tcp_stream> { co_return co_await x.accept(); }(closed));
    CHECK(f.code == UV_EBADF);
}

TEST_CASE_FIXTURE(io_fixture, "tcp_operations_on_closed_or_unopened_streams_fail_with_ebadf") {
    tcp_listener l = tcp_listener::bind(loopback());
    run(closed_stream_operations(l));
}

task<void> write_after_peer_reset(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    co_await p.client.write("x");
    char b[4];
    CHECK(co_await p.server.read_some(b) == 1); // reading stays armed from here on
    // The peer resets the connection while nobody reads: the error is remembered.
    uv_os_fd_t fd = -1;
    REQUIRE(uv_fileno(reinterpret_cast<uv_handle_t*>(p.client.native_handle()), &fd) == 0);
    const linger lg{1, 0};
    REQUIRE(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    co_await p.client.close();
    co_await sleep(20ms);
    for (int i = 0; i < 2; ++i) {
        try {
            (void)co_await p.server.read_some(b);
            FAIL("no error");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == UV_ECONNRESET);
            CHECK(contains(e.what(), "tcp_stream::read_some"));
        }
    }
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_error_is_remembered_for_the_next_reads") {
    tcp_listener l = tcp_listener::bind(loopback());
    run(write_after_peer_reset(l));
}

task<std::vector<int>> write_to_reset_peer(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    uv_os_fd_t fd = -1;
    REQUIRE(uv_fileno(reinterpret_cast<uv_handle_t*>(p.client.native_handle()), &fd) == 0);
    const linger lg{1, 0};
    REQUIRE(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    co_await p.client.close(); // RST
    std::vector<int> errors;
    // The first write after the reset may fail with ECONNRESET; the next ones fail with EPIPE,
    // which is where write() raises SIGPIPE.
    for (int i = 0; i < 1000 && errors.size() < 3; ++i) {
        try {
            co_await p.server.write("x");
        } catch (const std::system_error& e) {
            errors.push_back(e.code().value());
        }
        co_await sleep(1ms); // lets the RST arrive; bounds nothing
    }
    co_return errors;
}

TEST_CASE_FIXTURE(io_fixture, "tcp_write_to_a_reset_peer_fails_and_sigpipe_is_ignored") {
    tcp_listener l = tcp_listener::bind(loopback());
    const std::vector<int> errors = run(write_to_reset_peer(l));

    struct sigaction now {};

    REQUIRE(sigaction(SIGPIPE, nullptr, &now) == 0);
    const bool ignored = now.sa_handler == SIG_IGN; // set by the first stream state
    CHECK(ignored);
    REQUIRE(errors.size() == 3); // the process survived the EPIPE writes
    for (int e : errors) {
        CHECK((e == UV_EPIPE || e == UV_ECONNRESET));
    }
    CHECK(errors.back() == UV_EPIPE);
}

TEST_CASE("tcp_write_buffers_over_4_gib_keep_their_length") {
    static const char byte = 'x';
    const std::size_t huge = (std::size_t{5} << 30) + 7; // never dereferenced
    const uv_buf_t b = detail::make_uv_buf(&byte, huge);
    CHECK(b.base == &byte);
    CHECK(static_cast<std::size_t>(b.len) == huge);
    CHECK(detail::try_write_length(huge) == detail::max_try_write);
    CHECK(detail::try_write_length(10) == 10);
    CHECK(detail::max_try_write <= static_cast<std::size_t>(INT_MAX));
}

// ---------------------------------------------------------------------------------------------
// Cancelled before start: the libuv call is never made

/// Cancels its own task (`self`, assigned by the spawner before the task's first step: spawn
/// only schedules it), then runs `op`.
task<void> cancel_self_then(task_handle<void>& self, std::function<task<void>()> op,
                            std::string& outcome) {
    self.cancel("early");
    try {
        co_await op();
        outcome = "completed";
    } catch (const cancelled_error& e) {
        outcome = "cancelled: " + std::string(e.message());
        throw;
    }
}

/// Runs `op` in a task that cancels itself first; returns what happened.
std::string run_cancelled_before_start(io_fixture& fx, std::function<task<void>()> op) {
    std::string outcome;
    task_handle<void> h;
    h = fx.rt->spawn(cancel_self_then(h, std::move(op), outcome));
    fx.run_until([&] { return h.done(); });
    CHECK(h.cancelled());
    return outcome;
}

TEST_CASE_FIXTURE(io_fixture, "tcp_cancelled_before_start_makes_no_libuv_call") {
    tcp_listener l = tcp_listener::bind(loopback());
    const socket_address addr = l.local_address();

    // connect: no connection reaches the listener, so the next accepted one is the next client.
    CHECK(run_cancelled_before_start(*this, [&]() -> task<void> {
              tcp_stream s = co_await tcp_stream::connect(addr);
          }) == "cancelled: early");
    tcp_pair p = run(connect_pair(l));
    CHECK(p.server.peer_address() == p.client.local_address());

    // read_some: raises although data is buffered; the data stays for the next read.
    run([](tcp_pair& pr) -> task<void> {
        co_await pr.client.write("ab");
        char one[1];
        CHECK(co_await pr.server.read_some(one) == 1);
        while (pr.server.buffered() < 1) {
            co_await sleep(1ms);
        }
    }(p));
    CHECK(p.server.buffered() == 1);
    CHECK(run_cancelled_before_start(*this, [&]() -> task<void> {
              char b[4];
              (void)co_await p.server.read_some(b);
          }) == "cancelled: early");
    CHECK(p.server.buffered() == 1);
    CHECK(run(read_chunk(p.server)) == "b");

    // read_until: same, nothing is consumed.
    run([](tcp_pair& pr) -> task<void> { co_await pr.client.write("line\n"); }(p));
    CHECK(run_cancelled_before_start(*this, [&]() -> task<void> {
              (void)co_await p.server.read_until("\n", 100);
          }) == "cancelled: early");
    CHECK(run(p.server.read_until("\n", 100)) == "line\n");

    // write: nothing is sent; the stream stays open.
    CHECK(run_cancelled_before_start(
              *this, [&]() -> task<void> { co_await p.client.write("X"); }) == "cancelled: early");
    CHECK(p.client.is_open());
    run([](tcp_pair& pr) -> task<void> { co_await pr.client.write("Y"); }(p));
    CHECK(run(read_chunk(p.server)) == "Y");

    // shutdown: the write side stays open.
    CHECK(run_cancelled_before_start(
              *this, [&]() -> task<void> { co_await p.client.shutdown(); }) == "cancelled: early");
    CHECK(p.client.is_open());
    run([](tcp_pair& pr) -> task<void> { co_await pr.client.write("Z"); }(p));
    CHECK(run(read_chunk(p.server)) == "Z");

    // accept: a queued connection stays for the next accept.
    task_handle<tcp_stream> c = rt->spawn(tcp_stream::connect(addr));
    run_until([&] { return c.done(); });
    tcp_stream queued_client = c.result();
    CHECK(run_cancelled_before_start(*this, [&]() -> task<void> {
              tcp_stream s = co_await l.accept();
          }) == "cancelled: early");
    tcp_stream accepted = run(accept_one(l));
    CHECK(accepted.peer_address() == queued_client.local_address());
}

// ---------------------------------------------------------------------------------------------
// Cancelled while pending, and cancelled twice

TEST_CASE_FIXTURE(io_fixture, "tcp_read_cancelled_while_pending_then_a_new_read_restarts") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(connect_pair(l));
    for (int round = 0; round < 2; ++round) {
        task_handle<std::string> r = rt->spawn(read_and_report(p.server));
        run(nap(5ms)); // the read is parked
        CHECK_FALSE(r.done());
        CHECK(r.cancel("first"));
        CHECK_FALSE(r.cancel("second")); // cancelled twice: one delivery, first message
        run_until([&] { return r.done(); });
        CHECK(r.result() == "cancelled: first");
        run([](tcp_pair& pr) -> task<void> { co_await pr.client.write("later"); }(p));
        CHECK(run(read_chunk(p.server)) == "later");
    }
}

TEST_CASE_FIXTURE(io_fixture,
                  "tcp_accept_cancelled_while_pending_leaves_later_connections_queued") {
    tcp_listener l = tcp_listener::bind(loopback());
    for (int round = 0; round < 2; ++round) {
        task_handle<std::string> a = rt->spawn(accept_and_report(l));
        run(nap(5ms));
        CHECK(a.cancel("first"));
        CHECK_FALSE(a.cancel("second"));
        run_until([&] { return a.done(); });
        CHECK(a.result() == "cancelled: first");
        tcp_pair p = run(connect_pair(l));
        CHECK(p.server.peer_address() == p.client.local_address());
    }
}

/// The TCP state (TCP_INFO) of `fd`, or -1.
int tcp_state(int fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) {
        return -1;
    }
    return info.tcpi_state;
}

/// Number of open TCP handles on `loop` whose socket is in SYN_SENT (a connect in flight).
int syn_sent_handles(uv_loop_t* loop) {
    return count_handles(loop, [](uv_handle_t* h) {
        uv_os_fd_t fd = -1;
        return uv_handle_get_type(h) == UV_TCP && uv_is_closing(h) == 0 && uv_fileno(h, &fd) == 0 &&
               tcp_state(fd) == TCP_SYN_SENT;
    });
}

/// A plain socket that listens with backlog 0 and never accepts. Once its accept queue is full
/// (TCP_INFO of a listening socket: tcpi_unacked is the queue's length, tcpi_sacked its limit)
/// the kernel drops every SYN, so a connect to it stays pending: decided by state, not by time.
struct full_listener {
    int fd = -1;
    socket_address addr;
    std::vector<task_handle<tcp_stream>> queued; // the connections that fill the queue

    explicit full_listener(io_fixture& fx)
        : fd(::socket(AF_INET, SOCK_STREAM, 0)) {
        REQUIRE(fd >= 0);
        const socket_address any = loopback();
        REQUIRE(::bind(fd, any.data(), sizeof(sockaddr_in)) == 0);
        REQUIRE(::listen(fd, 0) == 0);
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
        addr = socket_address::from(reinterpret_cast<sockaddr*>(&ss));
        while (!full()) {
            REQUIRE(queued.size() < 16);
            queued.push_back(fx.rt->spawn(tcp_stream::connect(addr)));
            task_handle<tcp_stream>& c = queued.back();
            fx.run_until([&] { return c.done(); }); // the queue has room: it completes
        }
    }

    full_listener(const full_listener&) = delete;
    full_listener& operator=(const full_listener&) = delete;
    full_listener(full_listener&&) = delete;
    full_listener& operator=(full_listener&&) = delete;

    ~full_listener() {
        for (auto& c : queued) {
            try {
                (void)c.result(); // closes them
            } catch (...) {
                // A destructor must not throw; a connect that failed holds nothing to close.
            }
        }
        ::close(fd);
    }

    [[nodiscard]] bool full() const {
        tcp_info info{};
        socklen_t len = sizeof info;
        REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0);
        return info.tcpi_unacked > info.tcpi_sacked;
    }
};

TEST_CASE_FIXTURE(io_fixture, "tcp_accept_cancelled_twice_delivers_once_then_accepts_again") {
    tcp_listener l = tcp_listener::bind(loopback());
    for (int round = 0; round < 2; ++round) {
        task_handle<std::string> a = rt->spawn(accept_and_report(l));
        run(nap(2ms));
        REQUIRE_FALSE(a.done());
        CHECK(a.cancel("first"));
        CHECK_FALSE(a.cancel("second")); // one delivery, with the first message
        run_until([&] { return a.done(); });
        CHECK(a.result() == "cancelled: first");
        tcp_pair p = run(connect_pair(l)); // the listener accepts again
        CHECK(p.server.peer_address() == p.client.local_address());
    }
}

TEST_CASE_FIXTURE(io_fixture, "tcp_accept_cancelling_one_of_several_waiters_keeps_the_others") {
    tcp_listener l = tcp_listener::bind(loopback());
    task_handle<std::string> a = rt->spawn(accept_and_report(l));
    task_handle<std::string> b = rt->spawn(accept_and_report(l));
    task_handle<std::string> c = rt->spawn(accept_and_report(l));
    run(nap(2ms)); // all three are queued (the listener's FIFO), nothing is connecting
    REQUIRE_FALSE((a.done() || b.done() || c.done()));
    CHECK(b.cancel("middle"));
    run_until([&] { return b.done(); });
    CHECK(b.result() == "cancelled: middle");
    std::vector<tcp_stream> clients;
    clients.push_back(run(tcp_stream::connect(l.local_address())));
    run_until([&] { return a.done(); });
    CHECK(a.result() == "accepted " + clients[0].local_address().to_string());
    CHECK_FALSE(c.done());
    clients.push_back(run(tcp_stream::connect(l.local_address())));
    run_until([&] { return c.done(); });
    CHECK(c.result() == "accepted " + clients[1].local_address().to_string());
}

TEST_CASE_FIXTURE(io_fixture, "tcp_connect_cancelled_while_pending_closes_the_socket") {
    full_listener target(*this);
    const int open_before = open_handles(loop(), UV_TCP);
    task_handle<tcp_stream> pending = rt->spawn(tcp_stream::connect(target.addr));
    run_until([&] { return syn_sent_handles(loop()) == 1; }); // its SYN is dropped
    REQUIRE(target.full());
    CHECK_FALSE(pending.done());
    CHECK(open_handles(loop(), UV_TCP) == open_before + 1);
    CHECK(pending.cancel("first"));
    CHECK_FALSE(pending.cancel("second"));
    // The abort closed the socket at once (uv_close closes the descriptor).
    CHECK(open_handles(loop(), UV_TCP) == open_before);
    CHECK(syn_sent_handles(loop()) == 0);
    run_until([&] { return pending.done(); });
    CHECK(pending.cancelled());
    pending = task_handle<tcp_stream>();
}

/// Connects a pair and fills the client's kernel buffers (the server does not read).
task<tcp_pair> backpressured_pair(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    // Small kernel buffers: filling them is quick and does not depend on the machine's load.
    int size = 4096;
    REQUIRE(uv_send_buffer_size(reinterpret_cast<uv_handle_t*>(p.client.native_handle()), &size) ==
            0);
    size = 4096;
    REQUIRE(uv_recv_buffer_size(reinterpret_cast<uv_handle_t*>(p.server.native_handle()), &size) ==
            0);
    CHECK(fill_until_eagain(p.client) > 0);
    co_return p;
}

task<std::string> owning_write_and_report(stream& s, std::size_t size) {
    try {
        co_await s.write(std::string(size, 'o'));
        co_return "written";
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    }
}

TEST_CASE_FIXTURE(io_fixture, "tcp_write_cancelled_under_backpressure_closes_the_stream") {
    tcp_listener l = tcp_listener::bind(loopback());
    for (int round = 0; round < 2; ++round) {
        tcp_pair p = run(backpressured_pair(l));
        std::vector<char> big(1 << 20, 'b');
        task_handle<std::string> w = round == 0
                                         ? rt->spawn(write_and_report(p.client, big))
                                         : rt->spawn(owning_write_and_report(p.client, big.size()));
        run(nap(5ms));
        CHECK_FALSE(w.done()); // queued with uv_write
        CHECK(p.client.is_open());
        CHECK(w.cancel("first"));
        CHECK_FALSE(w.cancel("second"));
        CHECK_FALSE(p.client.is_open()); // closing from the abort on
        run_until([&] { return w.done(); });
        CHECK(w.result() == "cancelled: first");
        const failure f = run(
            failure_of([](tcp_stream& s) -> task<void> { co_await s.write("more"); }(p.client)));
        CHECK(f.code == UV_EBADF);
        CHECK(f.what == "tcp_stream::write: the stream was closed because a pending write was "
                        "cancelled: bad file descriptor");
        const failure r = run(failure_of(read_chunk(p.client)));
        CHECK(r.code == UV_EBADF);
        CHECK(contains(r.what, "pending write was cancelled"));
    }
}

TEST_CASE_FIXTURE(io_fixture, "tcp_shutdown_cancelled_while_pending_closes_the_stream") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(backpressured_pair(l));
    std::vector<char> big(1 << 20, 'b');
    task_handle<std::string> w = rt->spawn(write_and_report(p.client, big));
    task_handle<std::string> s = rt->spawn(shutdown_and_report(p.client));
    run(nap(5ms));
    CHECK_FALSE(w.done());
    CHECK_FALSE(s.done()); // a shutdown waits for the queued writes
    CHECK(s.cancel("first"));
    CHECK_FALSE(s.cancel("second"));
    run_until([&] { return s.done() && w.done(); });
    CHECK(s.result() == "cancelled: first");
    CHECK(w.result() ==
          "error: tcp_stream::write: the stream was closed because a pending shutdown was "
          "cancelled: operation canceled");
    CHECK_FALSE(p.client.is_open());
}

// ---------------------------------------------------------------------------------------------
// Cancelled after completion, before resumption: completion wins (D-2)

TEST_CASE_FIXTURE(io_fixture, "tcp_read_completed_then_cancelled_in_the_same_turn_is_delivered") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(connect_pair(l));
    for (int round = 0; round < 2; ++round) {
        task_handle<std::string> r = rt->spawn(
            [](stream& s) -> task<std::string> { co_return co_await read_chunk(s, 1); }(p.server));
        run(nap(5ms));
        REQUIRE_FALSE(r.done());
        // Two bytes, a one-byte read: the byte left in the buffer shows the read completed.
        check_hook hook(loop(), [&] { return p.server.buffered() == 1 && r.cancel("late"); });
        uv_buf_t b = uv_buf_init(const_cast<char*>("xy"), 2);
        REQUIRE(uv_try_write(p.client.native_stream(), &b, 1) == 2);
        run_until([&] { return r.done(); });
        CHECK(hook.fired());
        CHECK(r.result() == "x"); // completion wins
        CHECK(run(read_chunk(p.server)) == "y");
    }
}

TEST_CASE_FIXTURE(io_fixture, "tcp_accept_completed_then_cancelled_in_the_same_turn_is_delivered") {
    tcp_listener l = tcp_listener::bind(loopback());
    task_handle<std::string> a = rt->spawn(accept_and_report(l));
    run(nap(5ms));
    REQUIRE_FALSE(a.done());
    const int before = open_handles(loop(), UV_TCP);
    // The accepted connection's handle appears in the poll phase that completes the accept.
    check_hook hook(loop(),
                    [&] { return open_handles(loop(), UV_TCP) > before + 1 && a.cancel("late"); });
    task_handle<tcp_stream> c = rt->spawn(tcp_stream::connect(l.local_address()));
    run_until([&] { return a.done() && c.done(); });
    CHECK(hook.fired());
    tcp_stream client = c.result();
    CHECK(a.result() == "accepted " + client.local_address().to_string());
}

task<tcp_stream> flag_then_connect(bool& started, socket_address addr) {
    started = true; // the connect below starts in this same step
    co_return co_await tcp_stream::connect(addr);
}

TEST_CASE_FIXTURE(io_fixture,
                  "tcp_connect_completed_then_cancelled_in_the_same_turn_is_delivered") {
    tcp_listener l = tcp_listener::bind(loopback());
    for (int round = 0; round < 2; ++round) {
        bool started = false;
        task_handle<tcp_stream> c = rt->spawn(flag_then_connect(started, l.local_address()));
        // The check after the poll phase that ran the connect callback, before the task resumes.
        check_hook hook(loop(), [&] {
            return started && connecting_handles(loop(), UV_TCP) == 0 && c.cancel("late");
        });
        run_until([&] { return c.done(); });
        CHECK(hook.fired());
        CHECK_FALSE(c.cancelled());
        tcp_stream client = c.result(); // completion wins
        CHECK(client.is_open());
        CHECK(client.peer_address() == l.local_address());
        tcp_stream server = run(accept_one(l));
        CHECK(server.peer_address() == client.local_address());
    }
}

TEST_CASE_FIXTURE(io_fixture, "tcp_write_completed_then_cancelled_in_the_same_turn_is_delivered") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(backpressured_pair(l));
    std::vector<char> data(std::size_t{16} * 1024, 'w'); // more than the small kernel buffers hold
    task_handle<std::string> w = rt->spawn(write_and_report(p.client, data));
    run(nap(5ms));
    REQUIRE_FALSE(w.done());
    // Large buffers again for the drain: tiny TCP windows make loopback slow.
    int size = 1 << 20;
    REQUIRE(uv_recv_buffer_size(reinterpret_cast<uv_handle_t*>(p.server.native_handle()), &size) ==
            0);
    // The write queue empties in the poll phase whose callback completes the write.
    check_hook hook(loop(), [&] {
        return uv_stream_get_write_queue_size(p.client.native_stream()) == 0 && w.cancel("late");
    });
    task_handle<void> drain = rt->spawn(drain_until_eof(p.server));
    run_until([&] { return w.done(); });
    CHECK(hook.fired());
    CHECK(w.result() == "written");
    CHECK(p.client.is_open());
    run([](tcp_pair& pr) -> task<void> { co_await pr.client.close(); }(p));
    run_until([&] { return drain.done(); });
}

TEST_CASE_FIXTURE(io_fixture, "tcp_write_completed_inside_uv_write_wins_over_a_cancellation") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(connect_pair(l));
    // Without the uv_try_write fast path, uv_write writes the bytes itself (the socket has room)
    // and libuv defers the write callback to the next iteration.
    auto* st = detail::state_of<detail::stream_state>(p.client.native_stream());
    st->use_try_write = false;
    const std::string text = "sent inside uv_write";
    task_handle<std::string> w = rt->spawn(write_and_report(p.client, text));
    // Runs right after the writer's first step, in the same drain, before the write callback.
    task_handle<void> c = rt->spawn([](task_handle<std::string>& h) -> task<void> {
        h.cancel("late");
        co_return;
    }(w));
    run_until([&] { return w.done() && c.done(); });
    CHECK(w.result() == "written");
    CHECK(p.client.is_open());
    CHECK(run(read_n(p.server, text.size())) == text);
    // The request's deferred callback found no awaiter; the stream still writes.
    run([](stream& s) -> task<void> { co_await s.write("again"); }(p.client));
    CHECK(run(read_n(p.server, 5)) == "again");
}

TEST_CASE_FIXTURE(io_fixture,
                  "tcp_shutdown_completed_then_cancelled_in_the_same_turn_is_delivered") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(connect_pair(l));
    bool started = false;
    task_handle<std::string> s = rt->spawn(flag_then_shutdown(started, p.client));
    // libuv clears shutdown_req (a private field, read by the test only) just before it calls
    // the shutdown callback.
    check_hook hook(loop(), [&] {
        return started && p.client.native_stream()->shutdown_req == nullptr && s.cancel("late");
    });
    run_until([&] { return s.done(); });
    CHECK(hook.fired());
    CHECK(s.result() == "shut down"); // completion wins
    CHECK(p.client.is_open());
    CHECK(run(read_chunk(p.server)).empty()); // the peer sees EOF
}

// ---------------------------------------------------------------------------------------------
// read_exactly, read_until

/// Writes `pieces` to `s` so that each arrives in its own read on `reader`: before each piece
/// the previous one has been read from the socket and, for the first `parked_before` pieces, the
/// reader is parked again (it has looked at what it got). Waits on state, not on time.
task<void> send_in_pieces(stream& s, stream& reader, std::vector<std::string> pieces,
                          std::size_t parked_before) {
    auto* st = detail::state_of<detail::stream_state>(reader.native_stream());
    std::uint64_t sent = st->received;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        while (st->received < sent || (i < parked_before && st->reader == nullptr)) {
            co_await yield();
        }
        co_await s.write(std::span<const char>(pieces[i]));
        sent += pieces[i].size();
    }
}

task<void> read_until_cases(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    std::vector<std::string> pieces{"GET /", "x\r", "\nHost: a\r\n", "0123456789abcdefghij"};
    task_handle<void> sender = spawn(send_in_pieces(p.client, p.server, pieces, 3));
    CHECK(co_await p.server.read_until("\r\n", 100) == "GET /x\r\n"); // split delimiter
    CHECK(co_await p.server.read_until("\r\n", 100) == "Host: a\r\n");
    co_await sender;
    while (p.server.buffered() < 20) {
        co_await sleep(1ms);
    }
    try {
        (void)co_await p.server.read_until("\r\n", 10);
        FAIL("no ENOBUFS");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == UV_ENOBUFS);
        CHECK(contains(e.what(), "tcp_stream::read_until"));
    }
    CHECK(p.server.buffered() == 20); // the data stays buffered
    char four[4];
    CHECK(co_await p.server.read_exactly(four) == 4);
    CHECK(std::string(four, 4) == "0123");
    co_await p.client.shutdown();
    // EOF before the delimiter: the rest, without a delimiter; then empty.
    CHECK(co_await p.server.read_until("\r\n", 100) == "456789abcdefghij");
    CHECK(co_await p.server.read_until("\r\n", 100) == "");
    CHECK(co_await read_n(p.server, 10) == ""); // read_exactly at EOF: fewer (none)
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_until_split_delimiter_max_size_and_eof") {
    tcp_listener l = tcp_listener::bind(loopback());
    run(read_until_cases(l));
}

// The same cases for the in-place form that appends to the caller's buffer.
task<void> read_until_into_cases(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    std::vector<std::string> pieces{"GET /", "x\r", "\nHost: a\r\n", "0123456789abcdefghij"};
    task_handle<void> sender = spawn(send_in_pieces(p.client, p.server, pieces, 3));
    std::string head = "kept:";
    CHECK(co_await p.server.read_until(head, "\r\n", 100) == 8); // split delimiter
    CHECK(head == "kept:GET /x\r\n");                            // appended
    CHECK(co_await p.server.read_until(head, "\r\n", 100) == 9);
    CHECK(head == "kept:GET /x\r\nHost: a\r\n");
    co_await sender;
    while (p.server.buffered() < 20) {
        co_await sleep(1ms);
    }
    std::string line;
    try {
        (void)co_await p.server.read_until(line, "\r\n", 10);
        FAIL("no ENOBUFS");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == UV_ENOBUFS);
        CHECK(contains(e.what(), "tcp_stream::read_until"));
    }
    CHECK(line.empty());
    CHECK(p.server.buffered() == 20); // the data stays buffered
    co_await p.client.shutdown();
    // EOF before the delimiter: the rest, without a delimiter; then nothing.
    CHECK(co_await p.server.read_until(line, "\r\n", 100) == 20);
    CHECK(line == "0123456789abcdefghij");
    CHECK(co_await p.server.read_until(line, "\r\n", 100) == 0);
    CHECK(line == "0123456789abcdefghij");
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_until_in_place_split_delimiter_max_size_and_eof") {
    tcp_listener l = tcp_listener::bind(loopback());
    run(read_until_into_cases(l));
}

// SEMANTICS 14: a cancelled in-place read_until consumes and appends nothing; the next read
// gets every byte, also those that arrived while it waited.
task<void> read_until_into_cancelled(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    co_await p.client.write("partial ");
    std::string out;
    do { // each try starts reading, times out waiting for the delimiter, and stops reading
        const auto r = co_await move_on_after(5ms, p.server.read_until(out, "\n", 100));
        CHECK_FALSE(r.has_value());
        CHECK(out.empty());
    } while (p.server.buffered() < 8);
    CHECK(p.server.buffered() == 8);
    co_await p.client.write("line\n");
    CHECK(co_await p.server.read_until(out, "\n", 100) == 13);
    CHECK(out == "partial line\n");
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_until_in_place_cancelled_keeps_the_data") {
    tcp_listener l = tcp_listener::bind(loopback());
    run(read_until_into_cancelled(l));
}

task<std::string> read_line_and_report(stream& s) {
    try {
        co_return co_await s.read_until("\n", 100);
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    }
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_until_cancelled_while_pending_consumes_nothing") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(connect_pair(l));
    run([](tcp_pair& pr) -> task<void> { co_await pr.client.write("par"); }(p));
    task_handle<std::string> r = rt->spawn(read_line_and_report(p.server));
    run(nap(5ms));
    REQUIRE_FALSE(r.done());
    CHECK(p.server.buffered() == 3);
    CHECK(r.cancel("first"));
    CHECK_FALSE(r.cancel("second"));
    run_until([&] { return r.done(); });
    CHECK(r.result() == "cancelled: first");
    CHECK(p.server.buffered() == 3); // the partial line stays
    run([](tcp_pair& pr) -> task<void> { co_await pr.client.write("tial\n"); }(p));
    CHECK(run(p.server.read_until("\n", 100)) == "partial\n");
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_until_and_read_exactly_survive_moving_the_stream") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(connect_pair(l));
    auto holder = std::make_unique<tcp_stream>(std::move(p.server));
    task_handle<std::string> line = rt->spawn(holder->read_until("\n", 100));
    run(nap(2ms));
    REQUIRE_FALSE(line.done());
    tcp_stream moved = std::move(*holder);
    holder.reset(); // the object the call was made on is gone
    run([](tcp_pair& pr) -> task<void> { co_await pr.client.write("line\nmo"); }(p));
    run_until([&] { return line.done(); });
    CHECK(line.result() == "line\n");

    std::string four(4, '\0');
    auto holder2 = std::make_unique<tcp_stream>(std::move(moved));
    task_handle<std::size_t> exact = rt->spawn(holder2->read_exactly(four));
    run(nap(2ms));
    REQUIRE_FALSE(exact.done()); // it has "mo" and waits for two more bytes
    tcp_stream moved2 = std::move(*holder2);
    holder2.reset();
    run([](tcp_pair& pr) -> task<void> { co_await pr.client.write("re!"); }(p));
    run_until([&] { return exact.done(); });
    CHECK(exact.result() == 4);
    CHECK(four == "more");
    CHECK(moved2.is_open());
    CHECK(moved2.buffered() == 1);
    CHECK(run(read_chunk(moved2)) == "!");
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_until_whose_stream_is_destroyed_fails_without_crashing") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(connect_pair(l));
    auto holder = std::make_unique<tcp_stream>(std::move(p.server));
    task_handle<failure> r = rt->spawn(failure_of(holder->read_until("\n", 100)));
    run(nap(2ms));
    REQUIRE_FALSE(r.done());
    holder.reset(); // closes; the task's pin keeps the state until it is done
    run_until([&] { return r.done(); });
    const failure f = r.result();
    CHECK(f.code == UV_ECANCELED);
    CHECK(contains(f.what, "the stream was closed"));
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_until_completed_then_cancelled_in_the_same_turn_returns") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(connect_pair(l));
    task_handle<std::string> r = rt->spawn(read_line_and_report(p.server));
    run(nap(5ms));
    REQUIRE_FALSE(r.done());
    check_hook hook(loop(), [&] { return p.server.buffered() == 4 && r.cancel("late"); });
    uv_buf_t b = uv_buf_init(const_cast<char*>("abc\n"), 4);
    REQUIRE(uv_try_write(p.client.native_stream(), &b, 1) == 4);
    run_until([&] { return r.done(); });
    CHECK(hook.fired());
    CHECK(r.result() == "abc\n"); // completion wins
}

task<void> read_exactly_cases(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    task_handle<void> sender =
        spawn(send_in_pieces(p.client, p.server, {"abcd", "efghij", "kl"}, 2));
    char ten[10];
    CHECK(co_await p.server.read_exactly(ten) == 10);
    CHECK(std::string(ten, 10) == "abcdefghij");
    co_await sender;
    co_await p.client.shutdown();
    CHECK(co_await p.server.read_exactly(ten) == 2); // fewer only at EOF
    CHECK(std::string(ten, 2) == "kl");
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_exactly_across_packets_and_at_eof") {
    tcp_listener l = tcp_listener::bind(loopback());
    run(read_exactly_cases(l));
}

task<void> large_line(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    std::string line(std::size_t{200} * 1024, 'L'); // more than the 64 KiB buffer limit
    line += "\n";
    task_handle<void> w = spawn([](stream& s, const std::string& d) -> task<void> {
        co_await s.write(std::span<const char>(d));
    }(p.client, line));
    CHECK(co_await p.server.read_until("\n", 1 << 20) == line);
    co_await w;
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_until_grows_the_buffer_up_to_max_size") {
    tcp_listener l = tcp_listener::bind(loopback());
    run(large_line(l));
}

// ---------------------------------------------------------------------------------------------
// Concurrency, close

task<void> concurrent_use(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    task_handle<std::string> reader = spawn(read_chunk(p.client));
    co_await sleep(2ms);
    try {
        (void)co_await read_chunk(p.client);
        FAIL("two readers");
    } catch (const invalid_state& e) {
        CHECK(contains(e.what(), "already reading"));
    }
    // One reader and one writer at the same time is the normal case.
    co_await p.client.write("ping");
    CHECK(co_await read_n(p.server, 4) == "ping");
    co_await p.server.write("pong");
    CHECK(co_await reader == "pong");
}

task<void> wait_for_buffered(stream& s, std::size_t n) {
    for (int i = 0; i < 5000 && s.buffered() < n; ++i) {
        co_await sleep(1ms); // bounds nothing: the loop ends when the bytes are there
    }
}

TEST_CASE_FIXTURE(io_fixture, "tcp_read_buffer_is_lent_to_a_waiting_reader_and_grows_on_demand") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(connect_pair(l));
    auto* st = detail::state_of<detail::stream_state>(p.server.native_stream());
    // A waiting reader gets the bytes in its own span: the stream's buffer is never allocated.
    task_handle<std::string> r = rt->spawn(read_chunk(p.server));
    run(nap(2ms));
    REQUIRE_FALSE(r.done());
    run([](tcp_pair& pr) -> task<void> { co_await pr.client.write("direct"); }(p));
    run_until([&] { return r.done(); });
    CHECK(r.result() == "direct");
    CHECK(st->buf == nullptr);
    // Nobody reads: the buffer starts at 16 KiB and grows to hold 48 KiB (limit 64 KiB).
    const std::string big(std::size_t{48} * 1024, 'g');
    run([](tcp_pair& pr, const std::string& b) -> task<void> {
        co_await pr.client.write(std::span<const char>(b));
    }(p, big));
    run(wait_for_buffered(p.server, big.size()));
    CHECK(p.server.buffered() == big.size());
    CHECK(st->capacity == detail::stream_state::max_capacity);
    CHECK(run(read_n(p.server, big.size())) == big);
}

TEST_CASE_FIXTURE(io_fixture, "tcp_two_readers_are_invalid_state_reader_and_writer_work_together") {
    tcp_listener l = tcp_listener::bind(loopback());
    run(concurrent_use(l));
}

/// Cancels its own task (`self`, assigned by the spawner before the task's first step), then
/// closes `s`.
task<void> close_in_cancelled_scope(task_handle<void>& self, stream& s) {
    self.cancel("stop");
    co_await s.close(); // never a cancellation point
    CHECK_FALSE(s.is_open());
    co_await checkpoint(); // raises here
}

TEST_CASE_FIXTURE(io_fixture, "tcp_close_wakes_a_pending_reader_and_is_not_a_cancellation_point") {
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = run(connect_pair(l));
    task_handle<std::string> r = rt->spawn([](stream& s) -> task<std::string> {
        try {
            co_return co_await read_chunk(s);
        } catch (const std::system_error& e) {
            co_return e.what();
        }
    }(p.server));
    run(nap(5ms));
    task_handle<void> c;
    c = rt->spawn(close_in_cancelled_scope(c, p.server));
    run_until([&] { return c.done() && r.done(); });
    CHECK(c.cancelled());
    CHECK_FALSE(p.server.is_open());
    CHECK(r.result() == "tcp_stream::read_some: the stream was closed: operation canceled");
}

TEST_CASE_FIXTURE(io_fixture, "tcp_listener_close_wakes_a_pending_accept") {
    tcp_listener l = tcp_listener::bind(loopback());
    task_handle<std::string> a = rt->spawn([](tcp_listener& x) -> task<std::string> {
        try {
            tcp_stream s = co_await x.accept();
            co_return "accepted";
        } catch (const std::system_error& e) {
            co_return e.what();
        }
    }(l));
    run(nap(5ms));
    run([](tcp_listener& x) -> task<void> {
        co_await x.close();
        co_await x.close();
    }(l));
    run_until([&] { return a.done(); });
    CHECK_FALSE(l.is_open());
    CHECK(a.result() == "tcp_listener::accept: the listener was closed: operation canceled");
}

TEST_CASE_FIXTURE(io_fixture, "tcp_destroying_the_owner_wakes_waiters_and_frees_in_the_close_cb") {
    tcp_listener l = tcp_listener::bind(loopback());
    auto p = std::make_unique<tcp_pair>(run(connect_pair(l)));
    task_handle<std::string> r = rt->spawn([](stream& s) -> task<std::string> {
        char b[4];
        try {
            (void)co_await s.read_some(b);
            co_return "read";
        } catch (const std::system_error& e) {
            co_return e.what();
        }
    }(p->server));
    run(nap(5ms));
    p.reset(); // the destructors close; the reader must not touch the freed state
    run_until([&] { return r.done(); });
    CHECK(contains(r.result(), "the stream was closed"));
}

// ---------------------------------------------------------------------------------------------
// A borrowed write whose frame is destroyed while pending (runtime shutdown after the grace)

/// The real clock and a 20 ms shutdown grace: the runtime of the leaked-frame tests.
runtime_options short_grace() {
    runtime_options o = loop_fixture::real_clock();
    o.shutdown_grace = 20ms;
    return o;
}

/// Connects a pair on `l` and fills the client's kernel buffers (the server does not read).
task<tcp_pair> filled_pair(tcp_listener& l) {
    tcp_pair p = co_await connect_pair(l);
    fill_until_eagain(p.client);
    co_return p;
}

task<void> stubborn_writer(stream& client, bool& pending) {
    std::vector<char> frame_buffer(1 << 20, 'f'); // dies with this frame
    pending = true;
    auto guarded = shielded(client.write(std::span<const char>(frame_buffer)));
    co_await guarded; // the shutdown's cancellation does not reach it
    FAIL("the write completed");
}

TEST_CASE("tcp_borrowed_write_whose_frame_is_destroyed_while_pending_is_safe") {
    io_fixture fx(short_grace());
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = fx.run(filled_pair(l));
    bool pending = false;
    task_handle<void> w = fx.rt->spawn(stubborn_writer(p.client, pending));
    fx.run_until([&] { return pending; });
    fx.run(nap(5ms));
    CHECK_FALSE(w.done());
    CHECK(p.client.is_open());
    w = task_handle<void>();
    l = tcp_listener();
    fx.rt->shutdown(); // destroys the frame with the pending write: the stream is closed
    CHECK_FALSE(p.client.is_open());
    CHECK(p.server.is_open());
    p = tcp_pair{};
    uv_run(fx.loop(), UV_RUN_DEFAULT); // the close callbacks of the streams closed after shutdown
    REQUIRE(fx.reported.size() == 1);
    CHECK_THROWS_AS(std::rethrow_exception(fx.reported[0]), leaked_task_error);
    fx.reported.clear();
}

task<void> leaky_writer(tcp_listener& l, tcp_stream*& client, bool& pending) {
    tcp_pair p = co_await connect_pair(l);
    fill_until_eagain(p.client);
    std::vector<char> frame_buffer(1 << 20, 'f');
    client = &p.client;
    pending = true;
    auto guarded = shielded(p.client.write(std::span<const char>(frame_buffer)));
    co_await guarded;
    FAIL("the write completed");
}

task<void> leaky_reader(tcp_stream& s, bool& pending) {
    char b[16];
    pending = true;
    auto guarded = shielded(s.read_some(b));
    (void)co_await guarded;
    FAIL("the read completed");
}

TEST_CASE("tcp_leaked_writer_whose_destruction_wakes_a_leaked_reader_is_safe") {
    // The writer's frame is destroyed first (spawn order); its awaiter closes the stream, which
    // wakes the reader of the same stream in the other leaked task: that task must not stay in
    // the run queue once its frame is gone.
    io_fixture fx(short_grace());
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_stream* client = nullptr;
    bool writing = false;
    bool reading = false;
    task_handle<void> w = fx.rt->spawn(leaky_writer(l, client, writing));
    fx.run_until([&] { return writing; });
    task_handle<void> r = fx.rt->spawn(leaky_reader(*client, reading));
    fx.run_until([&] { return reading; });
    fx.run(nap(5ms));
    CHECK_FALSE(w.done());
    CHECK_FALSE(r.done());
    w = task_handle<void>();
    r = task_handle<void>();
    l = tcp_listener();
    fx.rt->shutdown();
    CHECK(fx.reported.size() == 2);
    fx.reported.clear();
}

task<void> leaky(std::function<task<void>()> op, bool& pending) {
    pending = true;
    auto guarded = shielded(op());
    co_await guarded; // the shutdown's cancellation does not reach it
    FAIL("the operation completed");
}

TEST_CASE("tcp_leaked_frames_pending_in_read_accept_connect_and_owning_write_are_safe") {
    io_fixture fx(short_grace());
    tcp_listener l = tcp_listener::bind(loopback());
    tcp_pair p = fx.run(filled_pair(l));
    auto target = std::make_unique<full_listener>(fx);
    const socket_address unreachable = target->addr;
    bool flags[4] = {};
    std::vector<task_handle<void>> tasks;
    tasks.push_back(fx.rt->spawn(leaky(
        [&]() -> task<void> {
            char b[8];
            (void)co_await p.client.read_some(b); // the server never writes
        },
        flags[0])));
    tasks.push_back(
        fx.rt->spawn(leaky([&]() -> task<void> { tcp_stream s = co_await l.accept(); }, flags[1])));
    tasks.push_back(fx.rt->spawn(leaky(
        [unreachable]() -> task<void> { tcp_stream s = co_await tcp_stream::connect(unreachable); },
        flags[2])));
    tasks.push_back(fx.rt->spawn(leaky(
        [&]() -> task<void> { co_await p.client.write(std::string(1 << 20, 'o')); }, flags[3])));
    fx.run_until([&] { return flags[0] && flags[1] && flags[2] && flags[3]; });
    fx.run_until([&] { return syn_sent_handles(fx.loop()) == 1; });
    for (auto& t : tasks) {
        CHECK_FALSE(t.done());
    }
    tasks.clear();
    fx.rt->shutdown(); // destroys the four frames with their operations pending
    CHECK(fx.reported.size() == 4);
    fx.reported.clear();
    CHECK(syn_sent_handles(fx.loop()) == 0); // the leaked connect's socket was closed
    CHECK(p.client.is_open()); // an owning write keeps its bytes: the stream stays open
    CHECK(p.server.is_open());
    target.reset();
    p = tcp_pair{};
    l = tcp_listener();
    uv_run(fx.loop(), UV_RUN_DEFAULT); // the close callbacks of the streams closed after shutdown
}

} // namespace
} // namespace uvasync::test
