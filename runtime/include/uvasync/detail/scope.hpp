// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#include <uvasync/clock.hpp>
#include <uvasync/detail/cancel_node.hpp>

namespace uvasync::detail {

enum class scope_kind : std::uint8_t { task, token, timeout, shield, group };

/// A cancel scope: a region of a task that is cancelled as a unit (SEMANTICS 1).
///
/// `node` is the scope's place in the cancellation tree; `parent` is the enclosing scope, which
/// for the children of a task group crosses into the task that owns the group. The two chains
/// coincide except at a shield, whose node has no parent: cancellation outside cannot reach
/// it, and the owner search (`owner_of`) stops there.
struct scope {
    explicit scope(scope_kind k) noexcept
        : kind(k) {}

    scope(const scope&) = delete;
    scope& operator=(const scope&) = delete;
    scope(scope&&) = delete;
    scope& operator=(scope&&) = delete;
    ~scope() = default;

    [[nodiscard]] bool cancelled() const noexcept { return node.cancelled(); }

    cancel_node node;
    scope* parent = nullptr;
    std::uint64_t id = 0;
    deadline own_deadline = never; // only timeout scopes set it
    scope_kind kind;
};

/// The owner of a cancellation raised at a point whose innermost scope is `innermost`
/// (SEMANTICS D-3, 4.8): the outermost cancelled scope, searching outward and stopping at the
/// nearest shield. Cost: the walk stops at the first scope whose parent is not cancelled.
inline scope* owner_of(scope* innermost) noexcept {
    scope* s = innermost;
    while (s->kind != scope_kind::shield && s->parent != nullptr && s->parent->cancelled()) {
        s = s->parent;
    }
    return s;
}

/// The effective deadline at a point: the minimum over the enclosing scopes up to the nearest
/// shield (SEMANTICS 5.11).
inline deadline effective_deadline(const scope* innermost) noexcept {
    deadline d = never;
    for (const scope* s = innermost; s != nullptr; s = s->parent) {
        if (s->own_deadline < d) {
            d = s->own_deadline;
        }
        if (s->kind == scope_kind::shield) {
            break;
        }
    }
    return d;
}

} // namespace uvasync::detail
