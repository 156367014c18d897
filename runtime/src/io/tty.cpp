// SPDX-License-Identifier: MIT
#include <string>

#include <uv.h>
#include <uvasync/io/error.hpp>
#include <uvasync/io/tty.hpp>

#include "stream_state.hpp"

namespace uvasync {

tty_stream tty_stream::open(uv_file fd) {
    const std::string what = "tty_stream::open fd " + std::to_string(fd);
    uv_loop_t* loop = detail::current_runtime("tty_stream::open").loop();
    tty_stream t;
    t.state_.reset(detail::init_handle(
        new detail::stream_state("tty_stream"),
        [loop, fd](detail::stream_state* s) { return uv_tty_init(loop, &s->u.tty, fd, 0); },
        what.c_str()));
    return t;
}

void tty_stream::set_mode(uv_tty_mode_t mode) {
    if (state_ == nullptr || state_->closing) {
        throw_uv_error(UV_EBADF, "tty_stream::set_mode: the stream is not open");
    }
    detail::check_uv(uv_tty_set_mode(&state_->u.tty, mode), "tty_stream::set_mode");
}

uv_tty_t* tty_stream::native_handle() noexcept {
    return state_ != nullptr ? &state_->u.tty : nullptr;
}

} // namespace uvasync
