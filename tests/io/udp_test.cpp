// SPDX-License-Identifier: MIT
// udp_socket: datagrams over loopback (docs/io/processes.md).
//
// Loopback delivery is synchronous in the kernel: once a send returned, the datagram is in
// the receiver's socket buffer, so the next poll finds it. Tests that must act between the
// loop's poll and the runtime's resumption use a uv_check_t started after the runtime's own:
// libuv runs check handles newest first.
#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/address.hpp>
#include <uvasync/io/error.hpp>
#include <uvasync/io/udp.hpp>
#include <uvasync/uvasync.hpp>

#include "cancel_log.hpp"
#include "check_hook.hpp"
#include "loop_fixture.hpp"
#include "string_makers.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::cancel_now;
using uvasync::test::check_hook;
using uvasync::test::loop_fixture;

using log_t = std::vector<std::string>;

socket_address loopback() {
    return socket_address::parse("127.0.0.1", 0);
}

/// Non-blocking loop iterations: ready tasks run and park; nothing waits for I/O.
void spin(loop_fixture& f) {
    for (int i = 0; i < 3; ++i) {
        uv_run(f.loop(), UV_RUN_NOWAIT);
    }
}

task<> send_text(udp_socket& s, std::string text, socket_address to) {
    co_await s.send(text, to);
}

struct received {
    std::string text;
    socket_address from;
    bool truncated = false;
};

task<received> receive_text(udp_socket& s, std::size_t capacity) {
    std::vector<char> buf(capacity);
    udp_datagram d = co_await s.receive(buf);
    co_return received{std::string(buf.data(), d.size), d.from, d.truncated};
}

task<> receive_and_log(udp_socket& s, log_t& log) {
    std::array<char, 64> buf{};
    try {
        udp_datagram d = co_await s.receive(buf);
        log.push_back("got " + std::string(buf.data(), d.size));
    } catch (const cancelled_error& e) {
        log.push_back("cancelled (" + std::string(e.message()) + ")");
        throw;
    } catch (const std::system_error& e) {
        log.push_back(uv_error_name(e.code().value()));
    } catch (const invalid_state&) {
        log.push_back("invalid_state");
    }
}

task<> receive_then_checkpoint(udp_socket& s, log_t& log) {
    std::array<char, 64> buf{};
    udp_datagram d = co_await s.receive(buf);
    log.push_back("got " + std::string(buf.data(), d.size));
    co_await yield();
    log.push_back("passed the checkpoint");
}

task<> send_and_log(udp_socket& s, std::string text, socket_address to, log_t& log) {
    try {
        co_await s.send(text, to);
        log.push_back("sent " + text);
    } catch (const cancelled_error& e) {
        log.push_back("cancelled (" + std::string(e.message()) + ")");
        throw;
    } catch (const std::system_error& e) {
        log.push_back(uv_error_name(e.code().value()));
    }
}

task<> self_cancelled_receive(task_handle<>& self, udp_socket& s, log_t& log) {
    CHECK(self.cancel("self"));
    std::array<char, 16> buf{};
    try {
        co_await s.receive(buf);
        log.push_back("received");
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
}

task<> self_cancelled_send(task_handle<>& self, udp_socket& s, socket_address to, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        co_await s.send(std::string_view("never"), to);
        log.push_back("sent");
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
}

task<> close_socket(udp_socket& s) {
    co_await s.close();
}

task<> shielded_receive(udp_socket& s, std::span<char> buf) {
    co_await shielded(s.receive(buf));
}

/// A raw libuv send on `s`. Started right before a library send in the same task, it keeps
/// the socket's send queue busy until the loop's next pending phase, so uv_udp_try_send
/// returns UV_EAGAIN and the library send is queued.
struct raw_send {
    uv_udp_send_t req{};
    std::string text;
    bool done = false;

    void start(udp_socket& s, std::string t, const socket_address& to) {
        text = std::move(t);
        req.data = this;
        uv_buf_t buf = uv_buf_init(text.data(), static_cast<unsigned>(text.size()));
        REQUIRE(uv_udp_send(&req, s.native_handle(), &buf, 1, to.data(), [](uv_udp_send_t* r, int) {
                    static_cast<raw_send*>(r->data)->done = true;
                }) == 0);
    }
};

task<> send_behind_raw(raw_send& raw, udp_socket& s, std::string text, socket_address to,
                       log_t& log) {
    raw.start(s, "first", to);
    // Named first: GCC 12 destroys a by-value argument of a coroutine called inside co_await
    // twice.
    task<> send = send_and_log(s, std::move(text), to, log);
    co_await std::move(send);
}

/// As send_behind_raw, then a cancellation point: a cancellation that came after the send
/// completed raises there.
task<> send_behind_raw_then_checkpoint(raw_send& raw, udp_socket& s, std::string text,
                                       socket_address to, log_t& log) {
    co_await send_behind_raw(raw, s, std::move(text), to, log);
    co_await yield();
    log.push_back("passed the checkpoint");
}

/// The manual clock and two sockets bound on loopback (closed before the fixture's checks).
struct udp_pair_fixture : loop_fixture {
    udp_pair_fixture()
        : loop_fixture(loop_fixture::manual_clock()) {}

    udp_socket a = udp_socket::bind(loopback());
    udp_socket b = udp_socket::bind(loopback());

    /// The raw send's datagram, then the library's: both went out, in order.
    void expect_first_then_second() {
        CHECK(run(receive_text(b, 64)).text == "first");
        CHECK(run(receive_text(b, 64)).text == "second");
    }
};

/// A check handle that cancels `h` once, before the runtime's check drains the run queue.
struct cancel_before_resumption {
    uv_check_t check{};
    task_handle<>* target;

    cancel_before_resumption(uv_loop_t* loop, task_handle<>& h)
        : target(&h) {
        uv_check_init(loop, &check);
        check.data = this;
        uv_check_start(&check, [](uv_check_t* c) {
            auto* self = static_cast<cancel_before_resumption*>(c->data);
            self->target->cancel("late");
            uv_check_stop(c);
        });
    }

    /// Closes the handle and lets its close callback run.
    void close(uv_loop_t* loop) {
        uv_close(reinterpret_cast<uv_handle_t*>(&check), nullptr);
        uv_run(loop, UV_RUN_NOWAIT);
    }
};

} // namespace

