// SPDX-License-Identifier: MIT
// The one lifecycle of every object that owns libuv handles (streams, listeners, UDP sockets,
// signal sets, processes) and of the periodic timer: closing, waiting for the close, and
// freeing the state only when nothing can touch it any more (SEMANTICS 14.4).
#pragma once

#include <coroutine>
#include <cstddef>
#include <utility>

#include <uvasync/detail/export.hpp>
#include <uvasync/detail/intrusive_list.hpp>
#include <uvasync/detail/park.hpp>

struct uv_handle_s;

namespace uvasync::detail {

struct handle_state;
struct close_tag;

/// A node woken when a state's last close callback has run: the close awaiter, and operations
/// whose cancellation closed the handle (a pending write, connect or shutdown). Unlinks itself
/// when destroyed. `on_closed(context)` only makes a task ready.
struct UVASYNC_API close_waiter : list_hook<close_tag> {
    close_waiter() noexcept = default;
    close_waiter(const close_waiter&) = delete;
    close_waiter& operator=(const close_waiter&) = delete;
    close_waiter(close_waiter&&) = delete;
    close_waiter& operator=(close_waiter&&) = delete;

    ~close_waiter() { unlink(); }

    /// Waits for `h`'s close; `fn(ctx)` runs once its last close callback has run.
    void link(handle_state* h, void (*fn)(void*) noexcept, void* ctx) noexcept;

    void (*on_closed)(void*) noexcept = nullptr;
    void* context = nullptr;
};

/// The heap state of an I/O object: its libuv handles (in the derived type) and its close
/// protocol.
///
/// **Ownership:** the public object (`tcp_stream`, `udp_socket`, ...) owns the state until it
/// lets go (`release`); awaiters pin it (`pin`/`unpin`). The state is deleted by whichever comes
/// last of: the owner letting go, the last close callback, the last pin. So its memory outlives
/// every libuv callback on its handles (request callbacks with `UV_ECANCELED` come before the
/// close callback), and an awaiter that outlives its object finds it closed and raises instead
/// of reading freed memory.
///
/// **Closing:** `request_close` runs once: `on_close_requested` wakes the waiters whose
/// operations libuv will never complete, `close_handles` calls `uv_close` on every handle, and
/// after the last close callback the close waiters are woken. Each handle's `data` points at
/// this base (`handle_state*`). Loop thread only.
struct UVASYNC_API handle_state {
    explicit handle_state(const char* kind_name) noexcept
        : kind(kind_name) {}

    handle_state(const handle_state&) = delete;
    handle_state& operator=(const handle_state&) = delete;
    handle_state(handle_state&&) = delete;
    handle_state& operator=(handle_state&&) = delete;
    virtual ~handle_state() = default;

    void pin() noexcept { ++pins; }

    /// Drops a pin; deletes the state if it was the last thing holding it.
    void unpin() noexcept;

    const char* kind;                   // "tcp_stream", ... for error messages
    const char* close_reason = nullptr; // why the library closed it (a cancelled write, ...)
    std::size_t pins = 0;               // awaiters and running read loops that use the state
    bool closing = false;
    bool closed = false; // the last close callback has run
    bool owner_alive = true;

    /// Runs once when the close is requested, before any `uv_close`: wakes the waiters whose
    /// operations libuv will never complete (reads, accepts, a signal wait, ...).
    virtual void on_close_requested() noexcept {}

    /// Calls `close_uv_handle` on every initialised handle and returns how many; 0 finishes
    /// the close at once (a timer has no handle, a failed construction none yet).
    virtual unsigned close_handles() noexcept = 0;

    /// The owner let go while the state is open. Closes by default; a process kills its child
    /// first and closes in the exit callback, so that the child is still reaped.
    virtual void on_released() noexcept;

    /// Runs after the last close callback, before the close waiters are woken.
    virtual void on_handles_closed() noexcept {}

    /// One close callback ran; the last one finishes the close.
    void handle_closed() noexcept;

