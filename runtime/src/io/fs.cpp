// SPDX-License-Identifier: MIT
#include <algorithm>
#include <cstring>
#include <new>

#include <uvasync/error.hpp>
#include <uvasync/io/fs.hpp>

#include "c_string.hpp"

namespace uvasync::fs {

namespace {

/// One request moves at most this much; a larger read or write reports a partial count.
constexpr std::size_t max_io = std::size_t(1) << 30;

/// libuv takes C strings: a path with an embedded NUL would silently name another file.
void check_path(const std::string& path, const char* what) {
    uvasync::detail::require_c_string(path, "uvasync::fs::", what, "path");
}

/// A synchronous close (no callback: libuv runs it inline). Used where nobody can await one:
/// destructors and results nobody took.
void close_sync(uv_loop_t* loop, uv_file fd) noexcept {
    uv_fs_t req;
    (void)uv_fs_close(loop, &req, fd, nullptr);
    uv_fs_req_cleanup(&req);
}

} // namespace

namespace detail {

void fs_op::on_fs(uv_fs_t* req) noexcept {
    auto* self = static_cast<fs_op*>(req->data);
    self->result_ = req->result;
    int status = req->result < 0 ? static_cast<int>(req->result) : 0;
    status = self->collect(status);
    // libuv's memory for the request (copied paths, stat data, dirents) goes before the
    // operation may be freed by finished().
    uv_fs_req_cleanup(req);
    self->finished(status);
}

// open ---------------------------------------------------------------------------------------

open_op::~open_op() {
    if (fd_ >= 0) { // opened, and nobody took it (the awaiting frame is gone or never resumed)
        close_sync(loop_, fd_);
    }
}

int open_op::start(uv_loop_t* loop) noexcept {
    loop_ = loop;
    return uv_fs_open(loop, &req_, path_.c_str(), flags_, mode_, &on_fs);
}

int open_op::collect(int status) noexcept {
    if (status == 0) {
        fd_ = static_cast<uv_file>(result());
    }
    return status;
}

file open_op::take() noexcept {
    return {loop_, std::exchange(fd_, -1)};
}

// read and write -----------------------------------------------------------------------------

read_op::read_op(uv_file fd, std::span<char> dest, std::int64_t offset)
    : dest_(dest.first(std::min<std::size_t>(dest.size(), max_io)))
    , fd_(fd)
    , offset_(offset) {
}

int read_op::start(uv_loop_t* loop) noexcept {
    loop_ = loop;
    // Straight into the caller's memory: no copy, no buffer of the request's own. Safe because
    // the awaiting task does not resume, and its frame is not destroyed, before the request
    // has called back (completion wins over a cancellation that arrives while it runs, D-2;
    // shutdown waits for requests in flight before it destroys frames, SEMANTICS 15.5).
    uv_buf_t buf = uv_buf_init(dest_.data(), static_cast<unsigned>(dest_.size()));
    return uv_fs_read(loop, &req_, fd_, &buf, 1, offset_, &on_fs);
}

std::size_t read_op::take() noexcept {
    return static_cast<std::size_t>(result());
}

int write_op::start(uv_loop_t* loop) noexcept {
    loop_ = loop;
    uv_buf_t buf = uv_buf_init(
        buffer_.data(), static_cast<unsigned>(std::min<std::size_t>(buffer_.size(), max_io)));
    return uv_fs_write(loop, &req_, fd_, &buf, 1, offset_, &on_fs);
}

std::size_t write_op::take() noexcept {
    return static_cast<std::size_t>(result());
}

// close --------------------------------------------------------------------------------------

close_op::~close_op() {
    if (!started_ && fd_ >= 0 && loop_ != nullptr) {
        close_sync(loop_, fd_); // cancelled before the request was made
    }
}

int close_op::start(uv_loop_t* loop) noexcept {
    loop_ = loop;
    if (fd_ < 0) {
        return completed_inline; // closing a closed file
    }
    const int rc = uv_fs_close(loop, &req_, fd_, &on_fs);
    started_ = rc == 0;
    return rc;
}

int close_op::collect(int status) noexcept {
    if (status == UV_ECANCELED) {
        close_sync(loop_, fd_); // taken back from the queue: the descriptor is still open
    }
    return status;
}

// paths --------------------------------------------------------------------------------------

int stat_op::start(uv_loop_t* loop) noexcept {
    loop_ = loop;
    return uv_fs_stat(loop, &req_, path_.c_str(), &on_fs);
}

int stat_op::collect(int status) noexcept {
    if (status == 0) {
        stat_ = req_.statbuf;
    }
    return status;
}

int path_op::start(uv_loop_t* loop) noexcept {
    loop_ = loop;
    switch (kind_) {
    case kind::unlink:
        return uv_fs_unlink(loop, &req_, path_.c_str(), &on_fs);
    case kind::rename:
        return uv_fs_rename(loop, &req_, path_.c_str(), to_.c_str(), &on_fs);
    case kind::mkdir:
        return uv_fs_mkdir(loop, &req_, path_.c_str(), mode_, &on_fs);
    case kind::rmdir:
        return uv_fs_rmdir(loop, &req_, path_.c_str(), &on_fs);
    }
    return UV_EINVAL;
}

int scandir_op::start(uv_loop_t* loop) noexcept {
    loop_ = loop;
    return uv_fs_scandir(loop, &req_, path_.c_str(), 0, &on_fs);
}

int scandir_op::collect(int status) noexcept {
    if (status != 0) {
        return status;
    }
    try {
        uv_dirent_t ent;
        while (uv_fs_scandir_next(&req_, &ent) == 0) {
            entries_.push_back(dir_entry{ent.name, ent.type});
        }
    } catch (const std::bad_alloc&) {
        entries_.clear();
        return UV_ENOMEM;
    }
    return status;
}

} // namespace detail

// file ---------------------------------------------------------------------------------------

void file::close_now() noexcept {
    if (fd_ >= 0) {
        close_sync(loop_, std::exchange(fd_, -1));
    }
}

void file::require_open(const char* what) const {
    if (fd_ < 0) {
        throw invalid_state(std::string("uvasync::fs::file::") + what + ": the file is closed");
    }
}

detail::request_awaiter<detail::read_op> file::read(std::span<char> buffer,
                                                    std::int64_t offset) const {
    require_open("read");
    return detail::request_awaiter<detail::read_op>(new detail::read_op(fd_, buffer, offset),
                                                    "uvasync::fs::file::read");
}

detail::request_awaiter<detail::write_op> file::write(std::span<const char> data,
                                                      std::int64_t offset) const {
    require_open("write");
    return detail::request_awaiter<detail::write_op>(new detail::write_op(fd_, data, offset),
                                                     "uvasync::fs::file::write");
}

detail::request_awaiter<detail::close_op> file::close() {
    auto* op = new detail::close_op(std::exchange(fd_, -1));
    op->set_loop(loop_);
    return detail::request_awaiter<detail::close_op>(op, "uvasync::fs::file::close");
}

// free functions -----------------------------------------------------------------------------

detail::request_awaiter<detail::open_op> open(std::string path, int flags, int mode) {
    check_path(path, "open");
    return detail::request_awaiter<detail::open_op>(
        new detail::open_op(std::move(path), flags, mode), "uvasync::fs::open");
}

detail::request_awaiter<detail::stat_op> stat(std::string path) {
    check_path(path, "stat");
    return detail::request_awaiter<detail::stat_op>(new detail::stat_op(std::move(path)),
                                                    "uvasync::fs::stat");
}

detail::request_awaiter<detail::path_op> unlink(std::string path) {
    check_path(path, "unlink");
    return detail::request_awaiter<detail::path_op>(
        new detail::path_op(detail::path_op::kind::unlink, std::move(path)), "uvasync::fs::unlink");
}

detail::request_awaiter<detail::path_op> rename(std::string from, std::string to) {
    check_path(from, "rename");
    check_path(to, "rename");
    return detail::request_awaiter<detail::path_op>(
        new detail::path_op(detail::path_op::kind::rename, std::move(from), std::move(to)),
        "uvasync::fs::rename");
}

detail::request_awaiter<detail::path_op> mkdir(std::string path, int mode) {
    check_path(path, "mkdir");
    return detail::request_awaiter<detail::path_op>(
        new detail::path_op(detail::path_op::kind::mkdir, std::move(path), {}, mode),
        "uvasync::fs::mkdir");
}

detail::request_awaiter<detail::path_op> rmdir(std::string path) {
    check_path(path, "rmdir");
    return detail::request_awaiter<detail::path_op>(
        new detail::path_op(detail::path_op::kind::rmdir, std::move(path)), "uvasync::fs::rmdir");
}

detail::request_awaiter<detail::scandir_op> scandir(std::string path) {
    check_path(path, "scandir");
    return detail::request_awaiter<detail::scandir_op>(new detail::scandir_op(std::move(path)),
                                                       "uvasync::fs::scandir");
}

task<std::string> read_file(std::string path) {
    file f = co_await open(std::move(path), UV_FS_O_RDONLY);
    std::string out;
    std::vector<char> chunk(std::size_t{64} * 1024);
    for (;;) {
        const std::size_t n = co_await f.read(chunk);
        if (n == 0) {
            break;
        }
        out.append(chunk.data(), n);
    }
    co_await f.close();
    co_return out;
}

namespace {

task<void> write_all(std::string path, std::string bytes) {
    file f = co_await open(std::move(path), UV_FS_O_WRONLY | UV_FS_O_CREAT | UV_FS_O_TRUNC);
    std::size_t done = 0;
    while (done < bytes.size()) {
        const std::span<const char> rest(bytes.data() + done, bytes.size() - done);
        done += co_await f.write(rest);
    }
    co_await f.close();
}

} // namespace

task<void> write_file(std::string path, std::string_view data) {
    // Not a coroutine itself: `data` is copied now, so the caller's view need not outlive the
    // lazy task.
    return write_all(std::move(path), std::string(data));
}

} // namespace uvasync::fs
