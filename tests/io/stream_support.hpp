// SPDX-License-Identifier: MIT
// Helpers shared by the stream tests (tcp, pipe, tty): connected pairs, the outcome of an
// operation as text, a write kept pending by a full kernel buffer, and a hook that acts between
// an operation's completion and its task's resumption.
#pragma once

#include <chrono>
#include <functional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/address.hpp>
#include <uvasync/io/error.hpp>
#include <uvasync/io/pipe.hpp>
#include <uvasync/io/tcp.hpp>
#include <uvasync/uvasync.hpp>

#include "check_hook.hpp"
#include "loop_fixture.hpp"

#include <sys/socket.h>

namespace uvasync::test {

/// I/O tests run on the real loop clock: sleeps here only give the kernel time, they never
/// bound a measurement.
struct io_fixture : loop_fixture {
    io_fixture()
        : loop_fixture(real_clock()) {}

    explicit io_fixture(runtime_options o)
        : loop_fixture(std::move(o)) {}
};

/// A task that sleeps on the loop clock (for `run`).
inline task<void> nap(loop_clock::duration d) {
    co_await sleep(d);
}

inline socket_address loopback(std::uint16_t port = 0) {
    return socket_address::parse("127.0.0.1", port);
}

/// The two ends of a connection: the connecting one and the accepted one.
template <class Stream>
struct stream_pair {
    Stream client;
    Stream server;
};

using tcp_pair = stream_pair<tcp_stream>;
using pipe_pair = stream_pair<pipe_stream>;

/// Connects a `Stream` to `to`, where `l` listens, and accepts it.
template <class Stream, class Listener, class Target>
task<stream_pair<Stream>> connect_and_accept(Listener& l, Target to) {
    task_handle<Stream> connecting = spawn(Stream::connect(std::move(to)));
    Stream server = co_await l.accept();
    Stream client = co_await connecting;
    co_return stream_pair<Stream>{std::move(client), std::move(server)};
}

/// Connects a client to `l` and accepts it.
inline task<tcp_pair> connect_pair(tcp_listener& l) {
    return connect_and_accept<tcp_stream>(l, l.local_address());
}

/// Connects a client to the pipe listener `l` bound at `path` and accepts it.
inline task<pipe_pair> connect_pipe_pair(pipe_listener& l, std::string path) {
    return connect_and_accept<pipe_stream>(l, std::move(path));
}

/// The two ends of a `socketpair()` as pipe streams: a connection without a listener.
struct socket_pair {
    pipe_stream a;
    pipe_stream b;
};

inline socket_pair make_socket_pair() {
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    return socket_pair{pipe_stream::open(fds[0]), pipe_stream::open(fds[1])};
}

inline task<void> close_stream(stream& s) {
    co_await s.close();
}

inline task<void> write_text(stream& s, std::string text) {
    co_await s.write(std::move(text));
}

inline task<void> shut_down(stream& s) {
    co_await s.shutdown();
}

/// Reads one chunk as a string.
inline task<std::string> read_chunk(stream& s, std::size_t max = 4096) {
    std::string buf(max, '\0');
    const std::size_t n = co_await s.read_some(buf);
    buf.resize(n);
    co_return buf;
}

/// Reads until `n` bytes arrived (or EOF).
inline task<std::string> read_n(stream& s, std::size_t n) {
    std::string buf(n, '\0');
    const std::size_t got = co_await s.read_exactly(buf);
    buf.resize(got);
    co_return buf;
}

/// Fills the kernel buffers of `s` with `uv_try_write` until it returns `UV_EAGAIN` (the peer
/// does not read). Returns the number of bytes queued.
inline std::size_t fill_until_eagain(stream& s) {
    static char chunk[64 * 1024] = {};
    std::size_t total = 0;
    for (;;) {
        uv_buf_t b = uv_buf_init(chunk, sizeof chunk);
        const int n = uv_try_write(s.native_stream(), &b, 1);
        if (n == UV_EAGAIN) {
            return total;
        }
        REQUIRE(n > 0);
        total += static_cast<std::size_t>(n);
    }
}

/// The text of the `std::system_error` thrown by `t`, and its code (0 if nothing was thrown).
struct failure {
    int code = 0;
    std::string what;
};

template <class T>
task<failure> failure_of(task<T> t) {
    failure f;
    try {
        co_await std::move(t);
    } catch (const std::system_error& e) {
        f.code = e.code().value();
        f.what = e.what();
    }
    co_return f;
}

inline bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// The outcome of one operation as text, for the contract tables (docs/reliability.md): its
// result, "cancelled: <message>" or "error: <what>".

inline task<std::string> read_and_report(stream& s, std::size_t max = 4096) {
    try {
        co_return "read " + co_await read_chunk(s, max);
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    } catch (const std::system_error& e) {
        co_return std::string("error: ") + e.what();
    }
}

inline task<std::string> write_and_report(stream& s, std::span<const char> data) {
    try {
        co_await s.write(data);
        co_return "written";
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    } catch (const std::system_error& e) {
        co_return std::string("error: ") + e.what();
    }
}

/// Shuts `s` down and reports "shut down", "cancelled: <message>" or "error: <what>".
inline task<std::string> shutdown_and_report(stream& s) {
    try {
        co_await s.shutdown();
        co_return "shut down";
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    } catch (const std::system_error& e) {
        co_return std::string("error: ") + e.what();
    }
}

inline std::string describe_accepted(const tcp_stream& s) {
    return "accepted " + s.peer_address().to_string();
}

inline std::string describe_accepted(const pipe_stream& /*s*/) {
    return "accepted"; // a Unix domain socket's client has no address
}

/// Accepts one connection on `l` (a tcp_listener or a pipe_listener).
template <class Listener>
task<std::string> accept_and_report(Listener& l) {
    try {
        auto s = co_await l.accept();
        co_return describe_accepted(s);
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    } catch (const std::system_error& e) {
        co_return std::string("error: ") + e.what();
    }
}

/// Starts a shutdown of `s`, setting `started` in the same step (for a hook that must know the
/// request was issued).
inline task<std::string> flag_then_shutdown(bool& started, stream& s) {
    started = true; // the shutdown below starts in this same step
    co_return co_await shutdown_and_report(s);
}

/// Reads `s` until end of stream (or until cancelled), discarding the bytes.
inline task<void> drain_until_eof(stream& s) {
    std::vector<char> buf(std::size_t{1} << 16);
    while (co_await s.read_some(buf) > 0) {
    }
}

/// True if `op` was cancelled at its first cancellation point (a 0 ms move_on: expired at
/// entry), before it started.
template <class Op>
task<bool> cancelled_before_start(Op op) {
    auto r = co_await move_on_after(std::chrono::milliseconds(0), op());
    co_return !r.has_value();
}

/// Fills the kernel buffers of `s` (its peer reads nothing) and starts a write of `data` that
/// stays queued with `uv_write`: a pending write, decided by state.
inline task_handle<std::string> start_pending_write(loop_fixture& fx, stream& s,
                                                    std::span<const char> data) {
    CHECK(fill_until_eagain(s) > 0);
    task_handle<std::string> w = fx.rt->spawn(write_and_report(s, data));
    fx.run(nap(std::chrono::milliseconds(5)));
    REQUIRE_FALSE(w.done()); // queued with uv_write
    return w;
}

/// Number of handles on `loop` for which `pred(handle)` holds.
template <class Pred>
int count_handles(uv_loop_t* loop, Pred pred) {
    struct walk_state {
        Pred* pred;
        int n;
    } st{&pred, 0};

    uv_walk(
        loop,
        [](uv_handle_t* h, void* arg) {
            auto* w = static_cast<walk_state*>(arg);
            w->n += (*w->pred)(h) ? 1 : 0;
        },
        &st);
    return st.n;
}

/// Number of open (not closing) handles of `type` on `loop`.
inline int open_handles(uv_loop_t* loop, uv_handle_type type) {
    return count_handles(loop, [type](uv_handle_t* h) {
        return uv_handle_get_type(h) == type && uv_is_closing(h) == 0;
    });
}

/// Number of streams of `type` with a connect in progress. libuv clears a stream's
/// `connect_req` (a private field, read here by the tests only) just before it calls the
/// connect callback, for TCP and pipes alike.
inline int connecting_handles(uv_loop_t* loop, uv_handle_type type) {
    return count_handles(loop, [type](uv_handle_t* h) {
        return uv_handle_get_type(h) == type &&
               reinterpret_cast<uv_stream_t*>(h)->connect_req != nullptr;
    });
}

/// Accepts one connection on `l` (for `run`).
inline task<tcp_stream> accept_one(tcp_listener& l) {
    co_return co_await l.accept();
}

inline task<pipe_stream> accept_one(pipe_listener& l) {
    co_return co_await l.accept();
}

} // namespace uvasync::test
