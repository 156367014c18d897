/* SPDX-License-Identifier: MIT */
/* Stream operations on the program's own TCP handles over loopback: connect, accept, reads
 * (some, exactly, until), write, shutdown; each completing, failing, cancelled before start,
 * while pending and after completion, and timing out. */
#include "check.h"

#include <netinet/in.h>

/* Runs the loop until `cond` holds (bounded, so a bug fails instead of hanging). */
#define RUN_UNTIL(loop, cond)                                                                      \
    do {                                                                                           \
        int spins_ = 0;                                                                            \
        while (!(cond) && spins_++ < 100000) {                                                     \
            uv_run((loop), UV_RUN_ONCE);                                                           \
        }                                                                                          \
        CHECK(cond);                                                                               \
    } while (0)

typedef struct {
    uv_loop_t loop;
    uvasync_runtime_t* rt;
    uvasync_scope_t* scope;
    uv_tcp_t server;
    uv_tcp_t client; /* the connecting side */
    uv_tcp_t conn;   /* the accepted side */
    struct sockaddr_in addr;
    int closed;
} net;

static void on_handle_closed(uv_handle_t* h) {
    net* n = (net*)h->data;
    ++n->closed;
}

static void connect_pair(net* n) {
    counted_req c, a;
    int len = sizeof n->addr;
    n->rt = open_runtime(&n->loop);
    n->closed = 0;
    REQUIRE(uvasync_scope_new(n->rt, NULL, &n->scope) == 0);
    REQUIRE(uv_tcp_init(&n->loop, &n->server) == 0);
    REQUIRE(uv_tcp_init(&n->loop, &n->client) == 0);
    REQUIRE(uv_tcp_init(&n->loop, &n->conn) == 0);
    n->server.data = n->client.data = n->conn.data = n;
    REQUIRE(uv_ip4_addr("127.0.0.1", 0, &n->addr) == 0);
    REQUIRE(uv_tcp_bind(&n->server, (const struct sockaddr*)&n->addr, 0) == 0);
    REQUIRE(uv_tcp_getsockname(&n->server, (struct sockaddr*)&n->addr, &len) == 0);
    CHECK_EQ(uvasync_listen(n->rt, (uv_stream_t*)&n->server, 16), 0);
    CHECK_EQ(uvasync_accept(counted(&a), n->scope, (uv_stream_t*)&n->server, (uv_stream_t*)&n->conn,
                            counted_cb),
             0);
    CHECK_EQ(uvasync_tcp_connect(counted(&c), n->scope, &n->client,
                                 (const struct sockaddr*)&n->addr, counted_cb),
             0);
    CHECK_EQ(a.req.type, UVASYNC_REQ_ACCEPT);
    RUN_UNTIL(&n->loop, a.calls == 1 && c.calls == 1);
    CHECK_EQ(a.status, 0);
    CHECK_EQ(c.status, 0);
}

/* Closes what is still open through the library, then the runtime. */
static void teardown(net* n, int client_open, int conn_open, int others) {
    int expected = 1 + client_open + conn_open + others;
    CHECK_EQ(uvasync_stream_close(n->rt, (uv_stream_t*)&n->server, on_handle_closed), 0);
    if (client_open) {
        CHECK_EQ(uvasync_stream_close(n->rt, (uv_stream_t*)&n->client, on_handle_closed), 0);
    }
    if (conn_open) {
        CHECK_EQ(uvasync_stream_close(n->rt, (uv_stream_t*)&n->conn, on_handle_closed), 0);
    }
    uvasync_scope_free(n->scope);
    close_runtime(&n->loop, n->rt);
    CHECK_EQ(n->closed, expected);
}

static void write_str(net* n, uv_tcp_t* to, const char* text) {
    counted_req w;
    uv_buf_t buf = uv_buf_init((char*)text, (unsigned int)strlen(text));
    CHECK_EQ(uvasync_write(counted(&w), n->scope, (uv_stream_t*)to, &buf, 1, counted_cb), 0);
    RUN_UNTIL(&n->loop, w.calls == 1);
    CHECK_EQ(w.status, 0);
    CHECK_EQ(w.result, (ssize_t)strlen(text));
}

