// SPDX-License-Identifier: MIT
// Schedule fuzzer (libFuzzer): each input is decoded into a program of spawns, cancellations,
// timeouts (entered, rescheduled, cancelled), move_on, shielded and shield, task groups,
// gather, wait_for and the sync primitives, with sleeps on the virtual clock
// (schedule_program.hpp), and run on a fresh loop. After each input it checks:
//   - no coroutine frame is left alive, no libuv handle is left open, uv_loop_close returns 0;
//   - every operation's cleanup ran exactly once (a guard object in every operation's frame);
//   - ownership (SEMANTICS 4.8): a timeout scope converts a cancellation (timeout_error, or an
//     empty optional for move_on) only when its own deadline fired or it was cancelled, and no
//     enclosing scope (up to the nearest shield or task boundary) was cancelled before it;
//   - a spawned task ends cancelled only if its handle was cancelled;
//   - semaphore permits are conserved (held + available <= initial at every step, == at the end);
//   - queue items are neither lost nor duplicated (at the end, puts == gets + items left);
//   - the root task ends normally, within a bounded number of loop iterations.
// A failed check aborts, which libFuzzer reports as a crash with the input saved. The sanitizers
// (the fuzz build uses ASan + UBSan) catch memory errors and leaks.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include <uv.h>
#include <uvasync/uvasync.hpp>

#include "fuzz_support.hpp"
#include "schedule_program.hpp"

namespace uvasync::fuzz {

const char* target_name() noexcept {
    return "schedule_fuzz";
}

namespace {

struct test_error : std::runtime_error {
    test_error()
        : std::runtime_error("fuzz: test error") {}
};

constexpr std::int64_t not_yet = INT64_MAX;

/// What the harness knows about one cancellation scope of the program: when it was cancelled
/// (ms on the virtual clock), whether that time is exact ("manual": a cancel() call made by a
/// task, so its order against a deadline firing in the same millisecond is unknown), and where
/// the ownership search stops.
struct scope_info {
    enum class kind : std::uint8_t { task, timeout, shield, group };
    kind k = kind::task;
    scope_info* parent = nullptr;     // the enclosing scope in the same cancellation tree
    std::int64_t fired = not_yet;     // cancellation time, or a timeout's current deadline
    bool manual = false;              // `fired` was set by a cancel() call, not a deadline
    std::int64_t uncertain = not_yet; // a group or gather: may cancel itself from this time on
};

/// Per-input state shared by all tasks.
struct world {
    runtime* rt = nullptr;
    deadline start{};
    std::deque<scope_info> scopes; // stable addresses

    struct spawned {
        task_handle<> handle;
        scope_info* scope;
    };

    std::vector<spawned> handles;
    std::vector<int> cleanups; // per operation instance: how many times its guard was destroyed
    event events[2];
    static constexpr std::size_t permits = 2;
    semaphore sem{permits};
    std::size_t held = 0;
    queue<int> q{2};
    long puts = 0;
    long gets = 0;
    promise<int> prom;
    future<int> fut = prom.get_future();
    long conversions = 0; // timeouts that converted (for the statistics)

    [[nodiscard]] std::int64_t now() const { return (rt->now() - start).count(); }

    scope_info* add_scope(scope_info::kind k, scope_info* parent) {
        scopes.push_back(scope_info{k, parent});
        return &scopes.back();
    }
};

world* g = nullptr;

/// Lives in an operation's frame: its destructor is the operation's cleanup.
class cleanup_guard {
public:
    cleanup_guard()
        : id_(g->cleanups.size()) {
        g->cleanups.push_back(0);
    }

    cleanup_guard(const cleanup_guard&) = delete;
    cleanup_guard& operator=(const cleanup_guard&) = delete;
    cleanup_guard(cleanup_guard&&) = delete;
    cleanup_guard& operator=(cleanup_guard&&) = delete;

    ~cleanup_guard() {
        if (++g->cleanups[id_] != 1) {
            violation("a cleanup ran twice");
        }
    }

private:
    std::size_t id_;
};

/// The context of one running program: its innermost scope, and the innermost timeout scope of
/// the same task (for reschedule; never handed across a task boundary).
struct context {
    scope_info* scope = nullptr;
    timeout_scope* timeout = nullptr;
    scope_info* timeout_info = nullptr;

