// SPDX-License-Identifier: MIT
// The cancellation contract of tty streams (docs/io/streams.md, SEMANTICS 14), over a
// pseudo-terminal: the slave end is the tty_stream, the master end a pipe_stream standing for
// the user at the keyboard. The rows: completes, fails to start, cancelled before start,
// cancelled while pending, completion wins, cancelled twice. The slave is in raw mode, so input
// reaches the reader byte by byte, without line editing or echo; reads, writes and shutdowns
// each have every row. A terminal has no half-close: libuv's shutdown(2) on it fails with
// UV_ENOTSOCK once the queued writes are done, and that error is the shutdown's completion
// (libuv has ended the write side all the same: later writes fail with UV_EPIPE).
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

TEST_CASE_FIXTURE(io_fixture, "tty_read_and_write_complete") {
    pty p;
    if (!p.open()) {
        return;
    }
    run(write_text(*p.master, "in"));
    CHECK(run(read_n(*p.slave, 2)) == "in");
    run(write_text(*p.slave, "out"));
    CHECK(run(read_n(*p.master, 3)) == "out");
    run(close_stream(*p.slave));
    run(close_stream(*p.master));
}

TEST_CASE_FIXTURE(io_fixture, "tty_operations_on_a_closed_tty_fail_to_start_with_ebadf") {
    pty p;
    if (!p.open()) {
        return;
    }
    run(close_stream(*p.slave));
    const failure r = run(failure_of(read_chunk(*p.slave)));
    CHECK(r.code == UV_EBADF);
    const failure w = run(failure_of(write_text(*p.slave, "x")));
    CHECK(w.code == UV_EBADF);
    CHECK(contains(w.what, "tty_stream::write"));
    run(close_stream(*p.master));
}

TEST_CASE_FIXTURE(io_fixture, "tty_cancelled_before_start_consumes_and_sends_nothing") {
    pty p;
    if (!p.open()) {
        return;
    }
    run(write_text(*p.master, "ab"));
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
    run(write_text(*p.slave, "Y"));
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
    run(write_text(*p.master, "later"));
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
        run(write_text(*p.master, "again"));
        CHECK(run(read_n(*p.slave, 5)) == "again");
    }
}

TEST_CASE_FIXTURE(io_fixture, "tty_write_cancelled_while_pending_and_twice_closes_the_tty_once") {
    pty p;
    if (!p.open()) {
        return;
    }
    std::vector<char> big(1 << 20, 't'); // far more than a terminal buffers
    task_handle<std::string> w =
        start_pending_write(*this, *p.slave, big); // the master reads nothing
    CHECK(w.cancel("first"));
    CHECK_FALSE(w.cancel("second")); // one delivery, with the first message
    run_until([&] { return w.done(); });
    CHECK(w.result() == "cancelled: first");
    CHECK_FALSE(p.slave->is_open()); // a cancelled pending write closes the stream
    const failure f = run(failure_of(write_text(*p.slave, "more")));
    CHECK(f.code == UV_EBADF);
    CHECK(contains(f.what, "pending write was cancelled"));
}

TEST_CASE_FIXTURE(io_fixture, "tty_write_completed_then_cancelled_in_the_same_turn_is_delivered") {
    pty p;
    if (!p.open()) {
        return;
    }
    std::vector<char> data(1 << 20, 'w'); // the filled buffer drains a little: stays pending
    task_handle<std::string> w = start_pending_write(*this, *p.slave, data);
    // Drain the master; the write then completes in a poll, and the hook cancels the writer in
    // the same iteration, before it resumes.
    task_handle<void> drain = rt->spawn(drain_until_eof(*p.master));
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

/// The error a completed shutdown of a terminal reports: shutdown(2) needs a socket.
const std::string tty_shutdown_error =
    "error: tty_stream::shutdown: socket operation on non-socket";

TEST_CASE_FIXTURE(io_fixture, "tty_shutdown_completes_with_enotsock_and_the_tty_still_reads") {
    pty p;
    if (!p.open()) {
        return;
    }
    run(write_text(*p.slave, "before"));
    CHECK(run(shutdown_and_report(*p.slave)) == tty_shutdown_error); // after the queued write
    CHECK(run(read_n(*p.master, 6)) == "before");
    CHECK(p.slave->is_open());
    // libuv ends the write side when the shutdown starts, whatever its result: as after any
    // shutdown, a write fails with UV_EPIPE; reading goes on.
    const failure w = run(failure_of(write_text(*p.slave, "after")));
    CHECK(w.code == UV_EPIPE);
    run(write_text(*p.master, "in"));
    CHECK(run(read_n(*p.slave, 2)) == "in");
    // A closed tty: the shutdown fails to start.
    run(close_stream(*p.slave));
    const failure f = run(failure_of(shut_down(*p.slave)));
    CHECK(f.code == UV_EBADF);
}

TEST_CASE_FIXTURE(io_fixture, "tty_shutdown_cancelled_before_start_makes_no_libuv_call") {
    pty p;
    if (!p.open()) {
        return;
    }
    CHECK(run(cancelled_before_start([&]() -> task<void> { co_await p.slave->shutdown(); })));
    CHECK(p.slave->is_open());
    CHECK(p.slave->native_stream()->shutdown_req == nullptr); // none was issued
    run(write_text(*p.slave, "Y"));
    CHECK(run(read_chunk(*p.master)) == "Y");
}

TEST_CASE_FIXTURE(io_fixture,
                  "tty_shutdown_cancelled_while_pending_and_twice_closes_the_tty_once") {
    pty p;
    if (!p.open()) {
        return;
    }
    std::vector<char> big(1 << 20, 's');
    task_handle<std::string> w = start_pending_write(*this, *p.slave, big);
    task_handle<std::string> sd = rt->spawn(shutdown_and_report(*p.slave));
    run(nap(5ms));
    CHECK_FALSE(w.done());
    REQUIRE_FALSE(sd.done()); // a shutdown waits for the queued writes
    CHECK(sd.cancel("first"));
    CHECK_FALSE(sd.cancel("second")); // one delivery, with the first message
    run_until([&] { return sd.done() && w.done(); });
    CHECK(sd.result() == "cancelled: first");
    CHECK(w.result() ==
          "error: tty_stream::write: the stream was closed because a pending shutdown was "
          "cancelled: operation canceled");
    CHECK_FALSE(p.slave->is_open());
}

TEST_CASE_FIXTURE(io_fixture,
                  "tty_shutdown_completed_then_cancelled_in_the_same_turn_is_delivered") {
    pty p;
    if (!p.open()) {
        return;
    }
    bool started = false;
    task_handle<std::string> s = rt->spawn(flag_then_shutdown(started, *p.slave));
    // libuv clears shutdown_req (a private field, read by the test only) just before it calls
    // the shutdown callback.
    check_hook hook(loop(), [&] {
        return started && p.slave->native_stream()->shutdown_req == nullptr && s.cancel("late");
    });
    run_until([&] { return s.done(); });
    CHECK(hook.fired());
    CHECK(s.result() == tty_shutdown_error); // completion wins: its result, not the cancellation
    CHECK(p.slave->is_open());
}

} // namespace
} // namespace uvasync::test
