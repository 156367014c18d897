// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include <uv.h>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/handle_state.hpp>
#include <uvasync/task.hpp>

namespace uvasync {

namespace detail {

struct stream_state;
struct write_request;

/// Tag of the constructors that adopt a state object created by the library (accept, open).
struct adopt_t {
    explicit adopt_t() = default;
};

inline constexpr adopt_t adopt{};

/// What the stream awaiters share: the state pin and the abort protocol (`handle_awaiter`), how
/// the operation ended, and the start of every `await_suspend`. Compiled, loop thread only.
class UVASYNC_API stream_awaiter : protected handle_awaiter<stream_state> {
protected:
    using handle_awaiter::handle_awaiter;

    /// Parks the caller for operation `op` (the protocol's step 2), then checks that the stream
    /// is open. False when the awaiter must not suspend and nothing was started: the scope was
    /// already cancelled (`finish()` raises), or the stream is not open or closing (`status_` is
    /// `UV_EBADF`, `reason_` says why, and the wait was left again).
    bool park_on_open_stream(std::coroutine_handle<> caller, const char* op);

    int status_ = 0;               // 0, or the libuv error the operation ended with
    const char* kind_ = "stream";  // the object's kind, for error messages
    const char* reason_ = nullptr; // why the stream was unusable, for error messages
};

/// The awaiter of `stream::read_some` (and, in peek mode, of the internal "wait for more
/// data" step of `read_until`). Lives in the awaiting frame; allocates nothing.
class [[nodiscard]] UVASYNC_API read_awaiter : protected stream_awaiter {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    read_awaiter(stream_state* s, std::span<char> buffer, bool peek) noexcept;
    read_awaiter(read_awaiter&& other) noexcept; // only before it is awaited
    read_awaiter(const read_awaiter&) = delete;
    read_awaiter& operator=(const read_awaiter&) = delete;
    read_awaiter& operator=(read_awaiter&&) = delete;
    ~read_awaiter();

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller);
    std::size_t await_resume();

protected:
    /// For a peek that waits for a condition on the buffered data (read_until): true when the
    /// buffered data satisfies the reader, so it stops waiting; asked before it suspends and
    /// after each delivery of data.
    using satisfied_fn = bool (*)(read_awaiter*) noexcept;
    satisfied_fn satisfied_ = nullptr;

private:
    friend struct stream_state;
    static void on_abort(parked_wait* p) noexcept;
    // runtime::dump: "stream read", with the peer of a TCP stream.
    static const wait_kind kind;
    static void describe(const parked_wait& w, deadline /*origin*/, std::string& out);
    void deliver(std::size_t n, int status, const char* reason) noexcept;

    std::span<char> buffer_;
    std::size_t result_ = 0;
    bool peek_;
    bool registered_ = false;
};

/// The awaiter of `stream::write`: `uv_try_write` first, then `uv_write` for the remainder.
class [[nodiscard]] UVASYNC_API write_awaiter : private stream_awaiter {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    write_awaiter(stream_state* s, std::span<const char> data) noexcept;
    write_awaiter(stream_state* s, std::string data) noexcept;
    write_awaiter(write_awaiter&& other) noexcept; // only before it is awaited
    write_awaiter(const write_awaiter&) = delete;
    write_awaiter& operator=(const write_awaiter&) = delete;
    write_awaiter& operator=(write_awaiter&&) = delete;
    ~write_awaiter();

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller);
    void await_resume();

private:
    friend struct write_request;
    static void on_abort(parked_wait* p) noexcept;
    // runtime::dump: what this wait is (wait_kind.hpp), described only when a dump is made.
    static const wait_kind kind;
    static void describe(const parked_wait& w, deadline origin, std::string& out);

    static void on_closed(void* self) noexcept;
    void deliver(int status) noexcept;

    std::span<const char> data_;
    std::string owned_;
    bool owning_;
    write_request* request_ = nullptr;
    close_waiter closed_;
};

/// The awaiter of requests that only closing the handle can cancel: connect and shutdown.
class [[nodiscard]] UVASYNC_API stream_request_awaiter : private stream_awaiter {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    enum class op : unsigned char { connect_tcp, connect_pipe, shutdown };

    stream_request_awaiter(stream_state* s, op kind, const void* target,
                           const char* label) noexcept;
    stream_request_awaiter(stream_request_awaiter&& other) noexcept; // only before it is awaited
    stream_request_awaiter(const stream_request_awaiter&) = delete;
    stream_request_awaiter& operator=(const stream_request_awaiter&) = delete;
    stream_request_awaiter& operator=(stream_request_awaiter&&) = delete;
    ~stream_request_awaiter();

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller);
    void await_resume();

