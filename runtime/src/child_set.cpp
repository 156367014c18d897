// SPDX-License-Identifier: MIT
#include <uvasync/detail/child_set.hpp>

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
}

void child_set::leave() noexcept {
    owner_->current = scope_.parent;
    scope_.node.unlink_from_parent();
    phase_ = phase::closed;
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

} // namespace uvasync::detail
