// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <uvasync/detail/deadline_entry.hpp>
#include <uvasync/detail/export.hpp>

namespace uvasync::detail {

/// The deadline queue: a binary min-heap of entries ordered by (deadline, registration order),
/// libuv's timer-heap rule. It only orders entries; arming the loop's timer and firing due
/// entries is the scheduler's job (runtime_state). Loop thread only. Adding and removing are
/// O(log n) and allocate only when the heap grows past its peak size.
class UVASYNC_API deadline_queue {
public:
    /// Called when a removal leaves the queue empty, so the owner can disarm what waited for
    /// the earliest entry (the scheduler stops the loop's timer). Never throws.
    using emptied_fn = void (*)(void* owner) noexcept;

    deadline_queue(emptied_fn on_emptied, void* owner) noexcept
        : on_emptied_(on_emptied)
        , owner_(owner) {}

    deadline_queue(const deadline_queue&) = delete;
    deadline_queue& operator=(const deadline_queue&) = delete;

    [[nodiscard]] bool empty() const noexcept { return heap_.empty(); }

    [[nodiscard]] std::size_t size() const noexcept { return heap_.size(); }

    /// The earliest entry; the queue must not be empty.
    [[nodiscard]] deadline_entry& top() const noexcept { return *heap_.front(); }

    /// The registration number the next added entry gets; entries added after a deadline pass
    /// started have a larger one (SEMANTICS 6.5).
    [[nodiscard]] std::uint32_t last_seq() const noexcept { return seq_; }

    /// Makes room for one more entry, so that the next `push` does not allocate, besides the
    /// room held by `hold_one`. Throws `std::bad_alloc`; callers that can throw call it before
    /// they change any state, because `push` runs in noexcept paths (a bad_alloc there would
    /// terminate).
    void reserve_one() { grow_to(heap_.size() + held_ + 1); }

    /// Holds room for one entry that a noexcept path adds later, at a time no throwing call can
    /// precede it (the kill grace of a process whose wait is cancelled, the shutdown grace):
    /// until `release_one`, every `reserve_one` leaves that room free. Throws `std::bad_alloc`.
    /// The holder calls `release_one` right before its `push`, or when it no longer needs the
    /// room.
    void hold_one() {
        grow_to(heap_.size() + held_ + 1);
        ++held_;
    }

    void release_one() noexcept { --held_; }

    /// Adds `e`, which must not be queued and must have a deadline other than `never`. Does not
    /// allocate after `reserve_one()`; otherwise a failed allocation terminates.
    void push(deadline_entry& e) noexcept;

    /// Removes `e` from the queue holding it, if any. What a cancelled sleep or scope calls:
    /// the entry knows its queue, so a cancellation reaches the heap without the scheduler.
    static void leave(deadline_entry& e) noexcept {
        if (e.queue != nullptr) {
            e.queue->erase(e);
        }
    }

    /// Removes `e` if it is queued here; does nothing otherwise. Inline: every cancellation of a
    /// sleep or a scope deadline ends here, and only the re-sifting is compiled.
    void erase(deadline_entry& e) noexcept {
        if (e.queue != this) {
            return;
        }
        const std::size_t i = e.heap_index;
        deadline_entry* last = heap_.back();
        heap_.pop_back();
        e.heap_index = deadline_entry::not_queued;
        e.queue = nullptr;
        if (last != &e) {
            heap_[i] = last;
            last->heap_index = static_cast<std::uint32_t>(i);
            sift_down(i);
            sift_up(last->heap_index);
        } else if (heap_.empty()) {
            on_emptied_(owner_);
        }
    }

private:
    void grow_to(std::size_t n) {
        if (heap_.capacity() < n) {
            heap_.reserve(n < 8 ? 16 : 2 * n);
        }
    }

    void sift_up(std::size_t i) noexcept;
    void sift_down(std::size_t i) noexcept;

    std::vector<deadline_entry*> heap_;
    std::uint32_t seq_ = 0;
    emptied_fn on_emptied_;
    void* owner_;
    std::size_t held_ = 0; // hold_one without release_one
};

} // namespace uvasync::detail
