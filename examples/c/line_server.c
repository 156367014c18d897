/* SPDX-License-Identifier: MIT */
/* A line-echo TCP server written with callbacks and the uvasync C API: the seed's server
 * pattern in C. Every request (one line) has its own scope with a 5 s timeout, under one
 * shutdown scope for the whole server. A client that sends no complete line in time is cut;
 * SIGINT cancels the shutdown scope, every pending operation calls back with UV_ECANCELED,
 * each connection closes, and the loop closes cleanly.
 *
 *   c_line_server [PORT]   serve on 127.0.0.1:PORT (default 7002) until SIGINT
 *   c_line_server --demo   serve on a free port, run a fast and a slow client against it,
 *                          then raise SIGINT at itself and exit 0 after the clean shutdown
 */
#include <uv.h>
#include <uvasync.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uv_loop_t* loop;
    uvasync_runtime_t* rt;
    uvasync_scope_t* shutdown; /* cancelled by SIGINT: parent of every request scope */
    uv_tcp_t listener;
    uv_signal_t sigint;
    uvasync_req_t accept_req;
    int64_t request_ms;
    int connections;
    int listening;
} server;

typedef struct {
    server* srv;
    uv_tcp_t tcp;
    uvasync_scope_t* request; /* this request's scope: request_ms from its first byte wait */
    uvasync_req_t read, write;
    char line[256];
    uv_buf_t out;
} connection;

static void accept_next(server* srv);

static void maybe_close_runtime(server* srv) {
    if (srv->connections == 0 && !srv->listening) {
        uvasync_runtime_close(srv->rt, NULL); /* nothing is pending any more */
    }
}

static void on_connection_closed(uv_handle_t* h) {
    connection* c = (connection*)h->data;
    server* srv = c->srv;
    free(c);
    --srv->connections;
    maybe_close_runtime(srv);
}

static void end_connection(connection* c) {
    if (c->request != NULL) {
        uvasync_scope_free(c->request);
        c->request = NULL;
    }
    if (uv_is_closing((uv_handle_t*)&c->tcp)) {
        /* A cancelled write closed it already and called back after its close callback. */
        on_connection_closed((uv_handle_t*)&c->tcp);
    } else {
        uvasync_stream_close(c->srv->rt, (uv_stream_t*)&c->tcp, on_connection_closed);
    }
}

static void on_line(uvasync_req_t* req, int status);

static void start_request(connection* c) {
    int rc = uvasync_scope_new(c->srv->rt, c->srv->shutdown, &c->request);
    if (rc == 0) {
        rc = uvasync_scope_set_timeout(c->request, c->srv->request_ms);
    }
    if (rc == 0) {
        rc = uvasync_read_until(&c->read, c->request, (uv_stream_t*)&c->tcp, c->line,
                                sizeof c->line, '\n', on_line);
    }
    if (rc != 0) {
        end_connection(c);
    }
}

static void on_written(uvasync_req_t* req, int status) {
    connection* c = (connection*)req->data;
    uvasync_scope_free(c->request);
    c->request = NULL;
    if (status == 0) {
        start_request(c); /* the next request gets a fresh 5 s */
    } else {
        end_connection(c);
    }
}

static void on_line(uvasync_req_t* req, int status) {
    connection* c = (connection*)req->data;
    if (status == 0) {
        c->out = uv_buf_init(c->line, (unsigned int)req->result);
        if (uvasync_write(&c->write, c->request, (uv_stream_t*)&c->tcp, &c->out, 1, on_written) ==
            0) {
            return;
        }
    } else if (status == UV_ETIMEDOUT) {
        printf("server: client sent no line within %lld ms, cut\n", (long long)c->srv->request_ms);
    } else if (status == UV_ECANCELED) {
        printf("server: connection closed for shutdown (%s)\n", uvasync_scope_reason(c->request));
    }
    end_connection(c); /* UV_EOF, an error, or a cancellation */
}

