/* SPDX-License-Identifier: MIT */
/* The C API inside a program that already runs its own libuv handles: a repeating timer, an
 * echo server written with plain libuv callbacks, and uvasync operations beside
 * them. The program closes the runtime from one of its own timer callbacks while operations
 * are pending; its handles keep working, and uv_loop_close() returns 0 at the end. */
#include "check.h"

typedef struct {
    uv_loop_t loop;
    uv_timer_t ticker; /* the host's own repeating timer */
    uv_timer_t closer; /* the host closes the runtime from here */
    uv_tcp_t server;   /* a plain libuv echo server */
    uv_tcp_t peer;     /* its one accepted connection */
    uv_tcp_t client;   /* connected through the C API */
    uvasync_runtime_t* rt;
    uvasync_scope_t* scope;
    int ticks;
    int runtime_closed;
    int echoed;
    char echo_buf[64];
    counted_req sleeper, forever, conn, write, read;
    char reply[16];
} host;

static host h;

static void on_tick(uv_timer_t* t) {
    (void)t;
    ++h.ticks;
}

static void on_alloc(uv_handle_t* handle, size_t size, uv_buf_t* buf) {
    (void)handle;
    (void)size;
    *buf = uv_buf_init(h.echo_buf, sizeof h.echo_buf);
}

static void on_echo_written(uv_write_t* w, int status) {
    (void)status;
    free(w);
}

static void on_peer_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    if (n > 0) {
        uv_write_t* w = malloc(sizeof *w);
        uv_buf_t out = uv_buf_init(buf->base, (unsigned int)n);
        REQUIRE(w != NULL);
        REQUIRE(uv_write(w, s, &out, 1, on_echo_written) == 0);
        h.echoed += (int)n;
    } else if (n < 0) {
        uv_read_stop(s);
    }
}

static void on_connection(uv_stream_t* server, int status) {
    REQUIRE(status == 0);
    REQUIRE(uv_tcp_init(&h.loop, &h.peer) == 0);
    REQUIRE(uv_accept(server, (uv_stream_t*)&h.peer) == 0);
    REQUIRE(uv_read_start((uv_stream_t*)&h.peer, on_alloc, on_peer_read) == 0);
}

static void on_runtime_closed(uvasync_runtime_t* rt) {
    (void)rt;
    ++h.runtime_closed;
}

static void on_read_reply(uvasync_req_t* req, int status) {
    counted_cb(req, status);
}

static void on_written(uvasync_req_t* req, int status) {
    counted_cb(req, status);
    REQUIRE(uvasync_read_exactly(counted(&h.read), h.scope, (uv_stream_t*)&h.client, h.reply, 4,
                                 on_read_reply) == 0);
}

static void on_connected(uvasync_req_t* req, int status) {
    static uv_buf_t ping;
    counted_cb(req, status);
    ping = uv_buf_init("ping", 4);
    REQUIRE(uvasync_write(counted(&h.write), h.scope, (uv_stream_t*)&h.client, &ping, 1,
                          on_written) == 0);
}

static void close_all(uv_timer_t* t) {
    (void)t;
    /* From inside a callback of the host's loop, with an operation still pending. */
    CHECK_EQ(h.forever.calls, 0);
    CHECK_EQ(uvasync_runtime_close(h.rt, on_runtime_closed), 0);
    uv_close((uv_handle_t*)&h.ticker, NULL);
    uv_close((uv_handle_t*)&h.closer, NULL);
    uv_close((uv_handle_t*)&h.server, NULL);
    uv_close((uv_handle_t*)&h.peer, NULL);
    uv_close((uv_handle_t*)&h.client, NULL);
}

static void embedded_in_a_host_loop(void) {
    struct sockaddr_in addr;
    int len = sizeof addr;
    memset(&h, 0, sizeof h);
    REQUIRE(uv_loop_init(&h.loop) == 0);
    REQUIRE(uv_timer_init(&h.loop, &h.ticker) == 0);
    REQUIRE(uv_timer_start(&h.ticker, on_tick, 1, 1) == 0);
    REQUIRE(uv_tcp_init(&h.loop, &h.server) == 0);
    REQUIRE(uv_ip4_addr("127.0.0.1", 0, &addr) == 0);
    REQUIRE(uv_tcp_bind(&h.server, (const struct sockaddr*)&addr, 0) == 0);
    REQUIRE(uv_tcp_getsockname(&h.server, (struct sockaddr*)&addr, &len) == 0);
    REQUIRE(uv_listen((uv_stream_t*)&h.server, 8, on_connection) == 0);

    REQUIRE(uvasync_runtime_init(&h.loop, &h.rt) == 0);
    REQUIRE(uvasync_scope_new(h.rt, NULL, &h.scope) == 0);
    REQUIRE(uv_tcp_init(&h.loop, &h.client) == 0);
    CHECK_EQ(uvasync_sleep(counted(&h.sleeper), h.scope, 5, counted_cb), 0);
    CHECK_EQ(uvasync_sleep(counted(&h.forever), h.scope, 600000, counted_cb), 0);
    CHECK_EQ(uvasync_tcp_connect(counted(&h.conn), h.scope, &h.client,
                                 (const struct sockaddr*)&addr, on_connected),
             0);

    /* The host runs its loop until the echo came back and the sleep ended, then closes from a
     * timer callback. */
    while (h.read.calls == 0 || h.sleeper.calls == 0) {
        uv_run(&h.loop, UV_RUN_ONCE);
    }
    REQUIRE(uv_timer_init(&h.loop, &h.closer) == 0);
    REQUIRE(uv_timer_start(&h.closer, close_all, 1, 0) == 0);
    CHECK_EQ(uv_run(&h.loop, UV_RUN_DEFAULT), 0);

    CHECK_EQ(h.sleeper.calls, 1);
    CHECK_EQ(h.sleeper.status, 0);
    CHECK_EQ(h.conn.status, 0);
    CHECK_EQ(h.write.status, 0);
    CHECK_EQ(h.read.status, 0);
    CHECK(memcmp(h.reply, "ping", 4) == 0);
    CHECK_EQ(h.echoed, 4);
    CHECK_EQ(h.forever.calls, 1);
    CHECK_EQ(h.forever.status, UVASYNC_ECLOSED);
    CHECK_EQ(h.runtime_closed, 1);
    CHECK(h.ticks > 0);
    uvasync_scope_free(h.scope);
    CHECK_EQ(uv_loop_close(&h.loop), 0);
}

int main(void) {
    RUN_TEST(embedded_in_a_host_loop);
    return check_summary();
}
