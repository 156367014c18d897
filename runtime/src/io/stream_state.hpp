// SPDX-License-Identifier: MIT
// Internal: the heap state behind stream and listener objects (not installed); their close
// protocol is the one of every I/O object (detail/handle_state.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <uv.h>
#include <uvasync/detail/accept_awaiter.hpp>
#include <uvasync/io/error.hpp>
#include <uvasync/io/stream.hpp>

namespace uvasync::detail {

/// The handle's state from its `data`.
template <class State, class Handle>
State* state_of(Handle* h) noexcept {
    return static_cast<State*>(static_cast<handle_state*>(reinterpret_cast<uv_handle_t*>(h)->data));
}

/// A write request: the uv request, the owned bytes of an owning write, and the awaiter while
/// it still waits (null once it was detached by an abort or a destroyed frame).
struct write_request {
    uv_write_t req{};
    stream_state* state = nullptr;
    write_awaiter* waiter = nullptr;
    std::string owned;
    bool heap = false;

    static void on_write(uv_write_t* req, int status) noexcept;
};

/// Reasons in the messages of stream errors.
inline constexpr const char* closed_reason = "the stream was closed";
inline constexpr const char* not_open_reason = "the stream is not open";

/// Why an operation on `s` fails with `UV_EBADF`: not open, or closed (and why); null when the
/// stream is open.
inline const char* unusable_reason(const handle_state* s) noexcept {
    if (s == nullptr) {
        return not_open_reason;
    }
    if (!s->closing) {
        return nullptr;
    }
    return s->close_reason != nullptr ? s->close_reason : closed_reason;
}

/// Throws `std::system_error(status)` with "<kind>::<op>[: <reason>]".
[[noreturn]] void throw_stream_error(int status, const char* kind, const char* op,
                                     const char* reason);

/// Sets SIGPIPE to SIG_IGN if its disposition is SIG_DFL, once per process (the first stream
/// state does it): libuv writes with write(), which raises SIGPIPE on a peer that closed. A
/// handler (or SIG_IGN) installed by the host is kept.
void ignore_sigpipe_once() noexcept;

/// The state of an object over one libuv stream handle (a stream or a listener): the handle,
/// closed by the one close protocol of `handle_state`.
struct stream_handle_state : handle_state {
    using handle_state::handle_state;

    uv_handle_t* handle() noexcept { return reinterpret_cast<uv_handle_t*>(&u); }

    uv_stream_t* stream() noexcept { return &u.stream; }

    unsigned close_handles() noexcept final {
        close_uv_handle(handle());
        return 1;
    }

    union {
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_tty_t tty;
    } u{};
};

/// The state of a stream: the handle, the read buffer, and the request slots.
struct stream_state final : stream_handle_state {
    /// The read buffer starts small and doubles while data arrives faster than it is read, up
    /// to `max_capacity` (then reading stops: backpressure). `read_until` may grow it further,
    /// bounded by its `max_size`.
    static constexpr std::size_t initial_capacity = 16 * 1024;
    static constexpr std::size_t max_capacity = 64 * 1024;

    explicit stream_state(const char* kind_name) noexcept
        : stream_handle_state(kind_name) {
        ignore_sigpipe_once();
    }

    void on_close_requested() noexcept override;

    [[nodiscard]] std::size_t buffered() const noexcept { return end - begin; }

    [[nodiscard]] const char* data() const noexcept { return buf.get() + begin; }

    void consume(std::size_t n) noexcept {
        begin += n;
        if (begin == end) {
            begin = end = 0;
        }
    }

    /// Starts reading unless already reading; returns the libuv status.
    int ensure_reading() noexcept;
    void stop_reading() noexcept;

    /// A write request is done with: frees a heap one, makes the inline slot free again.
    void free_write(write_request* r) noexcept;

    /// Makes room for more data when the buffer is full (compacts, else doubles).
    void grow();

    /// Doubles a full buffer up to `max_capacity`; false when it is at the limit or the
    /// allocation failed (then reading stops).
    bool grow_in_callback() noexcept;

    static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* out) noexcept;
    static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* b) noexcept;
    static void on_connect(uv_connect_t* req, int status) noexcept;
    static void on_shutdown(uv_shutdown_t* req, int status) noexcept;

    // Reading (SEMANTICS 14.2): libuv writes only into `buf`, which lives as long as the state.
    std::unique_ptr<char[]> buf;
    std::size_t capacity = 0;
    std::size_t begin = 0;
    std::size_t end = 0;
    int read_status = 0; // UV_EOF or a read error, remembered for every later read
    bool reading = false;
    bool direct = false;        // on_alloc handed libuv the waiting reader's span (see on_alloc)
    std::uint64_t received = 0; // bytes read from the handle so far (tests wait on it)
    read_awaiter* reader = nullptr;

    // Writing: one request slot in the state for the common case, more on the heap.
    write_request inline_write;
    bool inline_write_busy = false;
    bool use_try_write = true; // tests turn the fast path off to reach uv_write's own paths
    std::size_t pending_writes = 0;

    // Connect and shutdown: at most one of each at a time; the request lives here so that a
    // destroyed frame leaves nothing for libuv to touch.
    uv_connect_t connect_req{};
    uv_shutdown_t shutdown_req{};
    stream_request_awaiter* connect_waiter = nullptr;
    stream_request_awaiter* shutdown_waiter = nullptr;
};

/// Initialises the handle of `s`, a new stream or listener state, with `init(s)` (which returns
/// a libuv status) and points the handle's `data` at the state. On failure deletes `s` (there is
/// nothing to close then) and throws `std::system_error` with `what`.
template <class State, class Init>
State* init_handle(State* s, Init init, const char* what) {
    if (const int rc = init(s); rc < 0) {
        delete s;
        throw_uv_error(rc, what);
    }
    s->u.stream.data = static_cast<handle_state*>(s);
    return s;
}

/// Appends the address of a TCP or pipe handle (`peer`: the other end, else its own), for
/// `runtime::dump`; nothing when the handle has none or is closing. Throws only bad_alloc.
void append_address(stream_handle_state* s, bool peer, std::string& out);

/// The state of a listener: the handle and the connections announced but not yet accepted.
struct listener_state final : stream_handle_state {
    listener_state(const char* kind_name, const char* stream_kind_name, bool is_pipe) noexcept
        : stream_handle_state(kind_name)
        , stream_kind(stream_kind_name)
        , pipe(is_pipe) {}

    void on_close_requested() noexcept override;

    /// Takes one announced connection into a new stream state; sets `status` on failure.
    stream_state* accept_one(int& status) noexcept;

    void push(accept_awaiter_base* w) noexcept;
    accept_awaiter_base* pop() noexcept;
    void remove(accept_awaiter_base* w) noexcept;

    static void on_connection(uv_stream_t* server, int status) noexcept;

    const char* stream_kind;
    bool pipe;
    std::size_t ready = 0; // connections announced by libuv and not yet accepted
    int pending_error = 0; // an accept error that arrived while nobody waited
    intrusive_list<accept_awaiter_base, accept_tag> waiters; // FIFO; a cancelled one leaves in O(1)
};

} // namespace uvasync::detail
