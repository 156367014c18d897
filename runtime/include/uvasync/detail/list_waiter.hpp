// SPDX-License-Identifier: MIT
#pragma once

#include <uvasync/detail/intrusive_list.hpp>
#include <uvasync/detail/park.hpp>

namespace uvasync::detail {

struct sync_waiter_tag;

/// A task parked in a primitive's FIFO of waiters (event, semaphore, queue, future). Its abort
/// hook only detaches this waiter (SEMANTICS D-13); the primitive is left untouched.
class list_waiter : protected parked_wait, public list_hook<sync_waiter_tag> {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    list_waiter(const list_waiter&) = delete;
    list_waiter& operator=(const list_waiter&) = delete;

    list_waiter(list_waiter&& other) noexcept // only before it is awaited
        : parked_wait(std::move(other)) {}

    list_waiter& operator=(list_waiter&&) = delete;

    /// The primitive hands this waiter its result: it leaves the list and becomes ready.
    void wake() noexcept {
        list_hook<sync_waiter_tag>::unlink();
        complete();
    }

protected:
    list_waiter() noexcept
        : parked_wait(&on_abort) {}

    ~list_waiter() { list_hook<sync_waiter_tag>::unlink(); }

private:
    static void on_abort(parked_wait* p) noexcept {
        auto* self = static_cast<list_waiter*>(p);
        self->list_hook<sync_waiter_tag>::unlink();
        self->aborted();
    }
};

template <class W>
using waiter_list = intrusive_list<W, sync_waiter_tag>;

} // namespace uvasync::detail
