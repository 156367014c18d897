// SPDX-License-Identifier: MIT
// In-process clients for the example servers' tests: everything runs on the test's loop and
// talks to the server over 127.0.0.1.
#pragma once

#include <chrono>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/address.hpp>
#include <uvasync/io/tcp.hpp>
#include <uvasync/runtime.hpp>
#include <uvasync/sleep.hpp>
#include <uvasync/sync/event.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_group.hpp>
#include <uvasync/timeout.hpp>

#include "loop_fixture.hpp"
#include "servers/demo_client.hpp"
#include "servers/server.hpp"
#include "step_injection.hpp"

#include <sys/resource.h>

namespace servers::test {

using uvasync::socket_address;
using uvasync::task;
using uvasync::tcp_listener;
using uvasync::tcp_stream;

/// Options with timeouts that never fire in a healthy test on the real clock (they only bound
/// a broken run), unless a test shortens one on purpose.
inline server_options quiet_options() {
    server_options o;
    o.request_timeout = std::chrono::seconds(30);
    o.idle_timeout = std::chrono::seconds(30);
    o.shutdown_grace = std::chrono::seconds(30);
    return o;
}

/// A virtual clock that jumps to the next deadline once the loop has been idle for 50 ms of
/// real time (the servers' timeouts pass at once, their I/O still happens).
inline uvasync::runtime_options virtual_clock() {
    uvasync::runtime_options o;
    o.virtual_clock = true;
    o.autojump_threshold = std::chrono::milliseconds(50);
    return o;
}

/// Writes all of `data` (borrowed until the write completes).
inline task<void> write_all(tcp_stream& s, std::string_view data) {
    co_await s.write(std::span<const char>(data.data(), data.size()));
}

/// Polls `pred` every millisecond of the loop clock until it holds.
template <class Pred>
task<void> wait_until(Pred pred) {
    while (!pred()) {
        co_await uvasync::sleep(std::chrono::milliseconds(1));
    }
}

/// Binds a listener on 127.0.0.1 port 0, serves it with `server` in a task group, runs
/// `client(address)`, then requests the graceful shutdown and waits until `serve` returned.
template <class Server, class Client>
task<void> with_server(Server& server, Client& client) {
    tcp_listener listener = tcp_listener::bind(socket_address::parse("127.0.0.1", 0));
    const socket_address address = listener.local_address();
    auto body = [&server, &listener, &client, address](uvasync::task_group& g) -> task<> {
        g.spawn(server.serve(listener));
        co_await client(address);
        server.request_shutdown();
    };
    co_await uvasync::task_group::run(body);
}

/// Runs `client(address)` against a fresh `Server` made with `o`, on the real clock, through
/// `with_server`; returns the server's stats once `serve` has returned.
template <class Server, class Client>
server_stats serve_client(Client& client, const server_options& o = quiet_options()) {
    uvasync::test::loop_fixture f(uvasync::test::loop_fixture::real_clock());
    Server server(o);
    f.run(with_server(server, client));
    return server.stats();
}

/// Cancellation injection per suspension point (docs/reliability.md): runs `client` against a
/// `Server` (made with quiet_options) through `with_server` on the real clock, cancelled after
/// its k-th task step, for every k until a run ends uncancelled; returns the number of
/// injections. The steps follow the kernel's loopback I/O, so k need not name the same point in
/// two runs; every run must end finished or cancelled, with nothing reported, no connection
/// open, and (the fixture) no frame or handle left. `client` must not await inside a CHECK,
/// which would catch the injected cancellation.
template <class Server, class Client>
long cancel_at_every_step(Client& client) {
    long injections = 0;
    for (long k = 0;; ++k) {
        CAPTURE(k);
        bool injected = false;
        {
            uvasync::test::loop_fixture f(uvasync::test::loop_fixture::real_clock());
            Server server(quiet_options());
            uvasync::task_handle<> h = f.rt->spawn(with_server(server, client));
            {
                const uvasync::test::step_injector inject(*f.rt, h, k);
                f.run_until([&] { return h.done(); });
                injected = inject.injected();
            }
            try {
                h.result();
            } catch (const uvasync::cancelled_error&) {
                CHECK(injected);
            }
            CHECK(f.reported.empty());
            CHECK(server.stats().active == 0);
        }
        if (!injected) {
            return injections;
        }
        ++injections;
        REQUIRE(k < 10000);
    }
}

/// Sends `data` (borrowed) and returns whatever the server sends until it closes.
inline task<std::string> exchange_to_end(tcp_stream& s, std::string_view data) {
    co_await s.write(std::span<const char>(data.data(), data.size()));
    co_return co_await read_to_end(s);
}

/// One parsed HTTP response (bodies with Content-Length only; the servers send nothing else).
struct http_response {
    int status = 0;
    std::string head; // status line and headers, up to the blank line
    std::string body;

