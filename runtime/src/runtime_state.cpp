// SPDX-License-Identifier: MIT
#include <algorithm>
#include <cassert>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <system_error>

#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/error.hpp>
#include <uvasync/task.hpp>

#include "inbox.hpp"

namespace uvasync::detail {

/// The runtime's libuv handles. They live apart from the runtime and free themselves in the
/// last close callback, because libuv may touch a handle until its close callback has run
/// (handle.rst), which can be after the runtime object is gone.
struct loop_handles {
    uv_timer_t timer{};     // the deadline heap's one timer (real clock)
    uv_timer_t threshold{}; // virtual clock: the autojump threshold
    uv_idle_t idle{};       // keeps the poll from blocking while tasks are ready
    uv_prepare_t prepare{}; // drains the run queue before the poll
    uv_check_t check{};     // drains it after the poll; virtual autojump
    uv_async_t async{};     // the inbox wake-up
    int open = 0;
    runtime_state* owner = nullptr;
    bool* all_closed = nullptr; // set by close_handles while it waits
    std::function<void()> on_closed; // close_from_callback: runs after the last close
};

namespace {

void check_uv(int rc, const char* what) {
    if (rc < 0) {
        throw std::system_error(-rc, std::generic_category(),
                                std::string("uvasync: ") + what + ": " + uv_strerror(rc));
    }
}

runtime_state* owner_of_handle(uv_handle_t* h) {
    return static_cast<loop_handles*>(h->data)->owner;
}

/// The libuv callback of each runtime handle: forwards to the runtime while it still owns the
/// handle (after shutdown nothing is forwarded).
template <class Handle, void (runtime_state::*Member)() noexcept>
void forward(Handle* h) {
    if (runtime_state* rt = owner_of_handle(reinterpret_cast<uv_handle_t*>(h))) {
        (rt->*Member)();
    }
}

void on_handle_closed(uv_handle_t* h) {
    auto* handles = static_cast<loop_handles*>(h->data);
    if (--handles->open == 0) {
        if (handles->all_closed != nullptr) {
            *handles->all_closed = true;
        }
        std::function<void()> done = std::move(handles->on_closed);
        delete handles;
        if (done) {
            done();
        }
    }
}

/// Makes `rt` the thread's current runtime for the duration of a callback.
class runtime_scope {
public:
    explicit runtime_scope(runtime_state* rt) noexcept
        : saved_(this_thread_context().runtime) {
        this_thread_context().runtime = rt;
    }

    runtime_scope(const runtime_scope&) = delete;
    runtime_scope& operator=(const runtime_scope&) = delete;
    runtime_scope(runtime_scope&&) = delete;
    runtime_scope& operator=(runtime_scope&&) = delete;

    ~runtime_scope() { this_thread_context().runtime = saved_; }

private:
    runtime_state* saved_;
};

void default_exception_handler(std::exception_ptr e) {
    std::string what = "unknown error";
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        what = ex.what();
    } catch (const cancelled_error& c) {
        what = std::string("cancelled: ") + c.what();
    } catch (...) {
    }
    std::fprintf(stderr, "uvasync: unobserved error: %s\n", what.c_str());
}

} // namespace

