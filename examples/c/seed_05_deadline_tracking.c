/* SPDX-License-Identifier: MIT */
/* 5. Deadline tracking: before each 1 s step, check the time left in the 5 s scope and stop
 * cleanly when the step cannot finish in time. */
#include "seed.h"

static uvasync_scope_t* scope;
static uvasync_req_t item_req;
static int item;

static void on_item(uvasync_req_t* req, int status);

static void next_item(void) {
    uint64_t deadline = uvasync_scope_deadline(scope);
    uint64_t now = uvasync_now(seed_rt);
    int64_t remaining = deadline > now ? (int64_t)(deadline - now) : 0;
    /* A step that would end exactly at the deadline loses to it: ask for more than that. */
    if (remaining <= 1 * S) {
        say("not enough time for item %d, stopping early", item);
        say("done within the deadline");
        return;
    }
    uvasync_sleep(&item_req, scope, 1 * S, on_item);
}

static void on_item(uvasync_req_t* req, int status) {
    (void)req;
    if (status != 0) {
        say("item %d: %s", item, uvasync_err_name(status));
        return;
    }
    say("processed item %d", item++);
    next_item();
}

int main(int argc, char** argv) {
    uv_loop_t loop;
    uvasync_runtime_t* rt;
    seed_init(&loop, &rt, argc, argv);

    uvasync_scope_new(rt, NULL, &scope);
    uvasync_scope_set_timeout(scope, 5 * S);
    next_item();
    uv_run(&loop, UV_RUN_DEFAULT);

    uvasync_scope_free(scope);
    return seed_finish(&loop, rt);
}
