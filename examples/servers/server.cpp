// SPDX-License-Identifier: MIT
#include "server.hpp"

#include <exception>
#include <optional>
#include <system_error>
#include <utility>

#include <uv.h>
#include <uvasync/error.hpp>
#include <uvasync/sleep.hpp>

using namespace std::chrono_literals;

namespace servers {

using uvasync::task;

connection_slot::connection_slot(server_base& server) noexcept
    : server_(server) {
    next_ = server.first_;
    if (next_ != nullptr) {
        next_->prev_ = this;
    }
    server.first_ = this;
    server_stats& st = server.stats_;
    ++st.active;
    st.peak_active = std::max(st.peak_active, st.active);
}

connection_slot::~connection_slot() {
    set_idle(true); // leaves the busy count
    if (prev_ != nullptr) {
        prev_->next_ = next_;
    } else {
        server_.first_ = next_;
    }
    if (next_ != nullptr) {
        next_->prev_ = prev_;
    }
    if (--server_.stats_.active == 0 && server_.draining_) {
        server_.drained_.set();
    }
}

void connection_slot::set_idle(bool idle) noexcept {
    if (idle == idle_) {
        return;
    }
    idle_ = idle;
    if (idle) {
        --server_.stats_.busy;
    } else {
        ++server_.stats_.busy;
    }
}

bool connection_slot::draining() const noexcept {
    return server_.draining_;
}

void connection_slot::rearm(std::chrono::milliseconds d) {
    if (scope != nullptr && !scope->expired()) {
        scope->reschedule(d);
    }
}

server_base::server_base(server_options options)
    : options_(options)
    , slots_(options.max_connections == 0 ? 1 : options.max_connections) {
}

void server_base::request_shutdown() noexcept {
    stop_.request_cancel("server shutdown");
}

task<void> server_base::serve(uvasync::tcp_listener& listener) {
    if (serving_) {
        throw uvasync::invalid_state("servers: serve() may be called once per server");
    }
    serving_ = true;
    auto body = [this, &listener](uvasync::task_group& g) { return run_group(g, listener); };
    co_await uvasync::task_group::run(body);
}

task<void> server_base::run_group(uvasync::task_group& group, uvasync::tcp_listener& listener) {
    task<void> accepting = accept_loop(group, listener);
    co_await uvasync::run_until_cancelled(stop_.token(), std::move(accepting));

    // Shutdown: refuse new connections, close the idle ones, give the busy ones the grace
    // period, then cancel whatever is left. The group waits for every connection task.
    co_await listener.close();
    begin_drain();
    if (stats_.active > 0) {
        co_await uvasync::move_on_after(options_.shutdown_grace, drained_.wait());
    }
    if (stats_.active > 0) {
        stats_.cancelled += stats_.active;
        group.cancel();
    }
}

task<void> server_base::accept_loop(uvasync::task_group& group, uvasync::tcp_listener& listener) {
    for (;;) {
        // At the cap no accept is pending: the kernel queues new clients in the backlog until a
        // connection ends and returns its permit.
        uvasync::semaphore::permit permit = co_await slots_.acquire();
        uvasync::tcp_stream stream;
        bool failed = false;
        try {
            stream = co_await listener.accept();
        } catch (const std::system_error&) {
            ++stats_.accept_errors; // EMFILE and friends: the client stays queued; retry
            failed = true;
        }
        if (failed) {
            permit.release();
            co_await uvasync::sleep(100ms);
            continue;
        }
        // No cancellation point between the accept and the spawn: an accepted connection is
        // always served, even when the shutdown arrives in the same iteration (D-2).
        ++stats_.accepted;
        group.spawn(connection(std::move(stream), std::move(permit)));
    }
}

task<void> server_base::connection(uvasync::tcp_stream stream,
                                   [[maybe_unused]] uvasync::semaphore::permit permit) {
    connection_slot slot(*this); // the permit (a parameter) is held until the frame ends
    if (draining_) {
        co_await stream.close(); // accepted in the same iteration as the shutdown
        co_return;
    }
    try {
        stream.set_nodelay(true);
        auto body = [this, &stream, &slot](uvasync::timeout_scope& scope) {
            slot.scope = &scope;
            return handle(stream, slot);
        };
        std::optional<uvasync::unit> finished =
            co_await uvasync::move_on_after(options_.idle_timeout, body);
        slot.scope = nullptr;
        if (!finished && !draining_) {
            if (slot.idle()) {
                ++stats_.idle_timeouts;
            } else {
                ++stats_.request_timeouts;
            }
        }
    } catch (const uvasync::cancelled_error&) {
        slot.scope = nullptr;
        throw;
    } catch (const std::system_error& e) {
        slot.scope = nullptr;
        if (e.code() == std::errc::connection_reset || e.code() == std::errc::broken_pipe) {
            ++stats_.resets; // the client went away (wrk resets at the end of a run)
        } else {
            ++stats_.errors;
        }
    } catch (...) {
        slot.scope = nullptr;
        ++stats_.errors; // reset by peer, a failed write, ...: this connection only
    }
    co_await stream.close();
}

void server_base::begin_drain() noexcept {
    draining_ = true;
    if (stats_.active == 0) {
        drained_.set();
    }
    for (connection_slot* s = first_; s != nullptr; s = s->next_) {
        if (s->idle() && s->scope != nullptr) {
            s->scope->cancel(); // waiting for a request that has not started: close now
        }
    }
}

} // namespace servers
