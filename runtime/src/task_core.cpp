// SPDX-License-Identifier: MIT
#include <new>

#include <uvasync/detail/local_map.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/task_core.hpp>
#include <uvasync/detail/task_info.hpp>
#include <uvasync/detail/trace_points.hpp>
#include <uvasync/error.hpp>
#include <uvasync/task.hpp>

namespace uvasync::detail {

// ---- the task frame's allocation (decision 0021) ----

void* task_promise_base::operator new(std::size_t size) {
    void* block = ::operator new(task_frame_prefix + size);
    void* frame = static_cast<char*>(block) + task_frame_prefix;
    new (&frame_header(frame)) task_frame_header{};
#ifndef NDEBUG
    live_frame_counter().fetch_add(1, std::memory_order_relaxed);
#endif
    return frame;
}

void task_promise_base::operator delete(void* frame, std::size_t /*size*/) noexcept {
#ifndef NDEBUG
    live_frame_counter().fetch_sub(1, std::memory_order_relaxed);
#endif
    task_frame_header& h = frame_header(frame);
    h.frame_live = false;
    if (!h.core_live) {
        free_task_block(frame);
    }
}

void free_task_block(void* frame) noexcept {
    ::operator delete(core_storage(frame)); // not the sized form: clang 14 does not declare it
}

// ---- task_core ----

task_core::~task_core() {
    static_cast<list_hook<all_tasks_tag>&>(*this).unlink();
    static_cast<list_hook<child_set_tag>&>(*this).unlink();
    waiters.clear();
    delete token_scope;
    local_map::release(locals);
    drop_info(info);
}

void task_core::release() noexcept {
    if (--refs != 0) {
        return;
    }
    if (rt != nullptr && result == outcome::error && !retrieved) {
        rt->report(error); // the last handle went away without looking (asyncio's GC log)
    }
    void* f = frame().address();
    task_frame_header& h = frame_header(f);
    this->~task_core();
    h.core_live = false;
    if (h.frame_live) {
        std::coroutine_handle<>::from_address(f).destroy(); // frees the block
    } else {
        free_task_block(f);
    }
}

void task_core::destroy_frame() noexcept {
    if (frame_header(frame().address()).frame_live) {
        frame().destroy(); // the block stays: the core is live
    }
}

void task_core::throw_cancelled_outcome() const {
    throw cancelled_error(cancel_message, 0);
}

bool task_core::cancelled_before_start() noexcept {
    started = true;
    if (!task_scope.cancelled()) {
        return false;
    }
    error = nullptr; // (nothing was delivered: the body never ran)
    cancel_message = owner_of(&task_scope)->node.message();
    result = outcome::cancelled;
    destroy_frame();
    finish();
    return true;
}

void task_core::body_finished(std::exception_ptr& body_error, bool keep_frame) noexcept {
    if (body_error == nullptr) {
        clear_last_delivery();
        result = outcome::value;
    } else if (body_error == last_delivery()) {
        // The body ended with the cancellation the runtime delivered (the very object, not a
        // copy): the outcome is known without rethrowing it (bench/NOTES.md, W3); the
        // delivery's message is already in cancel_message.
        error = nullptr;
        result = outcome::cancelled;
    } else {
        clear_last_delivery();
        try {
            std::rethrow_exception(body_error);
        } catch (const cancelled_error& e) {
            cancel_message = e.shared_message();
            result = outcome::cancelled;
        } catch (...) {
            error = body_error;
            result = outcome::error;
        }
    }
    if (!keep_frame) {
        destroy_frame();
    }
    finish();
}

void task_core::finish() noexcept {
    // (The tracer hears of it at the end of this step: runtime_state::instrumented_step.)
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