    [[nodiscard]] bool has_header(std::string_view line) const {
        return head.find(line) != std::string::npos;
    }
};

/// Reads one response; `pending` carries bytes of later responses between calls. Returns
/// nullopt when the server closes first (what was pending stays in `pending`).
inline task<std::optional<http_response>> read_response(tcp_stream& s, std::string& pending,
                                                        bool head_request = false) {
    char buf[4096];
    std::size_t end = std::string::npos;
    std::size_t need = 0;
    for (;;) {
        if (end == std::string::npos) {
            end = pending.find("\r\n\r\n");
            if (end != std::string::npos) {
                std::size_t length = 0;
                const std::size_t cl = pending.find("Content-Length: ");
                if (cl != std::string::npos && cl < end && !head_request) {
                    length = std::strtoul(pending.c_str() + cl + 16, nullptr, 10);
                }
                need = end + 4 + length;
            }
        }
        if (end != std::string::npos && pending.size() >= need) {
            break;
        }
        const std::size_t n = co_await s.read_some(std::span<char>(buf));
        if (n == 0) {
            co_return std::nullopt;
        }
        pending.append(buf, n);
    }
    http_response r;
    r.head = pending.substr(0, end + 2);
    r.body = pending.substr(end + 4, need - end - 4);
    r.status = std::atoi(pending.c_str() + 9);
    pending.erase(0, need);
    co_return r;
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; true if at least `want` descriptors are
/// then allowed.
inline bool raise_fd_limit(rlim_t want) {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        return false;
    }
    if (lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
            return false;
        }
    }
    return lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur >= want;
}

/// Tries to connect to `a`; true if the connection is refused (the server's listener is closed).
inline task<bool> refuses_connections(socket_address a) {
    try {
        tcp_stream late = co_await tcp_stream::connect(a);
        co_await late.close();
    } catch (const std::system_error& e) {
        co_return e.code() == std::errc::connection_refused;
    }
    co_return false;
}

// ---------------------------------------------------------------------------------------------
// Scenarios both servers are tested with. Each takes what differs between the protocols (the
// bytes of a request, one exchange as a client does it), runs the scenario, checks what holds
// for every server, and returns the server's stats for the checks of one protocol.

/// Slow loris on the virtual clock: a client sends `bytes` one byte per second, waiting up to
/// 1 s for an answer after each, to a `Server` whose request timeout is 4.5 s (so the cut never
/// coincides with a client byte). Checks that the server closes the connection (EOF or a
/// reset, never an answer) after 4 to 6 bytes, by its request timeout.
template <class Server>
server_stats check_cuts_off_one_byte_per_second(std::string_view bytes) {
    uvasync::test::loop_fixture f(virtual_clock());
    server_options o;
    o.request_timeout = std::chrono::milliseconds(4500);
    Server server(o);
    std::size_t sent = 0;
    bool closed = false;
    auto client = [bytes, &sent, &closed](socket_address a) -> task<> {
        tcp_stream s = co_await tcp_stream::connect(a);
        char buf[256];
        try {
            while (sent < bytes.size() && !closed) {
                co_await write_all(s, bytes.substr(sent, 1));
                ++sent;
                // Wait one second for an answer; the server closing ends the wait early.
                std::optional<std::size_t> got = co_await uvasync::move_on_after(
                    std::chrono::seconds(1), s.read_some(std::span<char>(buf)));
                if (got) {
                    CHECK(*got == 0); // EOF, never an answer
                    closed = true;
                }
            }
        } catch (const std::system_error&) {
            closed = true; // a reset instead of EOF
        }
        co_await s.close();
    };
    f.run(with_server(server, client));
    f.run_all();
    CHECK(closed);
    CHECK(sent >= 4);
    CHECK(sent <= 6);
    CHECK(server.stats().request_timeouts == 1);
    return server.stats();
}

/// On the virtual clock: a client makes one exchange (`exchange(stream)`) with a `Server` whose
/// idle timeout is `idle`, then waits. Checks that the server closes the connection, by its idle
/// timeout, no sooner than `idle` after the answer (virtual time: exact and deterministic).
template <class Server, class Exchange>
server_stats check_closes_idle_connection(std::chrono::seconds idle, Exchange& exchange) {
    uvasync::test::loop_fixture f(virtual_clock());
    server_options o;
    o.idle_timeout = idle;
    Server server(o);
    auto client = [idle, &exchange](socket_address a) -> task<> {
        tcp_stream s = co_await tcp_stream::connect(a);
        co_await exchange(s);
        const uvasync::deadline answered = uvasync::loop_clock::now();
        char buf[64];
        const std::size_t n = co_await s.read_some(std::span<char>(buf));
        CHECK(n == 0);
        CHECK(uvasync::loop_clock::now() - answered >= idle);
        co_await s.close();
    };
    f.run(with_server(server, client));
    f.run_all();
    CHECK(server.stats().idle_timeouts == 1);
    return server.stats();
}

