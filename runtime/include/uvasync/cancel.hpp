// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <string_view>
#include <type_traits>
#include <utility>

#include <uvasync/detail/cancel_node.hpp>
#include <uvasync/detail/export.hpp>
#include <uvasync/detail/token_wait.hpp>
#include <uvasync/error.hpp>

namespace uvasync {

class cancel_source;
template <class F>
class cancel_callback;

/// A read-only view of a cancellation: cheap to copy, never cancels anything itself.
///
/// A default-constructed token can never be cancelled (`can_be_cancelled()` is false), so code
/// can skip the work of listening. A token obtained from a `cancel_source` shares that source's
/// state and keeps it alive. A token obtained from `current_token()` refers to a scope of the
/// running task and must not outlive that scope (like `std::inplace_stop_token`).
///
/// **Thread:** copying, destroying and `cancel_requested()` are thread-safe; everything else is
/// loop thread only (SEMANTICS D-10).
class cancel_token {
public:
    cancel_token() noexcept = default;

    cancel_token(const cancel_token& other) noexcept
        : node_(other.node_) {
        if (node_ != nullptr) {
            node_->add_ref();
        }
    }

    cancel_token(cancel_token&& other) noexcept
        : node_(std::exchange(other.node_, nullptr)) {}

    cancel_token& operator=(cancel_token other) noexcept {
        std::swap(node_, other.node_);
        return *this;
    }

    ~cancel_token() {
        if (node_ != nullptr) {
            node_->release();
        }
    }

    /// True once a cancellation was requested here or reached here from a parent.
    /// Thread-safe (an acquire load).
    [[nodiscard]] bool cancel_requested() const noexcept {
        return node_ != nullptr && node_->requested();
    }

    /// False for the default token, which nothing can cancel.
    [[nodiscard]] bool can_be_cancelled() const noexcept { return node_ != nullptr; }

    /// Awaits the cancellation of this token. Completes at once (without suspending) if it has
    /// already propagated. Otherwise a cancellation point of the awaiting task: if the task's
    /// own scope is cancelled first, it raises `cancelled_error` and stops listening.
    [[nodiscard]] auto cancelled() const;

    /// Registers `f` to run once, on the loop thread, when this token is cancelled; inline if
    /// it already is. Destroying the returned object unregisters it. Loop thread only.
    template <class F>
    [[nodiscard]] cancel_callback<std::decay_t<F>> on_cancel(F&& f) const;

    friend bool operator==(const cancel_token& a, const cancel_token& b) noexcept {
        return a.node_ == b.node_;
    }

    /// For library code: the node (null for the default token).
    [[nodiscard]] detail::cancel_node* node() const noexcept { return node_; }

    /// For library code: a token for `node`, sharing ownership when the node is shared.
    static cancel_token from_node(detail::cancel_node* node) noexcept {
        if (node != nullptr) {
            node->add_ref();
        }
        return cancel_token(node);
    }

private:
    friend class cancel_source;

    explicit cancel_token(detail::cancel_node* node) noexcept
        : node_(node) {}

    detail::cancel_node* node_ = nullptr;
};

/// The side that requests cancellation. Copies share one state (like `std::stop_source`).
///
/// A source can be linked to a parent token: it is then cancelled whenever the parent is, and
/// a source linked to a cancelled parent is born cancelled. Propagation is iterative, so trees
/// 100,000 deep or 1,000,000 wide are fine, and a dropped linked source leaves its parent in
/// O(1).
///
/// **Thread:** `request_cancel()`, `cancel_requested()`, copying and destroying are thread-safe.
/// Creating a linked source is loop thread only.
class UVASYNC_API cancel_source {
public:
    /// A fresh, uncancelled source bound to the calling thread's runtime (if any).
    cancel_source();

    /// A source linked under `parent` (loop thread only when `parent` can be cancelled).
    explicit cancel_source(const cancel_token& parent);

    cancel_source(const cancel_source& other) noexcept
        : node_(other.node_) {
        node_->add_ref();
    }

