// SPDX-License-Identifier: MIT
// The HTTP example server (examples/servers/http_server.hpp) driven by in-process clients over
// 127.0.0.1. Timeout tests run on the virtual clock with an autojump threshold (loopback data
// is readable as soon as it is written, so a jump never overtakes I/O); the others use the
// real clock with timeouts that only bound a broken run.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

#include "alloc_counter.hpp"
#include "loop_fixture.hpp"
#include "server_test_support.hpp"
#include "servers/http_server.hpp"
#include "servers/main_support.hpp"
#include "step_injection.hpp"

using namespace std::chrono_literals;
using namespace std::string_view_literals;
using servers::http_server;
using servers::read_to_end;
using servers::server_options;
using servers::server_stats;
using namespace servers::test;
using uvasync::loop_clock;
using uvasync::test::loop_fixture;

using uvasync::test::allocations; // alloc_counter.hpp: for the hot-path test below

namespace {

constexpr std::string_view get_root = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

/// Sends one GET / and checks the answer; false when the server closed instead.
task<bool> get_ok(tcp_stream& s, std::string& pending) {
    co_await write_all(s, get_root);
    std::optional<http_response> r = co_await read_response(s, pending);
    if (!r) {
        co_return false;
    }
    CHECK(r->status == 200);
    CHECK(r->body == "Hello, World!");
    co_return true;
}

/// One GET / on `s`, checked.
task<> one_get(tcp_stream& s) {
    std::string pending;
    CHECK(co_await get_ok(s, pending));
}

} // namespace

