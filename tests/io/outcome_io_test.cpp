// SPDX-License-Identifier: MIT
// as_outcome and move_on_after around I/O leaves (SEMANTICS 19.2, 19.4): a read on a
// socketpair and a fs request, counted by unwinds (throw_counter.hpp), never by timing.

#include <array>
#include <chrono>
#include <string>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/fs.hpp>
#include <uvasync/io/pipe.hpp>
#include <uvasync/uvasync.hpp>

#include "stream_support.hpp"
#include "throw_counter.hpp"

#include <sys/socket.h>

using namespace std::chrono_literals;

namespace uvasync::test {
namespace {

task<void> read_outcomes(pipe_stream& a, pipe_stream& b) {
    std::array<char, 16> buf{};
    {
        // Cancelled while parked, by the scope's own deadline.
        const throws_since n;
        auto m = co_await move_on_after(5ms, as_outcome(b.read_some(buf)));
        REQUIRE(m.has_value());
        CHECK(m->cancelled());
        CHECK(n.count() == 0);
    }
    {
        // Cancelled before start: the scope is expired at entry (D-5).
        const throws_since n;
        auto m = co_await move_on_after(0ms, as_outcome(b.read_some(buf)));
        REQUIRE(m.has_value());
        CHECK(m->cancelled());
        CHECK(n.count() == 0);
    }
    {
        // move_on_after around the read itself: no throw when its deadline fires (19.4).
        const throws_since n;
        auto m = co_await move_on_after(5ms, b.read_some(buf));
        CHECK_FALSE(m.has_value());
        CHECK(n.count() == 0);
    }
    {
        // timeout around the read: exactly one throw, the timeout_error.
        const throws_since n;
        std::size_t seen = 0;
        try {
            co_await timeout(5ms, b.read_some(buf));
        } catch (const timeout_error&) {
            seen = n.count();
        }
        CHECK(seen == 1);
    }
    co_await a.write("hi");
    auto v = co_await as_outcome(b.read_some(buf));
    REQUIRE(v.has_value());
    CHECK(v.value() == 2);
    co_await a.close();
    co_await b.close();
}

task<void> fs_outcomes(std::string missing) {
    {
        const throws_since n;
        auto m = co_await move_on_after(0ms, as_outcome(fs::stat(missing)));
        REQUIRE(m.has_value());
        CHECK(m->cancelled());
        CHECK(n.count() == 0);
    }
    auto e = co_await as_outcome(fs::stat(missing));
    CHECK(e.has_error());
    auto ok = co_await as_outcome(fs::stat("."));
    CHECK(ok.has_value());
}

} // namespace

TEST_CASE_FIXTURE(io_fixture, "19.2 19.4 a read on a socketpair: cancelled without a throw") {
    REQUIRE(throw_counter::active());
    int fds[2] = {-1, -1};
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    pipe_stream a = pipe_stream::open(fds[0]);
    pipe_stream b = pipe_stream::open(fds[1]);
    run(read_outcomes(a, b));
}

TEST_CASE_FIXTURE(io_fixture, "19.2 a fs request: cancelled before start without a throw; "
                              "errors and values as outcomes") {
    REQUIRE(throw_counter::active());
    run(fs_outcomes("/nonexistent/uvasync-outcome-test"));
}

} // namespace uvasync::test
