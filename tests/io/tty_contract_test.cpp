// SPDX-License-Identifier: MIT
// The cancellation contract of tty streams (docs/io/streams.md, SEMANTICS 14), over a
// pseudo-terminal: the slave end is the tty_stream, the master end a pipe_stream standing for
// the user at the keyboard. The rows: completes, fails to start, cancelled before start,
// cancelled while pending, completion wins, cancelled twice. The slave is in raw mode, so input
// reaches the reader byte by byte, without line editing or echo; reads and writes each have
// every row.
//
// libuv reopens the slave through its path (ttyname_r) and puts that descriptor in non-blocking
// mode, so a write blocks only when the terminal's output buffer is full: filled with
// uv_try_write while the master reads nothing, a write stays pending.
#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/pipe.hpp>
#include <uvasync/io/tty.hpp>
#include <uvasync/uvasync.hpp>

#include "stream_support.hpp"

#include <fcntl.h>
#include <pty.h>
#include <unistd.h>

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;

/// A pseudo-terminal: the slave as a tty_stream in raw mode, the master as a pipe_stream.
struct pty {
    std::optional<tty_stream> slave;
    std::optional<pipe_stream> master;
    int slave_fd = -1;

    /// False (and a message) where no pseudo-terminal can be opened.
    bool open() {
        int master_fd = -1;
        if (::openpty(&master_fd, &slave_fd, nullptr, nullptr, nullptr) != 0) {
            MESSAGE("no pseudo-terminal available here: tty contract test skipped");
            return false;
        }
        slave.emplace(tty_stream::open(slave_fd));
        slave->set_mode(UV_TTY_MODE_RAW);
        master.emplace(pipe_stream::open(master_fd)); // owns master_fd from here on
        return true;
    }

    pty() = default;
    pty(const pty&) = delete;
    pty& operator=(const pty&) = delete;
    pty(pty&&) = delete;
    pty& operator=(pty&&) = delete;

    ~pty() {
        // libuv reopened the slave through its path, so slave_fd is still ours.
        if (slave_fd >= 0 && ::fcntl(slave_fd, F_GETFD) != -1) {
            ::close(slave_fd);
        }
    }
};

task<std::string> read_and_report(stream& s, std::size_t max = 4096) {
    try {
        co_return "read " + co_await read_chunk(s, max);
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    }
}

/// True if `op` was cancelled at its first cancellation point (a 0 ms move_on: expired at
/// entry), before it started.
template <class Op>
task<bool> cancelled_before_start(Op op) {
    auto r = co_await move_on_after(0ms, op());
    co_return !r.has_value();
}

task<void> close(stream& s) {
    co_await s.close();
}

task<void> write_to(stream& s, std::string text) {
    co_await s.write(std::move(text));
}

TEST_CASE_FIXTURE(io_fixture, "tty_read_and_write_complete") {
    pty p;
    if (!p.open()) {
        return;
    }
    run(write_to(*p.master, "in"));
    CHECK(run(read_n(*p.slave, 2)) == "in");
    run(write_to(*p.slave, "out"));
    CHECK(run(read_n(*p.master, 3)) == "out");
    run(close(*p.slave));
    run(close(*p.master));
}

TEST_CASE_FIXTURE(io_fixture, "tty_operations_on_a_closed_tty_fail_to_start_with_ebadf") {
    pty p;
    if (!p.open()) {
        return;
    }
    run(close(*p.slave));
    const failure r = run(failure_of(read_chunk(*p.slave)));
    CHECK(r.code == UV_EBADF);
    const failure w = run(failure_of(write_to(*p.slave, "x")));
    CHECK(w.code == UV_EBADF);
    CHECK(contains(w.what, "tty_stream::write"));
    run(close(*p.master));
}

TEST_CASE_FIXTURE(io_fixture, "tty_cancelled_before_start_consumes_and_sends_nothing") {
    pty p;
    if (!p.open()) {
        return;
    }
    run(write_to(*p.master, "ab"));
    // One byte read starts reading; wait until the other is buffered.
    CHECK(run(read_n(*p.slave, 1)) == "a");
    run_until([&] { return p.slave->buffered() == 1; });
    CHECK(run(cancelled_before_start([&]() -> task<void> {
        char b[4];
        (void)co_await p.slave->read_some(b);
    })));
    CHECK(p.slave->buffered() == 1); // nothing consumed
    CHECK(run(read_chunk(*p.slave)) == "b");
    // A write cancelled before it starts sends nothing and leaves the tty open.
    CHECK(run(cancelled_before_start([&]() -> task<void> { co_await p.slave->write("X"); })));
    CHECK(p.slave->is_open());
    run(write_to(*p.slave, "Y"));
    CHECK(run(read_chunk(*p.master)) == "Y"); // no X before it
}