static void on_accept(uvasync_req_t* req, int status) {
    connection* c = (connection*)req->data;
    server* srv = c->srv;
    if (status == 0) {
        start_request(c);
        accept_next(srv);
        return;
    }
    /* Cancelled by the shutdown scope (or a failed accept): stop accepting. */
    uv_close((uv_handle_t*)&c->tcp, on_connection_closed);
    srv->listening = 0;
    uvasync_stream_close(srv->rt, (uv_stream_t*)&srv->listener, NULL);
}

static void accept_next(server* srv) {
    connection* c = calloc(1, sizeof *c);
    if (c == NULL || uv_tcp_init(srv->loop, &c->tcp) != 0) {
        free(c);
        return;
    }
    c->srv = srv;
    c->tcp.data = c;
    c->read.data = c->write.data = c;
    srv->accept_req.data = c;
    ++srv->connections;
    if (uvasync_accept(&srv->accept_req, srv->shutdown, (uv_stream_t*)&srv->listener,
                       (uv_stream_t*)&c->tcp, on_accept) != 0) {
        uv_close((uv_handle_t*)&c->tcp, on_connection_closed);
    }
}

static void on_sigint(uv_signal_t* sig, int signum) {
    server* srv = (server*)sig->data;
    (void)signum;
    printf("server: SIGINT, shutting down\n");
    uv_close((uv_handle_t*)&srv->sigint, NULL);
    uvasync_scope_cancel(srv->shutdown, "SIGINT");
}

/* --demo: two clients in the same process ------------------------------------------------
 * The slow client connects and sends nothing: it is cut when its request times out. The fast
 * client sends a line half a request timeout later, gets it back and stays connected, so its
 * connection's next request is pending when the demo raises SIGINT at itself (once the slow
 * client was cut and the reply came back); the shutdown scope then cancels it. */

typedef struct {
    server* srv;
    uv_tcp_t tcp;
    uvasync_scope_t* scope;
    uvasync_req_t req;
    char buf[64];
    uv_buf_t msg;
    const char* name;
    int replies;
    int64_t delay_ms;
} client;

static int demo_steps;

static void demo_step(void) {
    if (++demo_steps == 2) {
        uv_kill(uv_os_getpid(), SIGINT); /* a reply came back and the slow client was cut */
    }
}

static void on_client_closed(uv_handle_t* h) {
    client* cl = (client*)h->data;
    uvasync_scope_free(cl->scope);
}

static void on_client_reply(uvasync_req_t* req, int status) {
    client* cl = (client*)req->data;
    if (status == 0) {
        printf("%s: got %.*s", cl->name, (int)req->result, cl->buf);
        if (++cl->replies == 1) {
            demo_step();
        }
        if (uvasync_read_until(&cl->req, cl->scope, (uv_stream_t*)&cl->tcp, cl->buf, sizeof cl->buf,
                               '\n', on_client_reply) == 0) {
            return; /* stays connected until the server closes */
        }
    } else {
        printf("%s: %s (the server closed the connection)\n", cl->name, uvasync_err_name(status));
        if (cl->replies == 0) {
            demo_step();
        }
    }
    uvasync_stream_close(cl->srv->rt, (uv_stream_t*)&cl->tcp, on_client_closed);
}

static void on_client_sent(uvasync_req_t* req, int status) {
    client* cl = (client*)req->data;
    if (status != 0 || uvasync_read_until(&cl->req, cl->scope, (uv_stream_t*)&cl->tcp, cl->buf,
                                          sizeof cl->buf, '\n', on_client_reply) != 0) {
        uvasync_stream_close(cl->srv->rt, (uv_stream_t*)&cl->tcp, on_client_closed);
    }
}

static void on_client_connected(uvasync_req_t* req, int status);

static void on_client_delayed(uvasync_req_t* req, int status) {
    client* cl = (client*)req->data;
    cl->delay_ms = 0;
    on_client_connected(req, status);
}