private:
    friend struct stream_state;
    static void on_abort(parked_wait* p) noexcept;
    static void on_closed(void* self) noexcept;
    void deliver(int status) noexcept;
    // runtime::dump: what this wait is (wait_kind.hpp), described only when a dump is made.
    static const wait_kind kind;
    static void describe(const parked_wait& w, deadline origin, std::string& out);

    op op_;
    const void* target_; // sockaddr* or NUL-terminated path, alive in the awaiting frame
    const char* label_;  // text for errors ("127.0.0.1:1"), alive in the awaiting frame
    close_waiter closed_;
};

} // namespace detail

/// The common base of `tcp_stream`, `pipe_stream` and `tty_stream`: buffered reading, writing,
/// half-close and close of one libuv stream handle.
///
/// A stream owns one heap state object with the `uv_stream_t` embedded in it; this object is a
/// thin move-only owner (`detail::state_owner`). The destructor closes the handle if it is open,
/// without waiting (the memory is freed in the close callback); a task still waiting on the
/// stream resumes with an error. Received data goes straight into a waiting reader's span, else
/// into a stream-owned buffer (16 KiB growing to 64 KiB, further by `read_until`); reading stays
/// armed between reads and stops on cancellation, on a full buffer and on close.
///
/// One reader and one writer may use a stream at the same time (two tasks); two concurrent
/// readers are an error (`invalid_state`).
///
/// **SIGPIPE:** the first stream the process creates sets `SIGPIPE` to `SIG_IGN` if its
/// disposition is still `SIG_DFL` (libuv writes with `write()`, and a peer that closed would
/// otherwise end the process); a handler installed by the host is kept. Writing to a closed
/// peer throws `UV_EPIPE` or `UV_ECONNRESET`.
///
/// **Thread:** loop thread only; every awaitable is awaited inside a task.
namespace detail {

/// The awaiter of `stream::read_until(out, delimiter, max_size)`: waits in place, in the
/// awaiting frame, until the buffered data holds the delimiter (or EOF, an error, `max_size`),
/// then appends up to and including the delimiter to `out` and consumes it. Allocates nothing
/// but what `out` needs to grow.
class [[nodiscard]] UVASYNC_API read_until_awaiter : private read_awaiter {
public:
    read_until_awaiter(stream_state* s, std::string& out, std::string_view delimiter,
                       std::size_t max_size) noexcept;
    read_until_awaiter(read_until_awaiter&& other) noexcept; // only before it is awaited
    read_until_awaiter(const read_until_awaiter&) = delete;
    read_until_awaiter& operator=(const read_until_awaiter&) = delete;
    read_until_awaiter& operator=(read_until_awaiter&&) = delete;
    ~read_until_awaiter() = default;

    using read_awaiter::await_ready;
    using read_awaiter::await_suspend;
    std::size_t await_resume();

private:
    static bool satisfied(read_awaiter* r) noexcept;
    std::size_t delimiter_end() noexcept; // one past the delimiter in the buffer, or 0

    std::string* out_;
    std::string_view delimiter_;
    std::size_t max_size_;
    std::size_t searched_ = 0; // bytes of the buffer known not to start a delimiter
    std::size_t found_ = 0;    // one past the delimiter once found
};

/// What `stream::read_until(out, delimiter, max_size)` returns: the arguments, until it is
/// awaited. `co_await` builds the `read_until_awaiter` in the awaiting frame, and `timeout` or
/// `as_outcome` build it inside their own awaiter (`detail::leaf_request`), so the awaiter is
/// never moved: `co_await timeout(5s, s.read_until(buf, "\r\n\r\n", n))` holds one awaiter
/// and this request, not a moved-from awaiter next to a moved copy (bench/NOTES.md, W4).
class [[nodiscard]] read_until_request {
public:
    using awaiter_type = read_until_awaiter; // keeps no reference to the request

    read_until_request(stream_state* s, std::string& out, std::string_view delimiter,
                       std::size_t max_size) noexcept
        : state_(s)
        , out_(&out)
        , delimiter_(delimiter)
        , max_size_(max_size) {}

    [[nodiscard]] read_until_awaiter operator co_await() const noexcept {
        return read_until_awaiter(state_, *out_, delimiter_, max_size_);
    }

private:
    stream_state* state_;
    std::string* out_;
    std::string_view delimiter_;
    std::size_t max_size_;
};

} // namespace detail

class UVASYNC_API stream {
public:
    /// A stream that is not open: every operation fails with `UV_EBADF`.
    stream() noexcept = default;

    /// Internal: owns `s`, a state made by the library (connect, open, accept); the derived
    /// streams inherit it.
    stream(detail::adopt_t, detail::stream_state* s) noexcept;

    /// Reads at least one byte into `buffer` and returns how many; returns 0 only at EOF, and
    /// again on every later read. Buffered data is returned at once, without suspending.
    ///
    /// **Cancellation:** a cancellation point, also when data is buffered (level-triggered).
    /// Total: reading stops (`uv_read_stop`); data that arrived before stays buffered for the
    /// next read, which starts reading again. Data delivered before the cancellation wins.
    ///
    /// **Errors:** `std::invalid_argument` for an empty buffer (thrown by this call);
    /// `std::system_error` (uv category) for a read error, also one that arrived while nobody
    /// was reading, and `UV_EBADF` on a closed stream; `invalid_state` when another task is
    /// already reading.
    [[nodiscard]] detail::read_awaiter read_some(std::span<char> buffer);

