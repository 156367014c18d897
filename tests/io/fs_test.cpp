// SPDX-License-Identifier: MIT
// uvasync::fs over libuv's fs requests (SEMANTICS 14.6, D-2). The threadpool has two threads
// (request_support.hpp), so tests can fill it and leave a request queued.

#include <algorithm>
#include <array>
#include <atomic>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/fs.hpp>
#include <uvasync/io/work.hpp>
#include <uvasync/uvasync.hpp>

#include "alloc_counter.hpp"
#include "handle_checks.hpp"
#include "loop_fixture.hpp"
#include "request_support.hpp"

#include <fcntl.h>

namespace uvasync::test {
namespace {

bool exists(const std::string& path) {
    return ::access(path.c_str(), F_OK) == 0;
}

task<std::string> round_trip(const temp_dir& dir) {
    const std::string a = dir / "a.txt";
    co_await fs::write_file(a, "hello, requests");
    std::string back = co_await fs::read_file(a);

    // Positioned reads and writes on one file.
    fs::file f = co_await fs::open(a, UV_FS_O_RDWR);
    CHECK(f.is_open());
    std::array<char, 5> buf{};
    const std::size_t n1 = co_await f.read(buf, 7);
    CHECK(n1 == 5);
    CHECK(std::string(buf.data(), 5) == "reque");
    const std::string patch = "HELLO";
    const std::size_t n2 = co_await f.write(patch, 0);
    CHECK(n2 == 5);
    const std::size_t n3 = co_await f.read(std::span<char>(), 0); // empty buffer: 0, no error
    CHECK(n3 == 0);
    std::array<char, 64> rest{};
    const std::size_t n4 = co_await f.read(rest, 100); // past the end
    CHECK(n4 == 0);
    co_await f.close();
    CHECK_FALSE(f.is_open());
    co_await f.close(); // closing a closed file resumes at once

    const uv_stat_t st = co_await fs::stat(a);
    CHECK(st.st_size == 15);

    co_await fs::mkdir(dir / "sub");
    co_await fs::rename(a, dir / "sub/b.txt");
    std::vector<fs::dir_entry> top = co_await fs::scandir(dir.str());
    std::vector<fs::dir_entry> sub = co_await fs::scandir(dir / "sub");
    CHECK(top.size() == 1);
    CHECK(top.at(0).name == "sub");
    CHECK(top.at(0).type == UV_DIRENT_DIR);
    CHECK(sub.size() == 1);
    CHECK(sub.at(0).name == "b.txt");
    CHECK(sub.at(0).type == UV_DIRENT_FILE);
    const std::string moved = co_await fs::read_file(dir / "sub/b.txt");
    back += "|" + moved;
    co_await fs::unlink(dir / "sub/b.txt");
    co_await fs::rmdir(dir / "sub");
    const std::vector<fs::dir_entry> none = co_await fs::scandir(dir.str());
    CHECK(none.empty());
    co_return back;
}

/// Reads a 3-byte file into a 4 MiB span: the bytes go straight into the span, and the read
/// allocates nothing of the span's size (it used to allocate and zero-fill it on every call).
task<void> read_into_a_large_span(const temp_dir& dir) {
    const std::string a = dir / "small.txt";
    co_await fs::write_file(a, "abc");
    fs::file f = co_await fs::open(a, UV_FS_O_RDONLY);
    std::vector<char> big(std::size_t(4) << 20, 'x');
    uvasync::test::largest_allocation = 0;
    const std::size_t n = co_await f.read(big, 0);
    CHECK(uvasync::test::largest_allocation.load() < std::size_t(64) << 10);
    CHECK(n == 3);
    CHECK(std::string(big.data(), 4) == "abcx"); // nothing past what was read is touched
    co_await f.close();
}

task<void> open_path(std::string path, int flags = UV_FS_O_RDONLY) {
    fs::file f = co_await fs::open(std::move(path), flags);
}

task<void> stat_path(std::string path) {
    (void)co_await fs::stat(std::move(path));
}

task<void> io_on_closed_file() {
    fs::file f;
    std::array<char, 4> buf{};
    (void)co_await f.read(buf);
}

/// Makes `open(path, O_CREAT)`; `armed` is set just before the request.
task<void> create_file(std::string path, bool& armed, bool& resumed) {
    armed = true;
    fs::file f = co_await fs::open(std::move(path), UV_FS_O_WRONLY | UV_FS_O_CREAT);
    resumed = true;
    co_await yield(); // raises when the scope was cancelled meanwhile
}

task<void> create_file_cancelled(task_handle<void>& self, std::string path) {
    self.cancel("before start");
    fs::file f = co_await fs::open(std::move(path), UV_FS_O_WRONLY | UV_FS_O_CREAT);
}

task<void> open_then_checkpoint(std::string path, int& fd_seen) {
    fs::file file = co_await fs::open(std::move(path), UV_FS_O_RDONLY);
    fd_seen = file.fd();
    co_await yield(); // raises; `file` closes its fd while the frame unwinds
}

task<void> close_cancelled(task_handle<void>& self, std::string path, int& fd) {
    fs::file f = co_await fs::open(std::move(path), UV_FS_O_RDONLY);
    fd = f.fd();
    self.cancel("before close");
    co_await f.close(); // raises, but the descriptor is released
}

/// Every fs operation that is one request. `close` is left out: a cancelled close still
/// releases the descriptor (fs_close_cancelled_still_releases_the_descriptor).
enum class fs_op { open_create, read, write, stat, unlink, rename, mkdir, rmdir, scandir };
constexpr std::array every_fs_op{fs_op::open_create, fs_op::read,   fs_op::write,
                                 fs_op::stat,        fs_op::unlink, fs_op::rename,
                                 fs_op::mkdir,       fs_op::rmdir,  fs_op::scandir};

/// The files the operations work on: "existing" (4 bytes, open as `file`) and the directory
/// "dir"; "created", "renamed" and "made" must not appear.
task<fs::file> prepare_fs_ops(const temp_dir& dir) {
    co_await fs::write_file(dir / "existing", "abcd");
    co_await fs::mkdir(dir / "dir");
    co_return co_await fs::open(dir / "existing", UV_FS_O_RDWR);
}

/// None of the operations had an effect.
task<void> check_no_fs_op_ran(const temp_dir& dir) {
    CHECK(co_await fs::read_file(dir / "existing") == "abcd"); // not written, unlinked, renamed
    CHECK(exists(dir / "dir"));                                // not removed
    CHECK_FALSE(exists(dir / "created"));
    CHECK_FALSE(exists(dir / "renamed"));
    CHECK_FALSE(exists(dir / "made"));
}

/// Starts `op` (one request); `armed` is set in the step that issues it.
task<void> run_fs_op(fs_op op, const temp_dir& dir, fs::file& file, bool& armed) {
    std::array<char, 4> buf{};
    const std::string text = "XXXX";
    armed = true;
    switch (op) {
    case fs_op::open_create: {
        fs::file f = co_await fs::open(dir / "created", UV_FS_O_WRONLY | UV_FS_O_CREAT);
        break;
    }
    case fs_op::read:
        (void)co_await file.read(buf, 0);
        break;
    case fs_op::write:
        (void)co_await file.write(text, 0);
        break;
    case fs_op::stat:
        (void)co_await fs::stat(dir / "existing");
        break;
    case fs_op::unlink:
        co_await fs::unlink(dir / "existing");
        break;
    case fs_op::rename:
        co_await fs::rename(dir / "existing", dir / "renamed");
        break;
    case fs_op::mkdir:
        co_await fs::mkdir(dir / "made");
        break;
    case fs_op::rmdir:
        co_await fs::rmdir(dir / "dir");
        break;
    case fs_op::scandir:
        (void)co_await fs::scandir(dir.str());
        break;
    }
    co_await yield(); // raises if the cancellation came after the request completed
}

task<void> cancel_then_fs_op(task_handle<void>& self, fs_op op, const temp_dir& dir, fs::file& file,
                             bool& armed) {
    self.cancel("before start");
    co_await run_fs_op(op, dir, file, armed);
}

/// Closes `file`; `armed` is set in the step that issues the request.
task<void> close_file(fs::file& file, bool& armed) {
    armed = true;
    co_await file.close();
}

TEST_SUITE("fs") {
    TEST_CASE("fs_every_operation_cancelled_before_start_makes_no_request") {
        temp_dir dir;
        loop_fixture f;
        fs::file file = f.run(prepare_fs_ops(dir));
        for (const fs_op op : every_fs_op) {
            CAPTURE(static_cast<int>(op));
            bool armed = false;
            task_handle<void> h;
            h = f.rt->spawn(cancel_then_fs_op(h, op, dir, file, armed));
            f.run_until([&] { return h.done(); });
            check_cancelled(h);
            CHECK(armed);
            CHECK(f.loop()->active_reqs.count == 0); // no request was made
        }
        f.run(check_no_fs_op_ran(dir));
        f.run([](fs::file& x) -> task<void> { co_await x.close(); }(file));
    }

    TEST_CASE("fs_every_operation_cancelled_twice_while_queued_is_taken_back_once") {
        temp_dir dir;
        loop_fixture f;
        fs::file file = f.run(prepare_fs_ops(dir));
        pool_gate gate;
        auto b1 = f.rt->spawn(gate.block(1));
        auto b2 = f.rt->spawn(gate.block(2));
        f.run(gate.wait_running(pool_size));
        std::array<bool, every_fs_op.size()> armed{};
        std::vector<task_handle<void>> ops;
        for (std::size_t i = 0; i < every_fs_op.size(); ++i) {
            ops.push_back(f.rt->spawn(run_fs_op(every_fs_op[i], dir, file, armed[i])));
        }
        f.run_until([&] { return std::ranges::all_of(armed, [](bool a) { return a; }); });
        for (task_handle<void>& h : ops) {
            CHECK(h.cancel("queued"));
            CHECK_FALSE(h.cancel("twice")); // one abort, one delivery
        }
        f.run_until([&] { return std::ranges::all_of(ops, [](auto& h) { return h.done(); }); });
        for (task_handle<void>& h : ops) {
            check_cancelled(h);
        }
        CHECK(gate.running() == pool_size); // taken back while the pool was still held
        gate.open();
        f.run_until([&] { return b1.done() && b2.done(); });
        f.run(check_no_fs_op_ran(dir)); // none of them ever ran
        f.run([](fs::file& x) -> task<void> { co_await x.close(); }(file));
    }

    TEST_CASE("fs_primitives_complete") {
        const int fds_before = fds_baseline();
        temp_dir dir;
        {
            loop_fixture f;
            CHECK(f.run(round_trip(dir)) == "hello, requests|HELLO, requests");
        }
        CHECK(open_fds() == fds_before);
    }

    TEST_CASE("fs_read_fills_the_callers_span_without_allocating_its_size") {
        temp_dir dir;
        loop_fixture f;
        f.run(read_into_a_large_span(dir));
    }

    TEST_CASE("fs_failures_raise_system_error_with_the_uv_code") {
        temp_dir dir;
        loop_fixture f;
        auto missing = f.rt->spawn(open_path(dir / "missing"));
        auto empty = f.rt->spawn(open_path(""));
        auto nostat = f.rt->spawn(stat_path(dir / "missing"));
        f.run_until([&] { return missing.done() && empty.done() && nostat.done(); });
        check_uv_error(missing, UV_ENOENT);
        check_uv_error(empty, UV_ENOENT);
        check_uv_error(nostat, UV_ENOENT);
        CHECK_THROWS_AS((void)fs::open(std::string("a\0b", 3), 0), std::invalid_argument);
        CHECK_THROWS_AS(f.run(io_on_closed_file()), invalid_state);
    }

    TEST_CASE("fs_cancelled_before_start_makes_no_request") {
        temp_dir dir;
        loop_fixture f;
        task_handle<void> h;
        h = f.rt->spawn(create_file_cancelled(h, dir / "never"));
        f.run_until([&] { return h.done(); });
        check_cancelled(h);
        CHECK_FALSE(exists(dir / "never"));
    }

    TEST_CASE("fs_cancelled_while_queued_is_taken_back") {
        temp_dir dir;
        loop_fixture f;
        pool_gate gate;
        pool_gate::blockers held = gate.occupy(f);
        bool armed = false;
        bool resumed = false;
        auto h = f.rt->spawn(create_file(dir / "queued", armed, resumed));
        f.run_until([&] { return armed; });
        CHECK(h.cancel("queued"));
        CHECK_FALSE(h.cancel("twice"));
        f.run_until([&] { return h.done(); });
        check_cancelled(h);
        CHECK_FALSE(resumed);
        gate.open();
        f.run_until([&] { return held.first.done() && held.second.done(); });
        CHECK_FALSE(exists(dir / "queued")); // the open never ran
    }

    TEST_CASE("fs_cancelled_while_running_delivers_the_file_and_closes_it_on_unwind") {
        const int fds_before = fds_baseline();
        temp_dir dir;
        fifo pipe(dir);
        int fd_seen = -1;
        {
            loop_fixture f;
            auto h = f.rt->spawn(open_then_checkpoint(pipe.path(), fd_seen));
            f.run(fifo::wait_blocked());
            CHECK(h.cancel("running"));
            CHECK_FALSE(h.cancel("twice"));
            pipe.release();
            f.run_until([&] { return h.done(); });
            check_cancelled(h);
        }
        CHECK(fd_seen >= 0); // completion wins: the task got the file ...
        pipe.close_writer();
        CHECK(open_fds() == fds_before); // ... and closed it while unwinding
    }

    TEST_CASE("fs_cancelled_after_completion_before_resumption_delivers_the_result") {
        temp_dir dir;
        loop_fixture f;
        bool armed = false;
        bool resumed = false;
        bool resumed_at_cancel = true;
        task_handle<void> h;
        after_completion hook(f.loop(), armed, [&] {
            resumed_at_cancel = resumed;
            h.cancel("after completion");
        });
        h = f.rt->spawn(create_file(dir / "created", armed, resumed));
        f.run_until([&] { return h.done(); });
        CHECK(hook.fired());
        CHECK_FALSE(resumed_at_cancel);
        CHECK(resumed); // the open's result reached the task
        check_cancelled(h);
        CHECK(exists(dir / "created"));
    }

    TEST_CASE("fs_close_cancelled_twice_while_queued_still_releases_the_descriptor") {
        // Taken back from the queue, the close never ran on the pool: the runtime closes the
        // descriptor itself (a file is never left open by a cancelled close).
        const int fds_before = fds_baseline();
        temp_dir dir;
        {
            loop_fixture f;
            f.run(fs::write_file(dir / "c", "x"));
            fs::file file = f.run([](std::string path) -> task<fs::file> {
                co_return co_await fs::open(std::move(path), UV_FS_O_RDONLY);
            }(dir / "c"));
            const int fd = file.fd();
            pool_gate gate;
            auto b1 = f.rt->spawn(gate.block(1));
            auto b2 = f.rt->spawn(gate.block(2));
            f.run(gate.wait_running(pool_size));
            bool armed = false;
            task_handle<void> h = f.rt->spawn(close_file(file, armed));
            f.run_until([&] { return armed; });
            CHECK(h.cancel("queued"));
            CHECK_FALSE(h.cancel("twice"));
            f.run_until([&] { return h.done(); });
            check_cancelled(h);
            CHECK(gate.running() == pool_size); // taken back while the pool was still held
            CHECK(::fcntl(fd, F_GETFD) == -1);  // closed all the same
            CHECK_FALSE(file.is_open());
            gate.open();
            f.run_until([&] { return b1.done() && b2.done(); });
        }
        CHECK(open_fds() == fds_before);
    }

    TEST_CASE("fs_close_cancelled_still_releases_the_descriptor") {
        const int fds_before = fds_baseline();
        temp_dir dir;
        const std::string path = dir / "c";
        {
            loop_fixture f;
            f.run(fs::write_file(path, "x"));
            int fd = -1;
            task_handle<void> h;
            h = f.rt->spawn(close_cancelled(h, path, fd));
            f.run_until([&] { return h.done(); });
            check_cancelled(h);
            CHECK(fd >= 0);
        }
        CHECK(open_fds() == fds_before);
    }

    TEST_CASE("fs_open_running_at_shutdown_is_waited_for_and_its_fd_closed") {
        // SEMANTICS 15.5: past the grace period, shutdown still waits for the running open
        // before it destroys any frame; the task gets the file (D-2) and closes it unwinding.
        const int fds_before = fds_baseline();
        temp_dir dir;
        fifo pipe(dir);
        int fd_seen = -1;
        std::atomic<bool> shutting_down{false};
        {
            runtime_options o = loop_fixture::virtual_clock();
            o.shutdown_grace = std::chrono::milliseconds(0);
            loop_fixture f(o);
            auto h = f.rt->spawn(open_then_checkpoint(pipe.path(), fd_seen));
            f.run(fifo::wait_blocked());
            std::thread releaser([&] {
                while (!shutting_down.load()) {
                    std::this_thread::yield();
                }
                pipe.release(); // only once the shutdown has begun
            });
            shutting_down.store(true);
            f.rt->shutdown();
            releaser.join();
            check_cancelled(h);
            f.reported.clear();
        }
        CHECK(fd_seen >= 0);
        pipe.close_writer();
        CHECK(open_fds() == fds_before);
    }
}

} // namespace
} // namespace uvasync::test