static void on_client_connected(uvasync_req_t* req, int status) {
    client* cl = (client*)req->data;
    if (status == 0 && cl->delay_ms > 0) {
        status = uvasync_sleep(&cl->req, cl->scope, cl->delay_ms, on_client_delayed);
    } else if (status == 0 && cl->msg.len > 0) {
        status =
            uvasync_write(&cl->req, cl->scope, (uv_stream_t*)&cl->tcp, &cl->msg, 1, on_client_sent);
    } else if (status == 0) { /* the slow client sends nothing and waits */
        status = uvasync_read_until(&cl->req, cl->scope, (uv_stream_t*)&cl->tcp, cl->buf,
                                    sizeof cl->buf, '\n', on_client_reply);
    }
    if (status != 0) {
        uvasync_stream_close(cl->srv->rt, (uv_stream_t*)&cl->tcp, on_client_closed);
    }
}

static void start_client(client* cl, server* srv, const char* name, const char* text,
                         int64_t delay_ms, const struct sockaddr* addr) {
    memset(cl, 0, sizeof *cl);
    cl->delay_ms = delay_ms;
    cl->srv = srv;
    cl->name = name;
    cl->msg = uv_buf_init((char*)text, (unsigned int)strlen(text));
    cl->tcp.data = cl;
    cl->req.data = cl;
    uv_tcp_init(srv->loop, &cl->tcp);
    uvasync_scope_new(srv->rt, NULL, &cl->scope);
    uvasync_scope_set_timeout(cl->scope, 10000);
    uvasync_tcp_connect(&cl->req, cl->scope, &cl->tcp, addr, on_client_connected);
}

int main(int argc, char** argv) {
    static client fast, slow;
    int demo = argc > 1 && strcmp(argv[1], "--demo") == 0;
    int port = demo ? 0 : (argc > 1 ? atoi(argv[1]) : 7002);
    int namelen;
    server srv;
    uv_loop_t loop;
    struct sockaddr_in addr;

    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&srv, 0, sizeof srv);
    srv.loop = &loop;
    srv.request_ms = demo ? 300 : 5000; /* --demo: short, so the slow client is cut quickly */
    if (uv_loop_init(&loop) != 0 || uvasync_runtime_init(&loop, &srv.rt) != 0 ||
        uvasync_scope_new(srv.rt, NULL, &srv.shutdown) != 0) {
        return 1;
    }
    uv_tcp_init(&loop, &srv.listener);
    uv_ip4_addr("127.0.0.1", port, &addr);
    if (uv_tcp_bind(&srv.listener, (const struct sockaddr*)&addr, 0) != 0 ||
        uvasync_listen(srv.rt, (uv_stream_t*)&srv.listener, 128) != 0) {
        fprintf(stderr, "server: cannot listen on port %d\n", port);
        return 1;
    }
    namelen = sizeof addr;
    uv_tcp_getsockname(&srv.listener, (struct sockaddr*)&addr, &namelen);
    printf("server: listening on 127.0.0.1:%d, %lld ms per request\n", ntohs(addr.sin_port),
           (long long)srv.request_ms);
    srv.listening = 1;
    accept_next(&srv);
    uv_signal_init(&loop, &srv.sigint);
    srv.sigint.data = &srv;
    uv_signal_start(&srv.sigint, on_sigint, SIGINT);

    if (demo) {
        start_client(&slow, &srv, "slow client", "", 0, (const struct sockaddr*)&addr);
        start_client(&fast, &srv, "fast client", "hello\n", srv.request_ms / 2,
                     (const struct sockaddr*)&addr);
    }

    uv_run(&loop, UV_RUN_DEFAULT);
    uvasync_scope_free(srv.shutdown);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "server: the loop did not close\n");
        return 1;
    }
    printf("server: closed cleanly\n");
    return 0;
}
