// SPDX-License-Identifier: MIT
// uvasync_scope_*: a scope is a cancel_source linked under its parent's (or the runtime's root)
// token, so the C++ token tree does the propagation. Its deadline is watched by a task bound to
// the scope's own token (a cancelled scope ends its watcher); the ownership rule (SEMANTICS D-3)
// turns the outermost cancelled scope's own cause into the status.
#include <chrono>
#include <cstring>
#include <limits>

#include <uvasync/sleep.hpp>

#include "internal.hpp"

namespace uvasync::capi {

namespace {

task<> watch(std::shared_ptr<deadline_slot> slot, deadline when) {
    try {
        co_await sleep_until(when);
    } catch (const cancelled_error&) {
        co_return; // the scope was cancelled (or the deadline moved) first
    }
    if (c_scope* s = slot->owner; s != nullptr) {
        s->expired = true;
        s->cancel(cause::expired, nullptr);
    }
}

} // namespace

/// An on-cancel callback: registered on the scope's token, deferred to the runtime's idle
/// handle when it fires so that no program code runs inside a cancellation.
struct cancel_note final : deferred {
    struct fire {
        cancel_note* note;

        void operator()() const noexcept { note->scope->rt->defer(note); }
    };

    cancel_note(c_scope* s, uvasync_cancel_cb c, void* a)
        : scope(s)
        , cb(c)
        , arg(a) {}

    void run() noexcept override {
        c_scope* s = scope;
        c_runtime* rt = s->rt;
        // Unlink from the scope's list first: the callback may free the scope.
        for (cancel_note** p = &s->notes; *p != nullptr; p = &(*p)->next) {
            if (*p == this) {
                *p = next;
                break;
            }
        }
        reg.reset();
        if (cb != nullptr) {
            cb(s, s->status(), arg);
        }
        s->release();
        delete this;
        rt->finished();
    }

    c_scope* scope;
    uvasync_cancel_cb cb;
    void* arg;
    cancel_note* next = nullptr;
    std::optional<cancel_callback<fire>> reg;
};

c_scope::c_scope(c_runtime* r, c_scope* p)
    : rt(r)
    , parent(p)
    , source(p != nullptr ? p->source.token() : r->root.token()) {
    data = nullptr;
    if (parent != nullptr) {
        parent->add_ref();
    }
    ++rt->refs;
}

c_scope::~c_scope() {
    if (slot) {
        slot->owner = nullptr;
    }
    watcher.cancel();
    watcher.detach();
    if (parent != nullptr) {
        parent->release();
    }
    rt->release();
}

void c_scope::release() noexcept {
    if (--refs == 0) {
        delete this;
    }
}

int c_scope::status() const noexcept {
    if (rt->root.cancel_requested()) {
        return UVASYNC_ECLOSED; // the runtime is the outermost scope
    }
    int st = 0;
    for (const c_scope* s = this; s != nullptr; s = s->parent) {
        if (s->source.cancel_requested()) {
            const auto why = static_cast<cause>(s->own_cause.load(std::memory_order_acquire));
            st = why == cause::expired ? UV_ETIMEDOUT : UV_ECANCELED;
        }
    }
    return st;
}

bool c_scope::cancel(cause why, const char* text) noexcept {
    int expected = 0;
    if (own_cause.compare_exchange_strong(expected, static_cast<int>(why),
                                          std::memory_order_acq_rel)) {
        try {
            reason = text != nullptr ? text : (why == cause::expired ? "deadline expired" : "");
        } catch (...) {
        }
        reason_set.store(true, std::memory_order_release);
    }
    try {
        return source.request_cancel(text != nullptr ? std::string_view(text) : std::string_view());
    } catch (...) { // the message could not be allocated: cancel without it
        return source.request_cancel();
    }
}

int c_scope::set_deadline(uint64_t abs) noexcept {
    if (source.cancel_requested()) {
        return UV_EALREADY;
    }
    if (slot) {
        slot->owner = nullptr;
        slot.reset();
        watcher.cancel();
        watcher.detach();
    }
    when = abs > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? UVASYNC_NEVER : abs;
    if (when == UVASYNC_NEVER) {
        return 0;
    }
    const deadline at{loop_clock::duration(static_cast<int64_t>(when))};
    if (at <= rt->rt.now()) {
        expired = true; // already due: expires at once (SEMANTICS D-5)
        cancel(cause::expired, nullptr);
        return 0;
    }
    return guarded([&] {
        auto s = std::make_shared<deadline_slot>();
        s->owner = this;
        watcher = rt->rt.spawn(watch(s, at), source.token());
        slot = std::move(s);
        return 0;
    });
}

int check_start(uvasync_req_t* req, uvasync_scope_t* scope, const void* cb) noexcept {
    if (req == nullptr || scope == nullptr || cb == nullptr) {
        return UV_EINVAL;
    }
    if (scope_of(scope)->rt->closing) {
        return UVASYNC_ECLOSED;
    }
    return 0;
}

} // namespace uvasync::capi

using namespace uvasync::capi;

