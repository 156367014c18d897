// SPDX-License-Identifier: MIT
// The stream object: ownership of its state, close, and what it reports about itself.

#include <cstddef>
#include <utility>

#include <uv.h>
#include <uvasync/io/stream.hpp>
#include <uvasync/uv_error.hpp>

#include "stream_state.hpp"

namespace uvasync {

stream::stream(detail::adopt_t /*unused*/, detail::stream_state* s) noexcept
    : state_(s) {
}

detail::close_awaiter stream::close() {
    return detail::close_awaiter(state_.get());
}

bool stream::is_open() const noexcept {
    return state_ != nullptr && !state_->closing;
}

std::size_t stream::buffered() const noexcept {
    return state_ != nullptr ? state_->buffered() : 0;
}

uv_stream_t* stream::native_stream() const noexcept {
    return state_ != nullptr ? state_->stream() : nullptr;
}

} // namespace uvasync