TEST_SUITE("udp") {

    TEST_CASE_FIXTURE(loop_fixture, "udp_send_and_receive_over_loopback") {
        udp_socket a = udp_socket::bind(loopback());
        udp_socket b = udp_socket::bind(loopback());
        CHECK(a.is_open());
        CHECK(a.local_address().port() != 0);
        CHECK(a.local_address().ip() == "127.0.0.1");
        for (int round = 0; round < 2; ++round) {
            run(send_text(a, "hello " + std::to_string(round), b.local_address()));
            received r = run(receive_text(b, 64));
            CHECK(r.text == "hello " + std::to_string(round));
            CHECK(r.from == a.local_address());
            CHECK_FALSE(r.truncated);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "udp_datagrams_wait_in_the_kernel_until_received") {
        udp_socket a = udp_socket::bind(loopback());
        udp_socket b = udp_socket::bind(loopback());
        for (const char* text : {"one", "two", "three"}) {
            run(send_text(a, text, b.local_address()));
        }
        CHECK(run(receive_text(b, 64)).text == "one");
        CHECK(run(receive_text(b, 64)).text == "two");
        CHECK(run(receive_text(b, 64)).text == "three");
    }

    TEST_CASE_FIXTURE(loop_fixture, "udp_truncated_and_empty_datagrams") {
        udp_socket a = udp_socket::bind(loopback());
        udp_socket b = udp_socket::bind(loopback());
        run(send_text(a, std::string(100, 'z'), b.local_address()));
        received r = run(receive_text(b, 10));
        CHECK(r.text == std::string(10, 'z'));
        CHECK(r.truncated);
        run(send_text(a, "", b.local_address()));
        received e = run(receive_text(b, 10));
        CHECK(e.text.empty());
        CHECK_FALSE(e.truncated);
        CHECK(e.from == a.local_address());
    }

    TEST_CASE_FIXTURE(loop_fixture, "udp_bind_fails_with_the_address_and_leaks_nothing") {
        udp_socket a = udp_socket::bind(loopback());
        const socket_address taken = a.local_address();
        try {
            udp_socket b = udp_socket::bind(taken);
            FAIL("bound twice");
        } catch (const std::system_error& e) {
            CHECK((e.code() == uv_error_code(UV_EADDRINUSE)));
            CHECK(std::string(e.what()).find(taken.to_string()) != std::string::npos);
        }
        CHECK_THROWS_AS(udp_socket::bind(socket_address::parse("192.0.2.1", 0)), std::system_error);
        run_all(); // the failed sockets' close callbacks
    }

    TEST_CASE("udp_bind_needs_a_runtime") {
        CHECK_THROWS_AS(udp_socket::bind(loopback()), invalid_state);
    }

    TEST_CASE_FIXTURE(loop_fixture,
                      "udp_operations_fail_to_start_on_closed_sockets_and_bad_input") {
        udp_socket a = udp_socket::bind(loopback());
        log_t log;
        run(send_and_log(a, "x", socket_address(), log)); // AF_UNSPEC
        CHECK(log == log_t{"EINVAL"});
        std::array<char, 0> none{};
        CHECK_THROWS_AS((void)a.receive(none), std::invalid_argument);

        const socket_address to = a.local_address();
        auto c = rt->spawn(close_socket(a));
        run_until([&] { return c.done(); });
        CHECK_FALSE(a.is_open());
        run(send_and_log(a, "x", to, log));
        run(receive_and_log(a, log));
        CHECK(log == log_t{"EINVAL", "EBADF", "EBADF"});
        CHECK_THROWS_AS((void)a.local_address(), std::system_error);
        CHECK(a.native_handle() == nullptr);

        udp_socket never_opened;
        run(receive_and_log(never_opened, log));
        CHECK(log.back() == "EBADF");
    }

    TEST_CASE_FIXTURE(loop_fixture, "udp_second_receiver_is_invalid_state") {
        udp_socket a = udp_socket::bind(loopback());
        udp_socket b = udp_socket::bind(loopback());
        log_t log;
        auto r1 = rt->spawn(receive_and_log(b, log));
        auto r2 = rt->spawn(receive_and_log(b, log));
        auto s = rt->spawn(send_text(a, "hi", b.local_address()));
        run_until([&] { return r1.done() && r2.done() && s.done(); });
        CHECK(log == log_t{"invalid_state", "got hi"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "udp_send_queues_an_owned_copy_when_the_socket_is_busy") {
        udp_socket a = udp_socket::bind(loopback());
        udp_socket b = udp_socket::bind(loopback());
        for (int round = 0; round < 2; ++round) {
            raw_send first;
            log_t log;
            std::string text = "second";
            auto s = rt->spawn(send_behind_raw(first, a, text, b.local_address(), log));
            text.assign("clobbered"); // the task has its own string; the request its own copy
            run_until([&] { return s.done() && first.done; });
            CHECK(log == log_t{"sent second"});
            CHECK(run(receive_text(b, 64)).text == "first");
            CHECK(run(receive_text(b, 64)).text == "second");
        }
    }

    TEST_CASE_FIXTURE(udp_pair_fixture,
                      "udp_send_cancelled_while_queued_waits_for_and_returns_the_real_result") {
        // The send cannot be taken back and may still go out, so the awaiter stays parked
        // until libuv's callback and reports the real result (D-2, SEMANTICS 14.5).
        for (int round = 0; round < 2; ++round) {
            raw_send first;
            log_t log;
            task_handle<> s =
                rt->spawn(send_behind_raw(first, a, "second", b.local_address(), log));
            auto c = rt->spawn(cancel_now(s, log, round + 1)); // same drain: still queued
            run_until([&] { return s.done() && c.done() && first.done; });
            CHECK(!s.cancelled()); // no cancellation point after the send in this task
            if (round == 0) {
                CHECK(log == log_t{"cancel true", "sent second"});
            } else {
                CHECK(log == log_t{"cancel true", "cancel false", "sent second"});
            }
            expect_first_then_second(); // the send went out with the request's own copy
        }
    }

    TEST_CASE_FIXTURE(udp_pair_fixture,
                      "udp_send_completed_then_cancelled_before_resumption_returns_normally") {
        // The queued send's callback ran (libuv emptied the socket's send queue before it
        // called the callbacks); the cancellation comes in the same iteration, before the
        // task resumes: the send returns (completion wins, D-2) and the next cancellation
        // point raises.
        for (int round = 0; round < 2; ++round) {
            raw_send first;
            log_t log;
            task_handle<> s = rt->spawn(
                send_behind_raw_then_checkpoint(first, a, "second", b.local_address(), log));
            check_hook hook(loop(), [&] {
                return first.done && uv_udp_get_send_queue_count(a.native_handle()) == 0 &&
                       s.cancel("late");
            });
            run_until([&] { return s.done(); });
            CHECK(hook.fired());
            CHECK(s.cancelled());
            CHECK(log == log_t{"sent second"}); // delivered; the checkpoint raised
            expect_first_then_second();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "udp_close_completes_a_queued_send_with_ECANCELED") {
        udp_socket a = udp_socket::bind(loopback());
        udp_socket b = udp_socket::bind(loopback());
        raw_send first;
        log_t log;
        auto s = rt->spawn(send_behind_raw(first, a, "second", b.local_address(), log));
        auto c = rt->spawn(close_socket(a));
        run_until([&] { return s.done() && c.done() && first.done; });
        CHECK(log == log_t{"ECANCELED"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "udp_close_wakes_a_receiver_with_ECANCELED") {
        udp_socket b = udp_socket::bind(loopback());
        log_t log;
        auto r = rt->spawn(receive_and_log(b, log));
        auto c = rt->spawn(close_socket(b));
        run_until([&] { return r.done() && c.done(); });
        CHECK(log == log_t{"ECANCELED"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "udp_cancelled_before_start_sends_and_receives_nothing") {
        udp_socket a = udp_socket::bind(loopback());
        udp_socket b = udp_socket::bind(loopback());
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> r;
            r = rt->spawn(self_cancelled_receive(r, b, log));
            task_handle<> s;
            s = rt->spawn(self_cancelled_send(s, a, b.local_address(), log));
            run_until([&] { return r.done() && s.done(); });
            CHECK(log == log_t{"raised self", "raised self"});
        }
        run(send_text(a, "only", b.local_address()));
        CHECK(run(receive_text(b, 64)).text == "only"); // "never" was never sent
    }

    TEST_CASE_FIXTURE(udp_pair_fixture, "udp_receive_cancelled_while_pending_stops_reading") {
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> r = rt->spawn(receive_and_log(b, log));
            spin(*this);                                       // parked, reading
            auto c = rt->spawn(cancel_now(r, log, round + 1)); // round 1: twice
            run_until([&] { return r.done() && c.done(); });
            CHECK(r.cancelled());
            if (round == 0) {
                CHECK(log == log_t{"cancel true", "cancelled (first)"});
            } else {
                CHECK(log == log_t{"cancel true", "cancel false", "cancelled (first)"});
            }
            // Nobody reads now: a datagram waits for the next receive.
            run(send_text(a, "later", b.local_address()));
            spin(*this);
            CHECK(run(receive_text(b, 64)).text == "later");
        }
    }

    TEST_CASE_FIXTURE(
        udp_pair_fixture,
        "udp_receive_cancelled_after_delivery_before_resumption_returns_the_datagram") {
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> r = rt->spawn(receive_then_checkpoint(b, log));
            spin(*this); // parked, reading
            std::string late = "late";
            uv_buf_t buf = uv_buf_init(late.data(), 4);
            REQUIRE(uv_udp_try_send(a.native_handle(), &buf, 1, b.local_address().data()) == 4);
            // The next poll records the datagram; the canceller's check runs before the
            // runtime's check resumes the receiver.
            cancel_before_resumption canceller(loop(), r);
            run_until([&] { return r.done(); });
            canceller.close(loop());
            CHECK(r.cancelled());
            CHECK(log == log_t{"got late"}); // completion won; the checkpoint raised
        }
    }

    TEST_CASE("udp_receive_frame_destroyed_while_parked_stops_reading") {
        runtime_options o = loop_fixture::manual_clock();
        o.shutdown_grace = 0ms;
        loop_fixture f(o);
        std::optional<udp_socket> b;
        b.emplace(udp_socket::bind(loopback()));
        std::array<char, 16> buf{};
        auto r = f.rt->spawn(shielded_receive(*b, buf));
        spin(f);
        f.rt->shutdown(); // the grace runs out; the parked frames are destroyed
        CHECK(f.reported.size() == 1);
        f.reported.clear();
        CHECK(r.done());
        b.reset();
        f.run_all();
    }

} // TEST_SUITE

namespace {

/// Awaiters made before their socket goes away (review M4): awaiting them must fail with
/// UV_EBADF (a closed socket), not touch freed memory.
task<> use_after_the_socket_is_gone(bool close_it, int& ebadf) {
    std::optional<udp_socket> s(std::in_place, udp_socket::bind(loopback()));
    const socket_address to = s->local_address();
    std::array<char, 16> buf{};
    const std::string text = "x";
    auto rx = s->receive(buf);
    auto tx = s->send(text, to);
    if (close_it) {
        co_await s->close();
    } else {
        s.reset();
    }
    try {
        co_await rx;
    } catch (const std::system_error& e) {
        ebadf += e.code() == uv_error_code(UV_EBADF) ? 1 : 0;
    }
    try {
        co_await tx;
    } catch (const std::system_error& e) {
        ebadf += e.code() == uv_error_code(UV_EBADF) ? 1 : 0;
    }
}

} // namespace

TEST_SUITE("udp") {
    TEST_CASE_FIXTURE(loop_fixture, "udp_awaiters_outliving_their_socket_fail_with_ebadf") {
        for (const bool close_it : {false, true}) {
            int ebadf = 0;
            run(use_after_the_socket_is_gone(close_it, ebadf));
            CHECK(ebadf == 2);
            run_all(); // the close callback
        }
    }
} // TEST_SUITE

namespace {

task<> send_too_large(udp_socket& s, socket_address to, int& code) {
    const std::string big(max_datagram + 1, 'x');
    try {
        co_await s.send(big, to);
    } catch (const std::system_error& e) {
        code = e.code() == uv_error_code(UV_EMSGSIZE) ? 1 : 2;
    }
}

} // namespace

TEST_SUITE("udp") {
    TEST_CASE_FIXTURE(loop_fixture, "udp_send_over_the_datagram_limit_fails_with_emsgsize") {
        udp_socket a = udp_socket::bind(loopback());
        int code = 0;
        run(send_too_large(a, a.local_address(), code));
        CHECK(code == 1);
    }
} // TEST_SUITE
