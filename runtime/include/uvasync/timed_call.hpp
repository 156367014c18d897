// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>

#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/timed_call_node.hpp>

namespace uvasync {

/// The handle of a timed callback made by `runtime::call_at` / `call_later` (SEMANTICS 20),
/// like asyncio's `TimerHandle`. Move-only; destroying it does not cancel the callback.
///
/// **Thread:** loop thread only. The handle must not be used after its runtime is destroyed
/// (the node it names belongs to the runtime).
class timed_call {
public:
    timed_call() noexcept = default;

    timed_call(const timed_call&) = delete;
    timed_call& operator=(const timed_call&) = delete;

    timed_call(timed_call&& other) noexcept
        : node_(other.node_)
        , generation_(other.generation_) {
        other.node_ = nullptr;
    }

    timed_call& operator=(timed_call&& other) noexcept {
        node_ = other.node_;
        generation_ = other.generation_;
        other.node_ = nullptr;
        return *this;
    }

    ~timed_call() = default; // does not cancel (SEMANTICS 20.1)

    /// True while the callback is registered and has neither run nor been cancelled.
    [[nodiscard]] bool pending() const noexcept {
        return node_ != nullptr && node_->generation == generation_;
    }

    /// Removes the callback from the deadline queue and destroys it. True if it had not run
    /// (nor been cancelled, nor dropped by shutdown); false otherwise, including from inside
    /// the callback itself.
    bool cancel() noexcept {
        if (!pending()) {
            return false;
        }
        ++node_->generation;
        node_->rt->release_timed_call(*node_);
        node_ = nullptr;
        return true;
    }

private:
    friend class runtime;

    timed_call(detail::timed_call_node* node) noexcept
        : node_(node)
        , generation_(node->generation) {}

    detail::timed_call_node* node_ = nullptr;
    std::uint64_t generation_ = 0;
};

} // namespace uvasync
