// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <chrono>
#include <coroutine>
#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <uvasync/detail/export.hpp>
#include <uvasync/detail/handle_state.hpp>

namespace uvasync {

class pipe_stream;

/// How a child process ended: `exit_code` when it exited, `term_signal` (non-zero) when a
/// signal killed it.
struct exit_status {
    std::int64_t exit_code = 0;
    int term_signal = 0;

    /// Exited normally with code 0.
    [[nodiscard]] bool success() const noexcept { return exit_code == 0 && term_signal == 0; }

    friend bool operator==(const exit_status&, const exit_status&) = default;
};

/// What one of a child's standard streams (fd 0, 1 or 2) is connected to.
class process_stdio {
public:
    /// The child shares the parent's file descriptor (the default).
    static process_stdio inherit() noexcept { return process_stdio(kind::inherit, nullptr); }

    /// The child gets `/dev/null`.
    static process_stdio ignore() noexcept { return process_stdio(kind::ignore, nullptr); }

    /// The child's end of a new pipe whose parent end is `parent`, a stream made by
    /// `pipe_stream::create()` and not yet connected (`UV_CREATE_PIPE`). The child reads fd 0
    /// and writes fds 1 and 2. After the spawn, `parent` is a connected stream: write to it for
    /// the child's stdin, read from it for its stdout or stderr. `parent` must stay alive
    /// until `process::spawn` returns.
    static process_stdio pipe(pipe_stream& parent) noexcept {
        return process_stdio(kind::pipe, &parent);
    }

    enum class kind : std::uint8_t { inherit, ignore, pipe };

    [[nodiscard]] kind type() const noexcept { return kind_; }

    [[nodiscard]] pipe_stream* stream() const noexcept { return pipe_; }

private:
    process_stdio(kind k, pipe_stream* p) noexcept
        : kind_(k)
        , pipe_(p) {}

    kind kind_;
    pipe_stream* pipe_;
};

/// What to run and how.
struct process_options {
    /// The program: a path, or a name looked up in `PATH` (libuv uses `execvp`).
    std::string file;

    /// The whole argument vector, `args[0]` included (the program's own name, as in
    /// `execvp`). Empty means `{file}`.
    std::vector<std::string> args;

    /// The environment as "NAME=value" strings; `std::nullopt` inherits the parent's.
    std::optional<std::vector<std::string>> env;

    /// The working directory; empty inherits the parent's.
    std::string cwd;

    /// fds 0, 1 and 2 of the child.
    std::array<process_stdio, 3> stdio{process_stdio::inherit(), process_stdio::inherit(),
                                       process_stdio::inherit()};

    /// The signal that cancelling `wait()` sends (SEMANTICS 14.7).
    int cancel_signal = SIGTERM;

    /// How long, on the runtime's clock, a cancelled `wait()` lets the child handle
    /// `cancel_signal` before it sends `SIGKILL`.
    std::chrono::milliseconds kill_grace{5000};
};

namespace detail {

class process_state;

/// The awaiter behind `process::wait()`.
class [[nodiscard]] UVASYNC_API process_wait_awaiter
    : public single_waiter<process_wait_awaiter, process_state> {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    explicit process_wait_awaiter(process_state* state) noexcept;

    process_wait_awaiter(process_wait_awaiter&& other) noexcept = default; // only before awaited

    ~process_wait_awaiter();

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller);

    exit_status await_resume();

private:
    friend class process_state;
    // runtime::dump: what this wait is (wait_kind.hpp), described only when a dump is made.
    static const wait_kind kind;
    static void describe(const parked_wait& w, deadline origin, std::string& out);

    static void on_abort(parked_wait* p) noexcept;

    /// Called by the process: it exited (`cancelled`: because of the cancellation), or the
    /// process object was destroyed (`destroyed`).
    void deliver(exit_status status, bool cancelled, bool destroyed) noexcept;

    exit_status status_;
    bool destroyed_ = false;
};

} // namespace detail

/// A child process (`uv_process_t`).
///
/// A child is **always reaped**: the libuv handle lives until libuv has seen the child exit.
/// Destroying a `process` whose child still runs sends it `SIGKILL` and leaves the handle to
/// close itself in the exit callback, so no zombie remains and no callback touches freed
/// memory; the loop must keep running until then (a running child keeps it alive, as in
/// libuv). A task waiting on it then raises `invalid_state`; an exited child's handle is
/// closed. Move-only; assigning to a `process` destroys its current child first.
///
/// **Thread:** loop thread only (it is spawned on the thread's runtime).
class UVASYNC_API process {
public:
    /// Starts a child.
    ///
    /// **Errors:** `std::invalid_argument` for an empty `file`, a `cancel_signal` that is not a
    /// signal number (1 to `NSIG - 1`), a negative `kill_grace`, a NUL character inside `file`,
    /// an argument, an environment entry or `cwd`, a stdio pipe that is not an unconnected
    /// `pipe_stream::create()`, or one `pipe_stream` given for two stdio slots; `std::system_error`
    /// (uv category) naming the file when libuv cannot start it (for example `UV_ENOENT`), with
    /// nothing left open; `invalid_state` without a runtime on this thread.
    static process spawn(process_options options);

    /// The child's process id (also after it exited); 0 for a moved-from object.
    [[nodiscard]] int pid() const noexcept;

    /// Waits until the child exits and returns how it ended. An exited child's status is
    /// returned again by every later `wait()` (resuming through the run queue).
    ///
    /// **Cancellation:** a cancellation point (SEMANTICS 14.7). Cancelling a pending wait
    /// sends `cancel_signal` to the child and keeps waiting; if the child has not exited
    /// `kill_grace` later (on the runtime's clock), it sends `SIGKILL`. The task resumes only
    /// once the child has been reaped: with `cancelled_error` when the child died of
    /// `cancel_signal` or of that `SIGKILL`, otherwise with the exit status (the child exited
    /// by itself, possibly before the abort; a result is never dropped, D-2, and the scope
    /// stays cancelled). `status()` holds the status in every case.
    ///
    /// **Errors:** `invalid_state` on a moved-from object, when another task already waits,
    /// or when the `process` is destroyed while this task waits.
    detail::process_wait_awaiter wait();

    /// Sends `signum` to a running child; does nothing once it has exited (its pid may
    /// already belong to another process).
    ///
    /// **Errors:** `std::system_error` (uv category), for example `UV_EINVAL` for a bad
    /// signal number; `invalid_state` on a moved-from object.
    void kill(int signum);

    /// How the child ended, once libuv has reaped it.
    [[nodiscard]] std::optional<exit_status> status() const noexcept;

    /// True until the child has been reaped.
    [[nodiscard]] bool running() const noexcept;

private:
    explicit process(detail::process_state* state) noexcept;

    detail::state_owner<detail::process_state> state_;
};

} // namespace uvasync
