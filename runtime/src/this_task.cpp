// SPDX-License-Identifier: MIT
#include <algorithm>
#include <exception>
#include <string>

#include <uvasync/detail/park.hpp>
#include <uvasync/sleep.hpp>
#include <uvasync/task.hpp>

namespace uvasync {

namespace detail {

std::atomic<std::ptrdiff_t>& live_frame_counter() noexcept {
    static std::atomic<std::ptrdiff_t> counter{0};
    return counter;
}

void parked_wait::on_cancel(cancel_registration* r) noexcept {
    auto* self = static_cast<parked_wait*>(r);
    if (self->state_ == state::waiting) {
        self->hook_(self);
    }
}

namespace {

/// The owner of a delivery at the current point of `core` (D-3), counting the delivery.
scope* count_delivery(task_core* core) {
    // A task that swallows its cancellation in a loop never suspends again and cannot be
    // interrupted (SEMANTICS 4.6): say so once, through the exception handler.
    if (++core->deliveries_without_suspending == 1000) {
        core->rt->report(std::make_exception_ptr(invalid_state(
            "uvasync: a task raised 1000 cancellations without suspending; it swallows "
            "cancelled_error in a loop and can no longer be interrupted")));
    }
    return owner_of(core->current);
}

} // namespace

cancelled_error make_delivery(task_core* core) {
    scope* owner = count_delivery(core);
    return {owner->node.message(), owner->id};
}

void record_delivery(task_core* core) {
    scope* owner = count_delivery(core);
    // Kept by the task, so that it can recognise this object if it is what ends the body, and
    // skip a second unwind (task_core::body_finished).
    // (While the task runs, its outcome slots hold the last delivery; see task_core.)
    core->cancel_message = owner->node.message();
    core->error = std::make_exception_ptr(cancelled_error(core->cancel_message, owner->id));
}

void throw_cancelled_out_of_line(task_core* core) {
    throw_cancelled(core);
}

task_core* require_task(const char* what) {
    task_core* core = current_task();
    if (core == nullptr) {
        throw invalid_state(std::string("uvasync: ") + what + " is only allowed inside a task");
    }
    return core;
}

} // namespace detail

deadline current_deadline() {
    detail::task_core* core = detail::require_task("current_deadline()");
    deadline d = detail::effective_deadline(core->current);
    if (core->current->cancelled()) {
        d = std::min(d, core->rt->now());
    }
    return d;
}

loop_clock::duration remaining() {
    detail::task_core* core = detail::require_task("remaining()");
    const deadline d = current_deadline();
    if (d == never) {
        return loop_clock::duration::max();
    }
    return std::max(loop_clock::duration(0), d - core->rt->now());
}

cancel_token current_token() {
    detail::task_core* core = detail::require_task("current_token()");
    return cancel_token::from_node(&core->current->node);
}

cancel_source::cancel_source()
    : node_(new detail::shared_cancel_node()) {
    node_->bind_to_current_runtime();
}

cancel_source::cancel_source(const cancel_token& parent)
    : node_(new detail::shared_cancel_node()) {
    node_->bind_to_current_runtime();
    if (parent.node() != nullptr) {
        node_->link_to(*parent.node());
        node_->bind(parent.node()->bound_inbox());
    }
}

} // namespace uvasync