runtime_state::runtime_state(uv_loop_t* loop, bool owns_loop, config cfg)
    : loop_(loop)
    , owns_loop_(owns_loop)
    , virtual_(cfg.clock == clock_kind::virtual_time)
    , autojump_(cfg.autojump)
    , autojump_threshold_ms_(cfg.autojump_threshold.count())
    , shutdown_grace_ms_(cfg.shutdown_grace.count())
    , loop_thread_(std::this_thread::get_id())
    , handles_(new loop_handles)
    , exception_handler_(std::move(cfg.exception_handler)) {
    if (loop_ == nullptr) {
        delete handles_;
        throw std::invalid_argument("uvasync: runtime needs a loop (got a null uv_loop_t*)");
    }
    if (!exception_handler_) {
        exception_handler_ = &default_exception_handler;
    }
    uv_update_time(loop_);
    virtual_now_ = static_cast<std::int64_t>(uv_now(loop_));
    handles_->owner = this;
    auto init = [&](uv_handle_t* h, int rc, const char* what) {
        check_uv(rc, what);
        h->data = handles_;
        ++handles_->open;
    };
    init(reinterpret_cast<uv_handle_t*>(&handles_->timer), uv_timer_init(loop_, &handles_->timer),
         "uv_timer_init");
    init(reinterpret_cast<uv_handle_t*>(&handles_->threshold),
         uv_timer_init(loop_, &handles_->threshold), "uv_timer_init");
    init(reinterpret_cast<uv_handle_t*>(&handles_->idle), uv_idle_init(loop_, &handles_->idle),
         "uv_idle_init");
    init(reinterpret_cast<uv_handle_t*>(&handles_->prepare),
         uv_prepare_init(loop_, &handles_->prepare), "uv_prepare_init");
    init(reinterpret_cast<uv_handle_t*>(&handles_->check), uv_check_init(loop_, &handles_->check),
         "uv_check_init");
    init(reinterpret_cast<uv_handle_t*>(&handles_->async),
         uv_async_init(loop_, &handles_->async, &forward<uv_async_t, &runtime_state::on_async>),
         "uv_async_init");
    inbox_ = new inbox(&handles_->async);

    // Prepare and check always run while the loop runs, but must never keep it alive; the
    // async handle only keeps an owned loop alive while run() waits for its main task.
    uv_prepare_start(&handles_->prepare, &forward<uv_prepare_t, &runtime_state::on_prepare>);
    uv_check_start(&handles_->check, &forward<uv_check_t, &runtime_state::on_check>);
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->prepare));
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->check));
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->async));

    thread_context& ctx = this_thread_context();
    previous_current_ = ctx.runtime;
    ctx.runtime = this;
}

runtime_state::~runtime_state() {
    shutdown();
    inbox_->release();
    thread_context& ctx = this_thread_context();
    if (ctx.runtime == this) {
        ctx.runtime = previous_current_;
    }
    if (owns_loop_) {
        const int rc = uv_loop_close(loop_);
        if (rc != 0) {
            // Handles the program started on our loop and never closed. The loop memory
            // stays allocated rather than being freed under libuv's feet.
            uv_walk(
                loop_,
                [](uv_handle_t* h, void*) {
                    std::fprintf(stderr, "uvasync: handle still open on the runtime's loop: %s\n",
                                 uv_handle_type_name(uv_handle_get_type(h)));
                },
                nullptr);
            return;
        }
        delete loop_;
    }
}

// ---------------------------------------------------------------------------------------------
// The run queue

void runtime_state::start_idle() noexcept {
    idle_active_ = true;
    uv_idle_start(&handles_->idle, [](uv_idle_t*) {});
}

void runtime_state::update_idle() noexcept {
    const bool want =
        !ready_.empty() || (virtual_ && autojump_ && autojump_threshold_ms_ == 0 && !heap_.empty());
    if (want && !idle_active_) {
        start_idle();
    } else if (!want && idle_active_) {
        idle_active_ = false;
        uv_idle_stop(&handles_->idle);
    }
}

bool runtime_state::drain() noexcept {
    if (ready_.empty()) {
        return false;
    }
    auto batch = ready_.take();
    thread_context& ctx = this_thread_context();
    task_core* const saved = ctx.task;
    while (task_core* core = batch.pop_front()) {
        ctx.task = core;
        core->transfer_budget = transfer_budget_per_resume;
        core->deliveries_without_suspending = 0;
        core->resume_point.resume(); // may destroy *core
    }
    ctx.task = saved;
    return true;
}

