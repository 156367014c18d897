// SPDX-License-Identifier: MIT
// What the two server mains share: argument parsing, SIGINT/SIGTERM handling and the --demo
// run (docs/servers.md).
#pragma once

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include <uvasync/io/address.hpp>
#include <uvasync/io/signal.hpp>
#include <uvasync/io/tcp.hpp>
#include <uvasync/runtime.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_group.hpp>

#include "server.hpp"

namespace servers {

/// Waits for SIGINT or SIGTERM and starts the graceful shutdown of `server`.
inline uvasync::task<void> stop_on_signal(server_base& server) {
    uvasync::signal_set signals{SIGINT, SIGTERM};
    const int sig = co_await signals.wait();
    std::printf("%s: graceful shutdown\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(stdout);
    server.request_shutdown();
}

inline void print_stats(const server_stats& s) {
    std::printf(
        "accepted %llu, requests %llu, request timeouts %llu, idle timeouts %llu, "
        "rejected %llu, incomplete %llu, resets %llu, errors %llu, cancelled %llu, "
        "still open %llu\n",
        static_cast<unsigned long long>(s.accepted), static_cast<unsigned long long>(s.requests),
        static_cast<unsigned long long>(s.request_timeouts),
        static_cast<unsigned long long>(s.idle_timeouts),
        static_cast<unsigned long long>(s.rejected), static_cast<unsigned long long>(s.incomplete),
        static_cast<unsigned long long>(s.resets), static_cast<unsigned long long>(s.errors),
        static_cast<unsigned long long>(s.cancelled), static_cast<unsigned long long>(s.active));
}

/// Serves on `listener` until SIGINT/SIGTERM; with `demo` set, runs `demo` as a client
/// against it too (the demo ends by raising SIGINT).
template <class Server, class Demo>
uvasync::task<void> run_server(Server& server, uvasync::tcp_listener& listener, Demo* demo) {
    const uvasync::socket_address address = listener.local_address();
    std::printf("listening on %s\n", address.to_string().c_str());
    std::fflush(stdout);
    auto body = [&server, &listener, demo, address](uvasync::task_group& g) -> uvasync::task<> {
        g.spawn(stop_on_signal(server));
        if (demo != nullptr) {
            g.spawn((*demo)(address));
        }
        co_await server.serve(listener);
        g.cancel(); // the signal waiter (and the demo client, if still running)
    };
    co_await uvasync::task_group::run(body);
    std::printf("server stopped: ");
    print_stats(server.stats());
}

/// A TCP port written in decimal digits only (0 to 65535), else nothing: "abc", "", "80x",
/// "-1" and "65536" are refused instead of read as 0 (a random port) or cut.
inline std::optional<std::uint16_t> parse_port(std::string_view text) {
    unsigned value = 0;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end || value > 65535 || text.front() == '+') {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(value);
}

/// `main` of a server example: `--port N` (default `default_port`), `--host ADDR` (default
/// 0.0.0.0), `--request-timeout MS`, `--idle-timeout MS`, `--grace MS` (the `server_options`
/// timeouts), `--demo` (127.0.0.1 port 0, run `demo`, which raises SIGINT at the end). Returns
/// the process exit status.
template <class Server, class Demo>
int server_main(int argc, char** argv, std::uint16_t default_port, Demo demo) {
    server_options options;
    options.port = default_port;
    bool run_demo = false;
    std::string host = "0.0.0.0";
    // A number argument of the option at argv[i]: in [0, max], else 2 (usage) is returned.
    auto number = [&](int& i, long max, long& out) {
        char* end = nullptr;
        out = std::strtol(argv[++i], &end, 10);
        if (*argv[i] == '\0' || *end != '\0' || out < 0 || out > max) {
            std::fprintf(stderr, "%s: bad value %s for %s\n", argv[0], argv[i], argv[i - 1]);
            return false;
        }
        return true;
    };
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        long n = 0;
        if (arg == "--demo") {
            run_demo = true;
        } else if (arg == "--port" && i + 1 < argc) {
            const std::optional<std::uint16_t> port = parse_port(argv[++i]);
            if (!port) {
                std::fprintf(stderr, "%s: bad port '%s': expected a number from 0 to 65535\n",
                             argv[0], argv[i]);
                return 2;
            }
            options.port = *port;
        } else if (arg == "--host" && i + 1 < argc) {
            host = argv[++i];
        } else if ((arg == "--request-timeout" || arg == "--idle-timeout" || arg == "--grace") &&
                   i + 1 < argc) {
            if (!number(i, 86'400'000, n)) {
                return 2;
            }
            const std::chrono::milliseconds ms(n);
            (arg == "--grace"          ? options.shutdown_grace
             : arg == "--idle-timeout" ? options.idle_timeout
                                       : options.request_timeout) = ms;
        } else {
            std::fprintf(stderr,
                         "usage: %s [--port N] [--host ADDR] [--request-timeout MS] "
                         "[--idle-timeout MS] [--grace MS] [--demo]\n",
                         argv[0]);
            return 2;
        }
    }
    if (run_demo) {
        options.port = 0;
    }
    try {
        if (run_demo) {
            host = "127.0.0.1";
        }
        auto main_task = [](server_options o, std::string h, Demo* d) -> uvasync::task<> {
            Server server(o);
            uvasync::tcp_listener listener =
                uvasync::tcp_listener::bind(uvasync::socket_address::parse(h, o.port));
            co_await run_server(server, listener, d);
        };
        uvasync::run(main_task(options, host, run_demo ? &demo : nullptr));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
        return 1;
    }
    return 0;
}

} // namespace servers
