// SPDX-License-Identifier: MIT
// The raw libuv HTTP keep-alive server of W4 (bench/README.md): callbacks and http_parser.
//
//   bench_libuv_http <port>
//
// `GET /` answers 200 with the 13-byte body `Hello, World!`, any other path 404; connections
// stay open. Each connection has a uv_timer_t that bounds each request to 5 s: it is started
// when the connection opens and restarted after each response; when it fires, the connection
// is closed. The connection is freed in the close callback of its second handle.
#include <uv.h>

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ok_response[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                  "Content-Length: 13\r\n\r\nHello, World!";
static const char not_found_response[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

enum { request_timeout_ms = 5000 };

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    http_parser parser;
    char url[16];
    size_t url_len;
    int url_too_long;
    int open;
    int closing;
};

struct write_req {
    uv_write_t req;
};

static uv_loop_t* loop;
static http_parser_settings settings;

static void on_close(uv_handle_t* h) {
    struct conn* c = h->data;
    if (--c->open == 0) {
        free(c);
    }
}

static void conn_close(struct conn* c) {
    if (c->closing) {
        return;
    }
    c->closing = 1;
    uv_close((uv_handle_t*)&c->tcp, on_close);
    uv_close((uv_handle_t*)&c->timer, on_close);
}

static void on_timeout(uv_timer_t* t) {
    conn_close(t->data);
}

static void on_write(uv_write_t* req, int status) {
    (void)status; // a failed write shows up as a read error
    free(req);
}

static void send_response(struct conn* c, const char* data, size_t len) {
    uv_buf_t buf = uv_buf_init((char*)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t*)&c->tcp, &buf, 1);
    if (n == (int)len) {
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        conn_close(c);
        return;
    }
    if (n > 0) {
        buf.base += n;
        buf.len -= (size_t)n;
    }
    struct write_req* w = malloc(sizeof *w);
    if (w == NULL || uv_write(&w->req, (uv_stream_t*)&c->tcp, &buf, 1, on_write) < 0) {
        free(w);
        conn_close(c);
    }
}

static int on_message_begin(http_parser* p) {
    struct conn* c = p->data;
    c->url_len = 0;
    c->url_too_long = 0;
    return 0;
}

static int on_url(http_parser* p, const char* at, size_t len) {
    struct conn* c = p->data;
    if (c->url_len + len > sizeof c->url) {
        c->url_too_long = 1;
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static int on_message_complete(http_parser* p) {
    struct conn* c = p->data;
    if (p->method == HTTP_GET && !c->url_too_long && c->url_len == 1 && c->url[0] == '/') {
        send_response(c, ok_response, sizeof ok_response - 1);
    } else {
        send_response(c, not_found_response, sizeof not_found_response - 1);
    }
    if (!c->closing) {
        uv_timer_start(&c->timer, on_timeout, request_timeout_ms, 0); // the next request's 5 s
    }
    return 0;
}

static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
    (void)h;
    (void)suggested;
    static char slab[65536]; // one loop thread; the data is parsed before the next read
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    struct conn* c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0) {
        return;
    }
    size_t parsed = http_parser_execute(&c->parser, &settings, buf->base, (size_t)nread);
    if (parsed != (size_t)nread || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK) {
        conn_close(c);
    }
}

static void on_connection(uv_stream_t* server, int status) {
    if (status < 0) {
        return;
    }
    struct conn* c = calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->open = 2;
    c->tcp.data = c;
    c->timer.data = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(server, (uv_stream_t*)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_timer_start(&c->timer, on_timeout, request_timeout_ms, 0);
    if (uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
    }
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: bench_libuv_http <port>\n");
        return 2;
    }
    loop = uv_default_loop();
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_message_complete = on_message_complete;
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_tcp_init(loop, &server);
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    int rc = uv_tcp_bind(&server, (const struct sockaddr*)&addr, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t*)&server, 1024, on_connection);
    }
    if (rc < 0) {
        fprintf(stderr, "bench_libuv_http: %s\n", uv_strerror(rc));
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
