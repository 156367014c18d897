// SPDX-License-Identifier: MIT
#pragma once

#include <coroutine>
#include <utility>

#include <uvasync/detail/deferred.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/detail/scope.hpp>
#include <uvasync/detail/scoped_body.hpp>
#include <uvasync/detail/spawn.hpp>
#include <uvasync/detail/trace_points.hpp>
#include <uvasync/task.hpp>

// **Thread:** everything in this header is loop-thread only: the awaitables are created and
// awaited inside a task of the runtime (a call from another thread throws `invalid_state`).
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

    shield_scope(shield_scope&&) noexcept {} // only before entry: nothing to carry over

    shield_scope& operator=(shield_scope&&) = delete;
    ~shield_scope() = default;

    void enter(task_core* core) noexcept {
        core_ = core;
        scope_.id = core->rt->next_scope_id();
        scope_.parent = core->current;
        core->current = &scope_;
        if (core->rt->tracing() != nullptr) [[unlikely]] {
            trace_scope(scope_trace::enter, scope_, *core, false, false, false);
        }
    }

    void leave() noexcept {
        core_->current = scope_.parent;
        if (core_->rt->tracing() != nullptr) [[unlikely]] {
            trace_scope(scope_trace::exit, scope_, *core_, false, false, false);
        }
    }

private:
    scope scope_{scope_kind::shield};
    task_core* core_ = nullptr;
};

template <class T>
class [[nodiscard]] shielded_awaiter : private scoped_body<T, no_factory, shield_scope> {
    using base = scoped_body<T, no_factory, shield_scope>;

public:
    explicit shielded_awaiter(task<T> body)
        : base(std::move(body), no_factory{}) {}

    shielded_awaiter(shielded_awaiter&& other) noexcept // only before it is awaited
        : base(std::move(other)) {}

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

namespace detail {

template <class B>
struct shield_impl {
    using T = typename decltype(as_task(std::declval<B>()))::value_type;

    static task<T> call(B& aw) {
        if constexpr (requires {
                          aw.state();
                          aw.cancel();
                      }) {
            return run(aw);
        } else if constexpr (is_task<B>::value) {
            task_core* const self = require_task("shield()");
            return run(spawn_in(*self->rt, self, std::move(aw), nullptr, nullptr));
        } else {
            return ready_or_spawned(aw);
        }
    }

    // A result that is already there is returned at once, without a spawn or a suspension
    // (SEMANTICS 8a.1).
    static task<T> ready_or_spawned(B& aw) {
        if (get_awaiter(aw).await_ready()) {
            co_return co_await std::move(aw);
        }
        task_core* const self = require_task("shield()");
        co_return co_await run(spawn_in(*self->rt, self, as_task(std::move(aw)), nullptr, nullptr));
    }

    template <class T>
    static task<T> run(task_handle<T> h) {
        co_return co_await join_awaiter<T, false>(h.state());
    }
};

} // namespace detail

/// Protects `aw` from the caller's cancellation, asyncio style (SEMANTICS 8a): a `task` (or any
/// awaitable) is spawned as an independent task, a `task_handle` is used as it is, and the
/// caller awaits its outcome. If the caller is cancelled, the caller raises at once and stops
/// waiting; the work runs on undisturbed, and its failure, if nobody else can observe it, goes
/// to the runtime's exception handler. Shutdown cancels it like any task.
/// `timeout(d, shield(t))` throws `timeout_error` at `d` while `t` continues.
///
/// It cannot be used to await cleanup in a cancelled task (the caller raises at once); use
/// `shielded` for that.
template <class A>
auto shield(A&& aw) {
    using B = std::remove_cvref_t<A>;
    using T = typename detail::shield_impl<B>::T;
    return detail::deferred_call<T, detail::shield_impl<B>, B>(std::forward<A>(aw));
}

} // namespace uvasync
