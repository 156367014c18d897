// SPDX-License-Identifier: MIT
#pragma once

#include <uvasync/detail/park.hpp>
#include <uvasync/detail/scope.hpp>
#include <uvasync/detail/scoped_body.hpp>
#include <uvasync/task.hpp>

#include <coroutine>
#include <utility>

namespace uvasync {

namespace detail {

/// The non-cancellable scope of `shielded` (SEMANTICS 8b). Its node has no parent, so no
/// cancellation from outside reaches it, and the owner search and the effective deadline both
/// stop at it.
class shield_scope {
public:
    shield_scope() = default;
    shield_scope(const shield_scope&) = delete;
    shield_scope& operator=(const shield_scope&) = delete;
    shield_scope(shield_scope&&) = delete;
    shield_scope& operator=(shield_scope&&) = delete;
    ~shield_scope() = default;

    void enter(task_core* core) noexcept {
        core_ = core;
        scope_.id = core->rt->next_scope_id();
        scope_.parent = core->current;
        core->current = &scope_;
    }

    void leave() noexcept { core_->current = scope_.parent; }

private:
    scope scope_{scope_kind::shield};
    task_core* core_ = nullptr;
};

template <class T>
class shielded_awaiter : private scoped_body<T, no_factory, shield_scope> {
    using base = scoped_body<T, no_factory, shield_scope>;

public:
    explicit shielded_awaiter(task<T> body)
        : base(std::move(body), no_factory{}) {}

    [[nodiscard]] bool await_ready() const noexcept { return false; }

    std::coroutine_handle<> await_suspend(std::coroutine_handle<> caller) {
        if (entered_) {
            throw invalid_state("uvasync: a shielded scope can be entered once");
        }
        entered_ = true;
        this->scope_.enter(require_task("shielded()"));
        return this->start(caller);
    }

    T await_resume() {
        this->scope_.leave();
        return this->take();
    }

private:
    bool entered_ = false;
};

} // namespace detail

/// Runs `aw` inline in the current task inside a shielded scope (trio's `shield=True`,
/// Kotlin's `NonCancellable`): cancellation of enclosing scopes is invisible inside, so
/// cleanup can await. Scopes nested inside work normally, so bound the cleanup:
/// `co_await shielded(timeout(500ms, goodbye()))`. Enclosing deadlines are ignored inside.
/// After it ends, outer cancellations still in effect raise at the next cancellation point.
///
/// Use it for cleanup only. To let the caller stop waiting while work continues, use `shield`.
template <class A>
auto shielded(A&& aw) {
    auto body = detail::as_task(std::forward<A>(aw));
    using T = typename decltype(body)::value_type;
    return detail::shielded_awaiter<T>(std::move(body));
}

} // namespace uvasync