    intrusive_list<close_waiter, close_tag> waiters; // woken after the last close callback
    unsigned open_handles = 0;                       // closes requested, callbacks not yet run
};

/// Requests the close once (idempotent); `reason` is kept for later errors if it is the first.
/// May delete the state at once if its owner is gone and nothing pins it.
UVASYNC_API void request_close(handle_state* h, const char* reason) noexcept;

/// The owner lets go (null is fine): closes the handles if needed; the state is freed after the
/// last close callback, or now if that already ran and nothing pins it.
UVASYNC_API void release(handle_state* h) noexcept;

/// `uv_close(h)` with the callback that counts it for the state in `h->data`.
UVASYNC_API void close_uv_handle(uv_handle_s* h) noexcept;

/// The public object's hold on its state (`stream`, the listeners, `udp_socket`, `signal_set`,
/// `process`, `timer`): move-only; letting go (destruction, being moved onto, `reset`) is
/// `release`, which closes the handles and frees the state after the last close callback. A
/// moved-from owner is empty. So the public objects need no special members of their own.
///
/// Held as the base type, so that moving and destroying an owner compile where `State` is
/// incomplete (user code); taking the state in or out (`get`, `reset`, `->`) needs its
/// definition, which only the library's sources have.
template <class State>
class state_owner {
public:
    state_owner() noexcept = default;

    /// Owns `s` (null: nothing).
    explicit state_owner(State* s) noexcept
        : h_(s) {}

    state_owner(state_owner&& other) noexcept
        : h_(std::exchange(other.h_, nullptr)) {}

    state_owner& operator=(state_owner&& other) noexcept {
        if (this != &other) {
            release(std::exchange(h_, std::exchange(other.h_, nullptr)));
        }
        return *this;
    }

    state_owner(const state_owner&) = delete;
    state_owner& operator=(const state_owner&) = delete;

    ~state_owner() { release(h_); }

    [[nodiscard]] State* get() const noexcept { return static_cast<State*>(h_); }

    State* operator->() const noexcept { return get(); }

    [[nodiscard]] bool operator==(std::nullptr_t) const noexcept { return h_ == nullptr; }

    /// Lets go of the current state (if any) and owns `s`.
    void reset(State* s) noexcept { release(std::exchange(h_, s)); }

    /// Returns the state and owns nothing: the caller takes the owner's place
    /// (`close_awaiter::owning`).
    [[nodiscard]] State* take() noexcept { return static_cast<State*>(std::exchange(h_, nullptr)); }

private:
    handle_state* h_ = nullptr;
};

/// Keeps a state's memory alive (not its handles open) while it is in use; moves only.
class state_pin {
public:
    explicit state_pin(handle_state* h) noexcept
        : h_(h) {
        if (h_ != nullptr) {
            h_->pin();
        }
    }

    state_pin(state_pin&& other) noexcept
        : h_(std::exchange(other.h_, nullptr)) {}

    state_pin(const state_pin&) = delete;
    state_pin& operator=(const state_pin&) = delete;
    state_pin& operator=(state_pin&&) = delete;

    ~state_pin() {
        if (h_ != nullptr) {
            h_->unpin();
        }
    }

private:
    handle_state* h_;
};

/// The base of every awaiter of one operation on an I/O object (read, write, accept, receive,
/// wait for a signal or an exit, ...): a cancellation point that pins the object's state from
/// the awaiter's creation to its destruction. The state has one slot for the waiting awaiter
/// of each operation; the derived awaiter fills it and clears it in its abort hook and when
/// its frame is destroyed while parked. `State` derives from `handle_state`; its definition is
/// needed only where the awaiter is created and destroyed (the library's sources).
template <class State>
class handle_awaiter : protected parked_wait {
public:
    handle_awaiter(const handle_awaiter&) = delete;
    handle_awaiter& operator=(const handle_awaiter&) = delete;
    handle_awaiter& operator=(handle_awaiter&&) = delete;

protected:
    handle_awaiter(State* state, abort_hook hook) noexcept
        : parked_wait(hook)
        , state_(state)
        , pin_(state) {}

    /// Only before it is awaited; the pin moves along.
    handle_awaiter(handle_awaiter&& other) noexcept
        : parked_wait(std::move(other))
        , state_(std::exchange(other.state_, nullptr))
        , pin_(std::move(other.pin_)) {}

