// SPDX-License-Identifier: MIT
// A keep-alive HTTP/1.1 server: `GET /` answers `Hello, World!`. Per-request and idle timeouts,
// a connection cap, pipelining, 400/431 for bad requests, graceful shutdown on SIGINT/SIGTERM.
//
//   http_server [--port N]     (default 8080; try: wrk -t1 -c64 -d10s http://127.0.0.1:8080/)
//   http_server --demo         (port 0, a few client requests, then SIGINT to itself)
#include "servers/http_server.hpp"

#include <csignal>
#include <cstdio>
#include <string>

#include <uvasync/io/tcp.hpp>
#include <uvasync/task.hpp>

#include "servers/demo_client.hpp"
#include "servers/main_support.hpp"

namespace {

uvasync::task<void> exchange(uvasync::socket_address address, const char* what,
                             std::string request) {
    uvasync::tcp_stream client = co_await uvasync::tcp_stream::connect(address);
    servers::print_exchange(what, request);
    co_await client.write(std::move(request));
    const std::string reply = co_await servers::read_to_end(client);
    servers::print_exchange("answer", reply);
    co_await client.close();
}

uvasync::task<void> demo(uvasync::socket_address address) {
    std::printf("demo: three pipelined requests in one write, the last with Connection: close\n");
    co_await exchange(address, "request",
                      "GET / HTTP/1.1\r\nHost: demo\r\n\r\n"
                      "GET /missing HTTP/1.1\r\nHost: demo\r\n\r\n"
                      "POST / HTTP/1.1\r\nHost: demo\r\nContent-Length: 2\r\n"
                      "Connection: close\r\n\r\nhi");
    std::printf("demo: a malformed request\n");
    co_await exchange(address, "request", "HELLO?\r\n\r\n");
    std::printf("demo: raising SIGINT\n");
    std::fflush(stdout);
    std::raise(SIGINT);
}

} // namespace

int main(int argc, char** argv) {
    return servers::server_main<servers::http_server>(argc, argv, 8080, &demo);
}
