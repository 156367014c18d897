/* SPDX-License-Identifier: MIT */
/* 1. A 2 s timeout around a 5 s operation. */
#include "seed.h"

static void on_task(uvasync_req_t* req, int status) {
    (void)req;
    if (status == UV_ETIMEDOUT) {
        say("Operation timed out!");
    } else if (status == 0) {
        say("task completed"); /* never reached */
    }
}

int main(int argc, char** argv) {
    uv_loop_t loop;
    uvasync_runtime_t* rt;
    uvasync_scope_t* scope;
    uvasync_req_t task;
    seed_init(&loop, &rt, argc, argv);

    uvasync_scope_new(rt, NULL, &scope);
    uvasync_scope_set_timeout(scope, 2 * S);
    say("task starting, will take 5s");
    uvasync_sleep(&task, scope, 5 * S, on_task);
    uv_run(&loop, UV_RUN_DEFAULT);

    uvasync_scope_free(scope);
    return seed_finish(&loop, rt);
}