    /// Reads until `buffer` is full; returns `buffer.size()`, or fewer bytes only at EOF.
    /// Cancellation and errors as for `read_some`; bytes already read by a cancelled call are
    /// lost to the caller (they are in `buffer`). The task holds the stream's state, not this
    /// object: moving the stream meanwhile is fine, destroying it fails the read (`UV_ECANCELED`).
    task<std::size_t> read_exactly(std::span<char> buffer);

    /// Reads up to and including the first `delimiter`, and returns those bytes; the rest stays
    /// buffered. At EOF returns what remains (possibly empty) without a delimiter.
    ///
    /// **Errors:** `std::system_error(UV_ENOBUFS)` when `max_size` bytes are buffered without a
    /// delimiter among them (the data stays buffered); `std::invalid_argument` for an empty
    /// delimiter or a `max_size` of 0; otherwise as for `read_some`. **Cancellation:** as for
    /// `read_some`; nothing is consumed until the delimiter is found. The delimiter is copied;
    /// the task holds the stream's state, so the stream may be moved while it waits.
    task<std::string> read_until(std::string_view delimiter, std::size_t max_size);

    /// Like `read_until` above, awaited in place without a coroutine frame or an allocation:
    /// appends the bytes up to and including the first `delimiter` to `out` (which keeps what
    /// it held) and returns how many it appended; at EOF appends what remains (0 when nothing
    /// does). The natural loop of a server: `co_await timeout(5s, s.read_until(buf, "\r\n\r\n",
    /// 8192))`. `delimiter` and `out` are borrowed until the await resumes.
    ///
    /// **Errors:** as `read_until` above (thrown at the await; `std::invalid_argument` by this
    /// call). **Cancellation:** as for `read_some`; nothing is consumed and nothing is appended
    /// until the delimiter is found, so a cancelled call leaves every byte for the next read
    /// (SEMANTICS 14).
    [[nodiscard]] detail::read_until_request
    read_until(std::string& out, std::string_view delimiter, std::size_t max_size);

    /// Writes all of `data`, borrowed: the bytes must stay valid until the await resumes.
    /// Resumes when libuv has handed every byte to the kernel (at once when `uv_try_write`
    /// takes everything).
    ///
    /// **Cancellation:** a cancellation point before it starts. Once part of the data is queued
    /// the cancellation is terminal: the stream is closed, the task resumes with the
    /// cancellation after the close callback, and later operations fail with `UV_EBADF`
    /// ("closed because a pending write was cancelled"). A write that completed first is
    /// delivered. Destroying the awaiting frame while the write is pending also closes the
    /// stream, so libuv never reads the bytes again.
    ///
    /// **Errors:** `std::system_error` (uv category): `UV_EBADF` on a closed stream, `UV_EPIPE`,
    /// `UV_ECONNRESET`, ...
    [[nodiscard]] detail::write_awaiter write(std::span<const char> data);

    /// Writes all of `data`, owned by the request while libuv needs it. Otherwise as the
    /// borrowing `write`.
    [[nodiscard]] detail::write_awaiter write(std::string data);

    /// Writes a string literal (without its terminating NUL), borrowed.
    template <std::size_t N>
    [[nodiscard]] detail::write_awaiter write(const char (&literal)[N]) {
        return write(std::span<const char>(literal, N - 1));
    }

    /// Half-closes the write side (`uv_shutdown`) after the queued writes; resumes when done.
    ///
    /// **Cancellation:** like a pending write: terminal, the stream is closed.
    /// **Errors:** `std::system_error` (uv category), `UV_EBADF` on a closed stream.
    [[nodiscard]] detail::stream_request_awaiter shutdown();

    /// Closes the handle and resumes after its close callback. Idempotent: closing a closed,
    /// closing or never opened stream resumes as soon as the handle is gone.
    ///
    /// **Cancellation:** never a cancellation point; completes even in a cancelled scope.
    /// A task waiting on this stream (reading, writing) resumes with `UV_ECANCELED`/`UV_EBADF`.
    [[nodiscard]] detail::close_awaiter close();

    /// True from a successful open until `close()` (or a terminal cancellation) is requested.
    [[nodiscard]] bool is_open() const noexcept;

    /// Bytes received and not yet consumed by a read.
    [[nodiscard]] std::size_t buffered() const noexcept;

    /// The libuv stream handle, or null when not open. Do not close it or read from it.
    [[nodiscard]] uv_stream_t* native_stream() const noexcept;

protected:
    detail::state_owner<detail::stream_state> state_;
};

} // namespace uvasync
