// SPDX-License-Identifier: MIT
#include <stdexcept>
#include <string>
#include <utility>

#include <uv.h>
#include <uvasync/io/error.hpp>
#include <uvasync/io/pipe.hpp>

#include "c_string.hpp"
#include "stream_state.hpp"

#include <sys/un.h>

namespace uvasync {

namespace {

/// libuv 1.44 copies the path into `sockaddr_un::sun_path` with strncpy, silently truncating a
/// long one (and binding a socket file under the truncated name), and takes a C string, so an
/// embedded NUL cuts it. Both are rejected before anything is created, as fs:: does.
void check_pipe_path(const std::string& path, const char* what) {
    detail::require_c_string(path, "uvasync: ", what, "path");
    if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
        throw std::invalid_argument(std::string("uvasync: ") + what + ": path is " +
                                    std::to_string(path.size()) +
                                    " bytes; a socket path has at "
                                    "most " +
                                    std::to_string(sizeof(sockaddr_un{}.sun_path) - 1));
    }
}

} // namespace

// ---------------------------------------------------------------------------------------------
// pipe_stream

pipe_stream pipe_stream::create(bool ipc) {
    uv_loop_t* loop = detail::current_runtime("pipe_stream::create").loop();
    return {detail::adopt, detail::init_handle(
                               new detail::stream_state("pipe_stream"),
                               [loop, ipc](detail::stream_state* s) {
                                   return uv_pipe_init(loop, &s->u.pipe, ipc ? 1 : 0);
                               },
                               "pipe_stream::create")};
}

pipe_stream pipe_stream::open(uv_file fd) {
    const std::string what = "pipe_stream::open fd " + std::to_string(fd);
    pipe_stream p = create(false);
    // On failure `p` closes the handle, which has no fd yet: the caller keeps `fd`.
    detail::check_uv(uv_pipe_open(&p.state_->u.pipe, fd), what.c_str());
    return p;
}

task<pipe_stream> pipe_stream::connect(std::string path) {
    check_pipe_path(path, "pipe_stream::connect");
    const std::string label = "pipe_stream::connect " + path;
    pipe_stream p = create(false);
    detail::stream_request_awaiter connecting(p.state_.get(),
                                              detail::stream_request_awaiter::op::connect_pipe,
                                              path.c_str(), label.c_str());
    co_await connecting;
    co_return p;
}

uv_pipe_t* pipe_stream::native_handle() noexcept {
    return state_ != nullptr ? &state_->u.pipe : nullptr;
}

// ---------------------------------------------------------------------------------------------
// pipe_listener

pipe_listener pipe_listener::bind(const std::string& path, int backlog) {
    check_pipe_path(path, "pipe_listener::bind");
    const std::string what = "pipe_listener::bind " + path;
    uv_loop_t* loop = detail::current_runtime("pipe_listener::bind").loop();
    detail::listener_state* l = detail::init_handle(
        new detail::listener_state("pipe_listener", "pipe_stream", true),
        [loop](detail::listener_state* s) { return uv_pipe_init(loop, &s->u.pipe, 0); },
        what.c_str());
    pipe_listener result;
    result.state_.reset(l); // closes the handle if binding fails
    detail::check_uv(uv_pipe_bind(&l->u.pipe, path.c_str()), what.c_str());
    detail::check_uv(uv_listen(l->stream(), backlog, &detail::listener_state::on_connection),
                     what.c_str());
    return result;
}

detail::accept_awaiter<pipe_stream> pipe_listener::accept() {
    // NOLINTNEXTLINE(modernize-return-braced-init-list): the constructor is explicit
    return detail::accept_awaiter<pipe_stream>(state_.get());
}

uv_pipe_t* pipe_listener::native_handle() noexcept {
    return state_ != nullptr ? &state_->u.pipe : nullptr;
}

} // namespace uvasync