void runtime_state::adopt(task_core* core) noexcept {
    if (phase_ == phase::closed) {
        // Nothing will ever run it: it ends cancelled before its first step (SEMANTICS 2.7),
        // and its frame goes with its last handle.
        core->rt = nullptr;
        core->cancel_message = make_message("runtime is shut down");
        core->result = outcome::cancelled;
        core->finish();
        return;
    }
    tasks_.push_back(*core);
    ++live_tasks_;
    if (phase_ != phase::running) {
        // Spawned while shutting down: born cancelled, so the body never runs (SEMANTICS 2.7).
        core->task_scope.node.request_cancel(make_message("runtime is shutting down"));
    }
    schedule(core, core->root);
}

void runtime_state::task_finished(task_core* /*core*/) noexcept {
    --live_tasks_;
    if (live_tasks_ == 0 && grace_ != nullptr) {
        // Shutdown is waiting and nothing is left: the grace deadline must not be reached (a
        // virtual clock would otherwise jump to it).
        remove_deadline(*grace_);
    }
}

void runtime_state::report(std::exception_ptr e) noexcept {
    try {
        exception_handler_(std::move(e));
    } catch (...) {
        std::fprintf(stderr, "uvasync: the exception handler threw\n");
    }
}

void runtime_state::on_prepare() noexcept {
    runtime_scope current(this);
    const bool ran = drain();
    settle(ran);
}

void runtime_state::on_check() noexcept {
    runtime_scope current(this);
    if (virtual_ && autojump_ && autojump_threshold_ms_ == 0 && ready_.empty() && !heap_.empty() &&
        !inbox_->pending()) {
        // Every task is blocked and only deadlines are pending: jump (SEMANTICS 18.4).
        virtual_now_ = std::max(virtual_now_, heap_.front()->when.time_since_epoch().count());
        run_deadline_pass();
    }
    const bool ran = drain();
    settle(ran);
}

void runtime_state::settle(bool ran) noexcept {
    if (virtual_ && autojump_ && autojump_threshold_ms_ > 0) {
        // The threshold measures real time in which no task ran. It is decided after the
        // drain: tasks that just ran may have blocked on I/O, and with nothing ready the poll
        // then sleeps until the threshold timer (or I/O) wakes it. Deciding before the drain
        // left the poll with no timer at all.
        auto* threshold = reinterpret_cast<uv_handle_t*>(&handles_->threshold);
        if (!ready_.empty() || heap_.empty() || inbox_->pending()) {
            uv_timer_stop(&handles_->threshold);
        } else if (ran || uv_is_active(threshold) == 0) {
            uv_timer_start(&handles_->threshold,
                           &forward<uv_timer_t, &runtime_state::on_threshold_timer>,
                           static_cast<std::uint64_t>(autojump_threshold_ms_), 0);
        }
    }
    update_idle();
}

void runtime_state::on_threshold_timer() noexcept {
    runtime_scope current(this);
    if (ready_.empty() && !heap_.empty()) {
        virtual_now_ = std::max(virtual_now_, heap_.front()->when.time_since_epoch().count());
        run_deadline_pass();
    }
    update_idle();
}

void runtime_state::keep_alive(bool on) noexcept {
    keep_alive_holders_ += on ? 1 : -1;
    if (handles_ == nullptr) {
        return; // closed
    }
    auto* h = reinterpret_cast<uv_handle_t*>(&handles_->async);
    if (keep_alive_holders_ > 0) {
        uv_ref(h);
    } else {
        uv_unref(h);
    }
}

// ---------------------------------------------------------------------------------------------
// The deadline heap: a binary min-heap of pointers ordered by (deadline, registration order).

