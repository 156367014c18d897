// SPDX-License-Identifier: MIT
#pragma once

#include <uvasync/detail/export.hpp>
#include <uvasync/detail/handle_state.hpp>

namespace uvasync {

namespace detail {
struct listener_state;
} // namespace detail

/// The common base of `tcp_listener` and `pipe_listener`: a listening socket that owns one heap
/// state with the handle embedded. Move-only; the destructor closes it without waiting.
/// Accepting is the derived listener's, which returns its own kind of stream.
///
/// **Thread:** loop thread only.
class UVASYNC_API listener {
public:
    /// A listener that is not open.
    listener() noexcept = default;

    /// Closes the listener; resumes after the close callback. Idempotent, never a cancellation
    /// point. Waiting accepts resume with `UV_ECANCELED`.
    [[nodiscard]] detail::close_awaiter close();

    [[nodiscard]] bool is_open() const noexcept;

protected:
    detail::state_owner<detail::listener_state> state_;
};

} // namespace uvasync
