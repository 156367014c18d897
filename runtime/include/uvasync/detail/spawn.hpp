// SPDX-License-Identifier: MIT
#pragma once

#include <utility>

#include <uvasync/detail/local_map.hpp>
#include <uvasync/detail/root.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/scope.hpp>
#include <uvasync/detail/task_info.hpp>
#include <uvasync/error.hpp>
#include <uvasync/task.hpp>
#include <uvasync/task_handle.hpp>

namespace uvasync::detail {

/// `spawner`: the task that spawns (null outside a task): every spawn site already knows it
/// (the free `spawn` reads the thread's context once for the runtime and the task), so
/// recording it costs no second thread-local lookup. `label`: the name and spawn site of a
/// named spawn (introspection.hpp), else null.
template <class T>
task_handle<T> spawn_in(runtime_state& rt, task_core* spawner, task<T> body, cancel_node* token,
                        scope* parent, const spawn_label* label = nullptr) {
    if (!body.valid()) {
        throw invalid_state("uvasync: spawning an empty or already awaited task");
    }
    task_state<T>& st = *adopt_frame(body);
    st.rt = &rt;
    st.locals = local_map::inherit(rt, spawner); // task-local values, copied at spawn
    st.task_scope.id = rt.next_scope_id();
    if (spawner != nullptr) {
        st.info = spawned_by_tag(spawner->task_scope.id); // no allocation (task_info.hpp)
    }
    if (token != nullptr) {
        st.token_scope = new scope(scope_kind::token);
        st.token_scope->id = rt.next_scope_id();
        st.token_scope->node.link_to(*token);
        st.task_scope.parent = st.token_scope;
        st.task_scope.node.link_to(st.token_scope->node);
    } else if (parent != nullptr) {
        st.task_scope.parent = parent;
        st.task_scope.node.link_to(parent->node);
    }
    if (label != nullptr) {
        label_task(st, *label);
    }
    task_handle<T> handle(&st);
    rt.adopt(&st);
    return handle;
}

} // namespace uvasync::detail
