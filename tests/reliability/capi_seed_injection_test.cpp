// SPDX-License-Identifier: MIT
// Cancellation injection per suspension point (docs/reliability.md) for the C seed programs
// (examples/c/seed_*.c): each program's `main` is compiled as a function (meson renames it),
// and its call to uvasync_runtime_init_virtual is routed here (meson renames that too), which
// creates the runtime and installs the runtime's step observer. After the k-th task step (the
// C API's operations run as tasks), the runtime's root cancellation source is cancelled: every
// scope of the program is cancelled at that point, as a uvasync_runtime_close would. For every
// k until a run ends uninjected, the program must return 0 (its loop closed: uv_loop_close
// returned 0) and leave no coroutine frame; the sanitizer passes add ASan and LSan.
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync.h>

#include "../../bindings/c/src/internal.hpp"
#include "inject_each.hpp"
#include "quiet_stdout.hpp"

extern "C" {
int c_seed_01_main(int argc, char** argv);
int c_seed_02_main(int argc, char** argv);
int c_seed_03_main(int argc, char** argv);
int c_seed_05_main(int argc, char** argv);
int c_seed_06_main(int argc, char** argv);
int inject_runtime_init_virtual(uv_loop_t* loop, uvasync_runtime_t** out);
}

namespace {

struct injection {
    long k = 0;
    long steps = 0;
    bool injected = false;
    uvasync::capi::c_runtime* rt = nullptr;
};

injection current;

void inject() noexcept {
    current.injected = current.rt->root.request_cancel("injected");
}

void on_step(void* /*arg*/) noexcept {
    if (++current.steps == current.k) {
        inject();
    }
}

} // namespace

// The seeds' uvasync_runtime_init_virtual (renamed by meson for these objects only).
extern "C" int inject_runtime_init_virtual(uv_loop_t* loop, uvasync_runtime_t** out) {
    const int rc = uvasync_runtime_init_virtual(loop, out);
    if (rc == 0) {
        current.rt = static_cast<uvasync::capi::c_runtime*>(*out);
        current.rt->rt.state().observe_steps(&on_step, nullptr);
        if (current.k == 0) {
            inject();
        }
    }
    return rc;
}

namespace {

using seed_main = int (*)(int, char**);

/// Runs `main` once per k; returns the number of injections.
long inject_at_every_step(seed_main main) {
    for (long k = 0;; ++k) {
        CAPTURE(k);
        const std::ptrdiff_t frames_before = uvasync::detail::live_frame_counter().load();
        current = injection{};
        current.k = k;
        std::string arg0 = "seed";
        std::string arg1 = "--virtual";
        std::vector<char*> argv = {arg0.data(), arg1.data(), nullptr};
        int rc = -1;
        {
            const uvasync::test::quiet_stdout quiet;
            rc = main(2, argv.data());
        }
        CHECK(rc == 0); // seed_finish: the loop closed
        CHECK(uvasync::detail::live_frame_counter().load() == frames_before);
        if (!current.injected) {
            return k;
        }
        REQUIRE(k < 10000);
    }
}

} // namespace

TEST_CASE("capi_seeds_cancelled_at_every_step_close_their_loops") {
    const std::vector<std::pair<const char*, seed_main>> seeds = {
        {"01_basic_timeout", &c_seed_01_main},
        {"02_nested_timeouts", &c_seed_02_main},
        {"03_cancel_worker", &c_seed_03_main},
        {"05_deadline_tracking", &c_seed_05_main},
        {"06_server_pattern", &c_seed_06_main}};
    const long total = uvasync::test::inject_into_each(seeds, inject_at_every_step);
    MESSAGE("cancellations injected over the C seeds: " << total);
}
