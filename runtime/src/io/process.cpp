// SPDX-License-Identifier: MIT
#include <csignal>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <uv.h>
#include <uvasync/error.hpp>
#include <uvasync/io/error.hpp>
#include <uvasync/io/pipe.hpp>
#include <uvasync/io/process.hpp>

#include "c_string.hpp"

namespace uvasync {

namespace detail {

/// The `uv_process_t` and what the exit callback must know. The handle is closed only after
/// the exit callback (or after a failed spawn): closing it earlier would take it off libuv's
/// list of children, and nobody would reap the child.
class process_state final : public handle_state {
public:
    process_state(runtime_state& rt, int cancel_signal, loop_clock::duration grace) noexcept
        : handle_state("process")
        , rt_(&rt)
        , grace_(this)
        , cancel_signal_(cancel_signal)
        , kill_grace_(grace) {
        handle_.data = static_cast<handle_state*>(this);
    }

    uv_process_t* handle() noexcept { return &handle_; }

    [[nodiscard]] int pid() const noexcept { return pid_; }

    void started() noexcept { pid_ = handle_.pid; }

    [[nodiscard]] bool exited() const noexcept { return exited_; }

    [[nodiscard]] const exit_status& status() const noexcept { return status_; }

    [[nodiscard]] bool busy() const noexcept { return waiter_ != nullptr; }

    /// Hands `w` the status of an exited child, or registers it until the exit.
    void wait(process_wait_awaiter* w) noexcept {
        if (exited_) {
            w->deliver(status_, false, false);
            return;
        }
        waiter_ = w;
    }

    /// Room for the kill-grace deadline, which `abort_wait` adds in the noexcept cancellation
    /// path: held from the wait's (throwing) start until the grace is added or the child is
    /// gone. Throws `std::bad_alloc`.
    void hold_grace_room() {
        if (!holds_room_ && kill_grace_ != loop_clock::duration::max()) {
            rt_->hold_deadline_room();
            holds_room_ = true;
        }
    }

    /// The waiter's frame goes away (it is destroyed while parked).
    void forget(process_wait_awaiter* w) noexcept {
        if (waiter_ == w) {
            waiter_ = nullptr;
            rt_->remove_deadline(grace_);
        }
    }

    /// The abort hook of the waiter: ask the child to stop, keep waiting for its exit.
    void abort_wait() noexcept {
        signalled_ = cancel_signal_;
        // An error (the child exited and is about to be reaped) changes nothing: the exit
        // callback comes anyway.
        uv_process_kill(&handle_, cancel_signal_);
        grace_.when = add_saturated(rt_->now(), kill_grace_);
        drop_grace_room(); // add_deadline below uses it: no allocation
        if (grace_.when != never && !grace_.queued()) {
            rt_->add_deadline(grace_);
        }
    }

    void kill(int signum) {
        if (!exited_) {
            check_uv(uv_process_kill(&handle_, signum), "process::kill");
        }
    }

    /// The owner lets go: close now if the child was reaped (or never started), else kill it
    /// and close in the exit callback.
    void on_released() noexcept override {
        if (process_wait_awaiter* w = std::exchange(waiter_, nullptr)) {
            w->deliver({}, false, true);
        }
        if (grace_.queued()) {
            rt_->remove_deadline(grace_);
        }
        drop_grace_room();
        if (exited_ || pid_ == 0) {
            request_close(this, nullptr);
        } else {
            orphaned_ = true;
            if (rt_->owns_loop()) { // the runtime outlives the exit callback (it waits for it)
                counted_ = true;
                rt_->handle_closing();
            }
            uv_process_kill(&handle_, SIGKILL);
        }
    }

    unsigned close_handles() noexcept override {
        close_uv_handle(reinterpret_cast<uv_handle_t*>(&handle_));
        return 1;
    }

    void on_handles_closed() noexcept override {
        if (counted_) {
            rt_->handle_closed();
        }
    }

