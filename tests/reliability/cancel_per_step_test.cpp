// SPDX-License-Identifier: MIT
// Systematic cancellation injection per suspension point: a program's root task is cancelled
// after the k-th task step, for every k from 0 until the program finishes on its own.
//
// The method (tests/support/step_injection.hpp): the runtime calls a step observer
// (runtime_state::observe_steps, a test hook) after each task step, that is, after each resumption
// of a task from the run queue, which runs until that task is parked again at a suspension point or
// finishes. Counting steps from outside and cancelling the root after the k-th one visits every
// state the program rests in, one suspension at a time, including the resumptions a single loop
// iteration runs in a burst (the virtual clock's autojump, several deadlines due together), which
// the per-iteration injection of cancel_injection_test.cpp cannot separate. The cancellation
// happens where another task's `handle.cancel()` could happen: between two steps, never inside one.
// On the virtual clock the order of steps is a deterministic function of the program, so each k is
// reproducible.
//
// The programs: the seed scenarios (examples/seed/scenarios.hpp) and tutorial steps 1 to 6
// (examples/tutorial, compiled in here with their `main` renamed; they print what they do).
// Each run must end with the root finished normally or cancelled (nothing else), nothing
// reported to the exception handler, each cleanup of seed scenario 7 done exactly once per
// start, and the fixture's teardown finding no live frame, no open handle and uv_loop_close
// returning 0. A double resume shows as a use after free in the sanitizer passes.
//
// The tutorial programs are included into this file (below). GCC then sees their lambdas as
// defined in an included file and warns when a library template's frame holds one
// (-Wsubobject-linkage), a warning meant for headers shared by several translation units.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wsubobject-linkage"
#endif

#include <array>
#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io.hpp>
#include <uvasync/uvasync.hpp>

#include "injection.hpp"
#include "loop_fixture.hpp"
#include "quiet_stdout.hpp"
#include "step_injection.hpp"

// The tutorial steps are whole programs; each goes into its own namespace, inside an unnamed one
// (internal linkage, as in its own program), with `main` renamed. The renamed main is never
// called: that it is unused and lacks the return statement only `main` may omit is harmless.
// Their headers are included above, so their own #includes add nothing here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wreturn-type"
#pragma GCC diagnostic ignored "-Wunused-function"
// NOLINTNEXTLINE(readability-identifier-naming): renames the programs' main
#define main tutorial_main

namespace {
namespace tutorial_01 {
#include "../../examples/tutorial/01_first_run.cpp" // NOLINT(bugprone-suspicious-include)
}

namespace tutorial_02 {
#include "../../examples/tutorial/02_concurrency.cpp" // NOLINT(bugprone-suspicious-include)
}

namespace tutorial_03 {
#include "../../examples/tutorial/03_timeouts.cpp" // NOLINT(bugprone-suspicious-include)
}

namespace tutorial_04 {
#include "../../examples/tutorial/04_cancellation.cpp" // NOLINT(bugprone-suspicious-include)
}

namespace tutorial_05 {
#include "../../examples/tutorial/05_task_group.cpp" // NOLINT(bugprone-suspicious-include)
}

namespace tutorial_06 {
#include "../../examples/tutorial/06_server.cpp" // NOLINT(bugprone-suspicious-include)
}
} // namespace

#undef main
#pragma GCC diagnostic pop

namespace {

using uvasync::test::loop_fixture;
using uvasync::test::step_injector;

/// What a program leaves for the checks after its run.
struct run_record {
    std::optional<seed::log> log; // seed scenarios: the lines they printed
};

using program = std::function<uvasync::task<>(run_record&)>;

/// Runs `make` once per k; returns the number of steps of the run that was not cancelled.
long inject_at_every_step(const program& make, bool check_cleanups,
                          const uvasync::runtime_options& clock = loop_fixture::virtual_clock()) {
    long steps = 0;
    uvasync::test::for_every_k(
        [&](long k) {
            run_record rec; // outlives the runtime's shutdown
            bool injected = false;
            {
                loop_fixture f(clock);
                uvasync::task_handle<> h = f.rt->spawn(make(rec));
                {
                    const step_injector inject(*f.rt, h, k);
                    f.run_until([&] { return h.done(); });
                    injected = inject.injected();
                    steps = inject.steps();
                }
                uvasync::test::check_injected_run(h, injected, f, rec.log, check_cleanups);
            } // the fixture's checks run here: no frame, no handle, uv_loop_close == 0
            return !injected; // it ended before step k: every earlier k was visited
        },
        1000000);
    return steps;
}

using uvasync::test::scenario_fn;

program seed_program(scenario_fn s) {
    return [s](run_record& rec) -> uvasync::task<> {
        rec.log.emplace(false);
        return s(*rec.log);
    };
}

program tutorial_program(uvasync::task<> (*main_task)()) {
    return [main_task](run_record&) { return main_task(); };
}

} // namespace

TEST_CASE("cancel_at_every_step_of_every_seed_scenario") {
    long total = 0;
    for (const auto& entry : uvasync::test::seed_scenarios) {
        const std::string name = entry.name; // CAPTURE prints a string, not a pointer
        CAPTURE(name);
        const long n =
            inject_at_every_step(seed_program(entry.fn), uvasync::test::logs_cleanups(entry.fn));
        CHECK(n > 0);
        MESSAGE(name << ": " << n + 1 << " injection points");
        total += n + 1;
    }
    MESSAGE("cancellations injected over the seed scenarios: " << total);
}

TEST_CASE("cancel_at_every_step_of_every_tutorial_step") {
    const std::vector<std::pair<const char*, uvasync::task<> (*)()>> steps = {
        {"01_first_run", &tutorial_01::main_task},
        {"02_concurrency", &tutorial_02::main_task},
        {"03_timeouts", &tutorial_03::main_task},
        {"04_cancellation", &tutorial_04::main_task},
        {"05_task_group", &tutorial_05::main_task}};
    long total = 0;
    for (const auto& entry : steps) {
        const std::string name = entry.first;
        CAPTURE(name);
        long n = 0;
        {
            const uvasync::test::quiet_stdout quiet;
            n = inject_at_every_step(tutorial_program(entry.second), false);
        }
        CHECK(n > 0);
        MESSAGE(name << ": " << n + 1 << " injection points");
        total += n + 1;
    }
    // Step 6 serves and connects over 127.0.0.1: the real clock (on the virtual one, the
    // autojump would fire the client's 1 s timeout while the kernel moves its bytes), and the
    // step order follows the kernel's I/O, so k need not name the same point in two runs.
    {
        long n = 0;
        {
            const uvasync::test::quiet_stdout quiet;
            n = inject_at_every_step(tutorial_program(&tutorial_06::main_task), false,
                                     loop_fixture::real_clock());
        }
        CHECK(n > 0);
        MESSAGE("06_server: " << n + 1 << " injection points");
        total += n + 1;
    }
    MESSAGE("cancellations injected over the tutorial steps: " << total);
}