namespace {

bool earlier(const deadline_entry* a, const deadline_entry* b) noexcept {
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

} // namespace

void runtime_state::sift_up(std::size_t i) noexcept {
    deadline_entry* e = heap_[i];
    while (i > 0) {
        const std::size_t parent = (i - 1) / 2;
        if (!earlier(e, heap_[parent])) {
            break;
        }
        heap_[i] = heap_[parent];
        heap_[i]->heap_index = i;
        i = parent;
    }
    heap_[i] = e;
    e->heap_index = i;
}

void runtime_state::sift_down(std::size_t i) noexcept {
    deadline_entry* e = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
        std::size_t child = 2 * i + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n && earlier(heap_[child + 1], heap_[child])) {
            ++child;
        }
        if (!earlier(heap_[child], e)) {
            break;
        }
        heap_[i] = heap_[child];
        heap_[i]->heap_index = i;
        i = child;
    }
    heap_[i] = e;
    e->heap_index = i;
}

void runtime_state::add_deadline(deadline_entry& e) noexcept {
    assert(!e.queued() && e.when != never);
    e.seq = ++deadline_seq_;
    e.heap_index = heap_.size();
    heap_.push_back(&e); // amortised: the vector only grows to the peak number of deadlines
    sift_up(e.heap_index);
    if (virtual_) {
        update_idle();
    } else if (e.when < armed_for_ && !in_deadline_pass_) {
        rearm_timer();
    }
}

void runtime_state::remove_deadline(deadline_entry& e) noexcept {
    if (!e.queued()) {
        return;
    }
    const std::size_t i = e.heap_index;
    deadline_entry* last = heap_.back();
    heap_.pop_back();
    e.heap_index = deadline_entry::not_queued;
    if (last != &e) {
        heap_[i] = last;
        last->heap_index = i;
        sift_down(i);
        sift_up(last->heap_index);
    }
    if (heap_.empty()) {
        // An armed timer would keep uv_run alive for a deadline nobody waits for (SEMANTICS 5.5).
        if (virtual_) {
            update_idle();
            uv_timer_stop(&handles_->threshold);
        } else if (!in_deadline_pass_) {
            rearm_timer();
        }
    }
    // Otherwise the timer may stay armed for an earlier deadline that left: it then fires
    // once for nothing and rearms, which is cheaper than rearming on every removal.
}

void runtime_state::rearm_timer() noexcept {
    if (heap_.empty()) {
        if (armed_for_ != never) {
            uv_timer_stop(&handles_->timer);
            armed_for_ = never;
        }
        return;
    }
    const deadline top = heap_.front()->when;
    if (top == armed_for_) {
        return;
    }
    // Relative to the cached loop time, which is what uv_timer_start adds it to, so the
    // absolute deadline stays exact (SEMANTICS 6.3).
    const std::int64_t delay = std::max<std::int64_t>(0, (top - now()).count());
    uv_timer_start(&handles_->timer, &forward<uv_timer_t, &runtime_state::on_timer>,
                   static_cast<std::uint64_t>(delay), 0);
    armed_for_ = top;
}

void runtime_state::on_timer() noexcept {
    runtime_scope current(this);
    armed_for_ = never; // a one-shot timer that fired is no longer armed
    run_deadline_pass();
}

void runtime_state::run_deadline_pass() noexcept {
    const deadline t = now();
    const std::uint64_t last_before_pass = deadline_seq_;
    in_deadline_pass_ = true;
    // Every entry due now, in (deadline, registration) order; an entry registered during the
    // pass waits for the next one (SEMANTICS 6.5). Firing only records and makes tasks ready.
    while (!heap_.empty() && heap_.front()->when <= t && heap_.front()->seq <= last_before_pass) {
        deadline_entry* e = heap_.front();
        remove_deadline(*e);
        e->fire(e);
    }
    in_deadline_pass_ = false;
    if (virtual_) {
        update_idle();
    } else {
        rearm_timer();
    }
}

void runtime_state::advance(loop_clock::duration d) {
    if (!virtual_) {
        throw invalid_state("uvasync: advance() needs a runtime with a virtual clock");
    }
    runtime_scope current(this);
    // Saturates: advancing past the end of the clock stops at `never`, never overflows.
    virtual_now_ = add_saturated(deadline(loop_clock::duration(virtual_now_)),
                                 std::max(loop_clock::duration(0), d))
                       .time_since_epoch()
                       .count();
    run_deadline_pass();
}

