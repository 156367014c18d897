// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <uv.h>
#include <uvasync/detail/cancel_node.hpp>

namespace uvasync::detail {

/// The one way into a runtime from other threads (SEMANTICS 12): messages queued under a lock
/// and a wake-up through the runtime's single `uv_async_t`.
///
/// It is reference counted separately from the runtime and outlives the async handle:
/// `uv_async_send` on a closed handle is undefined, so shutdown closes the inbox (under its
/// lock) before it closes the handle, and later posts are refused (SEMANTICS 12.7).
class inbox {
public:
    struct message {
        enum class kind : unsigned char { call, propagate, release };
        kind what = kind::call;
        std::function<void()> fn;
        cancel_node* node = nullptr;
        message_ptr text;
    };

    explicit inbox(uv_async_t* async) noexcept
        : async_(async)
        , loop_thread_(std::this_thread::get_id()) {}

    // Reference counted: the runtime holds one reference, and so does every cancel source
    // bound to the runtime, so a request from another thread never reaches a freed inbox.
    void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }

    void release() noexcept {
        if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            delete this;
        }
    }

    [[nodiscard]] bool on_loop_thread() const noexcept {
        return std::this_thread::get_id() == loop_thread_;
    }

    bool post(message m) {
        {
            std::lock_guard lock(mutex_);
            if (async_ == nullptr) {
                return false;
            }
            messages_.push_back(std::move(m));
            pending_.store(true, std::memory_order_release);
            uv_async_send(async_); // under the lock, so close() cannot free the handle meanwhile
        }
        return true;
    }

    std::vector<message> take() {
        std::lock_guard lock(mutex_);
        pending_.store(false, std::memory_order_relaxed);
        return std::exchange(messages_, {});
    }

    [[nodiscard]] bool pending() const noexcept { return pending_.load(std::memory_order_acquire); }

    /// Refuses every later post; returns what was still queued.
    std::vector<message> close() {
        std::lock_guard lock(mutex_);
        async_ = nullptr;
        pending_.store(false, std::memory_order_relaxed);
        return std::exchange(messages_, {});
    }

private:
    std::mutex mutex_;
    uv_async_t* async_;
    std::thread::id loop_thread_;
    std::atomic<std::uint32_t> refs_{1};
    std::vector<message> messages_;
    std::atomic<bool> pending_{false};
};

/// The inbox of the calling thread's current runtime, or null outside any
/// runtime. Defined with the runtime (runtime_state.cpp); the cancellation tree uses it to bind
/// shared nodes without knowing the scheduler.
inbox* current_inbox() noexcept;

} // namespace uvasync::detail
