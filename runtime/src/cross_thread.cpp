// SPDX-License-Identifier: MIT
// The way into a runtime from other threads (SEMANTICS 12): posts and cross-thread
// cancellations queued in the inbox run here, on the loop thread, after the async wake-up.
#include <exception>
#include <functional>
#include <utility>

#include <uvasync/detail/runtime_state.hpp>

#include "inbox.hpp"
#include "runtime_cold.hpp"
#include "runtime_handles.hpp"

namespace uvasync::detail {

bool runtime_state::post(std::function<void()> fn) {
    inbox::message m;
    m.fn = std::move(fn);
    return cold_->mailbox->post(std::move(m));
}

void run_message(inbox::message& m, runtime_state& rt) noexcept {
    switch (m.what) {
    case inbox::message::kind::call:
        try {
            m.fn();
        } catch (...) {
            rt.report(std::current_exception());
        }
        break;
    case inbox::message::kind::propagate:
        m.node->propagate(std::move(m.text));
        m.node->release();
        break;
    case inbox::message::kind::release:
        m.node->destroy_on_loop();
        break;
    }
}

void runtime_state::on_async() noexcept {
    runtime_scope current(this);
    // libuv coalesces sends, so one wake-up may stand for many posts (async.rst).
    for (auto& m : cold_->mailbox->take()) {
        run_message(m, *this);
    }
}

} // namespace uvasync::detail
