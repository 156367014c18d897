// SPDX-License-Identifier: MIT
// The allocation budget (decision 0021; bench/NOTES.md): one allocation per spawned task (its
// frame, which also holds the task's state), none per sleep, per timeout scope around a leaf
// awaitable, or per cancellation registration. Every global allocation of this test process is
// counted.
#include <chrono>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

#include "alloc_counter.hpp"
#include "loop_fixture.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::allocations;
using uvasync::test::loop_fixture;

task<> sleeper() {
    co_await sleep(1ms);
}

task<int> answer() {
    co_await sleep(1ms);
    co_return 42;
}

task<> parked() {
    co_await sleep(1h);
}

TEST_SUITE("allocation budget") {
    TEST_CASE("one allocation per spawned task: its frame holds the task's state") {
        loop_fixture f;
        f.run([]() -> task<> {
            std::vector<task_handle<>> handles;
            handles.reserve(8);
            for (int i = 0; i < 8; ++i) { // the deadline heap grows to its room for 8 sleeps
                handles.push_back(spawn(sleeper()));
            }
            for (auto& h : handles) {
                co_await h;
            }
            handles.clear();
            const std::size_t before = allocations;
            for (int i = 0; i < 8; ++i) {
                handles.push_back(spawn(sleeper()));
            }
            CHECK(allocations - before == 8);
            for (auto& h : handles) {
                co_await h;
            }
            CHECK(allocations - before == 8); // running and finishing allocate nothing
        }());
    }

    TEST_CASE("a spawned task's value stays readable through its handle after it finished") {
        loop_fixture f;
        f.run([]() -> task<> {
            co_await sleep(1ms);
            const std::size_t before = allocations;
            task_handle<int> h = spawn(answer());
            CHECK(co_await h == 42);
            CHECK(allocations - before == 1);
            CHECK(h.result() == 42); // the frame that holds the value lives while the handle does
        }());
    }

    TEST_CASE("a task cancelled before its first step costs its one allocation and never runs") {
        loop_fixture f;
        f.run([]() -> task<> {
            co_await sleep(1ms);
            bool ran = false;
            const std::size_t before = allocations;
            auto body = [](bool& r) -> task<> {
                r = true;
                co_return;
            };
            task_handle<> h = spawn(body(ran));
            h.cancel();
            co_await sleep(1ms);
            CHECK(h.done());
            CHECK(h.cancelled());
            CHECK_FALSE(ran);
            CHECK(allocations - before == 1);
        }());
    }

    TEST_CASE("cancelling a parked task allocates nothing beyond the delivered exception") {
        loop_fixture f;
        f.run([]() -> task<> {
            co_await sleep(1ms);
            std::vector<task_handle<>> handles;
            handles.reserve(4);
            for (int i = 0; i < 4; ++i) {
                handles.push_back(spawn(parked()));
            }
            co_await sleep(1ms); // all of them park
            const std::size_t before = allocations;
            for (auto& h : handles) {
                h.cancel();
            }
            for (auto& h : handles) {
                while (!h.done()) {
                    co_await sleep(1ms);
                }
                CHECK(h.cancelled());
            }
            // Per task at most the delivered cancelled_error (the exception object and its
            // exception_ptr), never a frame.
            CHECK(allocations - before <= 4 * 2);
        }());
    }

    TEST_CASE("no allocation per sleep, per timeout scope around a sleep, per registration") {
        loop_fixture f;
        f.run([]() -> task<> {
            co_await sleep(1ms);
            co_await timeout(10s, sleep(1ms));
            cancel_source source;
            const cancel_token token = source.token();
            const std::size_t before = allocations;
            for (int i = 0; i < 4; ++i) {
                co_await sleep(1ms);
                co_await timeout(10s, sleep(1ms));
                (void)co_await move_on_after(10s, sleep(1ms));
                auto registration = token.on_cancel([]() noexcept {});
            }
            CHECK(allocations - before == 0);
        }());
    }

    TEST_CASE("no allocation per in-place read_until with a timeout and a borrowed write") {
        loop_fixture f(loop_fixture::real_clock());
        f.run([]() -> task<> {
            tcp_listener l = tcp_listener::bind(socket_address::parse("127.0.0.1", 0));
            task_handle<tcp_stream> connecting = spawn(tcp_stream::connect(l.local_address()));
            tcp_stream server = co_await l.accept();
            tcp_stream client = co_await connecting;
            constexpr std::string_view request = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
            std::string head;
            head.reserve(256);
            std::size_t before = 0;
            for (int i = 0; i < 40; ++i) {
                if (i == 20) { // warmed up: buffers and the deadline heap have their room
                    before = allocations;
                }
                co_await client.write(std::span<const char>(request.data(), request.size()));
                head.clear();
                const std::size_t n =
                    co_await timeout(5s, server.read_until(head, "\r\n\r\n", 8192));
                CHECK(n == request.size());
                CHECK(head == request);
            }
            CHECK(allocations - before == 0);
            co_await client.close();
            co_await server.close();
            co_await l.close();
        }());
    }
}

} // namespace
