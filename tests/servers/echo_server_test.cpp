// SPDX-License-Identifier: MIT
// The line echo example server (examples/servers/echo_server.hpp) driven by in-process clients
// over 127.0.0.1. Timeout tests run on the virtual clock with an autojump threshold; the
// others on the real clock with timeouts that only bound a broken run.
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <doctest/doctest.h>
#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "server_test_support.hpp"
#include "servers/echo_server.hpp"
#include "step_injection.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

using namespace std::chrono_literals;
using servers::echo_server;
using servers::read_to_end;
using servers::server_options;
using servers::server_stats;
using namespace servers::test;
using uvasync::test::loop_fixture;

namespace {

/// Reads until `want` bytes arrived or the server closed.
task<std::string> read_bytes(tcp_stream& s, std::size_t want) {
    std::string got;
    char buf[4096];
    while (got.size() < want) {
        const std::size_t n = co_await s.read_some(std::span<char>(buf));
        if (n == 0) {
            break;
        }
        got.append(buf, n);
    }
    co_return got;
}

} // namespace

TEST_SUITE("echo_server") {

    TEST_CASE("echo_server_echoes_complete_lines_including_lines_split_across_writes") {
        auto client = [](socket_address a) -> task<> {
            tcp_stream s = co_await tcp_stream::connect(a);
            co_await write_all(s, "one\ntwo\nthr");
            CHECK(co_await read_bytes(s, 8) == "one\ntwo\n");
            co_await write_all(s, "ee\n");
            CHECK(co_await read_bytes(s, 6) == "three\n");
            const std::string big(50000, 'b');
            co_await write_all(s, big + "\n");
            CHECK(co_await read_bytes(s, big.size() + 1) == big + "\n");
            co_await s.close();
        };
        const server_stats stats = serve_client<echo_server>(client);
        CHECK(stats.requests == 4);
        CHECK(stats.incomplete == 0);
    }

    TEST_CASE("echo_server_closes_a_connection_whose_line_is_too_long") {
        server_options o = quiet_options();
        o.max_line_bytes = 1000;
        auto client = [](socket_address a) -> task<> {
            tcp_stream s = co_await tcp_stream::connect(a);
            const std::string reply = co_await exchange_to_end(s, std::string(2000, 'x'));
            CHECK(reply.empty());
            co_await s.close();
        };
        const server_stats stats = serve_client<echo_server>(client, o);
        CHECK(stats.rejected == 1);
    }

    TEST_CASE("echo_server_cuts_off_a_client_sending_one_byte_per_second") {
        // No newline is ever sent, so nothing is echoed: closing is the server's only answer.
        check_cuts_off_one_byte_per_second<echo_server>(std::string(20, 'z'));
    }

    TEST_CASE("echo_server_closes_an_idle_connection_after_the_idle_timeout") {
        auto exchange = [](tcp_stream& s) -> task<> {
            co_await write_all(s, "ping\n");
            CHECK(co_await read_bytes(s, 5) == "ping\n");
        };
        CHECK(check_closes_idle_connection<echo_server>(7s, exchange).requests == 1);
    }

    TEST_CASE("echo_server_survives_clients_that_vanish_mid_line") {
        auto exchange = [](tcp_stream& s) -> task<> {
            co_await write_all(s, "still here\n");
            CHECK(co_await read_bytes(s, 11) == "still here\n");
        };
        check_survives_vanishing_clients<echo_server>("half a li", exchange);
    }

    TEST_CASE("echo_server_serves_1000_concurrent_connections") {
        auto exchange = [](tcp_stream& s, int id) -> task<> {
            const std::string line = "client " + std::to_string(id) + "\n";
            co_await write_all(s, line);
            CHECK(co_await read_bytes(s, line.size()) == line);
        };
        check_serves_1000_concurrent_connections<echo_server>(exchange);
    }

    TEST_CASE("echo_server_shutdown_during_load_finishes_started_lines_and_refuses_new_ones") {
        auto load = [](tcp_stream& s, std::string& /*pending*/, int& lines, int& bad) -> task<> {
            for (;;) {
                co_await write_all(s, "load\n");
                const std::string got = co_await read_bytes(s, 5);
                if (got.empty()) {
                    break; // closed between lines
                }
                if (got != "load\n") {
                    ++bad;
                    break;
                }
                ++lines;
            }
        };
        auto finish = [](tcp_stream& slow) -> task<> {
            CHECK(co_await read_to_end(slow) == "in flight\n"); // echoed, then closed
        };
        check_shutdown_under_load<echo_server>("in fli", "ght\n", load, finish);
    }

    TEST_CASE("echo_server_shuts_down_when_its_listener_is_closed_by_the_owner") {
        loop_fixture f(loop_fixture::real_clock());
        echo_server server(quiet_options());
        bool refused = false;
        auto scenario = [&server, &refused]() -> task<> {
            tcp_listener listener = tcp_listener::bind(socket_address::parse("127.0.0.1", 0));
            const socket_address a = listener.local_address();
            auto body = [&](uvasync::task_group& g) -> task<> {
                g.spawn(server.serve(listener));
                tcp_stream s = co_await tcp_stream::connect(a);
                co_await write_all(s, "before\n");
                CHECK(co_await read_bytes(s, 7) == "before\n");
                co_await listener.close(); // serve ends: the idle connection is closed too
                CHECK(co_await read_to_end(s) == "");
                co_await s.close();
                refused = co_await refuses_connections(a);
            };
            co_await uvasync::task_group::run(body);
        };
        f.run(scenario());
        CHECK(refused);
        CHECK(server.shutting_down());
        CHECK(server.stats().requests == 1);
        CHECK(server.stats().active == 0);
        CHECK(server.stats().accept_errors == 0);
    }

    TEST_CASE("echo_server_at_the_fd_limit_closes_queued_clients_and_keeps_serving") {
        // libuv 1.44 handles EMFILE on accept itself (its reserve descriptor: accept and close
        // the queued connections), so no error reaches accept(); docs/servers.md says so.
        loop_fixture f(loop_fixture::real_clock());
        echo_server server(quiet_options());
        rlimit saved{};
        REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
        bool limited = false;
        std::string shed_result;
        auto client = [&](socket_address a) -> task<> {
            tcp_stream first = co_await tcp_stream::connect(a);
            co_await write_all(first, "a\n");
            CHECK(co_await read_bytes(first, 2) == "a\n");
            // Allow exactly one more descriptor: the next client's socket. The server's accept
            // of that connection then finds none (EMFILE).
            const int lowest_free = ::fcntl(0, F_DUPFD, 0);
            REQUIRE(lowest_free >= 0);
            ::close(lowest_free);
            rlimit low = saved;
            low.rlim_cur = static_cast<rlim_t>(lowest_free) + 1;
            REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
            limited = true;
            tcp_stream shed = co_await tcp_stream::connect(a);
            try {
                shed_result = (co_await read_bytes(shed, 1)).empty() ? "closed" : "served";
            } catch (const std::system_error& e) {
                shed_result = std::string("error: ") + e.what(); // a reset is a close too
                if (e.code().value() == UV_ECONNRESET) {
                    shed_result = "closed";
                }
            }
            CHECK(server.stats().accept_errors == 0); // nothing reached accept()
            REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
            limited = false;
            co_await shed.close();
            // Descriptors are free again: the server accepts and serves new clients, and the
            // first connection was never disturbed.
            tcp_stream later = co_await tcp_stream::connect(a);
            co_await write_all(later, "c\n");
            CHECK(co_await read_bytes(later, 2) == "c\n");
            co_await write_all(first, "b\n");
            CHECK(co_await read_bytes(first, 2) == "b\n");
        };
        f.run(with_server(server, client));
        if (limited) {
            setrlimit(RLIMIT_NOFILE, &saved);
        }
        CHECK(shed_result == "closed");
        CHECK(server.stats().accepted == 2); // the shed connection was never accepted by serve
        CHECK(server.stats().accept_errors == 0);
    }

    // Cancellation injection per suspension point: a client that sends a line and reads it
    // back (server_test_support.hpp, cancel_at_every_step).
    TEST_CASE("echo_server_cancelled_at_every_step_leaks_nothing") {
        auto client = [](socket_address a) -> task<> {
            tcp_stream s = co_await tcp_stream::connect(a);
            co_await write_all(s, "ping\n");
            const std::string echoed = co_await read_bytes(s, 5);
            CHECK(echoed == "ping\n");
            co_await s.close();
        };
        const long injections = cancel_at_every_step<echo_server>(client);
        CHECK(injections > 0);
        MESSAGE("cancellations injected: " << injections);
    }
} // TEST_SUITE