// ---------------------------------------------------------------------------------------------
// The inbox

bool runtime_state::post(std::function<void()> fn) {
    inbox::message m;
    m.fn = std::move(fn);
    return inbox_->post(std::move(m));
}

namespace {

void run_message(inbox::message& m, runtime_state& rt) {
    switch (m.what) {
    case inbox::message::kind::call:
        try {
            m.fn();
        } catch (...) {
            rt.report(std::current_exception());
        }
        break;
    case inbox::message::kind::propagate:
        m.node->propagate(std::move(m.text));
        m.node->release();
        break;
    case inbox::message::kind::release:
        m.node->destroy_on_loop();
        break;
    }
}

} // namespace

void runtime_state::on_async() noexcept {
    runtime_scope current(this);
    // libuv coalesces sends, so one wake-up may stand for many posts (async.rst).
    for (auto& m : inbox_->take()) {
        run_message(m, *this);
    }
}

// ---------------------------------------------------------------------------------------------
// Shutdown (SEMANTICS 15)

void runtime_state::shutdown() {
    if (phase_ == phase::closed) {
        return;
    }
    if (task_core* t = current_task(); t != nullptr && t->rt == this) {
        throw invalid_state("uvasync: a runtime cannot be shut down from inside one of its tasks");
    }
    runtime_scope current(this);
    if (phase_ == phase::running) {
        phase_ = phase::shutting_down;
        on_async(); // what other threads posted before the shutdown still runs
        tasks_.for_each([](task_core& t) {
            if (!t.done()) {
                t.cancel(make_message("runtime shutdown"));
            }
        });
        if (live_tasks_ > 0) {
            wait_for_tasks();
        }
    }
    wait_for_requests(); // orphaned requests of frames destroyed earlier
    // Unobserved errors of finished tasks that handles still refer to (SEMANTICS 15.4); from
    // here on those tasks no longer know the runtime.
    tasks_.for_each([this](task_core& t) {
        if (t.result == outcome::error && !t.retrieved) {
            t.retrieved = true;
            report(t.error);
        }
        t.rt = nullptr;
        static_cast<list_hook<all_tasks_tag>&>(t).unlink();
    });
    phase_ = phase::closed;
    for (auto& m : inbox_->close()) {
        run_message(m, *this);
    }
    close_handles();
}

void runtime_state::close_from_callback(std::function<void()> on_closed) {
    if (phase_ == phase::closed) {
        throw invalid_state("uvasync: the runtime is already shut down");
    }
    if (owns_loop_) {
        throw invalid_state("uvasync: close_from_callback() needs a borrowed loop");
    }
    {
        runtime_scope current(this);
        on_async(); // posted work may still start tasks: checked below
    }
    if (live_tasks_ > 0 || io_requests_ > 0) {
        throw invalid_state("uvasync: close_from_callback() needs a runtime with no unfinished "
                            "task and no request in flight");
    }
    on_closed_ = std::move(on_closed);
    shutdown(); // nothing to wait for: only close_handles, which does not run the loop now
}

void runtime_state::wait_for_tasks() {
    struct grace_entry : deadline_entry {
        bool expired = false;

        grace_entry()
            : deadline_entry([](deadline_entry* e) noexcept {
                static_cast<grace_entry*>(e)->expired = true;
            }) {}
    } grace;

    grace.when = deadline_after(now(), std::chrono::milliseconds(shutdown_grace_ms_));
    if (grace.when == now()) {
        grace.expired = true;
    } else if (grace.when != never) {
        add_deadline(grace);
        grace_ = &grace;
    }
    // A virtual clock must be able to reach the grace deadline on its own.
    const bool saved_autojump = autojump_;
    autojump_ = true;
    update_idle();
    // Threadpool requests that uv_cancel could not take back still run and may use the frames
    // of these tasks: past the grace period, keep running the loop until their callbacks came,
    // before any frame is destroyed (SEMANTICS 15.3, 15.5).
    while (live_tasks_ > 0 && (!grace.expired || io_requests_ > 0)) {
        uv_run(loop_, UV_RUN_ONCE);
    }
    autojump_ = saved_autojump;
    remove_deadline(grace);
    grace_ = nullptr;
    if (live_tasks_ > 0) {
        leak_remaining();
    }
    update_idle();
}