/// Three clients send `half` of a request and vanish; then a fourth makes one exchange
/// (`exchange(stream)`). Checks that the server counted the three incomplete requests and
/// answered the fourth.
template <class Server, class Exchange>
server_stats check_survives_vanishing_clients(std::string_view half, Exchange& exchange) {
    uvasync::test::loop_fixture f(uvasync::test::loop_fixture::real_clock());
    Server server(quiet_options());
    auto client = [&server, half, &exchange](socket_address a) -> task<> {
        for (int i = 0; i < 3; ++i) {
            tcp_stream s = co_await tcp_stream::connect(a);
            co_await write_all(s, half);
            co_await s.close(); // gone mid-request
        }
        co_await wait_until([&server] { return server.stats().incomplete == 3; });
        tcp_stream s = co_await tcp_stream::connect(a);
        co_await exchange(s); // the server is fine
        co_await s.close();
    };
    f.run(with_server(server, client));
    CHECK(server.stats().incomplete == 3);
    CHECK(server.stats().requests == 1);
    return server.stats();
}

/// 1000 clients each make one exchange (`exchange(stream, id)`), wait until all of them have,
/// so that every connection is open at once, and make a second. Checks that the server
/// accepted all of them at once and answered every request. nullopt (with a message) when the
/// descriptor limit cannot be raised high enough.
template <class Server, class Exchange>
std::optional<server_stats> check_serves_1000_concurrent_connections(Exchange& exchange) {
    constexpr int clients = 1000;
    if (!raise_fd_limit(2 * clients + 64)) {
        MESSAGE("skipped: RLIMIT_NOFILE hard limit below " << 2 * clients + 64);
        return std::nullopt;
    }
    uvasync::test::loop_fixture f(uvasync::test::loop_fixture::real_clock());
    Server server(quiet_options());
    int answered = 0;
    uvasync::event all_connected;
    auto one = [&answered, &all_connected, &exchange](socket_address a, int id) -> task<> {
        tcp_stream s = co_await tcp_stream::connect(a);
        co_await exchange(s, id);
        if (++answered == clients) {
            all_connected.set(); // every connection is open at once now
        }
        co_await all_connected.wait();
        co_await exchange(s, id);
        co_await s.close();
    };
    auto client = [&one](socket_address a) -> task<> {
        auto body = [&one, a](uvasync::task_group& g) -> task<> {
            for (int i = 0; i < clients; ++i) {
                g.spawn(one(a, i));
            }
            co_return;
        };
        co_await uvasync::task_group::run(body);
    };
    f.run(with_server(server, client));
    CHECK(answered == clients);
    CHECK(server.stats().accepted == clients);
    CHECK(server.stats().peak_active == clients);
    CHECK(server.stats().requests == 2 * clients);
    return server.stats();
}

/// A graceful shutdown under load. 20 clients run `load(stream, pending, answers, bad)` on their
/// own connections (it counts answers in `answers`, wrong ones in `bad`, keeps bytes read ahead
/// in `pending`, and returns when the server closes; a reset ends it too), while a slow client has
/// sent `head` of a request. Once 200 answers arrived and the server is busy, the shutdown is
/// requested. Checks that new connections are then refused, that the slow client's request,
/// completed with `tail`, is still answered
/// (`finish(slow)` reads and checks the answer), that no answer was wrong or left partial, and
/// that every connection ended without being cancelled. Returns the stats and the number of
/// answers.
template <class Server, class Load, class Finish>
std::pair<server_stats, int> check_shutdown_under_load(std::string_view head, std::string_view tail,
                                                       Load& load, Finish& finish) {
    uvasync::test::loop_fixture f(uvasync::test::loop_fixture::real_clock());
    Server server(quiet_options());
    int answers = 0;
    int bad = 0;
    bool refused = false;
    bool in_flight_answered = false;
    auto one_load = [&load, &answers, &bad](socket_address a) -> task<> {
        tcp_stream s = co_await tcp_stream::connect(a);
        std::string pending;
        try {
            co_await load(s, pending, answers, bad);
        } catch (const std::system_error&) {
            // closed between requests: the write or the read sees a reset
        }
        CHECK(pending.empty()); // never a partial answer
        co_await s.close();
    };
    auto client = [&](socket_address a) -> task<> {
        auto body = [&](uvasync::task_group& g) -> task<> {
            for (int i = 0; i < 20; ++i) {
                g.spawn(one_load(a));
            }
            // A request in flight when the shutdown begins: its head now.
            tcp_stream slow = co_await tcp_stream::connect(a);
            co_await write_all(slow, head);
            co_await wait_until([&] { return answers >= 200 && server.stats().busy >= 1; });
            server.request_shutdown();
            co_await wait_until([&] { return server.shutting_down(); });
            refused = co_await refuses_connections(a); // the listener is closed
            co_await write_all(slow, tail);            // the rest of the in-flight request
            co_await finish(slow);
            in_flight_answered = true;
            co_await slow.close();
        };
        co_await uvasync::task_group::run(body);
    };
    f.run(with_server(server, client));
    CHECK(in_flight_answered);
    CHECK(refused);
    CHECK(bad == 0);
    CHECK(answers >= 200);
    CHECK(server.stats().active == 0);
    CHECK(server.stats().cancelled == 0);
    return {server.stats(), answers};
}

} // namespace servers::test
