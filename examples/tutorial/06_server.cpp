// SPDX-License-Identifier: MIT
// Tutorial step 6 (docs/tutorial.md): a TCP echo server with an idle timeout per connection,
// and a client, in one program; the server stops when the client is done.
#include <array>
#include <chrono>
#include <cstdio>
#include <optional>
#include <span>

#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

// One task per connection. A client silent for 2 s is dropped: move_on_after gives up on
// the read, and the data of a cancelled read stays in the stream for the next one.
task<> echo(tcp_stream conn) {
    std::array<char, 1024> buf;
    for (;;) {
        std::optional<std::size_t> n = co_await move_on_after(2s, conn.read_some(buf));
        if (!n || *n == 0) {
            break; // idle for 2 s, or the client closed its side (EOF is 0)
        }
        co_await conn.write(std::span<const char>(buf.data(), *n));
    }
    co_await conn.close();
}

task<> serve(tcp_listener& listener, task_group& connections) {
    for (;;) {
        tcp_stream conn = co_await listener.accept();
        connections.spawn(echo(std::move(conn)));
    }
}

task<> client(socket_address server) {
    tcp_stream conn = co_await tcp_stream::connect(server);
    co_await conn.write("hello\n");
    std::array<char, 64> buf;
    std::size_t n = co_await timeout(1s, conn.read_some(buf)); // timeout_error if no reply
    std::printf("client: the server echoed %.*s", static_cast<int>(n), buf.data());
    co_await conn.close();
}

task<> main_task() {
    tcp_listener listener = tcp_listener::bind(socket_address::parse("127.0.0.1", 0));
    socket_address address = listener.local_address(); // port 0: the system picked one
    auto body = [&](task_group& g) -> task<> {
        g.spawn(serve(listener, g));
        co_await client(address);
        g.cancel(); // stops the accept loop and every connection; not an error
    };
    co_await task_group::run(body);
    std::printf("server: stopped\n");
}

int main() {
    run(main_task());
}
