// SPDX-License-Identifier: MIT
#pragma once

#include <string>

#include <uvasync/clock.hpp>

namespace uvasync::detail {

class parked_wait;

/// What a parked wait is, for introspection (`runtime::dump`, the slow-wait trace event):
/// a static description an awaiter points to once, so a wait costs one pointer store and
/// nothing else. `describe`, when set, appends the wait's details (a sleep's deadline, a
/// stream's peer address) to `out`; it runs only when a dump is made, on the loop thread,
/// and may throw only `std::bad_alloc`.
struct wait_kind {
    /// `origin`: the runtime's start; times are written as milliseconds since it.
    using describe_fn = void (*)(const parked_wait& wait, deadline origin, std::string& out);

    const char* name;
    describe_fn describe = nullptr;
};

/// The kind of a parked wait whose awaiter gives none.
inline constexpr wait_kind unnamed_wait{"wait"};

} // namespace uvasync::detail
