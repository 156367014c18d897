// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <uv.h>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/request.hpp>
#include <uvasync/task.hpp>

/// Files over libuv's fs requests (`uv_fs_*`, run on the threadpool).
///
/// Every call returns an awaiter that starts the request when it is awaited, inside a task, on
/// the loop thread. What they share (SEMANTICS 14.6, docs/io/requests.md):
///
/// **Cancellation:** each is a cancellation point. Cancelled before it is awaited: the request
/// is never made. Cancelled while queued on the threadpool: `uv_cancel` takes it back and
/// `cancelled_error` is raised. Cancelled while it runs (`uv_cancel` returns `UV_EBUSY`), or
/// after it completed but before the task resumed: the real result is delivered (completion
/// wins, D-2: a file that was created, renamed or written is reported as such) and the
/// cancellation is raised at the task's next cancellation point. If the awaiting frame is
/// destroyed while a request is in flight, the request finishes on its own and its result is
/// released (an opened fd is closed).
///
/// **Errors:** `std::system_error` in `uvasync::uv_category()` with libuv's code (for example
/// `UV_ENOENT` for a missing file or an empty path); `std::invalid_argument` for a path with
/// an embedded NUL character; `uvasync::invalid_state` for I/O on a closed `file`.
///
/// **Thread:** loop thread only, inside a task. A read fills the caller's span directly (it
/// must stay valid until the `co_await` returns); a write copies the caller's data when the
/// call is made.
namespace uvasync::fs {

class file;

namespace detail {

using uvasync::detail::request_awaiter;
using uvasync::detail::request_op;

/// The base of every fs operation: the `uv_fs_t`, its callback and the cleanup order
/// (collect the result, `uv_fs_req_cleanup`, then `finished`).
class UVASYNC_API fs_op : public request_op {
public:
    static constexpr int cancelled_status = UV_ECANCELED;
    static constexpr bool throws_status = true;

    uv_req_t* request() noexcept override { return reinterpret_cast<uv_req_t*>(&req_); }

    void set_loop(uv_loop_t* loop) noexcept { loop_ = loop; }

protected:
    fs_op() noexcept { req_.data = this; }

    /// Copies what the result needs out of `req_` before it is cleaned up (loop thread), and
    /// returns the status to report (a copy that fails to allocate reports `UV_ENOMEM`).
    virtual int collect(int status) noexcept { return status; }

    static void on_fs(uv_fs_t* req) noexcept;

    [[nodiscard]] std::int64_t result() const noexcept { return result_; }

    uv_fs_t req_{};
    uv_loop_t* loop_ = nullptr;

private:
    std::int64_t result_ = 0;
};

class open_op;
class read_op;
class write_op;
class close_op;
class stat_op;
class path_op;
class scandir_op;

} // namespace detail

/// A move-only owner of an open file descriptor, made by `fs::open`.
///
/// Do not close or destroy a file while another task awaits a `read` or `write` on it: that
/// request would run on a descriptor number that may already name another file.
///
/// The destructor closes a descriptor still open, synchronously (a `uv_fs_close` without a
/// callback; closing a regular file does not block in practice). Prefer `co_await f.close()`
/// where the close error matters.
class UVASYNC_API file {
public:
    file() noexcept = default;

    /// Adopts `fd` (closed by this object); `loop` is used for the synchronous close.
    file(uv_loop_t* loop, uv_file fd) noexcept
        : loop_(loop)
        , fd_(fd) {}

    file(const file&) = delete;
    file& operator=(const file&) = delete;

    file(file&& other) noexcept
        : loop_(other.loop_)
        , fd_(std::exchange(other.fd_, -1)) {}

    file& operator=(file&& other) noexcept {
        if (this != &other) {
            close_now();
            loop_ = other.loop_;
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }

    ~file() { close_now(); }

    /// Reads up to `buffer.size()` bytes at `offset` (or at the current position when `offset`
    /// is -1) and resumes with the number of bytes read: 0 at end of file, and 0 for an empty
    /// buffer. The bytes are read straight into `buffer` (no allocation, no copy), so `buffer`
    /// must stay valid until the `co_await` returns, like the buffer of a blocking `read(2)`:
    /// the awaiting task never resumes before the request called back (cancelled while queued:
    /// nothing is written; while it runs: the bytes read are delivered, D-2), and the runtime
    /// never destroys the awaiting frame while the request is in flight (SEMANTICS 15.5), so a
    /// buffer in the frame is always safe. Do not free it from another task meanwhile.
    [[nodiscard]] detail::request_awaiter<detail::read_op> read(std::span<char> buffer,
                                                                std::int64_t offset = -1) const;

    /// Writes `data` at `offset` (or at the current position when -1) and resumes with the
    /// number of bytes written. `data` is copied when this is called.
    [[nodiscard]] detail::request_awaiter<detail::write_op> write(std::span<const char> data,
                                                                  std::int64_t offset = -1) const;

    /// Closes the descriptor (`uv_fs_close`). The file is closed from this call on: even when
    /// the close is cancelled before it runs, the descriptor is released (synchronously) and
    /// `cancelled_error` is raised. Closing a closed file resumes at once.
    [[nodiscard]] detail::request_awaiter<detail::close_op> close();

    /// The descriptor, or -1 once closed or moved from.
    [[nodiscard]] uv_file fd() const noexcept { return fd_; }

    [[nodiscard]] bool is_open() const noexcept { return fd_ >= 0; }

    /// Gives up ownership: returns the descriptor and leaves the file closed.
    [[nodiscard]] uv_file release() noexcept { return std::exchange(fd_, -1); }

private:
    void close_now() noexcept;
    void require_open(const char* what) const;

    uv_loop_t* loop_ = nullptr;
    uv_file fd_ = -1;
};

/// An entry of `scandir`.
struct dir_entry {
    std::string name;
    uv_dirent_type_t type = UV_DIRENT_UNKNOWN;

