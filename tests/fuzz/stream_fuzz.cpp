// SPDX-License-Identifier: MIT
// Stream fuzzer (libFuzzer): a writer and a reader on the two ends of a connection, with write
// sizes, read sizes and the timeouts that cancel them taken from the input. Each input runs
// twice: over a socketpair (pipe_stream::open) and over a TCP connection on 127.0.0.1 made by
// the library itself (tcp_listener::bind, tcp_stream::connect, accept; small socket buffers, so
// that large writes stay pending there too). Every byte
// written is a function of its position in the stream, so a lost, duplicated or reordered byte
// shows at the reader. Checks, against docs/io/streams.md:
//   - reading: a cancelled read consumes nothing (the data stays buffered for the next read) and
//     a completed read returns its data, so the reader sees a prefix of the stream, in order;
//   - writing: a write that completed is delivered; a write cancelled before it started writes
//     nothing and leaves the stream open; cancelling a pending write closes the
//     stream (later writes fail with UV_EBADF), and the bytes of that one write may or may not
//     have reached the peer. So the reader receives every completed write and then at most the
//     bytes of the cancelled one; without a cancelled write it receives exactly what was written;
//   - no coroutine frame or libuv handle is left, and uv_loop_close returns 0.
// A failed check aborts; ASan and UBSan catch memory errors and leaks.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <uv.h>
#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

#include "fuzz_support.hpp"

#include <sys/socket.h>

