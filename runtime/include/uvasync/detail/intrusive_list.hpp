// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>

namespace uvasync::detail {

/// A doubly linked list node. An unlinked node has null pointers; a linked node can remove
/// itself in O(1) without knowing which list holds it, which is what lets a registration, a
/// child token or a parked awaiter unlink itself from whatever list it is in right now.
struct list_link {
    list_link* prev = nullptr;
    list_link* next = nullptr;

    [[nodiscard]] bool linked() const noexcept { return next != nullptr; }

    void unlink() noexcept {
        if (next == nullptr) {
            return;
        }
        prev->next = next;
        next->prev = prev;
        prev = nullptr;
        next = nullptr;
    }
};

/// Base class that makes `T` an element of lists tagged `Tag`. A type can derive from several
/// hooks with different tags to sit in several lists at once.
template <class Tag>
struct list_hook : list_link {};

/// A circular intrusive list with a sentinel head. It owns nothing: elements must outlive
/// their membership, and the destructor only detaches what is still linked.
template <class T, class Tag>
class intrusive_list {
public:
    intrusive_list() noexcept { head_.prev = head_.next = &head_; }

    intrusive_list(const intrusive_list&) = delete;
    intrusive_list& operator=(const intrusive_list&) = delete;
    intrusive_list(intrusive_list&&) = delete;
    intrusive_list& operator=(intrusive_list&&) = delete;

    ~intrusive_list() { clear(); }

    [[nodiscard]] bool empty() const noexcept { return head_.next == &head_; }

    void push_back(T& item) noexcept {
        list_link& l = link_of(item);
        l.prev = head_.prev;
        l.next = &head_;
        head_.prev->next = &l;
        head_.prev = &l;
    }

    [[nodiscard]] T* front() noexcept { return empty() ? nullptr : item_of(head_.next); }

    T* pop_front() noexcept {
        if (empty()) {
            return nullptr;
        }
        list_link* l = head_.next;
        l->unlink();
        return item_of(l);
    }

    /// The element after `item`, or null at the end.
    [[nodiscard]] T* next(T& item) noexcept {
        list_link* n = link_of(item).next;
        return n == &head_ ? nullptr : item_of(n);
    }

    /// Moves every element of `other` to the end of this list in O(1).
    void splice_back(intrusive_list& other) noexcept {
        if (other.empty()) {
            return;
        }
        list_link* first = other.head_.next;
        list_link* last = other.head_.prev;
        other.head_.prev = other.head_.next = &other.head_;
        first->prev = head_.prev;
        last->next = &head_;
        head_.prev->next = first;
        head_.prev = last;
    }

    /// Detaches every element without touching the elements' owners.
    void clear() noexcept {
        while (!empty()) {
            head_.next->unlink();
        }
    }

    template <class F>
    void for_each(F&& f) {
        for (list_link* l = head_.next; l != &head_;) {
            list_link* next = l->next;
            f(*item_of(l));
            l = next;
        }
    }

    static list_link& link_of(T& item) noexcept {
        return static_cast<list_link&>(static_cast<list_hook<Tag>&>(item));
    }

    static T* item_of(list_link* l) noexcept {
        return static_cast<T*>(static_cast<list_hook<Tag>*>(l));
    }

private:
    list_link head_;
};

/// A FIFO of intrusive single links, for the run queue: push and splice are O(1) and need no
/// back pointers.
template <class T>
class intrusive_queue {
public:
    [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }

    void push_back(T* item) noexcept {
        item->queue_next_ = nullptr;
        if (tail_ == nullptr) {
            head_ = item;
        } else {
            tail_->queue_next_ = item;
        }
        tail_ = item;
    }

    T* pop_front() noexcept {
        T* item = head_;
        if (item != nullptr) {
            head_ = item->queue_next_;
            if (head_ == nullptr) {
                tail_ = nullptr;
            }
            item->queue_next_ = nullptr;
        }
        return item;
    }

    /// Puts the whole content of `front` before this queue's, leaving `front` empty.
    void splice_front(intrusive_queue& front) noexcept {
        if (front.head_ == nullptr) {
            return;
        }
        front.tail_->queue_next_ = head_;
        if (tail_ == nullptr) {
            tail_ = front.tail_;
        }
        head_ = front.head_;
        front.head_ = front.tail_ = nullptr;
    }

    /// Takes the whole content, leaving this queue empty (a snapshot for one drain).
    intrusive_queue take() noexcept {
        intrusive_queue out;
        out.head_ = head_;
        out.tail_ = tail_;
        head_ = tail_ = nullptr;
        return out;
    }

private:
    T* head_ = nullptr;
    T* tail_ = nullptr;
};

} // namespace uvasync::detail
