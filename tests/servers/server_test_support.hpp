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
#include <uvasync/task.hpp>
#include <uvasync/task_group.hpp>

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

} // namespace servers::test
