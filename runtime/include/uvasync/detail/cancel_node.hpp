// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <uvasync/detail/export.hpp>
#include <uvasync/detail/intrusive_list.hpp>

namespace uvasync::detail {

class inbox;
struct introspection_access;
struct registration_tag;
struct child_tag;
struct work_tag;

using message_ptr = std::shared_ptr<const std::string>;

/// The shared text of a cancellation. Never throws: cancellations are requested from noexcept
/// paths (a task group's failure, abort hooks), so when the allocation fails the cancellation
/// goes ahead without a message rather than terminating.
inline message_ptr make_message(std::string_view text) noexcept {
    if (text.empty()) {
        return nullptr;
    }
    try {
        return std::make_shared<const std::string>(text);
    } catch (...) { // std::bad_alloc (or length_error): no message
        return nullptr;
    }
}

/// A callback registered on a cancel node. The registration is the list element, so
/// registering never allocates. `fn` runs at most once, on the loop thread, and must not
/// resume a coroutine (SEMANTICS D-14): it records and makes a task ready.
struct cancel_registration : list_hook<registration_tag> {
    using function = void (*)(cancel_registration*) noexcept;

    explicit cancel_registration(function f) noexcept
        : fn(f) {}

    cancel_registration(const cancel_registration&) = delete;
    cancel_registration& operator=(const cancel_registration&) = delete;
    cancel_registration(cancel_registration&&) = delete;
    cancel_registration& operator=(cancel_registration&&) = delete;

    ~cancel_registration() { unlink(); }

    [[nodiscard]] bool registered() const noexcept { return linked(); }

    function fn;
};

/// One node of the cancellation tree: a scope's own node embedded in a coroutine frame, or
/// (as `shared_cancel_node`) a cancel source's shared state.
///
/// Two views of "cancelled": `requested_` is atomic and may be set from any thread (it answers
/// `cancel_requested()`); `cancelled_` is loop-thread state and says the propagation has reached
/// this node, which is what cancellation points and registrations look at (SEMANTICS 12.4).
/// Invariant: if a node is `cancelled_`, so is every descendant (children of a cancelled node
/// are born cancelled), which lets propagation skip whole subtrees.
class UVASYNC_API cancel_node : public list_hook<child_tag>, public list_hook<work_tag> {
public:
    cancel_node() noexcept = default;

    cancel_node(const cancel_node&) = delete;
    cancel_node& operator=(const cancel_node&) = delete;
    cancel_node(cancel_node&&) = delete;
    cancel_node& operator=(cancel_node&&) = delete;
    ~cancel_node();

    /// Loop-side view: a cancellation point under this node raises.
    [[nodiscard]] bool cancelled() const noexcept { return cancelled_; }

    /// Thread-safe view: a cancellation was requested here or reached this node.
    [[nodiscard]] bool requested() const noexcept {
        return requested_.load(std::memory_order_acquire);
    }

    [[nodiscard]] const message_ptr& message() const noexcept { return message_; }

    [[nodiscard]] cancel_node* parent() const noexcept { return parent_; }

    /// A cancel source's node (else the node of a scope, embedded in it).
    [[nodiscard]] bool shared() const noexcept { return shared_; }

    /// Links this node under `parent` (loop thread). A node linked under a cancelled parent is
    /// born cancelled with the parent's message.
    void link_to(cancel_node& parent) noexcept;

    /// Removes this node from its parent in O(1).
    void unlink_from_parent() noexcept;

    /// Requests cancellation on the loop thread and propagates it before returning.
    /// Returns true iff this call made the transition (the first request wins, D-11).
    bool request_cancel(message_ptr message) noexcept;

    /// Requests cancellation from any thread. From a foreign thread the flag is set at once and
    /// the propagation is posted to the owning runtime's loop (SEMANTICS 12.2).
    bool request_cancel_from_any_thread(message_ptr message) noexcept;

    /// Registers `r`; runs it inline when the cancellation has already propagated here.
    void add(cancel_registration& r) noexcept;

    static void remove(cancel_registration& r) noexcept { r.unlink(); }

    // Reference counting, for shared nodes only (embedded nodes live in their frame).
    inline void add_ref() noexcept;

    void release() noexcept;

    /// Shared nodes only: binds the node to the inbox of the runtime whose loop thread owns
    /// it, once; later requests from other threads are posted there.
    void bind(inbox* box) noexcept;

    /// Shared nodes only: binds the node to the inbox of the calling thread's runtime, if there
    /// is one and the node is not bound yet. A shared node used on a loop thread belongs to
    /// that thread's runtime from then on.
    void bind_to_current_runtime() noexcept;

    /// The inbox a shared node is bound to; null for an embedded node, which is never reached
    /// from other threads.
    [[nodiscard]] inline inbox* bound_inbox() const noexcept;

    /// Runs the loop-side propagation of a request whose flag is already set (used for
    /// requests posted from another thread).
    void propagate(message_ptr message) noexcept;

    /// Runs `release()` work on the loop thread (posted by a foreign last release).
    void destroy_on_loop() noexcept;

protected:
    struct shared_tag {};

    explicit cancel_node(shared_tag) noexcept
        : shared_(true) {}

private:
    friend struct propagation;
    friend class shared_cancel_node;
    friend struct introspection_access;

    std::atomic<bool> requested_{false};
    bool cancelled_ = false;
    const bool shared_ = false;
    cancel_node* parent_ = nullptr;
    intrusive_list<cancel_node, child_tag> children_;
    intrusive_list<cancel_registration, registration_tag> callbacks_;
    message_ptr message_;
};

/// Told of every loop-side propagation after its nodes are marked and before any callback
/// runs (introspection: the tracer's "cancel requested" and scope events). `origin` is the
/// node the request was made on; `marked` holds the nodes this propagation cancelled, parent
/// before descendants; `posted`: the request was made on another thread.
using propagation_observer = void (*)(cancel_node& origin,
                                      intrusive_list<cancel_node, work_tag>& marked,
                                      bool posted) noexcept;

/// Installs the process's propagation observer (the runtime's trace point, once a runtime
/// with a tracer exists). Until then a propagation pays one load and one untaken branch.
UVASYNC_API void observe_propagations(propagation_observer observer) noexcept;

/// A cancel source's shared state: a node with a reference count (the source and its tokens)
/// and the inbox of the runtime whose loop thread owns it. Only these nodes are reached from
/// other threads or outlive a frame; keeping the two fields out of the embedded nodes makes
/// every scope (and so every task and timeout) 8 bytes smaller.
class UVASYNC_API shared_cancel_node final : public cancel_node {
public:
    shared_cancel_node() noexcept
        : cancel_node(shared_tag{}) {}

    ~shared_cancel_node();

private:
    friend class cancel_node;

    std::atomic<std::uint32_t> refs_{1};
    std::atomic<inbox*> inbox_{nullptr}; // holds a reference
};

inline void cancel_node::add_ref() noexcept {
    if (shared_) {
        static_cast<shared_cancel_node*>(this)->refs_.fetch_add(1, std::memory_order_relaxed);
    }
}

inline inbox* cancel_node::bound_inbox() const noexcept {
    return shared_ ? static_cast<const shared_cancel_node*>(this)->inbox_.load(
                         std::memory_order_acquire)
                   : nullptr;
}

} // namespace uvasync::detail
