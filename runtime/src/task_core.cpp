// SPDX-License-Identifier: MIT
#include <uvasync/detail/local_map.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/error.hpp>

namespace uvasync::detail {

task_core::~task_core() {
    static_cast<list_hook<all_tasks_tag>&>(*this).unlink();
    static_cast<list_hook<child_set_tag>&>(*this).unlink();
    waiters.clear();
    delete token_scope;
    local_map::release(locals);
}

void task_core::release() noexcept {
    if (--refs != 0) {
        return;
    }
    if (rt != nullptr && result == outcome::error && !retrieved) {
        rt->report(error); // the last handle went away without looking (asyncio's GC log)
    }
    root.destroy(); // destroys *this
}

void task_core::throw_cancelled_outcome() const {
    throw cancelled_error(cancel_message, 0);
}

void task_core::finish() noexcept {
    if (parent_set != nullptr) {
        parent_set->child_finished(parent_set,
                                   this); // the group records the outcome first (SEMANTICS 9.4)
    }
    // Waiters only become ready here; they run later from the run queue (D-14).
    while (task_waiter* w = waiters.pop_front()) {
        w->on_done(w);
    }
    if (rt != nullptr) {
        rt->task_finished(this);
        if (result == outcome::error && refs == 1 && !retrieved) {
            retrieved = true;
            rt->report(error); // detached and failed: nobody else can ever see it
        }
    }
    release();
}

} // namespace uvasync::detail