    static void on_exit(uv_process_t* h, std::int64_t exit_code, int term_signal) noexcept {
        auto* self = static_cast<process_state*>(static_cast<handle_state*>(h->data));
        self->exited_ = true;
        self->status_ = exit_status{exit_code, term_signal};
        if (self->orphaned_) { // the runtime may be gone: touch nothing but the handle
            request_close(self, nullptr);
            return;
        }
        self->rt_->remove_deadline(self->grace_);
        self->drop_grace_room();
        if (process_wait_awaiter* w = std::exchange(self->waiter_, nullptr)) {
            const bool by_us =
                term_signal != 0 && (term_signal == self->signalled_ ||
                                     (self->grace_killed_ && term_signal == SIGKILL));
            w->deliver(self->status_, by_us, false);
        }
    }

private:
    void drop_grace_room() noexcept {
        if (holds_room_) {
            holds_room_ = false;
            rt_->release_deadline_room();
        }
    }

    /// The kill-grace deadline: a heap entry that knows its process.
    struct grace_entry : deadline_entry {
        explicit grace_entry(process_state* p) noexcept
            : deadline_entry(&on_grace)
            , owner(p) {}

        process_state* owner;
    };

    static void on_grace(deadline_entry* e) noexcept {
        process_state* self = static_cast<grace_entry*>(e)->owner;
        if (!self->exited_) {
            self->grace_killed_ = true;
            uv_process_kill(&self->handle_, SIGKILL);
        }
    }

    uv_process_t handle_{};
    runtime_state* rt_;
    grace_entry grace_;
    process_wait_awaiter* waiter_ = nullptr;
    exit_status status_;
    int cancel_signal_;
    int signalled_ = 0;
    int pid_ = 0;
    loop_clock::duration kill_grace_;
    bool exited_ = false;
    bool orphaned_ = false;
    bool grace_killed_ = false;
    bool counted_ = false;    // counted in the runtime's closing I/O handles
    bool holds_room_ = false; // hold_grace_room: room for grace_ held in the deadline queue
};

const wait_kind process_wait_awaiter::kind{"process exit", &process_wait_awaiter::describe};

// "process exit, pid 1234".
void process_wait_awaiter::describe(const parked_wait& w, deadline /*origin*/, std::string& out) {
    if (const process_state* s = static_cast<const process_wait_awaiter&>(w).state_;
        s != nullptr && s->pid() != 0) {
        out += "pid " + std::to_string(s->pid());
    }
}

process_wait_awaiter::process_wait_awaiter(process_state* state) noexcept
    : single_waiter(state, kind, &on_abort) {
}

process_wait_awaiter::~process_wait_awaiter() {
    leave_slot();
}

bool process_wait_awaiter::await_suspend(std::coroutine_handle<> caller) {
    if (state_ == nullptr || !state_->owner_alive) {
        throw invalid_state("uvasync: process::wait on a moved-from or destroyed process");
    }
    if (state_->busy()) {
        throw invalid_state("uvasync: process::wait is already awaited by another task");
    }
    state_->hold_grace_room(); // may throw bad_alloc: before anything changes
    return park_and_wait(caller, "process::wait");
}

exit_status process_wait_awaiter::await_resume() {
    finish();
    if (destroyed_) {
        throw invalid_state("uvasync: the process object was destroyed while wait() waited");
    }
    return status_;
}

void process_wait_awaiter::on_abort(parked_wait* p) noexcept {
    static_cast<process_wait_awaiter*>(p)->state_->abort_wait();
}

void process_wait_awaiter::deliver(exit_status status, bool cancelled, bool destroyed) noexcept {
    status_ = status;
    destroyed_ = destroyed;
    if (cancelled) {
        aborted();
    } else {
        complete();
    }
}

} // namespace detail

namespace {

std::vector<char*> c_strings(std::vector<std::string>& strings) {
    std::vector<char*> out;
    out.reserve(strings.size() + 1);
    for (std::string& s : strings) {
        out.push_back(s.data());
    }
    out.push_back(nullptr);
    return out;
}

} // namespace

process process::spawn(process_options options) {
    if (options.file.empty()) {
        throw std::invalid_argument("uvasync: process::spawn needs a file to run");
    }
    if (options.cancel_signal <= 0 || options.cancel_signal >= NSIG) {
        throw std::invalid_argument("uvasync: process_options::cancel_signal must be a signal");
    }
    const auto check_nul = [](const std::string& s, const char* what) {
        detail::require_c_string(s, "uvasync: process::spawn", "", what);
    };
    check_nul(options.file, "file");
    check_nul(options.cwd, "cwd");
    for (const std::string& a : options.args) {
        check_nul(a, "an argument");
    }
    if (options.env) {
        for (const std::string& e : *options.env) {
            check_nul(e, "an environment entry");
        }
    }
    if (options.kill_grace.count() < 0) {
        throw std::invalid_argument("uvasync: process_options::kill_grace must not be negative");
    }
    std::array<uv_stdio_container_t, 3> stdio{};
    for (int fd = 0; fd < 3; ++fd) {
        const process_stdio& s = options.stdio[static_cast<std::size_t>(fd)];
        uv_stdio_container_t& c = stdio[static_cast<std::size_t>(fd)];
        switch (s.type()) {
        case process_stdio::kind::inherit:
            c.flags = UV_INHERIT_FD;
            c.data.fd = fd;
            break;
        case process_stdio::kind::ignore:
            c.flags = UV_IGNORE;
            break;
        case process_stdio::kind::pipe: {
            uv_pipe_t* p = s.stream() != nullptr ? s.stream()->native_handle() : nullptr;
            for (int other = 0; other < fd; ++other) {
                if (p != nullptr && stdio[static_cast<std::size_t>(other)].flags != UV_IGNORE &&
                    (stdio[static_cast<std::size_t>(other)].flags & UV_CREATE_PIPE) != 0 &&
                    stdio[static_cast<std::size_t>(other)].data.stream ==
                        reinterpret_cast<uv_stream_t*>(p)) {
                    throw std::invalid_argument("uvasync: process stdio " + std::to_string(fd) +
                                                " uses the same pipe_stream as stdio " +
                                                std::to_string(other));
                }
            }
            uv_os_fd_t existing{};
            if (p == nullptr || uv_fileno(reinterpret_cast<uv_handle_t*>(p), &existing) == 0 ||
                uv_is_closing(reinterpret_cast<uv_handle_t*>(p)) != 0) {
                throw std::invalid_argument("uvasync: process stdio " + std::to_string(fd) +
                                            " needs an unconnected pipe_stream::create()");
            }
            c.flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE |
                                                  (fd == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE));
            c.data.stream = reinterpret_cast<uv_stream_t*>(p);
            break;
        }
        }
    }
    if (options.args.empty()) {
        options.args.push_back(options.file);
    }
    std::vector<char*> argv = c_strings(options.args);
    std::vector<char*> envp;
    if (options.env) {
        envp = c_strings(*options.env);
    }