    cancel_source& operator=(const cancel_source& other) noexcept {
        if (this != &other) {
            other.node_->add_ref();
            node_->release();
            node_ = other.node_;
        }
        return *this;
    }

    ~cancel_source() { node_->release(); }

    /// Cancels this source and, through the tree, everything linked under it. Returns true iff
    /// this call made the transition; the first message wins (D-11).
    ///
    /// On the loop thread every descendant is cancelled and every callback has run when it
    /// returns. From another thread the flag is set at once and the propagation runs on the
    /// loop thread soon after (SEMANTICS 12). Never resumes a task inline.
    bool request_cancel(std::string_view message = {}) noexcept {
        return node_->request_cancel_from_any_thread(detail::make_message(message));
    }

    [[nodiscard]] bool cancel_requested() const noexcept { return node_->requested(); }

    [[nodiscard]] cancel_token token() const noexcept { return cancel_token::from_node(node_); }

private:
    detail::cancel_node* node_;
};

/// Cancels its source when destroyed, unless disarmed (tokio's `DropGuard`). Movable: the
/// moved-from guard is disarmed, so exactly one guard cancels.
///
/// **Thread:** like `cancel_source::request_cancel()`, destroying an armed guard is
/// thread-safe.
class drop_guard {
public:
    explicit drop_guard(cancel_source source) noexcept
        : source_(std::move(source)) {}

    drop_guard(const drop_guard&) = delete;
    drop_guard& operator=(const drop_guard&) = delete;

    drop_guard(drop_guard&& other) noexcept
        : source_(other.source_)
        , armed_(std::exchange(other.armed_, false)) {}

    /// Cancels the source this guard held if it was armed (as destroying it would), then takes
    /// over `other`'s source and arming.
    drop_guard& operator=(drop_guard&& other) noexcept {
        if (this != &other) {
            if (armed_) {
                source_.request_cancel();
            }
            source_ = other.source_;
            armed_ = std::exchange(other.armed_, false);
        }
        return *this;
    }

    ~drop_guard() {
        if (armed_) {
            source_.request_cancel();
        }
    }

    /// After this, destruction cancels nothing.
    void disarm() noexcept { armed_ = false; }

    [[nodiscard]] bool armed() const noexcept { return armed_; }

private:
    cancel_source source_;
    bool armed_ = true;
};

/// An RAII registration of `F` on a token (like `std::stop_callback`, without allocation).
///
/// If the token is already cancelled, `f` runs in the constructor. Otherwise it runs once, on
/// the loop thread, during the propagation. After the destructor returns it will not run.
/// `f` must not throw (a throwing callback terminates) and must not resume coroutines.
///
/// **Thread:** loop thread only.
template <class F>
class cancel_callback : private detail::cancel_registration {
public:
    template <class G>
    cancel_callback(const cancel_token& token, G&& g)
        : cancel_registration(&invoke)
        , token_(token)
        , f_(std::forward<G>(g)) {
        if (token_.node() != nullptr) {
            token_.node()->add(*this);
        }
    }

    cancel_callback(const cancel_callback&) = delete;
    cancel_callback& operator=(const cancel_callback&) = delete;
    cancel_callback(cancel_callback&&) = delete;
    cancel_callback& operator=(cancel_callback&&) = delete;
    ~cancel_callback() = default; // the registration unlinks itself

private:
    static void invoke(detail::cancel_registration* r) noexcept {
        static_cast<cancel_callback*>(r)->f_();
    }

    cancel_token token_; // keeps a shared node alive while registered
    F f_;
};

/// `cancel_callback cb(token, [&] noexcept { ... });` deduces `F` like `std::stop_callback`.
template <class F>
cancel_callback(const cancel_token&, F) -> cancel_callback<F>;

inline auto cancel_token::cancelled() const {
    return detail::token_wait(node_);
}

template <class F>
cancel_callback<std::decay_t<F>> cancel_token::on_cancel(F&& f) const {
    return cancel_callback<std::decay_t<F>>(*this, std::forward<F>(f));
}

} // namespace uvasync
