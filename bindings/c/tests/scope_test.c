/* SPDX-License-Identifier: MIT */
/* Scopes: cancellation, deadlines, the ownership rule (SEMANTICS D-3), on-cancel callbacks. */
#include "check.h"

static void cancel_sets_status_and_reason(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t* s = NULL;
    CHECK_EQ(uvasync_scope_new(rt, NULL, &s), 0);
    CHECK_EQ(uvasync_scope_status(s), 0);
    CHECK_EQ(uvasync_scope_cancel_requested(s), 0);
    CHECK_EQ(uvasync_scope_cancel(s, "first"), 0);
    CHECK_EQ(uvasync_scope_cancel(s, "second"), UV_EALREADY);
    CHECK_EQ(uvasync_scope_status(s), UV_ECANCELED);
    CHECK_EQ(uvasync_scope_cancel_requested(s), 1);
    CHECK_EQ(uvasync_scope_expired(s), 0);
    CHECK_STREQ(uvasync_scope_reason(s), "first");
    CHECK_EQ(uvasync_scope_set_timeout(s, 10), UV_EALREADY);
    uvasync_scope_free(s);
    close_runtime(&loop, rt);
}

static void zero_timeout_expires_at_once(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t* s = NULL;
    CHECK_EQ(uvasync_scope_new(rt, NULL, &s), 0);
    CHECK_EQ(uvasync_scope_set_timeout(s, 0), 0);
    CHECK_EQ(uvasync_scope_expired(s), 1);
    CHECK_EQ(uvasync_scope_status(s), UV_ETIMEDOUT);
    uvasync_scope_free(s);
    close_runtime(&loop, rt);
}

static void deadline_moves_and_never_removes(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t* s = NULL;
    CHECK_EQ(uvasync_scope_new(rt, NULL, &s), 0);
    CHECK_EQ(uvasync_scope_deadline(s), UVASYNC_NEVER);
    /* uvasync_now refreshes the loop clock: read it once, a second read may be later. */
    const uint64_t when = uvasync_now(rt) + 100000;
    CHECK_EQ(uvasync_scope_set_deadline(s, when), 0);
    CHECK(uvasync_scope_deadline(s) == when);
    CHECK_EQ(uvasync_scope_reschedule(s, UVASYNC_NEVER), 0);
    CHECK(uvasync_scope_deadline(s) == UVASYNC_NEVER);
    /* No deadline left: the loop has nothing to wait for. */
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(uvasync_scope_status(s), 0);
    /* A past deadline expires at once (SEMANTICS D-5). */
    CHECK_EQ(uvasync_scope_set_deadline(s, 0), 0);
    CHECK_EQ(uvasync_scope_status(s), UV_ETIMEDOUT);
    uvasync_scope_free(s);
    close_runtime(&loop, rt);
}

static void timeout_fires_on_the_loop(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t* s = NULL;
    counted_req op;
    CHECK_EQ(uvasync_scope_new(rt, NULL, &s), 0);
    /* Read before the timeout is set: now() refreshes the loop time (SEMANTICS 13.2), so a
     * later reading may already be past the moment the 5 ms were measured from. */
    uint64_t start = uvasync_now(rt);
    CHECK_EQ(uvasync_scope_set_timeout(s, 5), 0);
    CHECK_EQ(uvasync_sleep(counted(&op), s, 60000, counted_cb), 0);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(op.calls, 1);
    CHECK_EQ(op.status, UV_ETIMEDOUT);
    CHECK_EQ(uvasync_scope_expired(s), 1);
    CHECK(uvasync_now(rt) >= start + 5); /* never early by the loop clock */
    uvasync_scope_free(s);
    close_runtime(&loop, rt);
}