static void reads_complete(void) {
    net n;
    counted_req r;
    char buf[32];
    connect_pair(&n);
    write_str(&n, &n.client, "hello\nworld!");

    memset(buf, 0, sizeof buf);
    CHECK_EQ(uvasync_read_until(counted(&r), n.scope, (uv_stream_t*)&n.conn, buf, sizeof buf, '\n',
                                counted_cb),
             0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(r.result, 6);
    CHECK_STREQ(buf, "hello\n");

    /* Served from the buffer: still a later callback, never inline. */
    memset(buf, 0, sizeof buf);
    CHECK_EQ(uvasync_read_exactly(counted(&r), n.scope, (uv_stream_t*)&n.conn, buf, 5, counted_cb),
             0);
    CHECK_EQ(r.calls, 0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_EQ(r.result, 5);
    CHECK_STREQ(buf, "world");

    memset(buf, 0, sizeof buf);
    CHECK_EQ(
        uvasync_read_some(counted(&r), n.scope, (uv_stream_t*)&n.conn, buf, sizeof buf, counted_cb),
        0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_EQ(r.result, 1);
    CHECK_STREQ(buf, "!");

    /* Fails: no delimiter within the buffer's size; the data stays buffered. */
    write_str(&n, &n.client, "abcdef");
    CHECK_EQ(
        uvasync_read_until(counted(&r), n.scope, (uv_stream_t*)&n.conn, buf, 4, '\n', counted_cb),
        0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_EQ(r.status, UV_ENOBUFS);
    memset(buf, 0, sizeof buf);
    CHECK_EQ(uvasync_read_exactly(counted(&r), n.scope, (uv_stream_t*)&n.conn, buf, 6, counted_cb),
             0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_STREQ(buf, "abcdef");

    /* End of stream after the peer's shutdown. */
    {
        counted_req s;
        CHECK_EQ(uvasync_shutdown(counted(&s), n.scope, (uv_stream_t*)&n.client, counted_cb), 0);
        RUN_UNTIL(&n.loop, s.calls == 1);
        CHECK_EQ(s.status, 0);
    }
    CHECK_EQ(
        uvasync_read_some(counted(&r), n.scope, (uv_stream_t*)&n.conn, buf, sizeof buf, counted_cb),
        0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_EQ(r.status, UV_EOF);
    teardown(&n, 1, 1, 0);
}

static void read_cancellation_keeps_data(void) {
    net n;
    counted_req r, busy;
    char buf[32];
    uvasync_scope_t* s = NULL;
    connect_pair(&n);

    /* Cancelled before start: not even uv_read_start. */
    CHECK_EQ(uvasync_scope_new(n.rt, n.scope, &s), 0);
    CHECK_EQ(uvasync_scope_cancel(s, NULL), 0);
    CHECK_EQ(uvasync_read_some(counted(&r), s, (uv_stream_t*)&n.conn, buf, sizeof buf, counted_cb),
             0);
    CHECK_EQ(uv_is_active((uv_handle_t*)&n.conn), 0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_EQ(r.status, UV_ECANCELED);
    uvasync_scope_free(s);

    /* Cancelled while pending, part of the data already there: it stays for the next read. */
    CHECK_EQ(uvasync_scope_new(n.rt, n.scope, &s), 0);
    CHECK_EQ(uvasync_read_exactly(counted(&r), s, (uv_stream_t*)&n.conn, buf, 10, counted_cb), 0);
    CHECK_EQ(uvasync_read_some(counted(&busy), n.scope, (uv_stream_t*)&n.conn, buf, 1, counted_cb),
             UV_EBUSY);
    write_str(&n, &n.client, "abcd");
    uv_run(&n.loop, UV_RUN_NOWAIT);
    CHECK_EQ(r.calls, 0);
    CHECK_EQ(uvasync_scope_cancel(s, NULL), 0);
    CHECK_EQ(r.calls, 0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_EQ(r.status, UV_ECANCELED);
    CHECK_EQ(uv_is_active((uv_handle_t*)&n.conn), 0); /* uv_read_stop */
    uvasync_scope_free(s);
    write_str(&n, &n.client, "ef");
    memset(buf, 0, sizeof buf);
    CHECK_EQ(uvasync_read_exactly(counted(&r), n.scope, (uv_stream_t*)&n.conn, buf, 6, counted_cb),
             0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_EQ(r.status, 0);
    CHECK_STREQ(buf, "abcdef");

    /* Times out. */
    CHECK_EQ(uvasync_scope_new(n.rt, n.scope, &s), 0);
    CHECK_EQ(uvasync_scope_set_timeout(s, 5), 0);
    CHECK_EQ(uvasync_read_some(counted(&r), s, (uv_stream_t*)&n.conn, buf, sizeof buf, counted_cb),
             0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_EQ(r.status, UV_ETIMEDOUT);
    uvasync_scope_free(s);

    /* Cancelled after completion: the result stands. */
    CHECK_EQ(uvasync_scope_new(n.rt, n.scope, &s), 0);
    write_str(&n, &n.client, "x");
    CHECK_EQ(uvasync_read_some(counted(&r), s, (uv_stream_t*)&n.conn, buf, sizeof buf, counted_cb),
             0);
    RUN_UNTIL(&n.loop, r.calls == 1);
    CHECK_EQ(uvasync_scope_cancel(s, NULL), 0);
    uv_run(&n.loop, UV_RUN_NOWAIT);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.status, 0);
    uvasync_scope_free(s);

    /* Closing the stream ends a pending read (UV_ECANCELED) before the close callback. */
    CHECK_EQ(
        uvasync_read_some(counted(&r), n.scope, (uv_stream_t*)&n.conn, buf, sizeof buf, counted_cb),
        0);
    CHECK_EQ(uvasync_stream_close(n.rt, (uv_stream_t*)&n.conn, on_handle_closed), 0);
    CHECK_EQ(uvasync_stream_close(n.rt, (uv_stream_t*)&n.conn, on_handle_closed), UV_EALREADY);
    RUN_UNTIL(&n.loop, n.closed == 1);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.status, UV_ECANCELED);
    teardown(&n, 1, 0, 1);
}

static void write_cancellation_closes_the_stream(void) {
    net n;
    counted_req w, later;
    uvasync_scope_t* s = NULL;

    enum { big = 64 * 1024 * 1024 };

    char* data = calloc(1, big);
    uv_buf_t buf = uv_buf_init(data, big);
    REQUIRE(data != NULL);
    connect_pair(&n);

    /* Completed, then cancelled: the result stands. */
    {
        counted_req small;
        uv_buf_t text = uv_buf_init("small", 5);
        CHECK_EQ(uvasync_scope_new(n.rt, n.scope, &s), 0);
        CHECK_EQ(uvasync_write(counted(&small), s, (uv_stream_t*)&n.client, &text, 1, counted_cb),
                 0);
        RUN_UNTIL(&n.loop, small.calls == 1);
        CHECK_EQ(uvasync_scope_cancel(s, NULL), 0);
        uv_run(&n.loop, UV_RUN_NOWAIT);
        CHECK_EQ(small.calls, 1);
        CHECK_EQ(small.status, 0);
        CHECK_EQ(small.result, 5);
        CHECK_EQ(uv_is_closing((uv_handle_t*)&n.client), 0);
        /* Cancelled before start: nothing is written, the stream stays open. */
        CHECK_EQ(uvasync_write(counted(&small), s, (uv_stream_t*)&n.client, &text, 1, counted_cb),
                 0);
        RUN_UNTIL(&n.loop, small.calls == 1);
        CHECK_EQ(small.status, UV_ECANCELED);
        CHECK_EQ(uv_is_closing((uv_handle_t*)&n.client), 0);
        uvasync_scope_free(s);
    }

    /* Pending (the peer does not read 64 MB), then cancelled: the stream is closed and the
     * callback comes after its close callback. */
    CHECK_EQ(uvasync_scope_new(n.rt, n.scope, &s), 0);
    CHECK_EQ(uvasync_write(counted(&w), s, (uv_stream_t*)&n.client, &buf, 1, counted_cb), 0);
    uv_run(&n.loop, UV_RUN_NOWAIT);
    CHECK_EQ(w.calls, 0);
    CHECK_EQ(uvasync_scope_cancel(s, "too slow"), 0);
    CHECK_EQ(w.calls, 0);
    CHECK(uv_is_closing((uv_handle_t*)&n.client));
    RUN_UNTIL(&n.loop, w.calls == 1);
    CHECK_EQ(w.status, UV_ECANCELED);
    /* Later operations on it fail at once. */
    CHECK_EQ(uvasync_write(counted(&later), n.scope, (uv_stream_t*)&n.client, &buf, 1, counted_cb),
             UV_EBADF);
    CHECK_EQ(later.calls, 0);
    uvasync_scope_free(s);

    /* A shutdown waits behind a pending write; cancelling it closes the stream, and both
     * callbacks come after the close callback: the cancelled shutdown with its scope's status,
     * the write (whose scope was not cancelled) with libuv's UV_ECANCELED. */
    {
        net m;
        counted_req sd;
        connect_pair(&m);
        CHECK_EQ(uvasync_scope_new(m.rt, m.scope, &s), 0);
        CHECK_EQ(uvasync_write(counted(&w), m.scope, (uv_stream_t*)&m.client, &buf, 1, counted_cb),
                 0);
        CHECK_EQ(uvasync_shutdown(counted(&sd), s, (uv_stream_t*)&m.client, counted_cb), 0);
        uv_run(&m.loop, UV_RUN_NOWAIT);
        CHECK_EQ(sd.calls, 0);
        CHECK_EQ(uvasync_scope_set_timeout(s, 0), 0);
        RUN_UNTIL(&m.loop, sd.calls == 1 && w.calls == 1);
        CHECK_EQ(sd.status, UV_ETIMEDOUT);
        CHECK_EQ(w.status, UV_ECANCELED);
        uvasync_scope_free(s);
        teardown(&m, 0, 1, 0);
    }

    /* Times out the same way. */
    {
        net m;
        connect_pair(&m);
        CHECK_EQ(uvasync_scope_new(m.rt, m.scope, &s), 0);
        CHECK_EQ(uvasync_scope_set_timeout(s, 5), 0);
        CHECK_EQ(uvasync_write(counted(&w), s, (uv_stream_t*)&m.client, &buf, 1, counted_cb), 0);
        RUN_UNTIL(&m.loop, w.calls == 1);
        CHECK_EQ(w.status, UV_ETIMEDOUT);
        uvasync_scope_free(s);
        teardown(&m, 0, 1, 0);
    }
    free(data);
    teardown(&n, 0, 1, 0);
}

static void connect_and_shutdown_cancellation(void) {
    net n;
    uv_tcp_t extra, other;
    counted_req c, s;
    uvasync_scope_t* sc = NULL;
    connect_pair(&n);

    /* Cancelled while pending (the same iteration): the handle is closed, ECANCELED after the
     * close callback. */
    REQUIRE(uv_tcp_init(&n.loop, &extra) == 0);
    CHECK_EQ(uvasync_scope_new(n.rt, n.scope, &sc), 0);
    CHECK_EQ(
        uvasync_tcp_connect(counted(&c), sc, &extra, (const struct sockaddr*)&n.addr, counted_cb),
        0);
    CHECK_EQ(uvasync_scope_cancel(sc, NULL), 0);
    RUN_UNTIL(&n.loop, c.calls == 1);
    CHECK_EQ(c.status, UV_ECANCELED);
    CHECK(uv_is_closing((uv_handle_t*)&extra));
    uvasync_scope_free(sc);

    /* Times out before it starts. */
    REQUIRE(uv_tcp_init(&n.loop, &other) == 0);
    other.data = &n;
    CHECK_EQ(uvasync_scope_new(n.rt, n.scope, &sc), 0);
    CHECK_EQ(uvasync_scope_set_timeout(sc, 0), 0);
    CHECK_EQ(
        uvasync_tcp_connect(counted(&c), sc, &other, (const struct sockaddr*)&n.addr, counted_cb),
        0);
    RUN_UNTIL(&n.loop, c.calls == 1);
    CHECK_EQ(c.status, UV_ETIMEDOUT);
    CHECK_EQ(uv_is_closing((uv_handle_t*)&other), 0); /* nothing was started */
    /* Shutdown cancelled before start: nothing happens. */
    CHECK_EQ(uvasync_shutdown(counted(&s), sc, (uv_stream_t*)&n.client, counted_cb), 0);
    RUN_UNTIL(&n.loop, s.calls == 1);
    CHECK_EQ(s.status, UV_ETIMEDOUT);
    uvasync_scope_free(sc);

    /* Fails: nothing listens on port 1. */
    {
        struct sockaddr_in closed_port;
        REQUIRE(uv_ip4_addr("127.0.0.1", 1, &closed_port) == 0);
        CHECK_EQ(uvasync_tcp_connect(counted(&c), n.scope, &other,
                                     (const struct sockaddr*)&closed_port, counted_cb),
                 0);
        RUN_UNTIL(&n.loop, c.calls == 1);
        CHECK_EQ(c.status, UV_ECONNREFUSED);
    }
    CHECK_EQ(uvasync_stream_close(n.rt, (uv_stream_t*)&other, on_handle_closed), 0);

    teardown(&n, 1, 1, 1);
}

static void accept_cancellation_leaves_the_connection_queued(void) {
    net n;
    uv_tcp_t c2, a2;
    counted_req acc, con, acc2;
    uvasync_scope_t* s = NULL;
    connect_pair(&n);
    REQUIRE(uv_tcp_init(&n.loop, &c2) == 0);
    REQUIRE(uv_tcp_init(&n.loop, &a2) == 0);
    c2.data = a2.data = &n;

    /* Times out while pending. */
    CHECK_EQ(uvasync_scope_new(n.rt, n.scope, &s), 0);
    CHECK_EQ(uvasync_scope_set_timeout(s, 5), 0);
    CHECK_EQ(
        uvasync_accept(counted(&acc), s, (uv_stream_t*)&n.server, (uv_stream_t*)&a2, counted_cb),
        0);
    RUN_UNTIL(&n.loop, acc.calls == 1);
    CHECK_EQ(acc.status, UV_ETIMEDOUT);
    uvasync_scope_free(s);

    /* A connection arrives while nobody accepts: the next accept gets it. */
    CHECK_EQ(uvasync_tcp_connect(counted(&con), n.scope, &c2, (const struct sockaddr*)&n.addr,
                                 counted_cb),
             0);
    RUN_UNTIL(&n.loop, con.calls == 1);
    CHECK_EQ(con.status, 0);
    uv_run(&n.loop, UV_RUN_NOWAIT);
    CHECK_EQ(uvasync_accept(counted(&acc2), n.scope, (uv_stream_t*)&n.server, (uv_stream_t*)&a2,
                            counted_cb),
             0);
    CHECK_EQ(acc2.calls, 0);
    RUN_UNTIL(&n.loop, acc2.calls == 1);
    CHECK_EQ(acc2.status, 0);

    CHECK_EQ(uvasync_stream_close(n.rt, (uv_stream_t*)&c2, on_handle_closed), 0);
    CHECK_EQ(uvasync_stream_close(n.rt, (uv_stream_t*)&a2, on_handle_closed), 0);
    teardown(&n, 1, 1, 2);
}

static void runtime_close_with_streams_pending(void) {
    net n;
    counted_req r, a;
    uv_tcp_t a2;
    char buf[8];
    connect_pair(&n);
    REQUIRE(uv_tcp_init(&n.loop, &a2) == 0);
    a2.data = &n;
    CHECK_EQ(
        uvasync_read_some(counted(&r), n.scope, (uv_stream_t*)&n.conn, buf, sizeof buf, counted_cb),
        0);
    CHECK_EQ(uvasync_accept(counted(&a), n.scope, (uv_stream_t*)&n.server, (uv_stream_t*)&a2,
                            counted_cb),
             0);
    uv_run(&n.loop, UV_RUN_NOWAIT);
    CHECK_EQ(uvasync_runtime_close(n.rt, NULL), 0);
    RUN_UNTIL(&n.loop, r.calls == 1 && a.calls == 1);
    CHECK_EQ(r.status, UVASYNC_ECLOSED);
    CHECK_EQ(a.status, UVASYNC_ECLOSED);
    /* The program closes its own handles; the loop then closes. */
    uvasync_scope_free(n.scope);
    uv_close((uv_handle_t*)&n.server, on_handle_closed);
    uv_close((uv_handle_t*)&n.client, on_handle_closed);
    uv_close((uv_handle_t*)&n.conn, on_handle_closed);
    uv_close((uv_handle_t*)&a2, on_handle_closed);
    CHECK_EQ(uv_run(&n.loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(n.closed, 4);
    CHECK_EQ(uv_loop_close(&n.loop), 0);
}

int main(void) {
    RUN_TEST(reads_complete);
    RUN_TEST(read_cancellation_keeps_data);
    RUN_TEST(write_cancellation_closes_the_stream);
    RUN_TEST(connect_and_shutdown_cancellation);
    RUN_TEST(accept_cancellation_leaves_the_connection_queued);
    RUN_TEST(runtime_close_with_streams_pending);
    return check_summary();
}
