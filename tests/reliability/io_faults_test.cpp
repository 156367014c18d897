// SPDX-License-Identifier: MIT
// Fault injection in the I/O layer: descriptors run out (EMFILE) on accept and on connect, the
// peer resets a connection while a large write is pending, a process spawn fails (alone and
// inside a task group whose other children run), and fs and DNS requests are cancelled while
// the threadpool is saturated (every thread blocked). Each must give a clear
// std::system_error, leave the runtime usable, and leak nothing (the fixture checks frames,
// handles and uv_loop_close).
#include <chrono>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

#include "../io/request_support.hpp"
#include "loop_fixture.hpp"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using uvasync::socket_address;
using uvasync::task;
using uvasync::tcp_listener;
using uvasync::tcp_stream;
using uvasync::test::loop_fixture;

/// Lowers RLIMIT_NOFILE's soft limit for its lifetime.
class fd_limit {
public:
    explicit fd_limit(rlim_t soft) {
        REQUIRE(getrlimit(RLIMIT_NOFILE, &saved_) == 0);
        rlimit lower = saved_;
        lower.rlim_cur = soft;
        REQUIRE(setrlimit(RLIMIT_NOFILE, &lower) == 0);
    }

    fd_limit(const fd_limit&) = delete;
    fd_limit& operator=(const fd_limit&) = delete;
    fd_limit(fd_limit&&) = delete;
    fd_limit& operator=(fd_limit&&) = delete;

    ~fd_limit() { setrlimit(RLIMIT_NOFILE, &saved_); }

private:
    rlimit saved_{};
};

/// Uses up every free descriptor (with sockets) on `fill()`; `release(n)` frees n of them, the
/// destructor all.
class fd_hog {
public:
    void fill() {
        for (;;) {
            const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
            if (fd < 0) {
                break;
            }
            fds_.push_back(fd);
        }
    }

    void release(std::size_t n) {
        while (n-- > 0 && !fds_.empty()) {
            ::close(fds_.back());
            fds_.pop_back();
        }
    }

    fd_hog() = default;
    fd_hog(const fd_hog&) = delete;
    fd_hog& operator=(const fd_hog&) = delete;
    fd_hog(fd_hog&&) = delete;
    fd_hog& operator=(fd_hog&&) = delete;

    ~fd_hog() { release(fds_.size()); }

private:
    std::vector<int> fds_;
};

task<> connect_without_descriptors(fd_hog& hog, socket_address to) {
    hog.fill();
    try {
        tcp_stream s = co_await tcp_stream::connect(to);
        FAIL("connected without a free descriptor");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == UV_EMFILE);
    }
    hog.release(4);
    tcp_stream s = co_await tcp_stream::connect(to); // usable again
    co_await s.close();
}

task<> accept_without_descriptors(tcp_listener& l, fd_hog& hog) {
    // A client connects (its socket made while there were descriptors); then the server side
    // has none left for the accepted socket.
    const int client = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(client >= 0);
    hog.fill();
    const socket_address to = l.local_address();
    REQUIRE(::connect(client, to.data(), sizeof(sockaddr_in)) == 0);
    // libuv then either reports UV_EMFILE to the accept, or (its reserve-descriptor trick)
    // accepts and closes the connection itself and keeps listening: the accept waits on.
    bool emfile = false;
    try {
        auto accepted = co_await uvasync::move_on_after(std::chrono::milliseconds(200), l.accept());
        if (accepted) {
            co_await accepted->close();
        }
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == UV_EMFILE);
        emfile = true;
    }
    hog.release(8);
    ::close(client);
    // The listener still works.
    auto connecting = tcp_stream::connect(to);
    auto h = uvasync::spawn(std::move(connecting));
    tcp_stream server_side = co_await l.accept();
    tcp_stream client_side = co_await h;
    co_await server_side.close();
    co_await client_side.close();
    MESSAGE("accept saw EMFILE: " << emfile);
}

