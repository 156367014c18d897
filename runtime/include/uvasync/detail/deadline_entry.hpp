// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include <uvasync/clock.hpp>
#include <uvasync/detail/export.hpp>

namespace uvasync::detail {

class deadline_queue;

/// An element of the runtime's deadline heap: a sleep, a scope deadline or a timed callback.
/// It lives inside its owner (a coroutine frame, a scope), so arming one allocates nothing.
struct UVASYNC_API deadline_entry {
    using function = void (*)(deadline_entry*) noexcept;
    static constexpr std::size_t not_queued = std::numeric_limits<std::size_t>::max();

    explicit deadline_entry(function f) noexcept
        : fire(f) {}

    [[nodiscard]] bool queued() const noexcept { return heap_index != not_queued; }

    deadline when = never;
    std::uint64_t seq = 0; // registration order breaks ties (libuv's start_id rule)
    std::size_t heap_index = not_queued;
    deadline_queue* queue = nullptr; // the queue holding it, while queued
    function fire;
};

} // namespace uvasync::detail