static void child_of_cancelled_parent_is_born_cancelled(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t *parent = NULL, *child = NULL;
    CHECK_EQ(uvasync_scope_new(rt, NULL, &parent), 0);
    CHECK_EQ(uvasync_scope_cancel(parent, "gone"), 0);
    CHECK_EQ(uvasync_scope_new(rt, parent, &child), 0);
    CHECK_EQ(uvasync_scope_cancel_requested(child), 1);
    CHECK_EQ(uvasync_scope_status(child), UV_ECANCELED);
    CHECK_STREQ(uvasync_scope_reason(child), "gone");
    uvasync_scope_free(child);
    uvasync_scope_free(parent);
    close_runtime(&loop, rt);
}

/* D-3: the outermost cancelled scope owns the cancellation. */
static void ownership_rule(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t *outer = NULL, *inner = NULL;
    counted_req a, b;

    /* Inner times out on its own: ETIMEDOUT. */
    CHECK_EQ(uvasync_scope_new(rt, NULL, &outer), 0);
    CHECK_EQ(uvasync_scope_new(rt, outer, &inner), 0);
    CHECK_EQ(uvasync_scope_set_timeout(inner, 1), 0);
    CHECK_EQ(uvasync_sleep(counted(&a), inner, 60000, counted_cb), 0);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, UV_ETIMEDOUT);
    uvasync_scope_free(inner);

    /* Inner expired and then outer cancelled before delivery: the outer cancellation owns it. */
    CHECK_EQ(uvasync_scope_new(rt, outer, &inner), 0);
    CHECK_EQ(uvasync_sleep(counted(&b), inner, 60000, counted_cb), 0);
    CHECK_EQ(uvasync_scope_set_timeout(inner, 0), 0);
    CHECK_EQ(uvasync_scope_status(inner), UV_ETIMEDOUT);
    CHECK_EQ(uvasync_scope_cancel(outer, "shutdown"), 0);
    CHECK_EQ(uvasync_scope_status(inner), UV_ECANCELED);
    CHECK_EQ(uvasync_scope_expired(inner), 1);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(b.calls, 1);
    CHECK_EQ(b.status, UV_ECANCELED);
    uvasync_scope_free(inner);
    uvasync_scope_free(outer);

    /* An expired outer scope owns the cancellation of an operation in a plain inner scope. */
    CHECK_EQ(uvasync_scope_new(rt, NULL, &outer), 0);
    CHECK_EQ(uvasync_scope_new(rt, outer, &inner), 0);
    CHECK_EQ(uvasync_scope_set_timeout(outer, 1), 0);
    CHECK_EQ(uvasync_sleep(counted(&a), inner, 60000, counted_cb), 0);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(a.status, UV_ETIMEDOUT);
    CHECK_EQ(uvasync_scope_expired(inner), 0);
    CHECK_EQ(uvasync_scope_expired(outer), 1);
    uvasync_scope_free(inner);
    uvasync_scope_free(outer);
    close_runtime(&loop, rt);
}

/* The virtual clock: when each operation called back (uvasync_now in its callback). */
static uvasync_runtime_t* virtual_rt;
static uint64_t first_at, second_at;

static void first_cb(uvasync_req_t* req, int status) {
    counted_cb(req, status);
    first_at = uvasync_now(virtual_rt);
}

static void second_cb(uvasync_req_t* req, int status) {
    counted_cb(req, status);
    second_at = uvasync_now(virtual_rt);
}

/* On the virtual clock an hour's sleep completes at exactly +1 h and a 5 h sleep under a 2 h
 * scope times out at exactly +2 h, without waiting in real time. */
