// SPDX-License-Identifier: MIT
// Stream fuzzer (libFuzzer): a writer and a reader on the two ends of a connection, with write
// sizes, read sizes and the timeouts that cancel them taken from the input. Each input runs
// twice: over a socketpair (pipe_stream::open) and over a TCP connection on 127.0.0.1
// (tcp_stream::open; small socket buffers, so that large writes stay pending there too). Every byte
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

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace uvasync::fuzz {
namespace {

[[noreturn]] void violation(const char* what) {
    std::fprintf(stderr, "stream_fuzz: check failed: %s\n", what);
    std::fflush(stderr);
    std::abort();
}

void expect(bool ok, const char* what) {
    if (!ok) {
        violation(what);
    }
}

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

template <class Stream>
task<> run_pair(int fd_a, int fd_b, const std::vector<step>& writes, const std::vector<step>& reads,
                outcome& out) {
    Stream a = Stream::open(fd_a);
    Stream b = Stream::open(fd_b);
    auto w = writer(a, writes, out);
    auto r = reader(b, reads, out);
    co_await gather(std::move(w), std::move(r));
}

/// A connected TCP pair on 127.0.0.1 (blocking setup; the kernel completes the handshake from
/// the backlog). Send and receive buffers are made small so that large writes stay pending.
void tcp_pair(int fds[2]) {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    expect(listener >= 0, "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    expect(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "bind");
    expect(::listen(listener, 1) == 0, "listen");
    socklen_t len = sizeof addr;
    expect(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0, "getsockname");
    const int small = 16384;
    fds[0] = ::socket(AF_INET, SOCK_STREAM, 0);
    expect(fds[0] >= 0, "socket");
    expect(::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0, "SO_SNDBUF");
    expect(::setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0, "SO_RCVBUF");
    expect(::connect(fds[0], reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0, "connect");
    fds[1] = ::accept(listener, nullptr, nullptr);
    expect(fds[1] >= 0, "accept");
    ::close(listener);
}

enum class transport : std::uint8_t { socketpair, tcp };

void run_one(const std::vector<step>& writes, const std::vector<step>& reads, transport via) {
    const std::ptrdiff_t frames_before = detail::live_frame_counter().load();
    int fds[2] = {-1, -1};
    if (via == transport::socketpair) {
        expect(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0, "socketpair");
    } else {
        tcp_pair(fds);
    }
    uv_loop_t loop;
    expect(uv_loop_init(&loop) == 0, "uv_loop_init");
    outcome out;
    {
        runtime_options options;
        options.virtual_clock = true;
        runtime rt(&loop, std::move(options));
        auto t = via == transport::socketpair
                     ? run_pair<pipe_stream>(fds[0], fds[1], writes, reads, out)
                     : run_pair<tcp_stream>(fds[0], fds[1], writes, reads, out);
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
    int open = 0;
    uv_walk(
        &loop, [](uv_handle_t*, void* arg) { ++*static_cast<int*>(arg); }, &open);
    expect(open == 0, "a libuv handle was left open");
    expect(uv_loop_close(&loop) == 0, "uv_loop_close failed");
    expect(detail::live_frame_counter().load() == frames_before, "a coroutine frame leaked");
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
