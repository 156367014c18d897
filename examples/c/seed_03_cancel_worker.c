/* SPDX-License-Identifier: MIT */
/* 3. A worker cancelled from outside at 2.5 s cleans up; its awaiter learns that it ended
 * cancelled. The worker runs in its own scope; cancelling the scope ends its pending sleep
 * with UV_ECANCELED, and the worker reports how it ended to whoever waits for it. */
#include "seed.h"

static uvasync_scope_t* worker_scope;
static uvasync_scope_t* main_scope;
static uvasync_req_t step_req, main_req;
static int step;

/* The awaiter's side of the worker's end (C++: `co_await w`). */
static void on_worker_done(int status) {
    if (status == UV_ECANCELED) {
        say("Task was cancelled");
    }
}

static void on_step(uvasync_req_t* req, int status);

static void worker_step(void) {
    say("worker: step %d", step);
    uvasync_sleep(&step_req, worker_scope, 1 * S, on_step);
}

static void on_step(uvasync_req_t* req, int status) {
    (void)req;
    if (status != 0) {
        say("worker: cancellation received, cleaning up");
        on_worker_done(status);
        return;
    }
    ++step;
    worker_step();
}

static void on_main_wait(uvasync_req_t* req, int status) {
    (void)req;
    (void)status;
    say("Cancelling task...");
    uvasync_scope_cancel(worker_scope, "main is done waiting");
}

int main(int argc, char** argv) {
    uv_loop_t loop;
    uvasync_runtime_t* rt;
    seed_init(&loop, &rt, argc, argv);

    uvasync_scope_new(rt, NULL, &worker_scope);
    uvasync_scope_new(rt, NULL, &main_scope);
    worker_step();
    uvasync_sleep(&main_req, main_scope, 5 * S / 2, on_main_wait);
    uv_run(&loop, UV_RUN_DEFAULT);

    uvasync_scope_free(worker_scope);
    uvasync_scope_free(main_scope);
    return seed_finish(&loop, rt);
}
