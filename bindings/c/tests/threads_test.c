/* SPDX-License-Identifier: MIT */
/* Cross-thread cancellation (run under TSan in the 'threads' suite): a cancel from another
 * thread racing the completion of the operation it cancels. Whichever wins, the callback comes
 * exactly once, on the loop thread, with 0 (completion wins) or UV_ECANCELED. */
#include "check.h"

typedef struct {
    uvasync_scope_t* scope;
    int spin;
    int seen_requested;
} canceller;

static void cancel_from_thread(void* arg) {
    canceller* c = (canceller*)arg;
    volatile int i;
    for (i = 0; i < c->spin; ++i) {
    }
    uvasync_scope_cancel_threadsafe(c->scope, "from another thread");
    /* Visible at once in the cancelling thread (SEMANTICS 12.3). */
    c->seen_requested = uvasync_scope_cancel_requested(c->scope);
}

static uv_thread_t loop_thread;
static int wrong_thread;

static void on_done(uvasync_req_t* req, int status) {
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &loop_thread)) {
        ++wrong_thread;
    }
    counted_cb(req, status);
}

static void on_cancel_note(uvasync_scope_t* scope, int status, void* arg) {
    int* calls = (int*)arg;
    uv_thread_t self = uv_thread_self();
    (void)scope;
    (void)status;
    if (!uv_thread_equal(&self, &loop_thread)) {
        ++wrong_thread;
    }
    ++*calls;
}

static void noop_work(uvasync_req_t* req) {
    (void)req;
}

static void cancel_races_completion(void) {
    enum { rounds = 200 };

    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    int i, completed = 0, cancelled = 0, other = 0, notes = 0;
    loop_thread = uv_thread_self();
    wrong_thread = 0;
    for (i = 0; i < rounds; ++i) {
        uvasync_scope_t* s = NULL;
        counted_req op;
        canceller c;
        uv_thread_t t;
        int cancel_calls = 0;
        REQUIRE(uvasync_scope_new(rt, NULL, &s) == 0);
        CHECK_EQ(uvasync_scope_on_cancel(s, on_cancel_note, &cancel_calls), 0);
        if (i % 2 == 0) {
            CHECK_EQ(uvasync_sleep(counted(&op), s, i % 4 == 0 ? 0 : 1, on_done), 0);
        } else {
            CHECK_EQ(uvasync_queue_work(counted(&op), s, noop_work, on_done), 0);
        }
        c.scope = s;
        c.spin = (i * 7919) % 20000;
        c.seen_requested = 0;
        REQUIRE(uv_thread_create(&t, cancel_from_thread, &c) == 0);
        while (op.calls == 0) {
            uv_run(&loop, UV_RUN_ONCE);
        }
        uv_thread_join(&t);
        CHECK_EQ(c.seen_requested, 1);
        /* Wait for the posted propagation: nothing else keeps the loop alive now. */
        uvasync_runtime_keep_alive(rt, 1);
        while (cancel_calls == 0) {
            uv_run(&loop, UV_RUN_ONCE);
        }
        uvasync_runtime_keep_alive(rt, 0);
        CHECK_EQ(op.calls, 1);
        CHECK_EQ(cancel_calls, 1);
        if (op.status == 0) {
            ++completed;
        } else if (op.status == UV_ECANCELED) {
            ++cancelled;
        } else {
            ++other;
        }
        notes += cancel_calls;
        uvasync_scope_free(s);
    }
    fprintf(stderr, "  %d completed, %d cancelled\n", completed, cancelled);
    CHECK_EQ(other, 0);
    CHECK_EQ(completed + cancelled, rounds);
    CHECK_EQ(notes, rounds);
    CHECK_EQ(wrong_thread, 0);
    close_runtime(&loop, rt);
}

/* Many threads cancel one scope at once: exactly one call makes the transition. */
typedef struct {
    uvasync_scope_t* scope;
    int rc;
} racer;

static void race_cancel(void* arg) {
    racer* r = (racer*)arg;
    r->rc = uvasync_scope_cancel_threadsafe(r->scope, "race");
}

static void concurrent_cancels_transition_once(void) {
    enum { threads = 8 };

    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t* s = NULL;
    racer r[threads];
    uv_thread_t t[threads];
    counted_req op;
    int i, zero = 0;
    REQUIRE(uvasync_scope_new(rt, NULL, &s) == 0);
    CHECK_EQ(uvasync_sleep(counted(&op), s, 600000, counted_cb), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    for (i = 0; i < threads; ++i) {
        r[i].scope = s;
        REQUIRE(uv_thread_create(&t[i], race_cancel, &r[i]) == 0);
    }
    for (i = 0; i < threads; ++i) {
        uv_thread_join(&t[i]);
        zero += r[i].rc == 0;
    }
    CHECK_EQ(zero, 1);
    while (op.calls == 0) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    CHECK_EQ(op.calls, 1);
    CHECK_EQ(op.status, UV_ECANCELED);
    uvasync_scope_free(s);
    close_runtime(&loop, rt);
}

int main(void) {
    RUN_TEST(cancel_races_completion);
    RUN_TEST(concurrent_cancels_transition_once);
    return check_summary();
}
