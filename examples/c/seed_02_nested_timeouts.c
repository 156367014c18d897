/* SPDX-License-Identifier: MIT */
/* 2. Nested stage timeouts inside an overall 10 s envelope: each stage runs in its own scope
 * (with its own timeout) under the envelope's scope. */
#include "seed.h"

typedef struct {
    const char *name, *action;
    int64_t limit, takes; /* in scenario seconds */
} stage;

static const stage stages[] = {
    {"Stage 1", "fetching", 3, 2}, {"Stage 2", "processing", 2, 1}, {"Stage 3", "saving", 5, 3}};
static uvasync_scope_t* envelope;
static uvasync_scope_t* current;
static uvasync_req_t work;
static int next_stage;

static void start_stage(void);

static void on_stage(uvasync_req_t* req, int status) {
    (void)req;
    uvasync_scope_free(current);
    if (status == 0) {
        say("%s done", stages[next_stage - 1].name);
        start_stage();
    } else if (status == UV_ETIMEDOUT) {
        /* The owner decides: the envelope's expiry or the stage's own (SEMANTICS D-3). */
        say(uvasync_scope_expired(envelope) ? "overall operation timed out" : "stage timed out");
    }
}

static void start_stage(void) {
    const stage* s;
    if (next_stage == 3) {
        return;
    }
    s = &stages[next_stage++];
    uvasync_scope_new(seed_rt, envelope, &current);
    uvasync_scope_set_timeout(current, s->limit * S);
    say("%s: %s", s->name, s->action);
    uvasync_sleep(&work, current, s->takes * S, on_stage);
}

int main(int argc, char** argv) {
    uv_loop_t loop;
    uvasync_runtime_t* rt;
    seed_init(&loop, &rt, argc, argv);

    uvasync_scope_new(rt, NULL, &envelope);
    uvasync_scope_set_timeout(envelope, 10 * S);
    start_stage();
    uv_run(&loop, UV_RUN_DEFAULT);

    uvasync_scope_free(envelope);
    return seed_finish(&loop, rt);
}