    ~handle_awaiter() = default;

    State* state_; // null for an object that is not open (moved from, never opened)

private:
    // Released after the derived destructor, which may still use the state. Held as the base type,
    // so that moving and destroying an awaiter compile where `State` is incomplete (user code);
    // only creating one needs its definition.
    state_pin pin_;
};

/// The base of the awaiter of an object that has one waiting task at a time (`signal_set::wait`,
/// `timer::tick`, `process::wait`); `Derived` is that awaiter. The state keeps it in one slot:
/// `State::wait(Derived*)` takes it, or completes it at once (through the run queue, like
/// `yield()`) when the result is already there; `State::forget(Derived*)` lets it go. The members
/// that use the state are instantiated only in the library's sources, where `State` is defined.
template <class Derived, class State>
class single_waiter : protected handle_awaiter<State> {
protected:
    /// `hook` is the abort hook; by default the cancellation is total (`forget_on_abort`).
    single_waiter(State* state, const wait_kind& kind,
                  parked_wait::abort_hook hook = &forget_on_abort) noexcept
        : handle_awaiter<State>(state, hook) {
        this->describe_as(kind);
    }

    single_waiter(single_waiter&& other) noexcept = default; // only before it is awaited
    single_waiter(const single_waiter&) = delete;
    single_waiter& operator=(const single_waiter&) = delete;
    single_waiter& operator=(single_waiter&&) = delete;
    ~single_waiter() = default;

    /// Parks the caller for `op` and gives the awaiter to the state. False when the scope was
    /// already cancelled: nothing started, and `await_resume` raises.
    bool park_and_wait(std::coroutine_handle<> caller, const char* op) {
        if (!this->park(caller, op)) {
            return false;
        }
        this->state_->wait(self());
        return true;
    }

    /// For the awaiter's destructor: a frame destroyed while parked leaves the state's slot.
    void leave_slot() noexcept {
        if (this->state_ != nullptr && this->waiting()) {
            this->state_->forget(self());
        }
    }

    /// A total cancellation: the state lets the awaiter go, and the task resumes with the
    /// cancellation.
    static void forget_on_abort(parked_wait* p) noexcept {
        auto* w = static_cast<single_waiter*>(p);
        w->state_->forget(w->self());
        w->aborted();
    }

private:
    Derived* self() noexcept { return static_cast<Derived*>(this); }
};

/// The awaiter of every `close()`: closes the object and resumes after its last close
/// callback (at once, through the run queue, for an object without handles). Idempotent:
/// awaiting the close of a closed object resumes without suspending. Never a cancellation
/// point (SEMANTICS 14.4): it completes even in a cancelled scope.
///
/// It pins the state, or (`owning`) took the object's ownership: `signal_set`, `udp_socket` and
/// `timer` are empty after `close()`, and a close awaiter dropped unawaited still closes.
class [[nodiscard]] UVASYNC_API close_awaiter {
public:
    /// Pins `h` (null: nothing to close); awaiting it closes.
    explicit close_awaiter(handle_state* h) noexcept;

    /// Takes the owner's place for `h`; awaiting it closes, dropping it unawaited too.
    [[nodiscard]] static close_awaiter owning(handle_state* h) noexcept;

    close_awaiter(close_awaiter&& other) noexcept; // only before it is awaited
    close_awaiter(const close_awaiter&) = delete;
    close_awaiter& operator=(const close_awaiter&) = delete;
    close_awaiter& operator=(close_awaiter&&) = delete;
    ~close_awaiter();

    [[nodiscard]] bool await_ready() const noexcept { return h_ == nullptr || h_->closed; }

    void await_suspend(std::coroutine_handle<> caller);

    void await_resume() const noexcept {}

private:
    close_awaiter(handle_state* h, bool owning) noexcept;

    static void on_closed(void* self) noexcept;

    handle_state* h_;
    bool owning_;
    task_core* core_ = nullptr;
    std::coroutine_handle<> caller_;
    close_waiter node_;
};

} // namespace uvasync::detail
