// SPDX-License-Identifier: MIT
#pragma once

#include <string>

#include <uv.h>
#include <uvasync/detail/accept_awaiter.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/io/listener.hpp>
#include <uvasync/io/stream.hpp>
#include <uvasync/task.hpp>

namespace uvasync {

/// A pipe stream (`uv_pipe_t`): a Unix domain socket, an anonymous pipe or a socketpair end.
/// Reading, writing and closing are `stream`'s.
///
/// **Thread:** loop thread only.
class UVASYNC_API pipe_stream : public stream {
public:
    using stream::stream; // stream(adopt, state): how the library makes one

    /// A stream that is not open.
    pipe_stream() noexcept = default;

    /// An initialised, unconnected `uv_pipe_t` on the current runtime's loop, for example for
    /// a child process's stdio (`UV_CREATE_PIPE` with `native_handle()`). It is usable as a
    /// stream once libuv has connected it.
    ///
    /// **Errors:** `std::system_error`; `invalid_state` without a runtime.
    static pipe_stream create(bool ipc = false);

    /// Wraps an existing file descriptor (`uv_pipe_open`); the stream owns it from then on and
    /// closes it with the handle.
    ///
    /// **Errors:** `std::system_error` (for example `UV_EBADF`); `invalid_state` without a
    /// runtime. On failure the fd is not closed.
    static pipe_stream open(uv_file fd);

    /// Connects to the Unix domain socket at `path`.
    ///
    /// **Cancellation:** as for `tcp_stream::connect` (terminal once started).
    /// **Errors:** `std::system_error` naming the path, for example
    /// "pipe_stream::connect /tmp/x.sock: no such file or directory"; `std::invalid_argument`
    /// for a path with a NUL character or longer than `sun_path` allows (107 bytes on Linux),
    /// which libuv would silently cut.
    static task<pipe_stream> connect(std::string path);

    /// The libuv handle, or null when not open. Do not close it.
    [[nodiscard]] uv_pipe_t* native_handle() noexcept;
};

/// A listening Unix domain socket. Closing is `listener`'s (libuv unlinks nothing: remove the
/// socket file yourself).
///
/// **Thread:** loop thread only.
class UVASYNC_API pipe_listener : public listener {
public:
    /// Binds to `path` and listens, on the current runtime's loop.
    /// **Errors:** `std::system_error` naming the path (`UV_EADDRINUSE` when it exists);
    /// `std::invalid_argument` for a path with a NUL character or longer than `sun_path` allows
    /// (107 bytes on Linux): nothing is created, no socket file is left behind.
    static pipe_listener bind(const std::string& path, int backlog = 511);

    /// As `tcp_listener::accept`, returning a `pipe_stream`.
    [[nodiscard]] detail::accept_awaiter<pipe_stream> accept();

    /// The libuv handle, or null when not open. Do not close it.
    [[nodiscard]] uv_pipe_t* native_handle() noexcept;
};

} // namespace uvasync