task<> reset_during_pending_write(tcp_listener& l) {
    auto connecting = tcp_stream::connect(l.local_address());
    auto h = uvasync::spawn(std::move(connecting));
    tcp_stream server_side = co_await l.accept();
    tcp_stream client_side = co_await h;
    // The client resets while the server's 8 MiB write is pending (nobody reads it).
    auto resetter = [](tcp_stream& c) -> task<> {
        co_await uvasync::sleep(std::chrono::milliseconds(20));
        uv_os_fd_t fd = -1;
        if (uv_fileno(reinterpret_cast<uv_handle_t*>(c.native_handle()), &fd) != 0) {
            throw std::logic_error("no descriptor");
        }
        linger lg{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        co_await c.close();
    };
    auto r = uvasync::spawn(resetter(client_side));
    try {
        co_await server_side.write(std::string(8U << 20U, 'z'));
        FAIL("an 8 MiB write completed against a reset peer");
    } catch (const std::system_error& e) {
        CHECK((e.code().value() == UV_ECONNRESET || e.code().value() == UV_EPIPE));
    }
    co_await r;
    co_await server_side.close();
}

} // namespace

// The sanitizers' own memory-readability probe needs a pipe (sanitizer_common's
// IsAccessibleMemoryRange): with every descriptor taken, UBSan's vptr check cannot read the
// object and reports "object has invalid vptr" for a live stream_handle_state (clang 14, at
// tcp.cpp's uv_tcp_init). No workaround holds (docs/reliability.md, "Open"): a vptr_check
// suppression matches the dynamic type, read through the same probe; two descriptors left for
// the probe let the connect succeed; the probe runs on any miss of a 128-slot cache. The EMFILE
// cases therefore run only in builds without a sanitizer.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool under_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer) ||             \
    __has_feature(thread_sanitizer)
constexpr bool under_sanitizer = true;
#else
constexpr bool under_sanitizer = false;
#endif
#else
constexpr bool under_sanitizer = false;
#endif

/// Runs the task `scenario(listener, hog)` on the real clock: a listener on 127.0.0.1 is bound
/// first, then the descriptor limit is lowered to 256, for the scenario to use up with `hog`.
template <class Scenario>
void run_out_of_descriptors(Scenario scenario) {
    loop_fixture f(loop_fixture::real_clock());
    tcp_listener l = tcp_listener::bind(socket_address::parse("127.0.0.1", 0));
    fd_limit limit(256);
    fd_hog hog;
    f.run(scenario(l, hog));
}

TEST_CASE("emfile_on_connect_is_a_clear_error_and_the_runtime_recovers" *
          doctest::skip(under_sanitizer)) {
    run_out_of_descriptors([](tcp_listener& l, fd_hog& hog) {
        return connect_without_descriptors(hog, l.local_address());
    });
}

TEST_CASE("emfile_on_accept_is_a_clear_error_and_the_listener_recovers" *
          doctest::skip(under_sanitizer)) {
    run_out_of_descriptors(accept_without_descriptors);
}

TEST_CASE("a_peer_reset_during_a_pending_write_fails_it_cleanly") {
    loop_fixture f(loop_fixture::real_clock());
    tcp_listener l = tcp_listener::bind(socket_address::parse("127.0.0.1", 0));
    f.run(reset_during_pending_write(l));
}

namespace {

/// A sibling in the group: sleeps until cancelled, counts its cleanup.
task<> sibling(int& cleanups) {
    class cleanup {
    public:
        explicit cleanup(int& n)
            : n_(n) {}

        cleanup(const cleanup&) = delete;
        cleanup& operator=(const cleanup&) = delete;
        cleanup(cleanup&&) = delete;
        cleanup& operator=(cleanup&&) = delete;

        ~cleanup() { ++n_; }

    private:
        int& n_;
    } guard(cleanups);

    co_await uvasync::sleep(std::chrono::hours(1));
}

task<> spawn_missing_program() {
    co_await uvasync::sleep(std::chrono::milliseconds(5)); // the siblings are running
    uvasync::process_options o;
    o.file = "/no/such/program";
    uvasync::process p = uvasync::process::spawn(std::move(o));
    co_await p.wait();
}

int open_process_handles(uv_loop_t* loop) {
    int n = 0;
    uv_walk(
        loop,
        [](uv_handle_t* h, void* arg) {
            if (h->type == UV_PROCESS) {
                ++*static_cast<int*>(arg);
            }
        },
        &n);
    return n;
}

} // namespace

