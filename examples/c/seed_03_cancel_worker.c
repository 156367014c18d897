/* SPDX-License-Identifier: MIT */
/* 3. A worker cancelled from outside at 2.5 s cleans up; the canceller learns it was
 * cancelled through the worker scope's on-cancel callback. */
#include "seed.h"

static uvasync_scope_t* worker_scope;
static uvasync_scope_t* main_scope;
static uvasync_req_t step_req, main_req;
static int step;

static void on_step(uvasync_req_t* req, int status) {
    if (status == UV_ECANCELED) {
        say("worker cancelled, cleaning up");
        return;
    }
    say("working... step %d", ++step);
    uvasync_sleep(req, worker_scope, 1 * S, on_step);
}

static void on_worker_cancelled(uvasync_scope_t* scope, int status, void* arg) {
    (void)scope;
    (void)arg;
    say("main: worker was cancelled (%s)", uvasync_err_name(status));
}

static void on_main_wait(uvasync_req_t* req, int status) {
    (void)req;
    (void)status;
    uvasync_scope_cancel(worker_scope, "main is done waiting");
}

int main(int argc, char** argv) {
    uv_loop_t loop;
    uvasync_runtime_t* rt;
    seed_init(&loop, &rt, argc, argv);

    uvasync_scope_new(rt, NULL, &worker_scope);
    uvasync_scope_new(rt, NULL, &main_scope);
    uvasync_scope_on_cancel(worker_scope, on_worker_cancelled, NULL);
    say("working... step %d", step);
    uvasync_sleep(&step_req, worker_scope, 1 * S, on_step);
    uvasync_sleep(&main_req, main_scope, 5 * S / 2, on_main_wait);
    uv_run(&loop, UV_RUN_DEFAULT);

    uvasync_scope_free(worker_scope);
    uvasync_scope_free(main_scope);
    return seed_finish(&loop, rt);
}
