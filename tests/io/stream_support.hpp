// SPDX-License-Identifier: MIT
// Helpers shared by the stream tests (tcp, pipe, tty).
#pragma once

#include <functional>
#include <string>
#include <system_error>
#include <utility>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/address.hpp>
#include <uvasync/io/error.hpp>
#include <uvasync/io/tcp.hpp>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "uv_close.hpp"

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

struct tcp_pair {
    tcp_stream client;
    tcp_stream server;
};

/// Connects a client to `l` and accepts it.
inline task<tcp_pair> connect_pair(tcp_listener& l) {
    task_handle<tcp_stream> connecting = spawn(tcp_stream::connect(l.local_address()));
    tcp_stream server = co_await l.accept();
    tcp_stream client = co_await connecting;
    co_return tcp_pair{std::move(client), std::move(server)};
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

/// Shuts `s` down and reports "shut down", or "cancelled: <message>".
inline task<std::string> shutdown_and_report(stream& s) {
    try {
        co_await s.shutdown();
        co_return "shut down";
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    }
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

/// A `uv_check_t` that runs `fn` after every poll phase, before the runtime's own check
/// callback resumes the tasks made ready in that poll (libuv runs the check handle started last
/// first), until `fn` returns true. This lets a test cancel a task in the same loop iteration as
/// the completion of its operation, which is D-2's "completion wins" case.
class check_hook {
public:
    check_hook(uv_loop_t* loop, std::function<bool()> fn)
        : state_(new state{}) {
        state_->fn = std::move(fn);
        REQUIRE(uv_check_init(loop, &state_->handle) == 0);
        state_->handle.data = state_;
        REQUIRE(uv_check_start(&state_->handle, [](uv_check_t* h) {
                    auto* st = static_cast<state*>(h->data);
                    if (!st->fired && st->fn()) {
                        st->fired = true;
                        uv_check_stop(h);
                    }
                }) == 0);
    }

    check_hook(const check_hook&) = delete;
    check_hook& operator=(const check_hook&) = delete;
    check_hook(check_hook&&) = delete;
    check_hook& operator=(check_hook&&) = delete;

    ~check_hook() { detail::close_then_delete(state_, &state_->handle); }

    [[nodiscard]] bool fired() const noexcept { return state_->fired; }

private:
    struct state {
        uv_check_t handle{};
        std::function<bool()> fn;
        bool fired = false;
    };

    state* state_;
};

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

} // namespace uvasync::test
