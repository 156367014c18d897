// SPDX-License-Identifier: MIT
#pragma once

#include <uv.h>
#include <uvasync/detail/export.hpp>
#include <uvasync/io/stream.hpp>

namespace uvasync {

/// A terminal stream (`uv_tty_t`). `tty_stream::open(0)` reads the terminal on stdin;
/// `open(1)` writes to it. Reading, writing and closing are `stream`'s.
///
/// **Thread:** loop thread only.
class UVASYNC_API tty_stream : public stream {
public:
    /// A stream that is not open.
    tty_stream() noexcept = default;

    /// Wraps the terminal `fd` (`uv_tty_init`) on the current runtime's loop. libuv reopens the
    /// tty when it can, so closing the stream does not close `fd` itself in that case.
    ///
    /// **Errors:** `std::system_error` (`UV_EINVAL` when `fd` is not a terminal, ...);
    /// `invalid_state` without a runtime.
    static tty_stream open(uv_file fd);

    /// Sets the terminal mode (`uv_tty_set_mode`: `UV_TTY_MODE_NORMAL`, `_RAW`, `_IO`).
    /// **Errors:** `std::system_error`.
    void set_mode(uv_tty_mode_t mode);

    /// The libuv handle, or null when not open. Do not close it.
    [[nodiscard]] uv_tty_t* native_handle() noexcept;
};

} // namespace uvasync
