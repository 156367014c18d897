// SPDX-License-Identifier: MIT
// The Boost.Asio HTTP keep-alive server of W4 (bench/README.md): one coroutine per connection
// on a single-threaded io_context.
//
//   bench_asio_http <port>
//
// `GET /` answers 200 with the 13-byte body `Hello, World!`, any other path 404; connections
// stay open. Reading each request (up to the blank line after the headers) races a 5 s timer
// in a parallel group; the loser is cancelled through its cancellation slot, and a timeout
// closes the connection.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr std::string_view ok_response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                         "Content-Length: 13\r\n\r\nHello, World!";
constexpr std::string_view not_found_response =
    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

awaitable<void> serve(tcp::socket socket) {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    std::string buffer;
    socket.set_option(tcp::no_delay(true));
    for (;;) {
        timer.expires_after(5s);
        auto [order, read_error, n, timer_error] =
            co_await asio::experimental::make_parallel_group(
                asio::async_read_until(socket, asio::dynamic_buffer(buffer), "\r\n\r\n",
                                       asio::deferred),
                timer.async_wait(asio::deferred))
                .async_wait(asio::experimental::wait_for_one(), use_awaitable);
        if (order[0] == 1 || read_error) {
            co_return; // timed out, end of stream or error: the socket closes
        }
        const std::string_view request(buffer.data(), n);
        const bool ok = request.starts_with("GET / ");
        buffer.erase(0, n);
        auto [write_error, written] =
            co_await asio::async_write(socket, asio::buffer(ok ? ok_response : not_found_response),
                                       asio::as_tuple(use_awaitable));
        if (write_error) {
            co_return;
        }
    }
}

awaitable<void> listen(tcp::acceptor& acceptor) {
    for (;;) {
        auto [error, socket] = co_await acceptor.async_accept(asio::as_tuple(use_awaitable));
        if (!error) {
            asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
        }
    }
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: bench_asio_http <port>\n");
        return 2;
    }
    asio::io_context io(1);
    tcp::acceptor acceptor(io);
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"),
                           static_cast<unsigned short>(std::atoi(argv[1])));
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(1024);
    asio::co_spawn(io, listen(acceptor), asio::detached);
    io.run();
    return 0;
}
