// SPDX-License-Identifier: MIT
#include <atomic>
#include <cassert>

#include <uvasync/detail/cancel_node.hpp>

#include "inbox.hpp"

namespace uvasync::detail {

namespace {

std::atomic<propagation_observer> observer{nullptr};

} // namespace

void observe_propagations(propagation_observer f) noexcept {
    observer.store(f, std::memory_order_relaxed);
}

/// One loop-side propagation (SEMANTICS 11.4): first every node of the subtree is marked, in
/// preorder and without recursion, then the callbacks run, parent before descendants and in
/// registration order within a node, so no callback sees a half-cancelled subtree.
///
/// The worklist is intrusive: a node destroyed by a callback before its turn simply unlinks
/// itself. A node's callbacks are moved to a local list before they run, so a callback may
/// destroy its own node, or unregister a callback that has not run yet (which then never runs).
struct propagation {
    static void run(cancel_node& root, const message_ptr& message, bool posted = false) noexcept {
        intrusive_list<cancel_node, work_tag> work;
        mark_subtree(root, message, work);
        if (propagation_observer f = observer.load(std::memory_order_relaxed)) [[unlikely]] {
            f(root, work, posted);
        }
        while (cancel_node* n = work.pop_front()) {
            intrusive_list<cancel_registration, registration_tag> pending;
            pending.splice_back(n->callbacks_);
            while (cancel_registration* r = pending.pop_front()) {
                r->fn(r);
            }
        }
    }

    // Stackless preorder walk over the part of the subtree that is not cancelled yet; a
    // cancelled node's descendants are all cancelled (the class invariant), so it is skipped
    // whole. Depth 100,000 or width 1,000,000 costs no native stack.
    static void mark_subtree(cancel_node& root, const message_ptr& message,
                             intrusive_list<cancel_node, work_tag>& work) noexcept {
        if (root.cancelled_) {
            return;
        }
        cancel_node* n = &root;
        for (;;) {
            mark(*n, message, work);
            cancel_node* next = first_uncancelled_child(*n);
            while (next == nullptr) {
                if (n == &root) {
                    return;
                }
                next = next_uncancelled_sibling(*n);
                if (next == nullptr) {
                    n = n->parent_;
                }
            }
            n = next;
        }
    }

    static void mark(cancel_node& n, const message_ptr& message,
                     intrusive_list<cancel_node, work_tag>& work) noexcept {
        n.cancelled_ = true;
        n.requested_.store(true, std::memory_order_release);
        if (!n.message_) {
            n.message_ = message;
        }
        work.push_back(n);
    }

    static cancel_node* first_uncancelled_child(cancel_node& n) noexcept {
        for (cancel_node* c = n.children_.front(); c != nullptr; c = sibling_after(n, *c)) {
            if (!c->cancelled_) {
                return c;
            }
        }
        return nullptr;
    }

    static cancel_node* next_uncancelled_sibling(cancel_node& n) noexcept {
        for (cancel_node* s = sibling_after(*n.parent_, n); s != nullptr;
             s = sibling_after(*n.parent_, *s)) {
            if (!s->cancelled_) {
                return s;
            }
        }
        return nullptr;
    }

    static cancel_node* sibling_after(cancel_node& parent, cancel_node& child) noexcept {
        return parent.children_.next(child);
    }
};

cancel_node::~cancel_node() {
    // Children outlive nothing of ours: they simply become roots.
    while (cancel_node* c = children_.pop_front()) {
        c->parent_ = nullptr;
    }
    unlink_from_parent();
    static_cast<list_hook<work_tag>&>(*this).unlink();
    callbacks_.clear();
}

shared_cancel_node::~shared_cancel_node() {
    if (inbox* box = inbox_.load(std::memory_order_acquire)) {
        box->release();
    }
}

void cancel_node::link_to(cancel_node& parent) noexcept {
    assert(parent_ == nullptr);
    parent.bind_to_current_runtime();
    parent_ = &parent;
    parent.children_.push_back(*this);
    if (parent.cancelled_ && !cancelled_) {
        // Born cancelled (SEMANTICS 11.2). Nothing is registered here yet, so no callback runs.
        cancelled_ = true;
        requested_.store(true, std::memory_order_release);
        message_ = parent.message_;
    }
}

void cancel_node::unlink_from_parent() noexcept {
    if (parent_ != nullptr) {
        static_cast<list_hook<child_tag>&>(*this).unlink();
        parent_ = nullptr;
    }
}

bool cancel_node::request_cancel(message_ptr message) noexcept {
    if (requested_.exchange(true, std::memory_order_acq_rel)) {
        return false;
    }
    propagation::run(*this, message);
    return true;
}

bool cancel_node::request_cancel_from_any_thread(message_ptr message) noexcept {
    inbox* box = bound_inbox();
    if (box == nullptr || box->on_loop_thread()) {
        return request_cancel(std::move(message));
    }
    if (requested_.exchange(true, std::memory_order_acq_rel)) {
        return false;
    }
    // Exactly one caller gets here; the loop thread does the rest. After shutdown the post is
    // refused and the flag alone remains (SEMANTICS 12.7).
    inbox::message m;
    m.what = inbox::message::kind::propagate;
    m.node = this;
    m.text = std::move(message);
    add_ref(); // the message keeps the node alive until the loop has run it
    if (!box->post(std::move(m))) {
        release();
    }
    return true;
}

void cancel_node::propagate(message_ptr message) noexcept {
    propagation::run(*this, message, true); // posted from another thread
}

void cancel_node::add(cancel_registration& r) noexcept {
    bind_to_current_runtime();
    if (cancelled_) {
        r.fn(&r); // the std rule: registering on a cancelled token runs the callback inline
        return;
    }
    callbacks_.push_back(r);
}

void cancel_node::bind(inbox* box) noexcept {
    if (!shared_ || box == nullptr) {
        return; // embedded scope nodes are never reached from other threads
    }
    inbox* expected = nullptr;
    box->add_ref();
    if (!static_cast<shared_cancel_node*>(this)->inbox_.compare_exchange_strong(
            expected, box, std::memory_order_acq_rel)) {
        box->release(); // already bound
    }
}

void cancel_node::bind_to_current_runtime() noexcept {
    // Later requests from other threads are then posted to that runtime instead of
    // propagating on their own thread. Embedded nodes are never bound: no thread lookup.
    if (shared_ && bound_inbox() == nullptr) {
        bind(current_inbox());
    }
}

void cancel_node::release() noexcept {
    if (!shared_ || static_cast<shared_cancel_node*>(this)->refs_.fetch_sub(
                        1, std::memory_order_acq_rel) != 1) {
        return;
    }
    inbox* box = bound_inbox();
    if (box != nullptr && !box->on_loop_thread()) {
        inbox::message m;
        m.what = inbox::message::kind::release;
        m.node = this;
        if (box->post(std::move(m))) {
            return; // unlinked on the loop thread, where the tree lives (SEMANTICS 11.3)
        }
    }
    delete static_cast<shared_cancel_node*>(this); // only shared nodes are released
}

void cancel_node::destroy_on_loop() noexcept {
    delete static_cast<shared_cancel_node*>(this); // only shared nodes are released
}

} // namespace uvasync::detail
