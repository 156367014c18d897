// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include <uvasync/detail/deadline_entry.hpp>

namespace uvasync::detail {

class runtime_state;

/// A timed callback (`runtime::call_at`, SEMANTICS 20): a deadline-queue entry that owns the
/// callable. Nodes belong to the runtime's pool and are reused, so a callable that fits the
/// inline buffer costs no allocation once the pool has a free node; a larger one costs exactly
/// its own storage. Loop thread only.
struct timed_call_node : deadline_entry {
    static constexpr std::size_t inline_size = 48;

    timed_call_node() noexcept
        : deadline_entry(&on_fire) {}

    timed_call_node(const timed_call_node&) = delete;
    timed_call_node& operator=(const timed_call_node&) = delete;
    timed_call_node(timed_call_node&&) = delete;
    timed_call_node& operator=(timed_call_node&&) = delete;

    ~timed_call_node() { drop(); }

    /// Stores `f` (decayed), inline when it fits.
    template <class F>
    void store(F&& f) {
        using fn = std::decay_t<F>;
        if constexpr (sizeof(fn) <= inline_size && alignof(fn) <= alignof(std::max_align_t) &&
                      std::is_nothrow_move_constructible_v<fn>) {
            callable = ::new (static_cast<void*>(buffer)) fn(std::forward<F>(f));
            destroy = [](void* p) noexcept { static_cast<fn*>(p)->~fn(); };
        } else {
            callable = new fn(std::forward<F>(f));
            destroy = [](void* p) noexcept { delete static_cast<fn*>(p); };
        }
        invoke = [](void* p) { (*static_cast<fn*>(p))(); };
    }

    /// Destroys the stored callable, if any.
    void drop() noexcept {
        if (callable != nullptr) {
            void* p = callable;
            callable = nullptr;
            destroy(p);
        }
    }

    [[nodiscard]] bool holds() const noexcept { return callable != nullptr; }

    alignas(std::max_align_t) unsigned char buffer[inline_size];
    void* callable = nullptr;
    void (*invoke)(void*) = nullptr;
    void (*destroy)(void*) noexcept = nullptr;
    runtime_state* rt = nullptr;
    std::uint64_t generation = 0; // bumped when the entry runs or is cancelled
    timed_call_node* next_free = nullptr;

private:
    static void on_fire(deadline_entry* e) noexcept; // src/timed_call.cpp
};

} // namespace uvasync::detail