    /// The context of a body run in a new scope `inner` nested in this one: no timeout scope
    /// of the program encloses it directly.
    [[nodiscard]] context nested(scope_info* inner) const {
        context c = *this;
        c.scope = inner;
        c.timeout = nullptr;
        return c;
    }
};

std::chrono::milliseconds ticks(std::uint8_t b) {
    return std::chrono::milliseconds((b % 16) * 3);
}

/// Ownership check when `s` converted a cancellation (SEMANTICS 4.8: the owner is the
/// outermost cancelled scope enclosing the cancellation point, the search stopping at a shield).
void check_conversion(const scope_info* s) {
    ++g->conversions;
    const std::int64_t now = g->now();
    expect(s->fired != not_yet && s->fired <= now, "a timeout converted but never fired");
    for (const scope_info* a = s->parent; a != nullptr; a = a->parent) {
        if (a->k == scope_info::kind::shield) {
            break;
        }
        if (a->uncertain <= now) {
            return; // a group/gather may have cancelled itself at a time we cannot see
        }
        if (a->fired <= now) {
            const bool before =
                a->fired < s->fired || (a->fired == s->fired && !a->manual && !s->manual);
            expect(!before, "a timeout converted although an enclosing scope was cancelled first");
        }
        if (a->k == scope_info::kind::task) {
            break;
        }
    }
}

/// Marks every group/gather above `c` (in this cancellation tree) as possibly self-cancelled
/// from now on (a failure inside cancels the siblings).
void mark_failure(scope_info* s) {
    const std::int64_t now = g->now();
    for (scope_info* a = s; a != nullptr; a = a->parent) {
        if (a->k == scope_info::kind::group && a->uncertain > now) {
            a->uncertain = now;
        }
        if (a->k == scope_info::kind::task || a->k == scope_info::kind::shield) {
            break;
        }
    }
}

task<> run_program(const program& p, context c);

task<> timeout_body(timeout_scope& s, const program& p, context c, scope_info* info) {
    info->fired = (s.when() - g->start).count();
    c.timeout = &s;
    c.timeout_info = info;
    c.scope = info;
    co_await run_program(p, c);
}

task<> spawned_root(const program& p, scope_info* info, bool rethrow) {
    context c;
    c.scope = info;
    try {
        co_await run_program(p, c);
    } catch (const cancelled_error&) {
        expect(info->fired != not_yet, "a spawned task ended cancelled without being cancelled");
        if (rethrow) {
            throw;
        }
    } catch (const test_error&) {
    }
}

task<> group_body(task_group& grp, const op& o, context c) {
    for (std::size_t i = 1; i < o.subs.size(); ++i) {
        grp.spawn(run_program(o.subs[i], c));
    }
    co_await run_program(o.subs[0], c);
}

task<int> await_future() {
    co_return co_await g->fut;
}

task<> hold_permit(semaphore::permit permit, std::chrono::milliseconds d) {
    ++g->held;
    // A permit granted to a waiter that has not resumed yet is in neither count: hence <=.
    expect(g->held + g->sem.available() <= world::permits, "semaphore permits over-granted");
    try {
        co_await sleep(d);
    } catch (...) {
        --g->held;
        permit.release();
        expect(g->held + g->sem.available() <= world::permits, "semaphore permits not conserved");
        throw;
    }
    --g->held;
    permit.release();
}

task<> run_op(const op& o, context c) {
    const cleanup_guard guard;
    switch (o.kind) {
    case op_kind::sleep:
        co_await sleep(ticks(o.arg));
        break;
    case op_kind::spawn: {
        scope_info* info = g->add_scope(scope_info::kind::task, nullptr);
        g->handles.push_back({spawn(spawned_root(o.subs[0], info, (o.arg2 & 1) != 0)), info});
        break;
    }
    case op_kind::cancel:
        if (!g->handles.empty()) {
            auto& h = g->handles[o.arg % g->handles.size()];
            if (h.scope->fired == not_yet && !h.handle.done()) {
                h.scope->fired = g->now();
                h.scope->manual = true;
            }
            h.handle.cancel();
        }
        break;
    case op_kind::timeout:
    case op_kind::move_on: {
        scope_info* info = g->add_scope(scope_info::kind::timeout, c.scope);
        auto body = [&o, c, info](timeout_scope& s) { return timeout_body(s, o.subs[0], c, info); };
        if (o.kind == op_kind::timeout) {
            try {
                co_await timeout(ticks(o.arg), body);
            } catch (const timeout_error&) {
                check_conversion(info);
            }
        } else {
            auto r = co_await move_on_after(ticks(o.arg), body);
            if (!r) {
                check_conversion(info);
            }
        }
        break;
    }
    case op_kind::reschedule:
        if (c.timeout != nullptr && !c.timeout->expired()) {
            if ((o.arg2 & 3) == 0) {
                if (c.timeout_info->fired > g->now()) {
                    c.timeout_info->fired = g->now();
                    c.timeout_info->manual = true;
                }
                c.timeout->cancel();
            } else {
                const std::int64_t now = g->now();
                const auto d = ticks(o.arg);
                c.timeout->reschedule(d);
                // Rescheduled to now expires at once, by the call: like a cancel().
                c.timeout_info->fired = d.count() == 0 ? now : now + d.count();
                c.timeout_info->manual = d.count() == 0;
            }
        }
        break;
    case op_kind::shielded: {
        const context inner = c.nested(g->add_scope(scope_info::kind::shield, c.scope));
        auto body = run_program(o.subs[0], inner);
        co_await shielded(std::move(body));
        break;
    }
    case op_kind::shield: {
        scope_info* info = g->add_scope(scope_info::kind::task, nullptr);
        context inner;
        inner.scope = info;
        if ((o.arg2 & 1) != 0) {
            auto h = spawn(spawned_root(o.subs[0], info, false));
            g->handles.push_back({h, info});
            try {
                co_await shield(std::move(h));
            } catch (const cancelled_error& e) {
                // The handle's task was cancelled by someone else (maybe before it started, so
                // it never ran): that reaches us as a foreign cancellation, owner 0.
                if (e.owner() != 0) {
                    throw;
                }
                expect(info->fired != not_yet, "shield raised a foreign cancellation");
            }
        } else {
            auto body = spawned_root(o.subs[0], info, false);
            co_await shield(std::move(body));
        }
        break;
    }
    case op_kind::task_group: {
        const context inner = c.nested(g->add_scope(scope_info::kind::group, c.scope));
        auto body = [&o, inner](task_group& grp) { return group_body(grp, o, inner); };
        try {
            co_await task_group::run(body);
        } catch (const exception_group&) {
        }
        break;
    }
    case op_kind::gather: {
        const context inner = c.nested(g->add_scope(scope_info::kind::group, c.scope));
        auto a = run_program(o.subs[0], inner);
        auto b = run_program(o.subs[1], inner);
        try {
            co_await gather(std::move(a), std::move(b));
        } catch (const test_error&) {
        }
        break;
    }
    case op_kind::wait_for: {
        scope_info* info = g->add_scope(scope_info::kind::timeout, c.scope);
        info->fired = g->now() + ticks(o.arg).count();
        const context inner = c.nested(info);
        auto body = run_program(o.subs[0], inner);
        try {
            co_await wait_for(std::move(body), ticks(o.arg));
        } catch (const timeout_error&) {
            check_conversion(info);
        }
        break;
    }
    case op_kind::event: {
        auto& e = g->events[o.arg2 & 1];
        switch (o.arg % 3) {
        case 0:
            e.set();
            break;
        case 1:
            e.clear();
            break;
        default: {
            auto r = co_await move_on_after(ticks(o.arg2), e.wait());
            (void)r;
        }
        }
        break;
    }
    case op_kind::semaphore: {
        std::optional<semaphore::permit> p =
            co_await move_on_after(ticks(o.arg2), g->sem.acquire());
        if (p) {
            auto hold = hold_permit(std::move(*p), ticks(o.arg));
            co_await std::move(hold);
        }
        expect(g->held + g->sem.available() <= world::permits, "semaphore permits not conserved");
        break;
    }
    case op_kind::queue:
        if ((o.arg & 1) != 0) {
            auto r = co_await move_on_after(ticks(o.arg2), g->q.put(static_cast<int>(o.arg)));
            if (r) {
                ++g->puts;
            }
        } else {
            auto r = co_await move_on_after(ticks(o.arg2), g->q.get());
            if (r) {
                ++g->gets;
            }
        }
        // Checked at the end only: an item handed to a parked getter, or taken from a parked
        // putter, is counted when that task resumes, so the counts disagree meanwhile.
        break;
    case op_kind::future:
        if ((o.arg & 1) != 0) {
            g->prom.set_value(7);
        } else {
            auto f = await_future();
            auto r = co_await move_on_after(ticks(o.arg2), std::move(f));
            expect(!r || *r == 7, "future delivered a wrong value");
        }
        break;
    case op_kind::fail:
        if ((o.arg & 3) == 0) { // rarer than the rest
            mark_failure(c.scope);
            throw test_error();
        }
        break;
    case op_kind::count:
        break;
    }
}

task<> run_program(const program& p, context c) {
    for (const op& o : p.ops) {
        co_await run_op(o, c);
    }
}

task<> root(const program& p) {
    scope_info* info = g->add_scope(scope_info::kind::task, nullptr);
    context c;
    c.scope = info;
    try {
        co_await run_program(p, c);
    } catch (const test_error&) {
    }
    // Join every spawned task; joining may spawn more (the list grows while we walk it).
    // NOLINTNEXTLINE(modernize-loop-convert): the vector grows while we walk it
    for (std::size_t i = 0; i < g->handles.size(); ++i) {
        task_handle<> h = g->handles[i].handle;
        try {
            co_await h;
        } catch (const cancelled_error&) {
            expect(g->handles[i].scope->fired != not_yet, "a join raised a foreign cancellation");
        }
    }
}

const char* const op_names[] = {
    "sleep",      "spawn",  "cancel",   "timeout", "reschedule", "move_on", "shielded", "shield",
    "task_group", "gather", "wait_for", "event",   "semaphore",  "queue",   "future",   "fail"};

/// Prints the decoded program (UVASYNC_FUZZ_PRINT=1), to read a crashing input.
void print(const program& p, int indent) {
    for (const op& o : p.ops) {
        std::fprintf(stderr, "%*s%s arg=%u arg2=%u\n", indent, "",
                     op_names[static_cast<int>(o.kind)], o.arg, o.arg2);
        for (const program& sub : o.subs) {
            std::fprintf(stderr, "%*s{\n", indent + 2, "");
            print(sub, indent + 4);
            std::fprintf(stderr, "%*s}\n", indent + 2, "");
        }
    }
}

void run_one(const std::uint8_t* data, std::size_t size) {
    byte_reader in(data, size);
    int budget = max_ops;
    const program p = decode(in, 0, budget);
    // One thread: getenv is safe here.
    static const bool print_program =
        std::getenv("UVASYNC_FUZZ_PRINT") != nullptr; // NOLINT(concurrency-mt-unsafe)
    if (print_program) {
        print(p, 0);
    }

    const std::ptrdiff_t frames_before = detail::live_frame_counter().load();
    uv_loop_t loop;
    expect(uv_loop_init(&loop) == 0, "uv_loop_init");
    {
        runtime_options options;
        options.virtual_clock = true;
        options.exception_handler = [](const std::exception_ptr&) {
        }; // shield's unobserved failures
        std::optional<runtime> rt(std::in_place, &loop, std::move(options));
        std::optional<world> w(std::in_place);
        g = &*w;
        w->rt = &*rt;
        w->start = rt->now();
        auto r = root(p);
        task_handle<> h = rt->spawn(std::move(r));
        rt->keep_loop_alive(true);
        long iterations = 0;
        // Tasks left by shield(task) run on after the root; wait for them too.
        while (!h.done() || rt->task_count() != 0) {
            uv_run(&loop, UV_RUN_ONCE);
            expect(++iterations < 1'000'000, "no progress: the program does not finish");
        }
        rt->keep_loop_alive(false);
        try {
            h.result();
        } catch (const cancelled_error&) {
            violation("the root task ended cancelled");
        } catch (const std::exception& e) {
            std::fprintf(stderr, "schedule_fuzz: root error: %s\n", e.what());
            violation("the root task ended with an error");
        }
        expect(w->sem.available() == world::permits && w->held == 0, "semaphore permits lost");
        expect(w->puts == w->gets + static_cast<long>(w->q.size()), "queue lost or duplicated");
        if (print_program) {
            std::fprintf(stderr, "conversions checked: %ld, cleanups: %zu, virtual ms: %lld\n",
                         w->conversions, w->cleanups.size(), static_cast<long long>(w->now()));
        }
        w->handles.clear();
        h = task_handle<>();
        rt.reset();
        for (int n : w->cleanups) {
            expect(n == 1, "an operation's cleanup did not run exactly once");
        }
        w.reset();
        g = nullptr;
    }
    expect_nothing_left(loop, frames_before);
}

} // namespace
} // namespace uvasync::fuzz

// NOLINTNEXTLINE(readability-identifier-naming): the name libFuzzer calls
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    uvasync::fuzz::run_one(data, size);
    return 0;
}