void runtime_state::leak_remaining() noexcept {
    // These tasks are never resumed again (D-12): drop the run queue, detach the waiters (all
    // of them are among these tasks), then destroy each body frame; its awaiters unregister
    // themselves as they are destroyed.
    // Each is pinned by a reference while frames are destroyed, since destroying one frame may
    // drop the last handle to another.
    (void)ready_.take();
    std::vector<task_core*> leaked;
    tasks_.for_each([&](task_core& t) {
        if (!t.done()) {
            t.add_ref();
            t.waiters.clear();
            leaked.push_back(&t);
        }
    });
    for (task_core* t : leaked) {
        report(std::make_exception_ptr(
            leaked_task_error("uvasync: a task was still running when the shutdown grace period "
                              "ended; its frame was destroyed without resuming it")));
        if (t->body != nullptr) {
            t->body->reset();
            t->body = nullptr;
        }
        t->result = outcome::cancelled;
        t->cancel_message = make_message("leaked at runtime shutdown");
        t->finish();
    }
    // Destroying a frame may have woken a waiter in another leaked task (an awaiter destructor
    // that completes a wait, e.g. closing a stream another task reads): such a task was pushed
    // onto the run queue after it was emptied above, and must not stay there once it is freed.
    // The pins keep every leaked core alive until after this point.
    (void)ready_.take();
    for (task_core* t : leaked) {
        t->release();
    }
    (void)ready_.take(); // releasing runs no task code, but nothing leaked may stay queued
}

void runtime_state::wait_for_requests() noexcept {
    // Every request of a cancelled task was uv_cancel'ed already: queued ones call back at
    // once with the cancelled status, only running ones remain. A to_thread function that
    // never returns blocks here.
    while (io_requests_ > 0) {
        uv_run(loop_, UV_RUN_ONCE);
    }
}

void runtime_state::close_handles() noexcept {
    handles_->owner = nullptr; // callbacks that still come find no runtime
    loop_handles* h = handles_;
    bool all_closed = false;
    h->all_closed = &all_closed;
    for (uv_handle_t* handle :
         {reinterpret_cast<uv_handle_t*>(&h->timer), reinterpret_cast<uv_handle_t*>(&h->threshold),
          reinterpret_cast<uv_handle_t*>(&h->idle), reinterpret_cast<uv_handle_t*>(&h->prepare),
          reinterpret_cast<uv_handle_t*>(&h->check), reinterpret_cast<uv_handle_t*>(&h->async)}) {
        uv_close(handle, &on_handle_closed);
    }
    handles_ = nullptr;
    if (on_closed_) {
        h->all_closed = nullptr;
        h->on_closed = std::move(on_closed_);
        return; // close_from_callback: the loop is already running
    }
    // Run the loop just long enough for the close callbacks (the closing phase of one
    // iteration); the host's own handles are left alone.
    while (!all_closed) {
        uv_run(loop_, UV_RUN_NOWAIT);
    }
    // An owned loop is closed next: the callbacks of orphaned requests and the close of I/O
    // handles (a killed child waits for its exit callback) must run first, so they release
    // what they hold and uv_loop_close succeeds.
    if (owns_loop_) {
        while (io_requests_ > 0 || io_closing_ > 0) {
            uv_run(loop_, UV_RUN_ONCE);
        }
    }
}

} // namespace uvasync::detail
