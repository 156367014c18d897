// SPDX-License-Identifier: MIT
// What the libFuzzer targets share: a failed check that aborts (libFuzzer then saves the input),
// and the checks after an input that nothing is left behind.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include <uv.h>
#include <uvasync/uvasync.hpp>

namespace uvasync::fuzz {

/// The target's name, printed before a failed check ("schedule_fuzz", "stream_fuzz"); each
/// target defines it.
const char* target_name() noexcept;

[[noreturn]] inline void violation(const char* what) {
    std::fprintf(stderr, "%s: check failed: %s\n", target_name(), what);
    std::fflush(stderr);
    std::abort();
}

inline void expect(bool ok, const char* what) {
    if (!ok) {
        violation(what);
    }
}

/// Once the input's runtime is gone: no libuv handle is left on `loop`, `uv_loop_close`
/// returns 0, and the count of live coroutine frames is back to `frames_before`.
inline void expect_nothing_left(uv_loop_t& loop, std::ptrdiff_t frames_before) {
    int open = 0;
    uv_walk(
        &loop, [](uv_handle_t*, void* arg) { ++*static_cast<int*>(arg); }, &open);
    expect(open == 0, "a libuv handle was left open");
    expect(uv_loop_close(&loop) == 0, "uv_loop_close failed");
    expect(detail::live_frame_counter().load() == frames_before, "a coroutine frame leaked");
}

} // namespace uvasync::fuzz
