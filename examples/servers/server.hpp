// SPDX-License-Identifier: MIT
// The part every example server shares: the accept loop in a task group, the connection cap,
// the per-connection timeout scope and the graceful shutdown (docs/servers.md).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <uvasync/cancel.hpp>
#include <uvasync/io/tcp.hpp>
#include <uvasync/sync/event.hpp>
#include <uvasync/sync/semaphore.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_group.hpp>
#include <uvasync/timeout.hpp>

namespace servers {

/// How a server behaves. Every duration is on the runtime's clock (virtual in tests).
struct server_options {
    /// Port the example mains listen on (`serve` takes a bound listener and ignores it).
    std::uint16_t port = 0;

    /// Bound on one request: from its first byte until its response is written.
    std::chrono::milliseconds request_timeout{5000};

    /// Bound on the wait for the first byte of the next request on an open connection.
    std::chrono::milliseconds idle_timeout{30000};

    /// Connections served at once. At the cap the server stops accepting until one ends, so
    /// further clients wait in the kernel's listen backlog (backpressure, not accept-and-drop).
    std::size_t max_connections = 10000;

    /// How long a shutdown lets busy connections finish before it cancels them.
    std::chrono::milliseconds shutdown_grace{2000};

    /// HTTP only: bytes of request line and headers one request may have (431 beyond).
    std::size_t max_header_bytes = 8192;

    /// Echo only: bytes one line may have before the connection is closed.
    std::size_t max_line_bytes = 65536;
};

/// What a server did so far. Read it on the loop thread.
struct server_stats {
    std::uint64_t accepted = 0;         ///< connections accepted
    std::uint64_t active = 0;           ///< connections open now
    std::uint64_t peak_active = 0;      ///< most connections open at once
    std::uint64_t busy = 0;             ///< connections in the middle of a request now
    std::uint64_t requests = 0;         ///< requests answered (HTTP) or lines echoed (echo)
    std::uint64_t request_timeouts = 0; ///< connections closed by the request timeout
    std::uint64_t idle_timeouts = 0;    ///< connections closed by the idle timeout
    std::uint64_t rejected = 0;         ///< connections closed with 400/431 (or a line too long)
    std::uint64_t incomplete = 0;       ///< clients that left in the middle of a request
    std::uint64_t resets = 0;           ///< connections reset by the client (ECONNRESET, EPIPE)
    std::uint64_t errors = 0;           ///< connections ended by another error
    std::uint64_t accept_errors = 0;    ///< failed accepts (EMFILE, ...), retried after a pause
    std::uint64_t cancelled = 0;        ///< connections cancelled after the shutdown grace
};

class server_base;

/// One open connection as the server sees it: the handler updates `idle` and `draining`
/// decides how it ends. Lives in the connection's coroutine frame.
class connection_slot {
public:
    explicit connection_slot(server_base& server) noexcept;
    connection_slot(const connection_slot&) = delete;
    connection_slot& operator=(const connection_slot&) = delete;
    ~connection_slot();

    /// The handler waits for the first byte of a new request (nothing is buffered or owed):
    /// a shutdown may close the connection now. Updates `server_stats::busy`.
    void set_idle(bool idle) noexcept;

    [[nodiscard]] bool idle() const noexcept { return idle_; }

    /// True once the server shuts down: answer what was started, then close.
    [[nodiscard]] bool draining() const noexcept;

    /// The connection's timeout scope, while its handler runs.
    uvasync::timeout_scope* scope = nullptr;

    /// Sets the scope's deadline to now + `d` unless it already expired (then the next
    /// cancellation point ends the handler anyway).
    void rearm(std::chrono::milliseconds d);

private:
    friend class server_base;
    server_base& server_;
    connection_slot* prev_ = nullptr;
    connection_slot* next_ = nullptr;
    bool idle_ = true;
};

/// Accept loop, connection cap, timeouts and graceful shutdown; a derived server supplies the
/// per-connection protocol in `handle`.
class server_base {
public:
    server_base(const server_base&) = delete;
    server_base& operator=(const server_base&) = delete;
    server_base(server_base&&) = delete;
    server_base& operator=(server_base&&) = delete;
    virtual ~server_base() = default;

    /// Serves connections from `listener` until `request_shutdown()`: one task per connection
    /// in a task group, at most `max_connections` at once. Then it stops accepting, closes the
    /// listener (new connections are refused), closes idle connections, lets busy ones finish
    /// their request for up to `shutdown_grace`, cancels the rest and returns when every
    /// connection is closed. Call it once; the server and the listener must outlive it.
    ///
    /// **Cancellation:** cancelling the awaiting task cancels every connection at once; the
    /// listener is left to its owner.
    /// **Errors:** a connection's failure is counted, never propagated; accept errors are
    /// counted and retried after 100 ms. `uvasync::invalid_state` on a second call.
    /// **Thread:** loop thread, inside a task.
    uvasync::task<void> serve(uvasync::tcp_listener& listener);

    /// Starts the graceful shutdown described at `serve`. Idempotent; thread-safe (it cancels
    /// a `cancel_source`). Before `serve` runs, `serve` returns at once.
    void request_shutdown() noexcept;

    [[nodiscard]] bool shutting_down() const noexcept { return draining_; }

    [[nodiscard]] const server_stats& stats() const noexcept { return stats_; }

    [[nodiscard]] const server_options& options() const noexcept { return options_; }

protected:
    explicit server_base(server_options options);

    /// Speaks the protocol on one connection, inside the connection's timeout scope (armed with
    /// the idle timeout at entry; the handler re-arms it through `slot.rearm`). Returns to close
    /// the connection. It may throw; the error is counted.
    virtual uvasync::task<void> handle(uvasync::tcp_stream& stream, connection_slot& slot) = 0;

    server_stats stats_;

private:
    friend class connection_slot;

    uvasync::task<void> run_group(uvasync::task_group& group, uvasync::tcp_listener& listener);
    uvasync::task<void> accept_loop(uvasync::task_group& group, uvasync::tcp_listener& listener);
    uvasync::task<void> connection(uvasync::tcp_stream stream, uvasync::semaphore::permit permit);
    void begin_drain() noexcept;

    server_options options_;
    uvasync::cancel_source stop_;
    uvasync::semaphore slots_;
    uvasync::event drained_;
    connection_slot* first_ = nullptr;
    bool serving_ = false;
    bool draining_ = false;
};

} // namespace servers