extern "C" {

int uvasync_scope_new(uvasync_runtime_t* r, uvasync_scope_t* parent, uvasync_scope_t** out) {
    if (r == nullptr || out == nullptr) {
        return UV_EINVAL;
    }
    auto* rt = static_cast<c_runtime*>(r);
    if (rt->closing) {
        return UVASYNC_ECLOSED;
    }
    if (parent != nullptr && scope_of(parent)->rt != rt) {
        return UV_EINVAL;
    }
    return guarded([&] {
        *out = new c_scope(rt, parent != nullptr ? scope_of(parent) : nullptr);
        return 0;
    });
}

void uvasync_scope_free(uvasync_scope_t* scope) {
    if (scope == nullptr) {
        return;
    }
    c_scope* s = scope_of(scope);
    if (s->user_released) {
        return;
    }
    s->user_released = true;
    // Drop the on-cancel callbacks: unregistered ones never fire; one already queued runs
    // as a no-op.
    while (cancel_note* n = s->notes) {
        s->notes = n->next;
        n->next = nullptr;
        n->cb = nullptr;
        if (n->reg && !s->source.cancel_requested()) {
            n->reg.reset();
            n->scope->release();
            delete n;
            s->rt->finished();
        }
    }
    s->release();
}

int uvasync_scope_set_timeout(uvasync_scope_t* scope, int64_t ms) {
    if (scope == nullptr || ms < 0) {
        return UV_EINVAL;
    }
    c_scope* s = scope_of(scope);
    if (s->rt->closing) {
        return UVASYNC_ECLOSED;
    }
    const auto now = static_cast<uint64_t>(s->rt->rt.now().time_since_epoch().count());
    const auto room = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - now;
    return s->set_deadline(static_cast<uint64_t>(ms) >= room ? UVASYNC_NEVER
                                                             : now + static_cast<uint64_t>(ms));
}

int uvasync_scope_set_deadline(uvasync_scope_t* scope, uint64_t when) {
    if (scope == nullptr) {
        return UV_EINVAL;
    }
    if (scope_of(scope)->rt->closing) {
        return UVASYNC_ECLOSED;
    }
    return scope_of(scope)->set_deadline(when);
}

int uvasync_scope_reschedule(uvasync_scope_t* scope, uint64_t when) {
    return uvasync_scope_set_deadline(scope, when);
}

uint64_t uvasync_scope_deadline(const uvasync_scope_t* scope) {
    return scope == nullptr ? UVASYNC_NEVER : static_cast<const c_scope*>(scope)->when;
}

int uvasync_scope_cancel(uvasync_scope_t* scope, const char* reason) {
    if (scope == nullptr) {
        return UV_EINVAL;
    }
    c_scope* s = scope_of(scope);
    if (s->rt->closing) {
        return UVASYNC_ECLOSED;
    }
    return s->cancel(cause::cancelled, reason) ? 0 : UV_EALREADY;
}

int uvasync_scope_cancel_threadsafe(uvasync_scope_t* scope, const char* reason) {
    if (scope == nullptr) {
        return UV_EINVAL;
    }
    // request_cancel is thread-safe; from another thread it posts the propagation to the loop.
    return scope_of(scope)->cancel(cause::cancelled, reason) ? 0 : UV_EALREADY;
}

int uvasync_scope_cancel_requested(const uvasync_scope_t* scope) {
    return scope != nullptr && static_cast<const c_scope*>(scope)->source.cancel_requested() ? 1
                                                                                             : 0;
}

int uvasync_scope_on_cancel(uvasync_scope_t* scope, uvasync_cancel_cb cb, void* arg) {
    if (scope == nullptr || cb == nullptr) {
        return UV_EINVAL;
    }
    c_scope* s = scope_of(scope);
    if (s->rt->closing) {
        return UVASYNC_ECLOSED;
    }
    return guarded([&] {
        auto* n = new cancel_note(s, cb, arg);
        s->add_ref();
        s->rt->started();
        n->next = s->notes;
        s->notes = n;
        n->reg.emplace(s->source.token(), cancel_note::fire{n}); // fires now if cancelled
        return 0;
    });
}

int uvasync_scope_status(const uvasync_scope_t* scope) {
    return scope == nullptr ? UV_EINVAL : static_cast<const c_scope*>(scope)->status();
}

int uvasync_scope_expired(const uvasync_scope_t* scope) {
    return scope != nullptr && static_cast<const c_scope*>(scope)->expired ? 1 : 0;
}

const char* uvasync_scope_reason(const uvasync_scope_t* scope) {
    const char* found = "";
    for (auto* s = static_cast<const c_scope*>(scope); s != nullptr; s = s->parent) {
        if (s->source.cancel_requested() && s->reason_set.load(std::memory_order_acquire)) {
            found = s->reason.c_str(); // the outermost cancelled scope's reason
        }
    }
    if (scope != nullptr && static_cast<const c_scope*>(scope)->rt->root.cancel_requested()) {
        found = "runtime closed";
    }
    return found;
}

} // extern "C"
