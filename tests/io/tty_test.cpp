// SPDX-License-Identifier: MIT
// tty_stream over a pseudo-terminal. Reading the real stdin (`tty_stream::open(0)`) cannot be
// tested in CI; it is the same code path with fd 0.

#include <chrono>
#include <string>
#include <system_error>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/pipe.hpp>
#include <uvasync/io/tty.hpp>
#include <uvasync/uvasync.hpp>

#include "stream_support.hpp"

#include <fcntl.h>
#include <pty.h>
#include <termios.h>
#include <unistd.h>

namespace uvasync::test {
namespace {

using namespace std::chrono_literals;

task<void> tty_round_trip(tty_stream& slave, pipe_stream& master) {
    co_await slave.write("to master");
    CHECK(co_await read_n(master, 9) == "to master");
    // Raw mode on the slave side: input arrives byte by byte, without echo.
    slave.set_mode(UV_TTY_MODE_RAW);
    co_await master.write("to slave");
    CHECK(co_await read_n(slave, 8) == "to slave");
    slave.set_mode(UV_TTY_MODE_NORMAL);
    co_await slave.close();
    CHECK_FALSE(slave.is_open());
    co_await master.close();
}

TEST_CASE_FIXTURE(io_fixture, "tty_reads_and_writes_a_pseudo_terminal") {
    int master_fd = -1;
    int slave_fd = -1;
    if (::openpty(&master_fd, &slave_fd, nullptr, nullptr, nullptr) != 0) {
        MESSAGE("no pseudo-terminal available here: tty test skipped");
        return;
    }
    tty_stream slave = tty_stream::open(slave_fd);
    CHECK(slave.is_open());
    CHECK(slave.native_handle() != nullptr);
    pipe_stream master = pipe_stream::open(master_fd); // owns master_fd from here on
    run(tty_round_trip(slave, master));
    // libuv reopened the slave through its path, so slave_fd is still ours.
    if (::fcntl(slave_fd, F_GETFD) != -1) {
        ::close(slave_fd);
    }
}

TEST_CASE_FIXTURE(io_fixture, "tty_open_of_a_non_terminal_fails_with_context") {
    const int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    try {
        tty_stream t = tty_stream::open(fd);
        FAIL("opened /dev/null as a tty");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == UV_EINVAL);
        CHECK(contains(e.what(), "tty_stream::open fd " + std::to_string(fd)));
    }
    ::close(fd);
    tty_stream never;
    CHECK_FALSE(never.is_open());
    CHECK_THROWS_AS(never.set_mode(UV_TTY_MODE_RAW), std::system_error);
}

} // namespace
} // namespace uvasync::test
