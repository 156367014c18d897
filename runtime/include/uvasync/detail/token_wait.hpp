// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <utility>

#include <uvasync/detail/cancel_node.hpp>
#include <uvasync/detail/park.hpp>

namespace uvasync::detail {

/// `co_await token.cancelled()`: completes when the token's cancellation propagates; a
/// cancellation point of the awaiting task (SEMANTICS 11.9). Two registrations: one on the
/// token (completion), the abort hook on the task's scope (parked_wait).
class [[nodiscard]] token_wait : private parked_wait {
public:
    using parked_wait::delivery_pending; // a leaf for as_outcome (SEMANTICS 19.2)

    explicit token_wait(cancel_node* token) noexcept
        : parked_wait(&on_abort, kind)
        , token_(token) {
        if (token_ != nullptr) {
            token_->add_ref();
        }
    }

    token_wait(const token_wait&) = delete;
    token_wait& operator=(const token_wait&) = delete;

    token_wait(token_wait&& other) noexcept // only before it is awaited
        : parked_wait(std::move(other))
        , token_(std::exchange(other.token_, nullptr)) {}

    token_wait& operator=(token_wait&&) = delete;

    ~token_wait() {
        on_token_.unlink();
        if (token_ != nullptr) {
            token_->release();
        }
    }

    [[nodiscard]] bool await_ready() const noexcept {
        return token_ != nullptr && token_->cancelled();
    }

    bool await_suspend(std::coroutine_handle<> caller) {
        if (!park(caller, "token.cancelled()")) {
            return false;
        }
        if (token_ != nullptr) {
            token_->add(on_token_);
        }
        return true;
    }

    void await_resume() {
        on_token_.unlink();
        finish();
    }

private:
    // runtime::dump: "token" (a cancel token's cancellation).
    static constexpr wait_kind kind{"token"};

    struct on_token final : ::uvasync::detail::cancel_registration {
        explicit on_token(token_wait* w) noexcept
            : cancel_registration(&fire)
            , wait(w) {}

        static void fire(::uvasync::detail::cancel_registration* r) noexcept {
            static_cast<on_token*>(r)->wait->complete();
        }

        token_wait* wait;
    };

    static void on_abort(parked_wait* p) noexcept {
        auto* self = static_cast<token_wait*>(p);
        self->on_token_.unlink();
        self->aborted();
    }

    cancel_node* token_;
    on_token on_token_{this};
};

} // namespace uvasync::detail