    friend bool operator==(const dir_entry&, const dir_entry&) = default;
};

/// Opens `path` with `flags` (`UV_FS_O_*` or the POSIX `O_*`) and `mode` for created files,
/// and resumes with the open `file`. A file opened by a request whose task was cancelled
/// meanwhile is still delivered (completion wins); if nobody can take it, it is closed.
[[nodiscard]] UVASYNC_API detail::request_awaiter<detail::open_op> open(std::string path, int flags,
                                                                        int mode = 0644);

/// Resumes with the metadata of `path` (`uv_fs_stat`, follows symbolic links).
[[nodiscard]] UVASYNC_API detail::request_awaiter<detail::stat_op> stat(std::string path);

/// Removes the file `path` (`uv_fs_unlink`).
[[nodiscard]] UVASYNC_API detail::request_awaiter<detail::path_op> unlink(std::string path);

/// Renames `from` to `to` (`uv_fs_rename`), replacing `to` if it exists.
[[nodiscard]] UVASYNC_API detail::request_awaiter<detail::path_op> rename(std::string from,
                                                                          std::string to);

/// Creates the directory `path` (`uv_fs_mkdir`).
[[nodiscard]] UVASYNC_API detail::request_awaiter<detail::path_op> mkdir(std::string path,
                                                                         int mode = 0755);

/// Removes the empty directory `path` (`uv_fs_rmdir`).
[[nodiscard]] UVASYNC_API detail::request_awaiter<detail::path_op> rmdir(std::string path);

/// Resumes with the entries of the directory `path`, without "." and "..", in the order
/// libuv returns them (unsorted).
[[nodiscard]] UVASYNC_API detail::request_awaiter<detail::scandir_op> scandir(std::string path);

/// Reads the whole file `path`: a task built on `open`, `read` and `close`, so each of its
/// requests is a cancellation point as above.
UVASYNC_API task<std::string> read_file(std::string path);

/// Creates or truncates `path` (mode 0644) and writes `data` to it: a task built on `open`,
/// `write` and `close`. `data` is copied when the call is made.
UVASYNC_API task<void> write_file(std::string path, std::string_view data);

namespace detail {

class UVASYNC_API open_op final : public fs_op {
public:
    open_op(std::string path, int flags, int mode)
        : path_(std::move(path))
        , flags_(flags)
        , mode_(mode) {}

    ~open_op() override;

    int start(uv_loop_t* loop) noexcept override;
    file take() noexcept;

private:
    int collect(int status) noexcept override;

    std::string path_;
    int flags_;
    int mode_;
    uv_file fd_ = -1; // owned until taken
};

class UVASYNC_API read_op final : public fs_op {
public:
    read_op(uv_file fd, std::span<char> dest, std::int64_t offset);

    int start(uv_loop_t* loop) noexcept override;
    std::size_t take() noexcept;

private:
    std::span<char> dest_; // the caller's memory; libuv reads straight into it
    uv_file fd_;
    std::int64_t offset_;
};

class UVASYNC_API write_op final : public fs_op {
public:
    write_op(uv_file fd, std::span<const char> data, std::int64_t offset)
        : buffer_(data.begin(), data.end())
        , fd_(fd)
        , offset_(offset) {}

    int start(uv_loop_t* loop) noexcept override;
    std::size_t take() noexcept;

private:
    std::vector<char> buffer_;
    uv_file fd_;
    std::int64_t offset_;
};

class UVASYNC_API close_op final : public fs_op {
public:
    explicit close_op(uv_file fd) noexcept
        : fd_(fd) {}

    ~close_op() override;

    int start(uv_loop_t* loop) noexcept override;

    void take() noexcept {}

private:
    int collect(int status) noexcept override;

    uv_file fd_; // owned until libuv has closed it
    bool started_ = false;
};

class UVASYNC_API stat_op final : public fs_op {
public:
    explicit stat_op(std::string path)
        : path_(std::move(path)) {}

    int start(uv_loop_t* loop) noexcept override;

    uv_stat_t take() noexcept { return stat_; }

private:
    int collect(int status) noexcept override;

    std::string path_;
    uv_stat_t stat_{};
};

/// unlink, rename, mkdir and rmdir: one or two paths, no result.
class UVASYNC_API path_op final : public fs_op {
public:
    enum class kind : std::uint8_t { unlink, rename, mkdir, rmdir };

    path_op(kind k, std::string path, std::string to = {}, int mode = 0)
        : path_(std::move(path))
        , to_(std::move(to))
        , mode_(mode)
        , kind_(k) {}

    int start(uv_loop_t* loop) noexcept override;

    void take() noexcept {}

private:
    std::string path_;
    std::string to_;
    int mode_;
    kind kind_;
};

class UVASYNC_API scandir_op final : public fs_op {
public:
    explicit scandir_op(std::string path)
        : path_(std::move(path)) {}

    int start(uv_loop_t* loop) noexcept override;

    std::vector<dir_entry> take() noexcept { return std::move(entries_); }

private:
    int collect(int status) noexcept override;

    std::string path_;
    std::vector<dir_entry> entries_;
};

} // namespace detail

} // namespace uvasync::fs