    uv_process_options_t o{};
    o.exit_cb = &detail::process_state::on_exit;
    o.file = options.file.c_str();
    o.args = argv.data();
    o.env = options.env ? envp.data() : nullptr;
    o.cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
    o.stdio_count = 3;
    o.stdio = stdio.data();

    detail::runtime_state& rt = detail::current_runtime("process::spawn");
    auto* state = new detail::process_state(rt, options.cancel_signal,
                                            loop_clock::duration(options.kill_grace.count()));
    if (const int rc = uv_spawn(rt.loop(), state->handle(), &o); rc < 0) {
        if (state->handle()->pid > 0) {
            // The child exists (newer libuv fails after the fork, e.g. opening a stdio pipe,
            // with the child already on its list): kill it and let the exit callback reap it
            // and close the handle.
            state->started();
        }
        // libuv initialised the handle even though the spawn failed: it is closed (without a
        // child) or the child is killed and reaped first.
        detail::release(state);
        throw_uv_error(rc, ("process::spawn " + options.file).c_str());
    }
    state->started();
    return process(state);
}

process::process(detail::process_state* state) noexcept
    : state_(state) {
}

int process::pid() const noexcept {
    return state_ != nullptr ? state_->pid() : 0;
}

detail::process_wait_awaiter process::wait() {
    return detail::process_wait_awaiter(state_.get());
}

void process::kill(int signum) {
    if (state_ == nullptr) {
        throw invalid_state("uvasync: process::kill on a moved-from process");
    }
    state_->kill(signum);
}

std::optional<exit_status> process::status() const noexcept {
    if (state_ != nullptr && state_->exited()) {
        return state_->status();
    }
    return std::nullopt;
}

bool process::running() const noexcept {
    return state_ != nullptr && !state_->exited();
}

} // namespace uvasync
