/* SPDX-License-Identifier: MIT */
/* A C program written from docs/c-api.md only: three requests, each in its own scope with a
 * timeout under one server scope; the slow one times out, every callback comes exactly once,
 * and the loop closes. Built against uvasync-c (subproject or installed, via pkg-config). */
#include <uv.h>
#include <uvasync.h>

#include <stdio.h>

typedef struct {
    uvasync_req_t req;
    uvasync_scope_t* scope;
    int calls;
    int status;
} request;

static int closed;

static void on_done(uvasync_req_t* req, int status) {
    request* r = (request*)req->data;
    ++r->calls;
    r->status = status;
    uvasync_scope_free(r->scope);
}

static void on_closed(uvasync_runtime_t* rt) {
    (void)rt;
    ++closed;
}

int main(void) {
    static const int64_t takes[3] = {1, 500000, 2};
    request reqs[3];
    uv_loop_t loop;
    uvasync_runtime_t* rt;
    uvasync_scope_t* server;
    int i, ok;
    if (uv_loop_init(&loop) != 0 || uvasync_runtime_init(&loop, &rt) != 0 ||
        uvasync_scope_new(rt, NULL, &server) != 0) {
        return 1;
    }
    for (i = 0; i < 3; ++i) {
        reqs[i].req.data = &reqs[i];
        reqs[i].calls = 0;
        if (uvasync_scope_new(rt, server, &reqs[i].scope) != 0 ||
            uvasync_scope_set_timeout(reqs[i].scope, 50) != 0 ||
            uvasync_sleep(&reqs[i].req, reqs[i].scope, takes[i], on_done) != 0) {
            return 1;
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uvasync_scope_free(server);
    uvasync_runtime_close(rt, on_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    ok = uv_loop_close(&loop) == 0 && closed == 1;
    for (i = 0; i < 3; ++i) {
        ok = ok && reqs[i].calls == 1 && reqs[i].status == (i == 1 ? UV_ETIMEDOUT : 0);
    }
    printf(ok ? "consumer-c: ok\n" : "consumer-c: FAILED (%s)\n", uvasync_err_name(reqs[1].status));
    return ok ? 0 : 1;
}
