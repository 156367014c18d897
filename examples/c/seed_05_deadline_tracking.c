/* SPDX-License-Identifier: MIT */
/* 5. Deadline tracking: before each 1 s step, check the time left in the 5 s scope and stop
 * cleanly when the step cannot finish in time. */
#include "seed.h"

static uvasync_scope_t* scope;
static uvasync_req_t step_req;
static int step;

static void on_step(uvasync_req_t* req, int status);

static void next_step(void) {
    uint64_t deadline = uvasync_scope_deadline(scope);
    uint64_t now = uvasync_now(seed_rt);
    int64_t remaining = deadline > now ? (int64_t)(deadline - now) : 0;
    if (step == 10) {
        return;
    }
    /* A step that would end exactly at the deadline loses to it: ask for more than that. */
    if (remaining <= 1 * S) {
        say("Out of time; aborting remaining steps");
        return;
    }
    say("Step %d: doing work", step);
    uvasync_sleep(&step_req, scope, 1 * S, on_step);
}

static void on_step(uvasync_req_t* req, int status) {
    (void)req;
    if (status != 0) {
        say("Step %d: %s", step, uvasync_err_name(status));
        return;
    }
    ++step;
    next_step();
}

int main(int argc, char** argv) {
    uv_loop_t loop;
    uvasync_runtime_t* rt;
    seed_init(&loop, &rt, argc, argv);

    uvasync_scope_new(rt, NULL, &scope);
    uvasync_scope_set_timeout(scope, 5 * S);
    next_step();
    uv_run(&loop, UV_RUN_DEFAULT);

    uvasync_scope_free(scope);
    return seed_finish(&loop, rt);
}
