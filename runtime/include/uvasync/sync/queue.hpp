// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <cstddef>
#include <deque>
#include <limits>
#include <optional>
#include <utility>

#include <uvasync/detail/list_waiter.hpp>
#include <uvasync/error.hpp>

namespace uvasync {

/// A FIFO queue between tasks, optionally bounded (asyncio.Queue).
///
/// Items are handed over directly where possible: a `put` with a parked getter gives the item
/// to that getter; a `get` from a full queue admits the first parked putter's item.
///
/// **Cancellation:** `put` and `get` are cancellation points. A parked getter that is
/// cancelled takes nothing; one that was handed an item before its cancellation took effect
/// gets the item (completion wins, D-2) and raises at its next cancellation point. A parked
/// putter that is cancelled has put nothing. An item handed to a getter whose frame is
/// destroyed before it resumes (a task leaked at shutdown) goes back to the head of the queue.
/// **Thread:** loop thread only.
template <class T>
class queue {
public:
    /// `capacity` items at most; the default is unbounded.
    explicit queue(std::size_t capacity = std::numeric_limits<std::size_t>::max())
        : capacity_(capacity) {
        if (capacity == 0) {
            throw std::invalid_argument("uvasync: a queue needs a capacity of at least 1");
        }
    }

    queue(const queue&) = delete;
    queue& operator=(const queue&) = delete;
    queue(queue&&) = delete;
    queue& operator=(queue&&) = delete;
    ~queue() = default;

    /// Granted when its item is in the queue or handed to a getter.
    class [[nodiscard]] putter : public detail::list_waiter {
    public:
        putter(queue& q, T item)
            : queue_(q)
            , item_(std::move(item)) {
            static constexpr detail::wait_kind kind{"queue put"};
            describe_as(kind);
        }

        [[nodiscard]] bool await_ready() {
            granted_ = queue_.putters_.empty() && queue_.try_put_now(item_);
            return granted_;
        }

        bool await_suspend(std::coroutine_handle<> caller) {
            return park_in(queue_.putters_, caller, "queue::put()");
        }

        void await_resume() {
            claim(); // raises: cancelled before a place freed up
        }

    private:
        friend class queue;
        queue& queue_;
        std::optional<T> item_;
    };

    /// Granted when an item is handed to it.
    class [[nodiscard]] getter : public detail::list_waiter {
    public:
        explicit getter(queue& q) noexcept
            : queue_(q) {
            static constexpr detail::wait_kind kind{"queue get"};
            describe_as(kind);
        }

        getter(getter&& other) noexcept // only before it is awaited: no item yet
            : list_waiter(std::move(other))
            , queue_(other.queue_) {}

        ~getter() {
            if (item_ && unclaimed()) { // granted means an item; testing it lets gcc see that too
                // Handed an item, never resumed (a frame destroyed at shutdown): the item goes
                // back to the head of the queue, or to the next getter, instead of being lost.
                queue_.give_back(std::move(*item_));
            }
        }

        [[nodiscard]] bool await_ready() {
            if (queue_.getters_.empty()) {
                item_ = queue_.try_get();
                granted_ = item_.has_value();
            }
            return granted_;
        }

        bool await_suspend(std::coroutine_handle<> caller) {
            return park_in(queue_.getters_, caller, "queue::get()");
        }

        T await_resume() {
            claim(); // raises: cancelled before an item arrived
            return std::move(*item_);
        }

    private:
        friend class queue;
        queue& queue_;
        std::optional<T> item_;
    };

    /// Waits for room, then appends `item`.
    [[nodiscard]] putter put(T item) { return putter(*this, std::move(item)); }

    /// Waits for an item and removes it.
    [[nodiscard]] getter get() { return getter(*this); }

    /// Appends `item` if there is room now (or hands it to a waiting getter). Never suspends.
    bool try_put(T item) {
        std::optional<T> slot(std::move(item));
        return putters_.empty() && try_put_now(slot);
    }

    /// Removes an item if there is one now. Never suspends.
    std::optional<T> try_get() {
        if (items_.empty()) {
            return std::nullopt;
        }
        std::optional<T> item(std::move(items_.front()));
        items_.pop_front();
        admit_putter();
        return item;
    }

    [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }

    [[nodiscard]] bool empty() const noexcept { return items_.empty(); }

    [[nodiscard]] bool full() const noexcept { return items_.size() >= capacity_; }

    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

private:
    // Hands `slot` to the first getter, or stores it if there is room; empties `slot` on
    // success.
    bool try_put_now(std::optional<T>& slot) {
        if (getter* g = getters_.front()) {
            g->item_ = std::move(slot);
            slot.reset();
            g->grant();
            return true;
        }
        if (items_.size() < capacity_) {
            items_.push_back(std::move(*slot));
            slot.reset();
            return true;
        }
        return false;
    }

    // An item handed to a getter that never took it: it was the oldest, so it goes first again.
    // The queue may then hold one item more than its capacity until a get.
    void give_back(T item) {
        if (getter* g = getters_.front()) {
            g->item_.emplace(std::move(item));
            g->grant();
            return;
        }
        items_.push_front(std::move(item));
    }

    void admit_putter() {
        if (putter* p = putters_.front(); p != nullptr && items_.size() < capacity_) {
            items_.push_back(std::move(*p->item_));
            p->item_.reset();
            p->grant();
        }
    }

    std::deque<T> items_;
    std::size_t capacity_;
    detail::waiter_list<getter> getters_;
    detail::waiter_list<putter> putters_;
};

} // namespace uvasync
