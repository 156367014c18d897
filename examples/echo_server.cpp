// SPDX-License-Identifier: MIT
// A line echo server with per-line and idle timeouts, a connection cap and graceful shutdown
// on SIGINT/SIGTERM.
//
//   echo_server [--port N]     (default 7000; try: nc 127.0.0.1 7000)
//   echo_server --demo         (port 0, a few client lines, then SIGINT to itself)
#include "servers/echo_server.hpp"

#include <csignal>
#include <cstdio>
#include <string>

#include <uvasync/io/tcp.hpp>
#include <uvasync/task.hpp>

#include "servers/demo_client.hpp"
#include "servers/main_support.hpp"

namespace {

uvasync::task<void> demo(uvasync::socket_address address) {
    uvasync::tcp_stream client = co_await uvasync::tcp_stream::connect(address);
    const std::string lines = "hello\nworld\n";
    servers::print_exchange("sent", lines);
    co_await client.write(std::span<const char>(lines));
    std::string echoed;
    char buf[256];
    while (echoed.size() < lines.size()) {
        const std::size_t n = co_await client.read_some(std::span<char>(buf));
        if (n == 0) {
            break;
        }
        echoed.append(buf, n);
    }
    servers::print_exchange("echoed", echoed);
    std::printf("demo: a half line, then the client closes\n");
    co_await client.write("half a li");
    co_await client.close();
    std::printf("demo: raising SIGINT\n");
    std::fflush(stdout);
    std::raise(SIGINT);
}

} // namespace

int main(int argc, char** argv) {
    return servers::server_main<servers::echo_server>(argc, argv, 7000, &demo);
}
