// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>

#include <uvasync/detail/export.hpp>
#include <uvasync/detail/handle_state.hpp>
#include <uvasync/detail/intrusive_list.hpp>
#include <uvasync/io/stream.hpp>

namespace uvasync::detail {

struct listener_state;
struct accept_tag;

/// The untyped part of `accept()`: waits for a connection and takes it (`uv_accept`) into a
/// new stream state. The typed `accept_awaiter<S>` wraps the state into `S`.
class [[nodiscard]] UVASYNC_API accept_awaiter_base : private handle_awaiter<listener_state>,
                                                      public list_hook<accept_tag> {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    explicit accept_awaiter_base(listener_state* l) noexcept;
    accept_awaiter_base(accept_awaiter_base&& other) noexcept; // only before it is awaited
    accept_awaiter_base(const accept_awaiter_base&) = delete;
    accept_awaiter_base& operator=(const accept_awaiter_base&) = delete;
    accept_awaiter_base& operator=(accept_awaiter_base&&) = delete;
    ~accept_awaiter_base();

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    bool await_suspend(std::coroutine_handle<> caller);

protected:
    /// The accepted stream's state (ownership passes to the caller), or throws.
    stream_state* take();

private:
    friend struct listener_state;
    static void on_abort(parked_wait* p) noexcept;
    // runtime::dump: what this wait is (wait_kind.hpp), described only when a dump is made.
    static const wait_kind kind;
    static void describe(const parked_wait& w, deadline origin, std::string& out);

    void deliver(stream_state* s, int status, const char* reason) noexcept;

    stream_state* result_ = nullptr;
    int status_ = 0;
    const char* kind_ = "listener";
    const char* reason_ = nullptr;
};

/// The awaiter of `tcp_listener::accept()` and `pipe_listener::accept()`.
template <class Stream>
class accept_awaiter : public accept_awaiter_base {
public:
    using accept_awaiter_base::accept_awaiter_base;

    Stream await_resume() { return Stream(adopt, take()); }
};

} // namespace uvasync::detail
