// SPDX-License-Identifier: MIT
// process: child processes, their exit, stdio pipes, and cancellation (SEMANTICS 14.7).
//
// Children are /bin/sh, /bin/true, /bin/false, /bin/cat and sleep. Tests that cancel a wait
// use a manual virtual clock (no autojump), so the kill grace runs out only when the test
// advances the clock: no wall-clock assertion anywhere. "No zombie" is checked with
// waitpid(pid, WNOHANG) == -1 / ECHILD: the child is gone and was reaped by libuv.
#include <array>
#include <cerrno>
#include <csignal>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/error.hpp>
#include <uvasync/io/pipe.hpp>
#include <uvasync/io/process.hpp>
#include <uvasync/uvasync.hpp>

#include "cancel_log.hpp"
#include "check_hook.hpp"
#include "loop_fixture.hpp"
#include "string_makers.hpp"

#include <sys/wait.h>

using namespace std::chrono_literals;

namespace {

using namespace uvasync;
using uvasync::test::cancel_now;
using uvasync::test::check_hook;
using uvasync::test::loop_fixture;

using log_t = std::vector<std::string>;

process_options sh(std::string script) {
    process_options o;
    o.file = "/bin/sh";
    o.args = {"sh", "-c", std::move(script)};
    return o;
}

process_options sleeper() {
    process_options o;
    o.file = "sleep"; // looked up in PATH
    o.args = {"sleep", "30"};
    return o;
}

/// A few loop iterations that do not block: ready tasks run and park. (`run_all()` would
/// wait for a running child, whose handle keeps the loop alive.)
void spin(loop_fixture& f) {
    for (int i = 0; i < 3; ++i) {
        uv_run(f.loop(), UV_RUN_NOWAIT);
    }
}

/// True when `pid` is no child of ours any more: it exited and was reaped.
bool reaped(int pid) {
    errno = 0;
    return waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

int open_handles(uv_loop_t* loop, uv_handle_type type) {
    int n = 0;
    std::pair<int*, uv_handle_type> arg{&n, type};
    uv_walk(
        loop,
        [](uv_handle_t* h, void* a) {
            auto* p = static_cast<std::pair<int*, uv_handle_type>*>(a);
            if (uv_handle_get_type(h) == p->second) {
                ++*p->first;
            }
        },
        &arg);
    return n;
}

task<exit_status> run_to_exit(process_options o) {
    process p = process::spawn(std::move(o));
    CHECK(p.pid() > 0);
    CHECK(p.running());
    exit_status s = co_await p.wait();
    CHECK_FALSE(p.running());
    CHECK(p.status() == s);
    co_return s;
}

task<std::string> read_all(pipe_stream& in) {
    std::string out;
    std::array<char, 256> buf{};
    for (;;) {
        const std::size_t n = co_await in.read_some(buf);
        if (n == 0) {
            co_return out;
        }
        out.append(buf.data(), n);
    }
}

/// Runs `o` with its stdout captured; returns what it printed and its status.
task<std::pair<std::string, exit_status>> capture(process_options o) {
    pipe_stream out = pipe_stream::create();
    o.stdio[1] = process_stdio::pipe(out);
    process p = process::spawn(std::move(o));
    std::string text = co_await read_all(out);
    exit_status s = co_await p.wait();
    co_await out.close();
    co_return std::pair{text, s};
}

task<std::string> cat_round_trip(std::string text) {
    pipe_stream in = pipe_stream::create();
    pipe_stream out = pipe_stream::create();
    process_options o;
    o.file = "/bin/cat";
    o.stdio[0] = process_stdio::pipe(in);
    o.stdio[1] = process_stdio::pipe(out);
    process p = process::spawn(std::move(o));
    co_await in.write(text);
    co_await in.close(); // cat sees EOF
    std::string echoed = co_await read_all(out);
    exit_status s = co_await p.wait();
    CHECK(s.success());
    co_await out.close();
    co_return echoed;
}

task<> wait_and_log(process& p, log_t& log) {
    try {
        const exit_status s = co_await p.wait();
        log.push_back("exit " + std::to_string(s.exit_code) + " signal " +
                      std::to_string(s.term_signal));
    } catch (const cancelled_error& e) {
        log.push_back("cancelled (" + std::string(e.message()) + ")");
        throw;
    } catch (const invalid_state&) {
        log.push_back("invalid_state");
    }
}

task<> wait_then_checkpoint(process& p, log_t& log) {
    const exit_status s = co_await p.wait();
    log.push_back("exit " + std::to_string(s.exit_code));
    co_await yield();
    log.push_back("passed the checkpoint");
}

task<> self_cancelled_wait(task_handle<>& self, process& p, log_t& log) {
    CHECK(self.cancel("self"));
    try {
        co_await p.wait();
        log.push_back("exited");
    } catch (const cancelled_error& e) {
        log.push_back("raised " + std::string(e.message()));
        throw;
    }
}

task<std::string> read_line(pipe_stream& in) {
    co_return co_await in.read_until("\n", 1024);
}

task<> shielded_wait(process& p) {
    co_await shielded(p.wait());
}

task<> close_pipe(pipe_stream& s) {
    co_await s.close();
}

} // namespace

TEST_SUITE("process") {

    TEST_CASE_FIXTURE(loop_fixture, "process_reports_exit_codes") {
        process_options t;
        t.file = "/bin/true";
        CHECK(run(run_to_exit(t)) == exit_status{0, 0});
        process_options f;
        f.file = "/bin/false";
        CHECK(run(run_to_exit(f)) == exit_status{1, 0});
        CHECK(run(run_to_exit(sh("exit 42"))) == exit_status{42, 0});
        CHECK(run(run_to_exit(sh("exit 42"))).success() == false);
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_reports_a_signal_exit") {
        CHECK(run(run_to_exit(sh("kill -USR2 $$"))) == exit_status{0, SIGUSR2});
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_spawn_of_a_missing_file_throws_and_leaks_nothing") {
        for (int round = 0; round < 2; ++round) {
            process_options o;
            o.file = "/no/such/program";
            try {
                process p = process::spawn(o);
                FAIL("spawned a missing file");
            } catch (const std::system_error& e) {
                CHECK((e.code() == uv_error_code(UV_ENOENT)));
                CHECK(std::string(e.what()).find("/no/such/program") != std::string::npos);
            }
            run_all(); // the failed handle's close callback
            CHECK(open_handles(loop(), UV_PROCESS) == 0);
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_spawn_rejects_bad_options") {
        process_options o;
        CHECK_THROWS_AS(process::spawn(o), std::invalid_argument); // no file
        o.file = "/bin/true";
        o.cancel_signal = 0;
        CHECK_THROWS_AS(process::spawn(o), std::invalid_argument);
        o.cancel_signal = SIGTERM;
        o.kill_grace = -1ms;
        CHECK_THROWS_AS(process::spawn(o), std::invalid_argument);
        o.kill_grace = 1ms;
        pipe_stream closed; // not created
        o.stdio[1] = process_stdio::pipe(closed);
        CHECK_THROWS_AS(process::spawn(o), std::invalid_argument);
        CHECK(open_handles(loop(), UV_PROCESS) == 0);
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_spawn_rejects_invalid_signals_and_embedded_nuls") {
        process_options o;
        o.file = "/bin/true";
        o.cancel_signal = 99;
        CHECK_THROWS_AS(process::spawn(o), std::invalid_argument);
        o.cancel_signal = NSIG;
        CHECK_THROWS_AS(process::spawn(o), std::invalid_argument);
        o.cancel_signal = SIGTERM;
        using namespace std::string_literals;
        {
            process_options b = o;
            b.file = "/bin/true\0ignored"s;
            CHECK_THROWS_AS(process::spawn(b), std::invalid_argument);
        }
        {
            process_options b = o;
            b.args = {"true"s, "a\0b"s};
            CHECK_THROWS_AS(process::spawn(b), std::invalid_argument);
        }
        {
            process_options b = o;
            b.env = std::vector<std::string>{"A=1\0B=2"s};
            CHECK_THROWS_AS(process::spawn(b), std::invalid_argument);
        }
        {
            process_options b = o;
            b.cwd = "/\0tmp"s;
            CHECK_THROWS_AS(process::spawn(b), std::invalid_argument);
        }
        CHECK(open_handles(loop(), UV_PROCESS) == 0);
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_spawn_rejects_one_pipe_in_two_stdio_slots") {
        // libuv would fork and exec, then fail to open the pipe twice and leave the child
        // unreaped (review M3): rejected before uv_spawn.
        {
            pipe_stream out = pipe_stream::create();
            process_options o;
            o.file = "/bin/true";
            o.stdio[1] = process_stdio::pipe(out);
            o.stdio[2] = process_stdio::pipe(out);
            CHECK_THROWS_AS(process::spawn(o), std::invalid_argument);
            CHECK(open_handles(loop(), UV_PROCESS) == 0);
        }
        run_all(); // the pipe's close callback
    }

    TEST_CASE("process_spawn_needs_a_runtime") {
        process_options o;
        o.file = "/bin/true";
        CHECK_THROWS_AS(process::spawn(o), invalid_state);
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_passes_env_and_cwd_and_captures_stdout") {
        process_options o = sh("printf '%s:%s:%s' \"$FOO\" \"$(pwd)\" \"${HOME-unset}\"");
        o.env = std::vector<std::string>{"FOO=bar baz", "PATH=/usr/bin:/bin"};
        o.cwd = "/";
        auto [text, status] = run(capture(o));
        CHECK(text == "bar baz:/:unset"); // only the given environment
        CHECK(status.success());

        process_options args;
        args.file = "/bin/sh";
        args.args = {"sh", "-c", "echo \"$0|$1|$2\"", "zero", "one two", ""};
        auto [echoed, s2] = run(capture(args));
        CHECK(echoed == "zero|one two|\n");
        CHECK(s2.success());
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_stdin_and_stdout_pipes_round_trip_through_cat") {
        const std::string text(100000, 'x'); // more than a pipe buffer
        CHECK(run(cat_round_trip(text)) == text);
        CHECK(run(cat_round_trip("hello\n")) == "hello\n");
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_wait_after_exit_returns_the_status_again") {
        process_options o = sh("exit 5");
        process p = process::spawn(o);
        log_t log;
        for (int round = 0; round < 2; ++round) {
            auto h = rt->spawn(wait_and_log(p, log));
            run_until([&] { return h.done(); });
        }
        CHECK(log == log_t{"exit 5 signal 0", "exit 5 signal 0"});
        p.kill(SIGTERM); // exited: does nothing
        CHECK(p.status() == exit_status{5, 0});
        CHECK(reaped(p.pid()));
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_kill_and_misuse") {
        process p = process::spawn(sleeper());
        CHECK_THROWS_AS(p.kill(-3), std::system_error);
        log_t log;
        auto a = rt->spawn(wait_and_log(p, log));
        auto b = rt->spawn(wait_and_log(p, log)); // a second waiter is a misuse
        run_until([&] { return b.done(); });
        CHECK(log == log_t{"invalid_state"});
        p.kill(SIGUSR1);
        run_until([&] { return a.done(); });
        CHECK(log == log_t{"invalid_state", "exit 0 signal " + std::to_string(SIGUSR1)});

        process q(std::move(p));
        CHECK(p.pid() == 0);                             // NOLINT(bugprone-use-after-move)
        CHECK_FALSE(p.status().has_value());             // NOLINT(bugprone-use-after-move)
        CHECK_THROWS_AS(p.kill(SIGTERM), invalid_state); // NOLINT(bugprone-use-after-move)
        auto c = rt->spawn(wait_and_log(p, log));        // NOLINT(bugprone-use-after-move)
        run_until([&] { return c.done(); });
        CHECK(log.back() == "invalid_state");
        CHECK(q.status() == exit_status{0, SIGUSR1});
    }

    TEST_CASE("process_cancelled_wait_sends_the_cancel_signal_and_reaps") {
        loop_fixture f(loop_fixture::manual_clock());
        for (int round = 0; round < 2; ++round) {
            process p = process::spawn(sleeper());
            log_t log;
            task_handle<> a = f.rt->spawn(wait_and_log(p, log));
            spin(f);                                             // parked
            auto c = f.rt->spawn(cancel_now(a, log, round + 1)); // round 1: cancelled twice
            f.run_until([&] { return a.done() && c.done(); });
            CHECK(a.cancelled());
            if (round == 0) {
                CHECK(log == log_t{"cancel true", "cancelled (first)"});
            } else {
                CHECK(log == log_t{"cancel true", "cancel false", "cancelled (first)"});
            }
            CHECK(p.status() == exit_status{0, SIGTERM});
            CHECK(reaped(p.pid()));
        }
    }

    TEST_CASE("process_that_ignores_the_cancel_signal_is_killed_after_the_grace_and_reaped") {
        loop_fixture f(loop_fixture::manual_clock());
        pipe_stream out = pipe_stream::create();
        process_options o = sh("trap '' TERM; echo ready; exec sleep 30");
        o.stdio[1] = process_stdio::pipe(out);
        o.kill_grace = 2s;
        process p = process::spawn(o);
        CHECK(f.run(read_line(out)) == "ready\n"); // the trap is set
        log_t log;
        task_handle<> a = f.rt->spawn(wait_and_log(p, log));
        spin(f); // parked
        const deadline t0 = f.now();
        CHECK(a.cancel("stop"));
        // SIGTERM was sent and, being ignored, discarded at once: nothing can end the wait
        // before the grace runs out.
        spin(f);
        CHECK_FALSE(a.done());
        CHECK(p.running());
        f.rt->advance(1999ms);
        spin(f);
        CHECK_FALSE(a.done());
        f.rt->advance(1ms); // the grace: SIGKILL
        f.run_until([&] { return a.done(); });
        CHECK(f.now() - t0 == 2s);
        CHECK(a.cancelled());
        CHECK(log == log_t{"cancelled (stop)"});
        CHECK(p.status() == exit_status{0, SIGKILL});
        CHECK(reaped(p.pid()));
        auto cl = f.rt->spawn(close_pipe(out));
        f.run_until([&] { return cl.done(); });
    }

    TEST_CASE("process_that_exits_by_itself_after_the_abort_delivers_its_status") {
        loop_fixture f(loop_fixture::manual_clock());
        pipe_stream out = pipe_stream::create();
        // Exits with 7 when asked to stop: a result, not the cancellation (14.7, D-2).
        process_options o = sh("trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done");
        o.stdio[1] = process_stdio::pipe(out);
        process p = process::spawn(o);
        CHECK(f.run(read_line(out)) == "ready\n");
        log_t log;
        task_handle<> a = f.rt->spawn(wait_then_checkpoint(p, log));
        spin(f);
        CHECK(a.cancel("stop"));
        f.run_until([&] { return a.done(); });
        CHECK(a.cancelled()); // at the checkpoint
        CHECK(log == log_t{"exit 7"});
        CHECK(p.status() == exit_status{7, 0});
        auto cl = f.rt->spawn(close_pipe(out));
        f.run_until([&] { return cl.done(); });
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_cancelled_before_start_leaves_the_child_alone") {
        process p = process::spawn(sleeper());
        for (int round = 0; round < 2; ++round) {
            log_t log;
            task_handle<> self;
            self = rt->spawn(self_cancelled_wait(self, p, log));
            run_until([&] { return self.done(); });
            CHECK(self.cancelled());
            CHECK(log == log_t{"raised self"});
            CHECK(p.running());
        }
        p.kill(SIGKILL);
        log_t log;
        auto h = rt->spawn(wait_and_log(p, log));
        run_until([&] { return h.done(); });
        CHECK(log == log_t{"exit 0 signal 9"});
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_cancelled_after_exit_before_resumption_returns_the_"
                                    "status") {
        process p = process::spawn(sh("exit 3"));
        log_t log;
        for (int round = 0; round < 2; ++round) {
            // Once p has exited, a takes the status in its await_suspend and is queued to
            // resume; c runs in the same drain and cancels it before it resumes.
            task_handle<> w = rt->spawn(wait_and_log(p, log));
            run_until([&] { return w.done(); });
            log.clear();
            task_handle<> a = rt->spawn(wait_then_checkpoint(p, log));
            log_t cancels;
            auto c = rt->spawn(cancel_now(a, cancels, 1));
            run_until([&] { return a.done() && c.done(); });
            CHECK(a.cancelled());
            CHECK(log == log_t{"exit 3"});
            log.clear();
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_wait_parked_when_the_child_exits_then_cancelled_"
                                    "before_resumption_returns_the_status") {
        for (int round = 0; round < 2; ++round) {
            process p = process::spawn(sleeper());
            log_t log;
            task_handle<> a = rt->spawn(wait_then_checkpoint(p, log));
            spin(*this); // parked in wait()
            REQUIRE_FALSE(a.done());
            // The exit callback records the status and makes the waiter ready; the hook
            // cancels it in the same iteration, before it resumes: nothing is sent to the
            // reaped child, the status is returned (D-2) and the checkpoint raises.
            check_hook hook(loop(), [&] { return p.status().has_value() && a.cancel("late"); });
            p.kill(SIGUSR1);
            run_until([&] { return a.done(); });
            CHECK(hook.fired());
            CHECK(a.cancelled());
            CHECK(log == log_t{"exit 0"});
            CHECK(p.status() == exit_status{0, SIGUSR1});
        }
    }

    TEST_CASE_FIXTURE(loop_fixture, "process_destroyed_while_running_leaves_no_zombie") {
        for (int round = 0; round < 2; ++round) {
            auto p = std::make_unique<process>(process::spawn(sleeper()));
            const int pid = p->pid();
            log_t log;
            auto a = rt->spawn(wait_and_log(*p, log));
            run_until([&] { return rt->task_count() == 1; });
            uv_run(loop(), UV_RUN_NOWAIT); // parked
            p.reset();                     // SIGKILL; the handle closes after the exit
            run_until([&] { return a.done(); });
            CHECK(log == log_t{"invalid_state"});
            run_all(); // the exit and close callbacks
            CHECK(reaped(pid));
            CHECK(open_handles(loop(), UV_PROCESS) == 0);
        }
    }

    TEST_CASE("process_wait_frame_destroyed_while_parked_leaves_libuv_safe") {
        runtime_options o = loop_fixture::manual_clock();
        o.shutdown_grace = 0ms;
        loop_fixture f(o);
        std::optional<process> p;
        p.emplace(process::spawn(sleeper()));
        const int pid = p->pid();
        auto a = f.rt->spawn(shielded_wait(*p));
        spin(f);
        f.rt->shutdown(); // the grace runs out; the parked frames are destroyed
        CHECK(f.reported.size() == 1);
        f.reported.clear();
        CHECK(a.done());
        p.reset(); // kills; reaped while the loop runs
        f.run_all();
        CHECK(reaped(pid));
    }

} // TEST_SUITE

namespace {

/// An awaiter made before its process object goes away (review M4): awaiting it must raise,
/// not read freed memory. The dropped child is killed and reaped in the background.
task<> wait_after_the_process_is_gone(bool& raised) {
    std::optional<process> p(std::in_place, process::spawn(sleeper()));
    auto aw = p->wait();
    p.reset();
    try {
        co_await aw;
    } catch (const invalid_state&) {
        raised = true;
    }
}

} // namespace

TEST_SUITE("process") {
    TEST_CASE_FIXTURE(loop_fixture,
                      "process_wait_awaiter_outliving_its_process_raises_invalid_state") {
        bool raised = false;
        run(wait_after_the_process_is_gone(raised));
        CHECK(raised);
        run_all(); // the killed child's exit and close callbacks
        CHECK(open_handles(loop(), UV_PROCESS) == 0);
    }
} // TEST_SUITE
