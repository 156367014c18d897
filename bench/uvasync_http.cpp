// SPDX-License-Identifier: MIT
// W4's uvasync server in the natural loop of a server written with the library: read the head
// with `read_until` in place (appending to a buffer the connection keeps) under a 5 s timeout,
// write the response. The same program as bench/asio_http.cpp (async_read_until and a timer in
// a parallel group). examples/servers/http_server is the full server with a streaming parser.
//
//   bench_uvasync_http_read_until <port>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using uvasync::task;

namespace {

constexpr std::string_view ok_response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                         "Content-Length: 13\r\n\r\nHello, World!";
constexpr std::string_view not_found_response =
    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

task<> serve(uvasync::tcp_stream s) {
    s.set_nodelay(true);
    std::string head;
    head.reserve(1024);
    try {
        for (;;) {
            head.clear();
            const std::size_t n =
                co_await uvasync::timeout(5s, s.read_until(head, "\r\n\r\n", 8192));
            if (n == 0 || !head.ends_with("\r\n\r\n")) {
                break; // end of stream
            }
            const std::string_view response =
                head.starts_with("GET / ") ? ok_response : not_found_response;
            co_await s.write(std::span<const char>(response.data(), response.size()));
        }
    } catch (const std::exception&) {
        // timed out, or a read or write error: the stream closes
    }
}

task<> listen(uvasync::tcp_listener& l) {
    for (;;) {
        uvasync::tcp_stream s = co_await l.accept();
        uvasync::spawn(serve(std::move(s)));
    }
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: bench_uvasync_http_read_until <port>\n");
        return 2;
    }
    uvasync::runtime rt;
    auto l = uvasync::tcp_listener::bind(uvasync::socket_address::parse(
        "127.0.0.1", static_cast<std::uint16_t>(std::atoi(argv[1]))));
    rt.run(listen(l));
    return 0;
}