namespace uvasync::fuzz {

const char* target_name() noexcept {
    return "stream_fuzz";
}

namespace {

/// The byte at position `i` of the stream: not periodic in any small length.
char pattern(std::size_t i) noexcept {
    return static_cast<char>((i * 131U) ^ (i >> 8U) ^ (i >> 16U));
}

struct step {
    std::size_t size;
    int timeout_ms; // < 0: no timeout
};

/// Decodes the input into the writer's and the reader's steps (alternating bytes).
void decode(const std::uint8_t* data, std::size_t size, std::vector<step>& writes,
            std::vector<step>& reads) {
    for (std::size_t i = 0; i + 1 < size && writes.size() + reads.size() < 64; i += 2) {
        const std::uint8_t a = data[i];
        const std::uint8_t b = data[i + 1];
        const int timeout_ms = (b & 0x80U) != 0 ? static_cast<int>(b & 0x0fU) : -1;
        if ((b & 0x40U) != 0) {
            // Writes from 1 byte to 256 KiB: big ones fill the socket buffer and stay pending.
            const std::size_t n = (a & 0x80U) != 0 ? (a & 0x7fU) * 2048U + 1 : a + 1U;
            writes.push_back({n, timeout_ms});
        } else {
            reads.push_back({(a & 0x7fU) * 256U + 1, timeout_ms});
        }
    }
}

struct outcome {
    std::size_t acked = 0;          // bytes of completed writes
    std::size_t cancelled_size = 0; // bytes of the cancelled write (0: none was cancelled)
    bool cancelled = false;
    std::string received;
    bool reader_error = false;
};

task<> writer(stream& s, const std::vector<step>& steps, outcome& out) {
    for (const step& st : steps) {
        std::string chunk(st.size, '\0');
        for (std::size_t i = 0; i < st.size; ++i) {
            chunk[i] = pattern(out.acked + i);
        }
        if (st.timeout_ms < 0) {
            co_await s.write(std::move(chunk));
        } else {
            auto w = s.write(std::span<const char>(chunk));
            const std::optional<unit> r =
                co_await move_on_after(std::chrono::milliseconds(st.timeout_ms), std::move(w));
            if (!r && s.is_open()) {
                continue; // cancelled before it started (a 0 ms timeout): nothing was written
            }
            if (!r) {
                out.cancelled = true;
                out.cancelled_size = st.size;
                try {
                    co_await s.write("x");
                    violation("a write after a cancelled write succeeded");
                } catch (const std::system_error& e) {
                    expect(e.code().value() == UV_EBADF,
                           "a write after a cancelled one: not EBADF");
                }
                co_return;
            }
        }
        out.acked += st.size;
    }
    co_await s.shutdown();
    co_await s.close();
}

task<> reader(stream& s, const std::vector<step>& steps, outcome& out) {
    std::vector<char> buf;
    for (std::size_t i = 0;; ++i) {
        // After the input's steps, plain 64 KiB reads until end of stream.
        const step st = i < steps.size() ? steps[i] : step{65536, -1};
        buf.resize(st.size);
        std::size_t n = 0;
        try {
            if (st.timeout_ms < 0) {
                n = co_await s.read_some(buf);
            } else {
                auto rd = s.read_some(buf);
                const std::optional<std::size_t> r =
                    co_await move_on_after(std::chrono::milliseconds(st.timeout_ms), std::move(rd));
                if (!r) {
                    continue; // cancelled: nothing consumed
                }
                n = *r;
            }
        } catch (const std::system_error&) {
            out.reader_error = true; // e.g. ECONNRESET after the writer closed with data queued
            break;
        }
        if (n == 0) {
            break;
        }
        for (std::size_t k = 0; k < n; ++k) {
            expect(buf[k] == pattern(out.received.size() + k), "a byte lost, duplicated or moved");
        }
        out.received.append(buf.data(), n);
    }
    co_await s.close();
}

task<> run_pair(stream& a, stream& b, const std::vector<step>& writes,
                const std::vector<step>& reads, outcome& out) {
    auto w = writer(a, writes, out);
    auto r = reader(b, reads, out);
    co_await gather(std::move(w), std::move(r));
}

task<> run_socketpair(const std::vector<step>& writes, const std::vector<step>& reads,
                      outcome& out) {
    int fds[2] = {-1, -1};
    expect(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair");
    pipe_stream a = pipe_stream::open(fds[0]);
    pipe_stream b = pipe_stream::open(fds[1]);
    co_await run_pair(a, b, writes, reads, out);
}

/// Sets the kernel's send or receive buffer of `h` to 16 KiB.
void small_buffer(uv_handle_t* h, int (*set)(uv_handle_t*, int*), const char* what) {
    int size = 16384;
    expect(set(h, &size) == 0, what);
}

/// A TCP connection on 127.0.0.1 made through the library: a listener on an ephemeral port, a
/// connect and an accept, the listener closed once the connection is made. Its receive buffer
/// (inherited by the accepted socket before the handshake, so the window it announces is small
/// too) and the client's send buffer are 16 KiB, so that large writes stay pending.
task<> run_tcp(const std::vector<step>& writes, const std::vector<step>& reads, outcome& out) {
    tcp_listener l = tcp_listener::bind(socket_address::parse("127.0.0.1", 0), 1);
    small_buffer(reinterpret_cast<uv_handle_t*>(l.native_handle()), &uv_recv_buffer_size,
                 "SO_RCVBUF");
    task_handle<tcp_stream> connecting = spawn(tcp_stream::connect(l.local_address()));
    tcp_stream server = co_await l.accept();
    tcp_stream client = co_await connecting;
    co_await l.close();
    small_buffer(reinterpret_cast<uv_handle_t*>(client.native_handle()), &uv_send_buffer_size,
                 "SO_SNDBUF");
    co_await run_pair(client, server, writes, reads, out);
}

enum class transport : std::uint8_t { socketpair, tcp };

void run_one(const std::vector<step>& writes, const std::vector<step>& reads, transport via) {
    const std::ptrdiff_t frames_before = detail::live_frame_counter().load();
    uv_loop_t loop;
    expect(uv_loop_init(&loop) == 0, "uv_loop_init");
    outcome out;
    {
        runtime_options options;
        options.virtual_clock = true;
        runtime rt(&loop, std::move(options));
        auto t = via == transport::socketpair ? run_socketpair(writes, reads, out)
                                              : run_tcp(writes, reads, out);
        task_handle<> h = rt.spawn(std::move(t));
        rt.keep_loop_alive(true);
        while (!h.done()) {
            uv_run(&loop, UV_RUN_ONCE);
        }
        rt.keep_loop_alive(false);
        try {
            h.result();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "stream_fuzz: error: %s\n", e.what());
            violation("the pair ended with an error");
        } catch (...) {
            violation("the pair ended cancelled");
        }
    }
    if (out.cancelled) {
        expect(out.received.size() >= out.acked, "a completed write was not delivered");
        expect(out.received.size() <= out.acked + out.cancelled_size, "more bytes than written");
    } else {
        expect(!out.reader_error, "a read error without a cancelled write");
        expect(out.received.size() == out.acked, "received != written");
    }
    expect_nothing_left(loop, frames_before);
}

void run_one(const std::uint8_t* data, std::size_t size) {
    std::vector<step> writes;
    std::vector<step> reads;
    decode(data, size, writes, reads);
    run_one(writes, reads, transport::socketpair);
    run_one(writes, reads, transport::tcp);
}

} // namespace
} // namespace uvasync::fuzz

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    uvasync::fuzz::run_one(data, size);
    return 0;
}