TEST_CASE("a_failing_process_spawn_is_a_clear_error_and_leaks_nothing") {
    const int fds_before = uvasync::test::fds_baseline();
    {
        loop_fixture f;
        for (int round = 0; round < 2; ++round) {
            try {
                f.run(spawn_missing_program());
                FAIL("spawned a missing program");
            } catch (const std::system_error& e) {
                CHECK(e.code().value() == UV_ENOENT);
            }
            f.run_all(); // the failed handle's close callback
            CHECK(open_process_handles(f.loop()) == 0);
        }
    }
    CHECK(uvasync::test::open_fds() == fds_before);
}

TEST_CASE("a_failing_process_spawn_in_a_task_group_cancels_the_running_siblings") {
    const int fds_before = uvasync::test::fds_baseline();
    {
        loop_fixture f;
        int cleanups = 0;
        auto body = [&cleanups](uvasync::task_group& g) -> task<> {
            g.spawn(sibling(cleanups));
            g.spawn(sibling(cleanups));
            g.spawn(spawn_missing_program());
            co_await uvasync::sleep(std::chrono::hours(1)); // the body is cancelled too
        };
        auto group = [&body]() -> task<> { co_await uvasync::task_group::run(body); };
        try {
            f.run(group());
            FAIL("the group ended without an error");
        } catch (const uvasync::exception_group& g) {
            REQUIRE(g.size() == 1);
            try {
                std::rethrow_exception(g.exceptions().front());
            } catch (const std::system_error& e) {
                CHECK(e.code().value() == UV_ENOENT);
                CHECK(std::string(e.what()).find("/no/such/program") != std::string::npos);
            }
        }
        CHECK(cleanups == 2); // each sibling cleaned up once
        f.run_all();
        CHECK(open_process_handles(f.loop()) == 0);
    }
    CHECK(uvasync::test::open_fds() == fds_before);
}

namespace {

/// A request of each kind on the threadpool: `queued` counts the ones issued; each ends
/// cancelled (nothing after the await runs) or, if a thread took it, delivers its result.
task<> stat_request(int& queued, int& delivered) {
    ++queued;
    (void)co_await uvasync::fs::stat("/");
    ++delivered;
}

task<> resolve_request(int& queued, int& delivered) {
    ++queued;
    (void)co_await uvasync::resolve("localhost", "80");
    ++delivered;
}

task<> work_request(int& queued, int& delivered) {
    ++queued;
    (void)co_await uvasync::to_thread([] { return 1; });
    ++delivered;
}

} // namespace

TEST_CASE("fs_dns_and_work_cancelled_on_a_saturated_threadpool_complete_and_leak_nothing") {
    const int fds_before = uvasync::test::fds_baseline();
    {
        loop_fixture f;
        uvasync::test::pool_gate gate;
        std::vector<uvasync::task_handle<int>> blockers;
        blockers.reserve(uvasync::test::pool_size);
        for (int i = 0; i < uvasync::test::pool_size; ++i) {
            blockers.push_back(f.rt->spawn(gate.block(i)));
        }
        f.run(gate.wait_running(uvasync::test::pool_size)); // every thread is blocked
        int queued = 0;
        int delivered = 0;
        std::vector<uvasync::task_handle<>> requests;
        requests.reserve(24);
        for (int i = 0; i < 8; ++i) {
            requests.push_back(f.rt->spawn(stat_request(queued, delivered)));
            requests.push_back(f.rt->spawn(resolve_request(queued, delivered)));
            requests.push_back(f.rt->spawn(work_request(queued, delivered)));
        }
        f.run_until([&] { return queued == 24; }); // all queued behind the blocked threads
        for (auto& h : requests) {
            CHECK(h.cancel("saturated"));
        }
        // The cancellations complete while the pool is still blocked: uv_cancel takes each
        // request back from the queue.
        f.run_until([&] {
            for (auto& h : requests) {
                if (!h.done()) {
                    return false;
                }
            }
            return true;
        });
        CHECK(gate.running() == uvasync::test::pool_size);
        for (auto& h : requests) {
            CHECK(h.cancelled());
        }
        CHECK(delivered == 0);
        gate.open();
        f.run_until([&] {
            for (auto& b : blockers) {
                if (!b.done()) {
                    return false;
                }
            }
            return true;
        });
    } // the fixture: no frame, no handle, uv_loop_close == 0
    CHECK(uvasync::test::open_fds() == fds_before);
}
