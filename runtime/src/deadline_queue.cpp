// SPDX-License-Identifier: MIT
#include <cassert>
#include <cstddef>
#include <vector>

#include <uvasync/detail/deadline_queue.hpp>

namespace uvasync::detail {

namespace {

bool earlier(const deadline_entry* a, const deadline_entry* b) noexcept {
    return a->when < b->when || (a->when == b->when && seq_before(a->seq, b->seq));
}

/// Puts `e` at position `i` of the heap and tells it where it is (what `leave` and `erase` use).
void place(std::vector<deadline_entry*>& heap, std::size_t i, deadline_entry* e) noexcept {
    heap[i] = e;
    e->heap_index = static_cast<std::uint32_t>(i);
}

} // namespace

void deadline_queue::sift_up(std::size_t i) noexcept {
    deadline_entry* e = heap_[i];
    while (i > 0) {
        const std::size_t parent = (i - 1) / 2;
        if (!earlier(e, heap_[parent])) {
            break;
        }
        place(heap_, i, heap_[parent]);
        i = parent;
    }
    place(heap_, i, e);
}

void deadline_queue::sift_down(std::size_t i) noexcept {
    deadline_entry* e = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
        std::size_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n && earlier(heap_[child + 1], heap_[child])) {
            ++child;
        }
        if (!earlier(heap_[child], e)) {
            break;
        }
        place(heap_, i, heap_[child]);
        i = child;
    }
    place(heap_, i, e);
}

void deadline_queue::push(deadline_entry& e) noexcept {
    assert(!e.queued() && e.when != never);
    e.seq = ++seq_;
    e.heap_index = static_cast<std::uint32_t>(heap_.size());
    e.queue = this;
    heap_.push_back(&e); // amortised: the vector only grows to the peak number of deadlines
    sift_up(e.heap_index);
}

} // namespace uvasync::detail
