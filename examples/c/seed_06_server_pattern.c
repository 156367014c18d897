/* SPDX-License-Identifier: MIT */
/* 6. The server pattern: one scope per request, each with its own 5 s timeout, all under the
 * server's scope. (examples/c/line_server.c is the same pattern over TCP.) */
#include "seed.h"

typedef struct {
    const char* id;
    int64_t takes;
    uvasync_scope_t* scope;
    uvasync_req_t req;
} request;

static request requests[] = {
    {"req1", 2, NULL, {0}}, {"req2", 6, NULL, {0}}, {"req3", 3, NULL, {0}}};

static void on_request(uvasync_req_t* req, int status) {
    request* r = (request*)req->data;
    say(status == 0 ? "Request %s done" : "Request %s timed out", r->id);
    uvasync_scope_free(r->scope);
}

int main(int argc, char** argv) {
    uv_loop_t loop;
    uvasync_runtime_t* rt;
    uvasync_scope_t* server;
    int i;
    seed_init(&loop, &rt, argc, argv);

    uvasync_scope_new(rt, NULL, &server);
    for (i = 0; i < 3; ++i) {
        request* r = &requests[i];
        say("Request %s starting", r->id);
        uvasync_scope_new(rt, server, &r->scope);
        uvasync_scope_set_timeout(r->scope, 5 * S);
        r->req.data = r;
        uvasync_sleep(&r->req, r->scope, r->takes * S, on_request);
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    uvasync_scope_free(server);
    return seed_finish(&loop, rt);
}
