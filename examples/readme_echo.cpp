// SPDX-License-Identifier: MIT
// The README's echo server, compiled: the README shows the two functions below exactly
// (examples/check_doc_blocks.py checks that). `readme_echo --serve` listens on 127.0.0.1:7000
// until interrupted; without arguments it only says so, for scripts/demo.
#include <array>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>

#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;
using namespace uvasync;

task<> echo(tcp_stream conn) {
    std::array<char, 4096> buf;
    for (;;) {
        std::optional<std::size_t> n = co_await move_on_after(10s, conn.read_some(buf));
        if (!n || *n == 0) {
            break; // idle for 10 s, or the client closed its side (EOF is 0, not an exception)
        }
        co_await conn.write(std::span<const char>(buf.data(), *n));
    }
    co_await conn.close(); // never a cancellation point
}

task<> serve() {
    tcp_listener listener = tcp_listener::bind(socket_address::parse("127.0.0.1", 7000));
    co_await task_group::run([&](task_group& g) -> task<> {
        for (;;) {
            tcp_stream conn = co_await listener.accept();
            g.spawn(echo(std::move(conn))); // one task per connection
        }
    });
}

int main(int argc, char** argv) {
    if (argc > 1 && std::strcmp(argv[1], "--serve") == 0) {
        run(serve());
    } else {
        std::printf(
            "readme_echo: run with --serve to listen on 127.0.0.1:7000 (try: nc 127.0.0.1 7000)\n");
    }
}
