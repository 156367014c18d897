// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>

#include <uvasync/detail/intrusive_list.hpp>
#include <uvasync/detail/park.hpp>

namespace uvasync::detail {

struct sync_waiter_tag;

template <class W>
using waiter_list = intrusive_list<W, sync_waiter_tag>;

/// The awaiter half of every synchronisation primitive (event, semaphore, mutex, condition,
/// queue, barrier, future, `as_completed`'s `next()`): a task parked in one of the primitive's
/// FIFOs of waiters, with the abort protocol of `parked_wait`. It is in at most one list at a
/// time (a condition's waiter moves from the condition's list to its mutex's).
///
/// The default abort hook only detaches the waiter (SEMANTICS D-13): the primitive is left
/// untouched. A primitive whose waiter holds a share of its state (a barrier's arrival, a
/// condition's claim on the lock) passes its own hook, which ends with `withdraw()` or keeps
/// the wait parked.
///
/// A primitive that hands a waiter something that must not be lost (a permit, the lock, an
/// item) does so with `grant()`. The awaiter's `await_resume` starts with `claim()`: it raises
/// when nothing was granted (the wait was aborted first) and otherwise records that the task
/// took the grant. A waiter destroyed `unclaimed()` (granted, but its frame was destroyed
/// before it resumed: a task leaked at shutdown) must pass the grant on in its destructor, so
/// a hand-off is never lost. Completion wins (D-2): a grant made before the cancellation took
/// effect is claimed, and the task raises at its next cancellation point.
class list_waiter : protected parked_wait, public list_hook<sync_waiter_tag> {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    /// Only before it is awaited, like every awaiter (not linked, nothing granted yet). Not
    /// copyable nor assignable, as `parked_wait`.
    list_waiter(list_waiter&&) noexcept = default;

    /// The primitive is done with this waiter: it leaves the list and becomes ready.
    void wake() noexcept {
        leave_list();
        complete();
    }

    /// The primitive hands this waiter what it waited for; `wake()` with the grant recorded.
    void grant() noexcept {
        granted_ = true;
        wake();
    }

protected:
    list_waiter() noexcept
        : parked_wait(&on_abort) {}

    explicit list_waiter(abort_hook hook) noexcept
        : parked_wait(hook) {}

    ~list_waiter() { leave_list(); }

    /// `await_suspend` of a list waiter: parks (false, and nothing queued, when the scope is
    /// already cancelled), then queues at the end of `list` (FIFO).
    template <class W>
    bool park_in(waiter_list<W>& list, std::coroutine_handle<> caller, const char* what) {
        if (!park(caller, what)) {
            return false;
        }
        list.push_back(static_cast<W&>(*this));
        return true;
    }

    [[nodiscard]] bool queued() const noexcept { return list_hook<sync_waiter_tag>::linked(); }

    void leave_list() noexcept { list_hook<sync_waiter_tag>::unlink(); }

    /// The default abort: leaves the list; the task becomes ready and will raise.
    void withdraw() noexcept {
        leave_list();
        aborted();
    }

    /// Step 4 of a hand-off: raises when nothing was granted (aborted first), else marks the
    /// grant taken, so the destructor does not pass it on.
    void claim() {
        if (!granted_) {
            finish();
        }
        taken_ = true;
    }

    /// Granted, never resumed (a leaked frame): the destructor passes the grant on.
    [[nodiscard]] bool unclaimed() const noexcept { return granted_ && !taken_; }

    /// Set by `grant()`, or by `await_ready` when the primitive grants at once.
    bool granted_ = false;

private:
    static void on_abort(parked_wait* p) noexcept { static_cast<list_waiter*>(p)->withdraw(); }

    bool taken_ = false;
};

} // namespace uvasync::detail
