// SPDX-License-Identifier: MIT
#include <algorithm>
#include <functional>

#include <uvasync/detail/child_set.hpp>
#include <uvasync/detail/completion_set.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/trace_points.hpp>

namespace uvasync::detail {

child_set::~child_set() {
    // Normally empty: the owner waits for every child. Only when the owner's frame is
    // destroyed at shutdown can children outlive the set; they must not call back into it.
    while (task_core* c = children_.pop_front()) {
        c->parent_set = nullptr;
    }
    if (phase_ == phase::open) {
        scope_.node.unlink_from_parent();
    }
}

void child_set::enter(task_core* owner) noexcept {
    owner_ = owner;
    scope_.id = owner->rt->next_scope_id();
    scope_.parent = owner->current;
    scope_.node.link_to(owner->current->node);
    owner->current = &scope_;
    phase_ = phase::open;
    if (owner->rt->tracing() != nullptr) [[unlikely]] {
        trace_scope(scope_trace::enter, scope_, *owner, false, false, false);
    }
}

void child_set::leave(bool converted) noexcept {
    owner_->current = scope_.parent;
    scope_.node.unlink_from_parent();
    phase_ = phase::closed;
    if (owner_->rt->tracing() != nullptr) [[unlikely]] {
        trace_scope(scope_trace::exit, scope_, *owner_, scope_.cancelled(), converted, false);
    }
}

void child_set::on_child_finished(finish_observer* self, task_core* child) noexcept {
    static_cast<child_set*>(self)->child_finished(child);
}

void child_set::child_finished(task_core* child) noexcept {
    static_cast<list_hook<child_set_tag>&>(*child).unlink();
    child->parent_set = nullptr;
    hook_(this, child);
    if (children_.empty() && exit_waiter_) {
        owner_->rt->schedule(owner_, std::exchange(exit_waiter_, nullptr));
    }
}

void sort_positions(child_positions& index) noexcept {
    std::sort(index.begin(), index.end(),
              [](const auto& a, const auto& b) { return std::less<>{}(a.first, b.first); });
}

std::size_t position_of(const child_positions& index, const task_core* core) noexcept {
    auto it =
        std::lower_bound(index.begin(), index.end(), core, [](const auto& e, const task_core* c) {
            return std::less<const task_core*>{}(e.first, c);
        });
    return it->second;
}

} // namespace uvasync::detail