static void virtual_clock_jumps_to_each_deadline(void) {
    uv_loop_t loop;
    uvasync_scope_t *limited = NULL, *plain = NULL;
    counted_req a, b;
    const int64_t hour = 3600 * 1000;
    REQUIRE(uv_loop_init(&loop) == 0);
    CHECK_EQ(uvasync_runtime_init_virtual(NULL, &virtual_rt), UV_EINVAL);
    CHECK_EQ(uvasync_runtime_init_virtual(&loop, NULL), UV_EINVAL);
    REQUIRE(uvasync_runtime_init_virtual(&loop, &virtual_rt) == 0);
    uint64_t start = uvasync_now(virtual_rt);
    CHECK_EQ(uvasync_scope_new(virtual_rt, NULL, &limited), 0);
    CHECK_EQ(uvasync_scope_new(virtual_rt, NULL, &plain), 0);
    CHECK_EQ(uvasync_scope_set_timeout(limited, 2 * hour), 0);
    CHECK_EQ(uvasync_scope_deadline(limited), start + 2 * hour);
    CHECK_EQ(uvasync_sleep(counted(&a), plain, hour, first_cb), 0);
    CHECK_EQ(uvasync_sleep(counted(&b), limited, 5 * hour, second_cb), 0);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, 0);
    CHECK_EQ(first_at, start + hour);
    CHECK_EQ(b.calls, 1);
    CHECK_EQ(b.status, UV_ETIMEDOUT);
    CHECK_EQ(second_at, start + 2 * hour);
    uvasync_scope_free(limited);
    uvasync_scope_free(plain);
    close_runtime(&loop, virtual_rt);
}

typedef struct {
    int calls;
    int status;
} note;

static void on_cancel_cb(uvasync_scope_t* scope, int status, void* arg) {
    note* n = (note*)arg;
    (void)scope;
    ++n->calls;
    n->status = status;
}

static void on_cancel_callbacks(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t *s = NULL, *child = NULL, *dropped = NULL;
    note a = {0, 0}, b = {0, 0}, c = {0, 0}, late = {0, 0};
    CHECK_EQ(uvasync_scope_new(rt, NULL, &s), 0);
    CHECK_EQ(uvasync_scope_new(rt, s, &child), 0);
    CHECK_EQ(uvasync_scope_new(rt, NULL, &dropped), 0);
    CHECK_EQ(uvasync_scope_on_cancel(s, on_cancel_cb, &a), 0);
    CHECK_EQ(uvasync_scope_on_cancel(child, on_cancel_cb, &b), 0);
    CHECK_EQ(uvasync_scope_on_cancel(dropped, on_cancel_cb, &c), 0);
    uvasync_scope_free(dropped); /* drops its callback */
    CHECK_EQ(uvasync_scope_cancel(s, NULL), 0);
    CHECK_EQ(a.calls, 0); /* never inside the cancel call */
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, UV_ECANCELED);
    CHECK_EQ(b.calls, 1);
    CHECK_EQ(b.status, UV_ECANCELED);
    CHECK_EQ(c.calls, 0);
    /* Registered on a cancelled scope: called in a later callback. */
    CHECK_EQ(uvasync_scope_on_cancel(s, on_cancel_cb, &late), 0);
    CHECK_EQ(late.calls, 0);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(late.calls, 1);
    uvasync_scope_free(child);
    uvasync_scope_free(s);
    close_runtime(&loop, rt);
}

static void runtime_close_reaches_on_cancel_with_closed_status(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t* s = NULL;
    note a = {0, 0};
    CHECK_EQ(uvasync_scope_new(rt, NULL, &s), 0);
    CHECK_EQ(uvasync_scope_on_cancel(s, on_cancel_cb, &a), 0);
    close_runtime(&loop, rt);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, UVASYNC_ECLOSED);
    /* The scope outlives the runtime's close until the program frees it. */
    CHECK_EQ(uvasync_scope_status(s), UVASYNC_ECLOSED);
    counted_req op;
    CHECK_EQ(uvasync_sleep(counted(&op), s, 1, counted_cb), UVASYNC_ECLOSED);
    uvasync_scope_free(s);
}

int main(void) {
    RUN_TEST(cancel_sets_status_and_reason);
    RUN_TEST(zero_timeout_expires_at_once);
    RUN_TEST(deadline_moves_and_never_removes);
    RUN_TEST(timeout_fires_on_the_loop);
    RUN_TEST(virtual_clock_jumps_to_each_deadline);
    RUN_TEST(child_of_cancelled_parent_is_born_cancelled);
    RUN_TEST(ownership_rule);
    RUN_TEST(on_cancel_callbacks);
    RUN_TEST(runtime_close_reaches_on_cancel_with_closed_status);
    return check_summary();
}
