// SPDX-License-Identifier: MIT
// Timed callbacks (SEMANTICS 20): entries of the deadline queue that own a callable, from a
// pool of nodes the runtime owns.
#include <memory>

#include <uvasync/detail/runtime_state.hpp>

#include "runtime_cold.hpp"

namespace uvasync::detail {

timed_call_node& runtime_state::acquire_timed_call() {
    if (cold_->free_timed_calls == nullptr) {
        cold_->timed_calls.push_back(std::make_unique<timed_call_node>());
        cold_->timed_calls.back()->rt = this;
        return *cold_->timed_calls.back();
    }
    timed_call_node* n = cold_->free_timed_calls;
    cold_->free_timed_calls = n->next_free;
    n->next_free = nullptr;
    return *n;
}

void runtime_state::release_timed_call(timed_call_node& n) noexcept {
    remove_deadline(n);
    n.drop();
    n.next_free = cold_->free_timed_calls;
    cold_->free_timed_calls = &n;
}

void runtime_state::drop_timed_calls() noexcept {
    for (auto& n : cold_->timed_calls) {
        if (n->holds()) {
            ++n->generation;
            release_timed_call(*n);
        }
    }
}

void timed_call_node::on_fire(deadline_entry* e) noexcept {
    auto* self = static_cast<timed_call_node*>(e);
    runtime_state* rt = self->rt;
    ++self->generation; // running: cancel() from now on returns false
    // Outside any task (SEMANTICS 20.1), even when advance() is called from inside one.
    thread_context& ctx = this_thread_context();
    task_core* const saved = ctx.task;
    ctx.task = nullptr;
    try {
        self->invoke(self->callable);
    } catch (...) {
        rt->report(std::current_exception()); // SEMANTICS 20.3: the loop goes on
    }
    ctx.task = saved;
    rt->release_timed_call(*self);
}

} // namespace uvasync::detail