TEST_SUITE("http_server") {

    TEST_CASE("http_server_answers_get_head_404_and_405_on_one_keep_alive_connection") {
        auto client = [](socket_address a) -> task<> {
            tcp_stream s = co_await tcp_stream::connect(a);
            std::string pending;
            CHECK(co_await get_ok(s, pending));
            CHECK(co_await get_ok(s, pending)); // keep-alive: the same connection again

            co_await write_all(s, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
            std::optional<http_response> head = co_await read_response(s, pending, true);
            REQUIRE(head);
            CHECK(head->status == 200);
            CHECK(head->has_header("Content-Length: 13\r\n"));
            CHECK(head->body.empty());

            co_await write_all(s, "GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n");
            std::optional<http_response> missing = co_await read_response(s, pending);
            REQUIRE(missing);
            CHECK(missing->status == 404);

            co_await write_all(s, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
            std::optional<http_response> post = co_await read_response(s, pending);
            REQUIRE(post);
            CHECK(post->status == 405);
            CHECK(post->has_header("Allow: GET, HEAD\r\n"));

            CHECK(co_await get_ok(s, pending)); // still open after 404 and 405
            CHECK(pending.empty());
            co_await s.close();
        };
        const server_stats stats = serve_client<http_server>(client);
        CHECK(stats.accepted == 1);
        CHECK(stats.requests == 6);
        CHECK(stats.active == 0);
        CHECK(stats.rejected == 0);
    }

    TEST_CASE("http_server_answers_pipelined_requests_in_order_and_stops_at_connection_close") {
        auto client = [](socket_address a) -> task<> {
            tcp_stream s = co_await tcp_stream::connect(a);
            const std::string all = std::string(get_root) +
                                    "GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
                                    "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
                                    "GET /b HTTP/1.1\r\nHost: t\r\n\r\n"
                                    "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                                    "GET / HTTP/1.1\r\nHost: t\r\n\r\n"; // after close: unanswered
            const std::string reply = co_await exchange_to_end(s, all);
            std::string pending = reply;
            // Parse what arrived, in order (the server closed after the fifth answer).
            tcp_stream none;
            std::vector<int> statuses;
            for (int i = 0; i < 5; ++i) {
                std::optional<http_response> r = co_await read_response(none, pending, i == 2);
                REQUIRE(r);
                statuses.push_back(r->status);
                if (i == 4) {
                    CHECK(r->has_header("Connection: close\r\n"));
                }
            }
            CHECK(statuses == std::vector<int>{200, 404, 200, 404, 200});
            CHECK(pending.empty());
            co_await s.close();
        };
        const server_stats stats = serve_client<http_server>(client);
        CHECK(stats.requests == 5);
    }

    TEST_CASE("http_server_follows_http_1_0_keep_alive_rules") {
        auto client = [](socket_address a) -> task<> {
            {
                tcp_stream s = co_await tcp_stream::connect(a);
                const std::string reply = co_await exchange_to_end(s, "GET / HTTP/1.0\r\n\r\n");
                CHECK(reply.find("HTTP/1.1 200 OK\r\n") == 0);
                CHECK(reply.find("Connection: close\r\n") != std::string::npos);
                CHECK(reply.size() >= 13);
                CHECK(reply.substr(reply.size() - 13) == "Hello, World!");
                co_await s.close();
            }
            {
                tcp_stream s = co_await tcp_stream::connect(a);
                std::string pending;
                for (int i = 0; i < 2; ++i) {
                    co_await write_all(s, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
                    std::optional<http_response> r = co_await read_response(s, pending);
                    REQUIRE(r);
                    CHECK(r->status == 200);
                    CHECK(r->has_header("Connection: keep-alive\r\n"));
                }
                co_await s.close();
            }
        };
        const server_stats stats = serve_client<http_server>(client);
        CHECK(stats.requests == 3);
    }

    TEST_CASE("http_server_rejects_malformed_requests_with_400_and_closes") {
        auto client = [](socket_address a) -> task<> {
            const std::vector<std::string> bad = {
                "HELLO?\r\n\r\n",
                "GET / HTTP/1.1\r\nHost t\r\n\r\n",                     // no colon
                "GET / HTTP/9.x\r\n\r\n",                               // bad version
                "GET / HTTP/1.1\r\nContent-Length: zz\r\n\r\n",         // bad length
                std::string(get_root) + "\x01\x02\x03 garbage\r\n\r\n", // after a good one
            };
            for (const std::string& request : bad) {
                tcp_stream s = co_await tcp_stream::connect(a);
                const std::string reply = co_await exchange_to_end(s, request);
                CHECK(reply.find("HTTP/1.1 400 Bad Request\r\n") != std::string::npos);
                CHECK(reply.find("Connection: close\r\n") != std::string::npos);
                co_await s.close();
            }
        };
        const server_stats stats = serve_client<http_server>(client);
        CHECK(stats.rejected == 5);
        CHECK(stats.requests == 1); // the good one before the garbage
    }

    TEST_CASE("http_server_rejects_oversized_headers_with_431_counted_across_reads") {
        server_options o = quiet_options();
        o.max_header_bytes = 8192;
        auto client = [](socket_address a) -> task<> {
            { // one big header in one write
                tcp_stream s = co_await tcp_stream::connect(a);
                const std::string request =
                    "GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(10000, 'x') + "\r\n\r\n";
                const std::string reply = co_await exchange_to_end(s, request);
                CHECK(reply.find("HTTP/1.1 431 ") == 0);
                co_await s.close();
            }
            { // many small headers, each in its own write, each answered by nothing
                tcp_stream s = co_await tcp_stream::connect(a);
                co_await write_all(s, "GET / HTTP/1.1\r\n");
                const std::string line = "X-Small: " + std::string(500, 'y') + "\r\n";
                bool closed = false;
                for (int i = 0; i < 40 && !closed; ++i) {
                    try {
                        co_await write_all(s, line);
                    } catch (const std::system_error&) {
                        closed = true; // the server answered and closed already
                    }
                    co_await uvasync::sleep(1ms); // separate reads on the server side
                }
                const std::string reply = co_await read_to_end(s);
                CHECK(reply.find("HTTP/1.1 431 ") == 0);
                co_await s.close();
            }
            { // just under the limit is fine
                tcp_stream s = co_await tcp_stream::connect(a);
                const std::string request =
                    "GET / HTTP/1.1\r\nX-Ok: " + std::string(6000, 'z') + "\r\n\r\n";
                co_await write_all(s, request);
                std::string pending;
                std::optional<http_response> r = co_await read_response(s, pending);
                REQUIRE(r);
                CHECK(r->status == 200);
                co_await s.close();
            }
        };
        const server_stats stats = serve_client<http_server>(client, o);
        CHECK(stats.rejected == 2);
        CHECK(stats.requests == 1);
    }

    TEST_CASE("http_server_cuts_off_a_client_sending_one_header_byte_per_second") {
        CHECK(check_cuts_off_one_byte_per_second<http_server>(get_root).requests == 0);
    }

    TEST_CASE("http_server_closes_an_idle_keep_alive_connection_after_the_idle_timeout") {
        CHECK(check_closes_idle_connection<http_server>(10s, one_get).request_timeouts == 0);
    }

    TEST_CASE("http_server_survives_clients_that_vanish_mid_request") {
        CHECK(check_survives_vanishing_clients<http_server>("GET / HTTP/1.1\r\nHos", one_get)
                  .active == 0);
    }

    TEST_CASE("http_server_at_the_connection_cap_stops_accepting_until_a_connection_ends") {
        loop_fixture f(loop_fixture::real_clock());
        server_options o = quiet_options();
        o.max_connections = 2;
        http_server server(o);
        auto client = [&server](socket_address a) -> task<> {
            tcp_stream c1 = co_await tcp_stream::connect(a);
            tcp_stream c2 = co_await tcp_stream::connect(a);
            std::string p1;
            std::string p2;
            std::string p3;
            CHECK(co_await get_ok(c1, p1));
            CHECK(co_await get_ok(c2, p2));
            // The third connects (the kernel queues it) but is not accepted yet.
            tcp_stream c3 = co_await tcp_stream::connect(a);
            co_await write_all(c3, get_root);
            CHECK(co_await get_ok(c1, p1));
            CHECK(co_await get_ok(c2, p2));
            CHECK(server.stats().accepted == 2);
            CHECK(server.stats().requests == 4);
            co_await c1.close(); // frees a slot: c3 is accepted and answered
            std::optional<http_response> r = co_await read_response(c3, p3);
            REQUIRE(r);
            CHECK(r->status == 200);
            CHECK(server.stats().accepted == 3);
            CHECK(server.stats().peak_active == 2);
            co_await c2.close();
            co_await c3.close();
        };
        f.run(with_server(server, client));
        CHECK(server.stats().requests == 5);
    }

    TEST_CASE("http_server_serves_1000_concurrent_connections") {
        auto exchange = [](tcp_stream& s, int /*id*/) -> task<> { co_await one_get(s); };
        if (std::optional<server_stats> stats =
                check_serves_1000_concurrent_connections<http_server>(exchange)) {
            CHECK(stats->errors == 0);
        }
    }

    TEST_CASE("http_server_shutdown_during_load_finishes_in_flight_requests_and_refuses_new_ones") {
        // Keep-alive clients that send request after request until the server closes.
        auto load = [](tcp_stream& s, std::string& pending, int& answers, int& bad) -> task<> {
            for (;;) {
                co_await write_all(s, get_root);
                std::optional<http_response> r = co_await read_response(s, pending);
                if (!r) {
                    break; // closed between requests
                }
                if (r->status != 200 || r->body != "Hello, World!") {
                    ++bad;
                }
                ++answers;
                if (r->has_header("Connection: close\r\n")) {
                    break;
                }
            }
        };
        auto finish = [](tcp_stream& slow) -> task<> {
            std::string pending;
            std::optional<http_response> r = co_await read_response(slow, pending);
            REQUIRE(r);
            CHECK(r->status == 200);
            CHECK(r->has_header("Connection: close\r\n"));
        };
        const auto [stats, answers] = check_shutdown_under_load<http_server>(
            "GET / HTTP/1.1\r\nHo", "st: t\r\n\r\n", load, finish);
        // An answer may be lost to the keep-alive race (read done, connection closed before the
        // write), so the server can count more than the clients received.
        CHECK(stats.requests >= static_cast<std::uint64_t>(answers) + 1);
    }

    TEST_CASE("http_server_shutdown_cancels_a_request_still_unfinished_after_the_grace_period") {
        loop_fixture f(virtual_clock());
        server_options o;
        o.shutdown_grace = 2s;
        o.request_timeout = 60s;
        http_server server(o);
        bool closed = false;
        auto client = [&server, &closed](socket_address a) -> task<> {
            tcp_stream s = co_await tcp_stream::connect(a);
            co_await write_all(s, "GET / HTTP/1.1\r\nHo");
            co_await wait_until([&server] { return server.stats().busy == 1; });
            server.request_shutdown();
            const uvasync::deadline start = loop_clock::now();
            const std::string rest = co_await read_to_end(s);
            CHECK(rest.empty());
            CHECK(loop_clock::now() - start >= 2s);
            closed = true;
            co_await s.close();
        };
        f.run(with_server(server, client));
        f.run_all();
        CHECK(closed);
        CHECK(server.stats().cancelled == 1);
        CHECK(server.stats().request_timeouts == 0);
    }

    TEST_CASE("http_server_allocates_nothing_per_keep_alive_request") {
        loop_fixture f(loop_fixture::real_clock());
        http_server server(quiet_options());
        std::size_t during = 0;
        constexpr int measured = 200;
        auto client = [&during](socket_address a) -> task<> {
            tcp_stream s = co_await tcp_stream::connect(a);
            constexpr std::string_view answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                                "Content-Length: 13\r\n\r\nHello, World!";
            std::array<char, 256> buf{};
            std::size_t before = 0;
            // A lean client: borrowed writes and a fixed buffer, no coroutine frame per request.
            for (int i = 0; i < 20 + measured; ++i) {
                if (i == 20) { // warmed up: buffers and the deadline heap have their capacity
                    before = allocations;
                }
                co_await s.write(std::span<const char>(get_root.data(), get_root.size()));
                std::size_t got = 0;
                while (got < answer.size()) {
                    const std::size_t n =
                        co_await s.read_some(std::span<char>(buf.data() + got, buf.size() - got));
                    REQUIRE(n != 0);
                    got += n;
                }
                CHECK(std::string_view(buf.data(), got) == answer);
            }
            during = allocations - before;
            co_await s.close();
        };
        f.run(with_server(server, client));
        CHECK(server.stats().requests == 20 + measured);
        MESSAGE("allocations during " << measured << " requests (server and client): " << during);
        CHECK(during == 0);
    }

    TEST_CASE("http_server_main_refuses_a_port_that_is_not_a_number") {
        using servers::parse_port;
        CHECK(parse_port("8080") == std::optional<std::uint16_t>(8080));
        CHECK(parse_port("0") == std::optional<std::uint16_t>(0));
        CHECK(parse_port("65535") == std::optional<std::uint16_t>(65535));
        for (const char* bad : {"abc", "", "80x", "-1", "+80", "65536", " 80", "99999999999"}) {
            CAPTURE(bad);
            CHECK_FALSE(parse_port(bad).has_value());
        }
        // main returns the usage status at once: nothing is bound, no random port.
        std::string prog = "http_server";
        std::string flag = "--port";
        std::string value = "abc";
        std::array<char*, 3> argv{prog.data(), flag.data(), value.data()};
        uvasync::task<void> (*no_demo)(uvasync::socket_address) = nullptr;
        CHECK(servers::server_main<http_server>(3, argv.data(), 8080, no_demo) == 2);
    }

    // Cancellation injection per suspension point: a client that makes two keep-alive GETs
    // (server_test_support.hpp, cancel_at_every_step).
    TEST_CASE("http_server_cancelled_at_every_step_leaks_nothing") {
        auto client = [](socket_address a) -> task<> {
            tcp_stream s = co_await tcp_stream::connect(a);
            std::string pending;
            const bool first = co_await get_ok(s, pending);
            const bool second = co_await get_ok(s, pending);
            CHECK(first);
            CHECK(second);
            co_await s.close();
        };
        const long injections = cancel_at_every_step<http_server>(client);
        CHECK(injections > 0);
        MESSAGE("cancellations injected: " << injections);
    }
} // TEST_SUITE