TEST_CASE_FIXTURE(io_fixture, "tty_read_cancelled_while_pending_then_reads_again") {
    pty p;
    if (!p.open()) {
        return;
    }
    task_handle<std::string> r = rt->spawn(read_and_report(*p.slave));
    run(nap(5ms));
    REQUIRE_FALSE(r.done()); // parked: nothing to read
    CHECK(r.cancel("stop"));
    run_until([&] { return r.done(); });
    CHECK(r.result() == "cancelled: stop");
    run(write_to(*p.master, "later"));
    CHECK(run(read_n(*p.slave, 5)) == "later");
}

TEST_CASE_FIXTURE(io_fixture, "tty_read_completed_then_cancelled_in_the_same_turn_is_delivered") {
    pty p;
    if (!p.open()) {
        return;
    }
    for (int round = 0; round < 2; ++round) {
        task_handle<std::string> r = rt->spawn(read_and_report(*p.slave, 1));
        run(nap(5ms));
        REQUIRE_FALSE(r.done());
        // Two bytes, a one-byte read: the byte left in the buffer shows the read completed;
        // the hook cancels in the same iteration, before the reader resumes.
        check_hook hook(loop(), [&] { return p.slave->buffered() == 1 && r.cancel("late"); });
        uv_buf_t buf = uv_buf_init(const_cast<char*>("xy"), 2);
        REQUIRE(uv_try_write(p.master->native_stream(), &buf, 1) == 2);
        run_until([&] { return r.done(); });
        CHECK(hook.fired());
        CHECK(r.result() == "read x"); // completion wins
        CHECK(run(read_chunk(*p.slave)) == "y");
    }
}

TEST_CASE_FIXTURE(io_fixture, "tty_read_cancelled_twice_delivers_once_then_reads_again") {
    pty p;
    if (!p.open()) {
        return;
    }
    for (int round = 0; round < 2; ++round) {
        task_handle<std::string> r = rt->spawn(read_and_report(*p.slave));
        run(nap(5ms));
        REQUIRE_FALSE(r.done());
        CHECK(r.cancel("first"));
        CHECK_FALSE(r.cancel("second")); // one delivery, with the first message
        run_until([&] { return r.done(); });
        CHECK(r.result() == "cancelled: first");
        run(write_to(*p.master, "again"));
        CHECK(run(read_n(*p.slave, 5)) == "again");
    }
}

task<std::string> write_and_report(stream& s, std::span<const char> data) {
    try {
        co_await s.write(data);
        co_return "written";
    } catch (const cancelled_error& e) {
        co_return "cancelled: " + std::string(e.message());
    }
}

TEST_CASE_FIXTURE(io_fixture, "tty_write_cancelled_while_pending_and_twice_closes_the_tty_once") {
    pty p;
    if (!p.open()) {
        return;
    }
    CHECK(fill_until_eagain(*p.slave) > 0); // the master reads nothing
    std::vector<char> big(1 << 20, 't');    // far more than a terminal buffers
    task_handle<std::string> w = rt->spawn(write_and_report(*p.slave, big));
    run(nap(5ms));
    REQUIRE_FALSE(w.done()); // queued with uv_write
    CHECK(w.cancel("first"));
    CHECK_FALSE(w.cancel("second")); // one delivery, with the first message
    run_until([&] { return w.done(); });
    CHECK(w.result() == "cancelled: first");
    CHECK_FALSE(p.slave->is_open()); // a cancelled pending write closes the stream
    const failure f = run(failure_of(write_to(*p.slave, "more")));
    CHECK(f.code == UV_EBADF);
    CHECK(contains(f.what, "pending write was cancelled"));
}

TEST_CASE_FIXTURE(io_fixture, "tty_write_completed_then_cancelled_in_the_same_turn_is_delivered") {
    pty p;
    if (!p.open()) {
        return;
    }
    CHECK(fill_until_eagain(*p.slave) > 0);
    std::vector<char> data(1 << 20, 'w'); // the filled buffer drains a little: stays pending
    task_handle<std::string> w = rt->spawn(write_and_report(*p.slave, data));
    run(nap(5ms));
    REQUIRE_FALSE(w.done());
    // Drain the master; the write then completes in a poll, and the hook cancels the writer in
    // the same iteration, before it resumes.
    task_handle<void> drain = rt->spawn([](pipe_stream& s) -> task<void> {
        std::vector<char> buf(1 << 16);
        while (co_await s.read_some(buf) > 0) {
        }
    }(*p.master));
    check_hook hook(loop(), [&] { return w.cancel("late"); });
    run_until([&] { return w.done(); });
    CHECK(hook.fired());
    // Either the cancellation found the write still queued (the tty closed) or the write had
    // completed (completion wins, the tty stays open): never both.
    if (w.result() == "written") {
        CHECK(p.slave->is_open());
    } else {
        CHECK(w.result() == "cancelled: late");
        CHECK_FALSE(p.slave->is_open());
    }
    drain.cancel();
    run_until([&] { return drain.done(); });
}

} // namespace
} // namespace uvasync::test
