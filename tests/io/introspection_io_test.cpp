// SPDX-License-Identifier: MIT
// Introspection of I/O waits (docs/introspection.md): a task parked in a stream read names the
// TCP peer, one parked in a threadpool or fs request names the request.
#include <atomic>
#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

#include "loop_fixture.hpp"
#include "stream_support.hpp"

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::loop_fixture;

const task_snapshot* find(const std::vector<task_snapshot>& ts, std::uint64_t id) {
    for (const task_snapshot& t : ts) {
        if (t.id == id) {
            return &t;
        }
    }
    return nullptr;
}

bool parked_on(const runtime& rt, std::uint64_t id, const char* kind) {
    const std::vector<task_snapshot> ts = rt.tasks();
    const task_snapshot* t = find(ts, id);
    return t != nullptr && t->status == task_status::parked && t->parked_on == kind;
}

task<> read_one(tcp_listener& l, std::string& peer, std::string& got, bool& connected) {
    test::tcp_pair p = co_await test::connect_pair(l);
    peer = p.client.local_address().to_string();
    connected = true;
    got = co_await test::read_chunk(p.server);
}

task<> blocked_work(std::atomic<bool>& release) {
    co_await to_thread([&release] {
        while (!release.load()) {
            std::this_thread::sleep_for(1ms);
        }
        return 0;
    });
}

} // namespace

TEST_CASE("a stream read is parked on \"stream read\" with its TCP peer") {
    loop_fixture fx(loop_fixture::real_clock());
    tcp_listener l = tcp_listener::bind(test::loopback());
    std::string peer;
    std::string got;
    bool connected = false;
    task_handle<> reader = fx.rt->spawn(read_one(l, peer, got, connected), "reader");
    fx.run_until([&] { return connected && parked_on(*fx.rt, reader.id(), "stream read"); });
    const std::string text = fx.rt->dump();
    CHECK(text.find("task #" + std::to_string(reader.id()) + " \"reader\" parked") !=
          std::string::npos);
    CHECK(text.find("parked on stream read from " + peer + ", 2 task frames deep\n") !=
          std::string::npos); // read_chunk inside read_one
    reader.cancel();
    fx.run_until([&] { return reader.done(); });
}

TEST_CASE("a threadpool request and an fs request are parked on \"request\"") {
    // UV_THREADPOOL_SIZE=1 (tests/meson.build): the blocked work holds the only thread, so the
    // fs request stays queued, parked, until the work is released.
    loop_fixture fx(loop_fixture::real_clock());
    std::atomic<bool> release{false};
    task_handle<> worker = fx.rt->spawn(blocked_work(release), "worker");
    fx.run_until([&] { return parked_on(*fx.rt, worker.id(), "request"); });
    auto stat_root = []() -> task<> { (void)co_await fs::stat("/"); };
    task_handle<> statter = fx.rt->spawn(stat_root(), "statter");
    fx.run_until([&] { return statter.done() || parked_on(*fx.rt, statter.id(), "request"); });
    REQUIRE_FALSE(statter.done()); // needs UV_THREADPOOL_SIZE=1
    const std::string text = fx.rt->dump();
    CHECK(text.find("parked on request to_thread\n") != std::string::npos);
    CHECK(text.find("parked on request uvasync::fs::stat") != std::string::npos);
    release = true;
    fx.run_until([&] { return worker.done() && statter.done(); });
}

namespace {

struct cause_recorder : tracer {
    void task_cancel_requested(const task_event& t, const cancel_event& why) noexcept override {
        ids.push_back(t.id);
        causes.push_back(why.cause);
        messages.emplace_back(why.message);
    }

    std::vector<std::uint64_t> ids;
    std::vector<cancel_cause> causes;
    std::vector<std::string> messages;
};

task<> wait_for(event& e) {
    co_await e.wait();
}

} // namespace

TEST_CASE("a cancel source cancelled on another thread reaches the tracer as \"cross thread\"") {
    runtime_options o = loop_fixture::virtual_clock();
    auto rec = std::make_shared<cause_recorder>();
    o.tracer = rec;
    loop_fixture fx(o);
    cancel_source src; // bound to this thread's runtime
    event never;
    task_handle<> bound = fx.rt->spawn(wait_for(never), src.token());
    fx.run_until([&] { return parked_on(*fx.rt, bound.id(), "event"); });
    std::thread other([&src] { src.request_cancel("from afar"); });
    other.join();
    fx.run_until([&] { return bound.done(); });
    REQUIRE(rec->causes.size() == 1);
    CHECK(rec->ids[0] == bound.id());
    CHECK(rec->causes[0] == cancel_cause::cross_thread);
    CHECK(rec->messages[0] == "from afar");
    CHECK(std::string(to_string(rec->causes[0])) == "cross thread");
}

namespace {

task<> accepts(tcp_listener& l) {
    tcp_stream s = co_await l.accept();
}

task<> receives(udp_socket& u) {
    char buf[64];
    [[maybe_unused]] const udp_datagram d = co_await u.receive(buf);
}

task<> waits_for_signal(signal_set& s) {
    [[maybe_unused]] const int n = co_await s.wait();
}

} // namespace

TEST_CASE("accept, UDP receive and a signal wait name their object in the dump") {
    loop_fixture fx(loop_fixture::real_clock());
    tcp_listener l = tcp_listener::bind(test::loopback());
    udp_socket u = udp_socket::bind(test::loopback());
    signal_set sigs({SIGUSR2});
    task_handle<> a = fx.rt->spawn(accepts(l));
    task_handle<> r = fx.rt->spawn(receives(u));
    task_handle<> s = fx.rt->spawn(waits_for_signal(sigs));
    fx.run_until([&] {
        return parked_on(*fx.rt, a.id(), "accept") && parked_on(*fx.rt, r.id(), "udp receive") &&
               parked_on(*fx.rt, s.id(), "signal");
    });
    const std::string text = fx.rt->dump();
    INFO(text);
    CHECK(text.find("parked on accept on " + l.local_address().to_string() + "\n") !=
          std::string::npos);
    CHECK(text.find("parked on udp receive on " + u.local_address().to_string() + "\n") !=
          std::string::npos);
    CHECK(text.find("parked on signal " + std::to_string(SIGUSR2) + "\n") != std::string::npos);
    a.cancel();
    r.cancel();
    s.cancel();
    fx.run_until([&] { return a.done() && r.done() && s.done(); });
}

namespace {

task<> waits_for_exit(process& p) {
    [[maybe_unused]] const exit_status st = co_await p.wait();
}

} // namespace

TEST_CASE("a process wait names the child's pid in the dump") {
    loop_fixture fx(loop_fixture::real_clock());
    process_options o;
    o.file = "sleep";
    o.args = {"sleep", "30"};
    process child = process::spawn(std::move(o));
    task_handle<> w = fx.rt->spawn(waits_for_exit(child));
    fx.run_until([&] { return parked_on(*fx.rt, w.id(), "process exit"); });
    const std::string text = fx.rt->dump();
    INFO(text);
    CHECK(text.find("parked on process exit pid " + std::to_string(child.pid()) + "\n") !=
          std::string::npos);
    w.cancel(); // the cancelled wait kills the child and waits for it (SEMANTICS 14.7)
    fx.run_until([&] { return w.done(); });
}
