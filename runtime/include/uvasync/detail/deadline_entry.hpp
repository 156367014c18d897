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
    static constexpr std::uint32_t not_queued = std::numeric_limits<std::uint32_t>::max();

    explicit deadline_entry(function f) noexcept
        : fire(f) {}

    [[nodiscard]] bool queued() const noexcept { return heap_index != not_queued; }

    deadline when = never;
    // Registration order breaks ties (libuv's start_id rule). 32 bits each (8 bytes less in
    // every sleep and scope, bench/NOTES.md): `seq` is compared modulo 2^32 (`seq_before`),
    // exact as long as two entries with the same deadline were registered fewer than 2^31
    // registrations apart; the heap holds fewer than 2^32 - 1 entries.
    std::uint32_t seq = 0;
    std::uint32_t heap_index = not_queued;
    deadline_queue* queue = nullptr; // the queue holding it, while queued
    function fire;
};

/// `a` was registered before `b` (registration numbers wrap around modulo 2^32).
constexpr bool seq_before(std::uint32_t a, std::uint32_t b) noexcept {
    return static_cast<std::int32_t>(a - b) < 0;
}

} // namespace uvasync::detail
