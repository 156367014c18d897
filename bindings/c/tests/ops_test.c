/* SPDX-License-Identifier: MIT */
/* The operations the C++ layer runs (sleep, getaddrinfo, fs, work): each completes, fails, is
 * cancelled before start, while pending and after completion (completion wins), and times out,
 * with every callback counted. */
#include "check.h"

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>

typedef struct {
    uv_loop_t loop;
    uvasync_runtime_t* rt;
    uvasync_scope_t* scope;
} fixture;

static void setup(fixture* f) {
    f->rt = open_runtime(&f->loop);
    REQUIRE(uvasync_scope_new(f->rt, NULL, &f->scope) == 0);
}

static void teardown(fixture* f) {
    uvasync_scope_free(f->scope);
    close_runtime(&f->loop, f->rt);
}

static void run(fixture* f) {
    CHECK_EQ(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
}

/* sleep ------------------------------------------------------------------------------------ */

static void sleep_completes(void) {
    fixture f;
    counted_req a, b;
    setup(&f);
    CHECK_EQ(uvasync_sleep(counted(&a), f.scope, 1, counted_cb), 0);
    CHECK_EQ(uvasync_sleep(counted(&b), f.scope, 0, counted_cb), 0);
    CHECK_EQ(a.req.type, UVASYNC_REQ_SLEEP);
    CHECK(a.req.scope == f.scope);
    CHECK_EQ(a.calls, 0); /* never inline */
    run(&f);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, 0);
    CHECK_EQ(b.calls, 1);
    CHECK_EQ(b.status, 0);
    teardown(&f);
}

static void sleep_cancelled_before_start(void) {
    fixture f;
    counted_req a;
    setup(&f);
    CHECK_EQ(uvasync_scope_cancel(f.scope, "no"), 0);
    CHECK_EQ(uvasync_sleep(counted(&a), f.scope, 60000, counted_cb), 0);
    CHECK_EQ(a.calls, 0);
    run(&f);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, UV_ECANCELED);
    CHECK_EQ(a.result, UV_ECANCELED);
    teardown(&f);
}

static void sleep_cancelled_while_pending(void) {
    fixture f;
    counted_req a;
    setup(&f);
    CHECK_EQ(uvasync_sleep(counted(&a), f.scope, 60000, counted_cb), 0);
    CHECK_EQ(uv_run(&f.loop, UV_RUN_NOWAIT), 1); /* the sleep is armed */
    CHECK_EQ(a.calls, 0);
    CHECK_EQ(uvasync_scope_cancel(f.scope, NULL), 0);
    CHECK_EQ(a.calls, 0);
    run(&f);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, UV_ECANCELED);
    teardown(&f);
}

static void sleep_cancelled_after_completion(void) {
    fixture f;
    counted_req a;
    setup(&f);
    CHECK_EQ(uvasync_sleep(counted(&a), f.scope, 1, counted_cb), 0);
    run(&f);
    CHECK_EQ(uvasync_scope_cancel(f.scope, NULL), 0);
    run(&f);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, 0);
    teardown(&f);
}

static void sleep_times_out(void) {
    fixture f;
    counted_req a;
    setup(&f);
    CHECK_EQ(uvasync_scope_set_timeout(f.scope, 2), 0);
    CHECK_EQ(uvasync_sleep(counted(&a), f.scope, 60000, counted_cb), 0);
    run(&f);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, UV_ETIMEDOUT);
    teardown(&f);
}

static void runtime_close_cancels_pending_with_closed(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t* s = NULL;
    counted_req a;
    CHECK_EQ(uvasync_scope_new(rt, NULL, &s), 0);
    CHECK_EQ(uvasync_sleep(counted(&a), s, 60000, counted_cb), 0);
    uvasync_scope_free(s); /* the operation keeps the scope alive */
    close_runtime(&loop, rt);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, UVASYNC_ECLOSED);
}

static uvasync_runtime_t* closing_rt;

static void close_from_callback(uvasync_req_t* req, int status) {
    counted_cb(req, status);
    CHECK_EQ(uvasync_runtime_close(closing_rt, on_runtime_closed_), 0);
}

/* The program closes the runtime from inside an operation's callback. */
static void runtime_closed_from_a_callback(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t* s = NULL;
    counted_req first, pending;
    int before = closed_calls_;
    closing_rt = rt;
    CHECK_EQ(uvasync_scope_new(rt, NULL, &s), 0);
    CHECK_EQ(uvasync_sleep(counted(&first), s, 1, close_from_callback), 0);
    CHECK_EQ(uvasync_sleep(counted(&pending), s, 600000, counted_cb), 0);
    uvasync_scope_free(s);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(first.calls, 1);
    CHECK_EQ(first.status, 0);
    CHECK_EQ(pending.calls, 1);
    CHECK_EQ(pending.status, UVASYNC_ECLOSED);
    CHECK_EQ(closed_calls_, before + 1);
    CHECK_EQ(uv_loop_close(&loop), 0);
}

/* getaddrinfo ------------------------------------------------------------------------------ */

static int saw_loopback;

static void on_resolved(uvasync_req_t* req, int status) {
    counted_cb(req, status);
    saw_loopback = 0;
    if (status == 0) {
        for (const struct addrinfo* ai = req->addrinfo; ai != NULL; ai = ai->ai_next) {
            if (ai->ai_family == AF_INET) {
                saw_loopback = 1;
            }
        }
    }
}

static void getaddrinfo_cases(void) {
    fixture f;
    counted_req ok, bad, cancelled;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_flags = AI_NUMERICHOST;
    setup(&f);
    CHECK_EQ(uvasync_getaddrinfo(counted(&ok), f.scope, "127.0.0.1", "80", &hints, on_resolved), 0);
    run(&f);
    CHECK_EQ(ok.calls, 1);
    CHECK_EQ(ok.status, 0);
    CHECK_EQ(saw_loopback, 1);

    CHECK_EQ(
        uvasync_getaddrinfo(counted(&bad), f.scope, "not an address", NULL, &hints, counted_cb), 0);
    run(&f);
    CHECK_EQ(bad.calls, 1);
    CHECK_EQ(bad.status, UV_EAI_NONAME);

    /* Cancelled while pending (queued or running on the threadpool): one callback, with the
     * cancellation or, if it had already run, the answer (completion wins). */
    {
        uvasync_scope_t* s = NULL;
        counted_req pending;
        CHECK_EQ(uvasync_scope_new(f.rt, f.scope, &s), 0);
        CHECK_EQ(uvasync_getaddrinfo(counted(&pending), s, "127.0.0.1", NULL, &hints, counted_cb),
                 0);
        CHECK_EQ(uvasync_scope_cancel(s, NULL), 0);
        run(&f);
        CHECK_EQ(pending.calls, 1);
        CHECK(pending.status == 0 || pending.status == UV_ECANCELED);
        uvasync_scope_free(s);
        /* After completion: the answer stands. */
        CHECK_EQ(uvasync_scope_new(f.rt, f.scope, &s), 0);
        CHECK_EQ(uvasync_getaddrinfo(counted(&pending), s, "127.0.0.1", NULL, &hints, counted_cb),
                 0);
        run(&f);
        CHECK_EQ(uvasync_scope_cancel(s, NULL), 0);
        run(&f);
        CHECK_EQ(pending.calls, 1);
        CHECK_EQ(pending.status, 0);
        uvasync_scope_free(s);
    }

    CHECK_EQ(uvasync_scope_set_timeout(f.scope, 0), 0);
    CHECK_EQ(
        uvasync_getaddrinfo(counted(&cancelled), f.scope, "127.0.0.1", NULL, &hints, counted_cb),
        0);
    run(&f);
    CHECK_EQ(cancelled.calls, 1);
    CHECK_EQ(cancelled.status, UV_ETIMEDOUT);
    teardown(&f);
}

/* queue_work ------------------------------------------------------------------------------- */

static int work_runs;

static void work_fn(uvasync_req_t* req) {
    (void)req;
    ++work_runs; /* read on the loop thread after the callback */
}

/* Cancels its own scope from the threadpool while it runs: the work cannot be taken back, so
 * its real result is delivered (completion wins). */
static void self_cancelling_work(uvasync_req_t* req) {
    uvasync_scope_cancel_threadsafe(req->scope, "from the worker");
    while (!uvasync_scope_cancel_requested(req->scope)) {
    }
}

/* Polls its scope and stops early once the scope is cancelled (SEMANTICS 14.6). */
static int polled;

static void polling_work(uvasync_req_t* req) {
    polled = 1;
    while (!uvasync_scope_cancel_requested(req->scope)) {
        uv_sleep(1);
    }
}

static void work_times_out(void) {
    fixture f;
    counted_req a;
    setup(&f);
    polled = 0;
    CHECK_EQ(uvasync_scope_set_timeout(f.scope, 5), 0);
    CHECK_EQ(uvasync_queue_work(counted(&a), f.scope, polling_work, counted_cb), 0);
    run(&f);
    CHECK_EQ(a.calls, 1);
    /* Running work cannot be taken back: it returned, so its result is delivered (D-2); work
     * still queued at the deadline (a busy threadpool) is taken back and never runs. */
    CHECK(a.status == (polled ? 0 : UV_ETIMEDOUT));
    CHECK_EQ(uvasync_scope_expired(f.scope), 1);
    CHECK_EQ(uvasync_scope_status(f.scope), UV_ETIMEDOUT);
    teardown(&f);
}

static void work_cases(void) {
    fixture f;
    counted_req a, b, c;
    setup(&f);
    work_runs = 0;
    CHECK_EQ(uvasync_queue_work(counted(&a), f.scope, work_fn, counted_cb), 0);
    run(&f);
    CHECK_EQ(a.calls, 1);
    CHECK_EQ(a.status, 0);
    CHECK_EQ(work_runs, 1);

    CHECK_EQ(uvasync_queue_work(counted(&b), f.scope, self_cancelling_work, counted_cb), 0);
    run(&f);
    CHECK_EQ(b.calls, 1);
    CHECK_EQ(b.status, 0); /* completion wins */
    CHECK_EQ(uvasync_scope_status(f.scope), UV_ECANCELED);

    CHECK_EQ(uvasync_queue_work(counted(&c), f.scope, work_fn, counted_cb), 0);
    run(&f);
    CHECK_EQ(c.calls, 1);
    CHECK_EQ(c.status, UV_ECANCELED);
    CHECK_EQ(work_runs, 1); /* never ran */
    teardown(&f);
}

/* fs --------------------------------------------------------------------------------------- */

static void fs_round_trip(void) {
    fixture f;
    counted_req r;
    char path[64];
    char data[16];
    uv_file fd;
    setup(&f);
    snprintf(path, sizeof path, "capi_fs_test_%d.tmp", (int)uv_os_getpid());

    CHECK_EQ(
        uvasync_fs_open(counted(&r), f.scope, path, O_CREAT | O_TRUNC | O_RDWR, 0644, counted_cb),
        0);
    run(&f);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.status, 0);
    fd = (uv_file)r.result;
    CHECK(fd >= 0);

    CHECK_EQ(uvasync_fs_write(counted(&r), f.scope, fd, "hello", 5, 0, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(r.result, 5);

    memset(data, 0, sizeof data);
    CHECK_EQ(uvasync_fs_read(counted(&r), f.scope, fd, data, sizeof data, 0, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.result, 5);
    CHECK_STREQ(data, "hello");

    CHECK_EQ(uvasync_fs_stat(counted(&r), f.scope, path, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(r.req.statbuf.st_size, 5);

    CHECK_EQ(uvasync_fs_close(counted(&r), f.scope, fd, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, 0);

    CHECK_EQ(uvasync_fs_unlink(counted(&r), f.scope, path, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, 0);

    /* Whole files. */
    CHECK_EQ(uvasync_fs_write_file(counted(&r), f.scope, path, "whole file", 10, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(r.result, 10);
    memset(data, 0, sizeof data);
    CHECK_EQ(uvasync_fs_read_file(counted(&r), f.scope, path, data, sizeof data, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.result, 10);
    CHECK_STREQ(data, "whole file");
    memset(data, 0, sizeof data);
    CHECK_EQ(uvasync_fs_read_file(counted(&r), f.scope, path, data, 4, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, UV_ENOBUFS);
    CHECK_STREQ(data, "");
    CHECK_EQ(uvasync_fs_unlink(counted(&r), f.scope, path, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, 0);

    /* Fails: the file is gone. */
    CHECK_EQ(uvasync_fs_stat(counted(&r), f.scope, path, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.status, UV_ENOENT);
    teardown(&f);
}

static char listed_name[32];
static uv_dirent_type_t listed_type;
static int listed_past_end;

static void on_listed(uvasync_req_t* req, int status) {
    const char* name;
    counted_cb(req, status);
    if (status == 0 && (name = uvasync_fs_scandir_entry(req, 0, &listed_type)) != NULL) {
        snprintf(listed_name, sizeof listed_name, "%s", name);
    }
    listed_past_end = uvasync_fs_scandir_entry(req, (size_t)req->result, NULL) == NULL;
}

static void fs_directories_and_cancellation(void) {
    fixture f;
    counted_req r, pending;
    char dir[64], dir2[64], sub[80];
    setup(&f);
    snprintf(dir, sizeof dir, "capi_fs_dir_%d", (int)uv_os_getpid());
    snprintf(dir2, sizeof dir2, "capi_fs_dir2_%d", (int)uv_os_getpid());
    CHECK_EQ(uvasync_fs_mkdir(counted(&r), f.scope, dir, 0755, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(uvasync_fs_rename(counted(&r), f.scope, dir, dir2, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, 0);

    /* scandir: one subdirectory, listed by name and type during the callback. */
    snprintf(sub, sizeof sub, "%s/sub", dir2);
    CHECK_EQ(uvasync_fs_mkdir(counted(&r), f.scope, sub, 0755, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(uvasync_fs_scandir(counted(&r), f.scope, dir2, on_listed), 0);
    run(&f);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(r.result, 1);
    CHECK_STREQ(listed_name, "sub");
    CHECK_EQ(listed_type, UV_DIRENT_DIR);
    CHECK_EQ(listed_past_end, 1);
    CHECK_EQ(uvasync_fs_rmdir(counted(&r), f.scope, sub, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.status, 0);

    /* Cancelled while pending: queued work is taken back, running work completes (io_uring
     * requests cannot be taken back at all): either way exactly one callback, and if the
     * rmdir ran, it is reported as done. */
    CHECK_EQ(uvasync_fs_rmdir(counted(&pending), f.scope, dir2, counted_cb), 0);
    CHECK_EQ(uvasync_scope_cancel(f.scope, NULL), 0);
    run(&f);
    CHECK_EQ(pending.calls, 1);
    CHECK(pending.status == 0 || pending.status == UV_ECANCELED);
    teardown(&f);

    /* Clean up with a fresh scope whatever happened. */
    setup(&f);
    if (pending.status != 0) {
        CHECK_EQ(uvasync_fs_rmdir(counted(&r), f.scope, dir2, counted_cb), 0);
        run(&f);
        CHECK_EQ(r.status, 0);
    }
    /* Cancelled before start: nothing happens to the file system. */
    CHECK_EQ(uvasync_scope_cancel(f.scope, NULL), 0);
    CHECK_EQ(uvasync_fs_mkdir(counted(&r), f.scope, dir, 0755, counted_cb), 0);
    run(&f);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.status, UV_ECANCELED);
    {
        uv_fs_t st;
        CHECK_EQ(uv_fs_stat(NULL, &st, dir, NULL), UV_ENOENT);
        uv_fs_req_cleanup(&st);
    }
    teardown(&f);
}

static void fs_times_out_before_start(void) {
    fixture f;
    counted_req r;
    setup(&f);
    CHECK_EQ(uvasync_scope_set_timeout(f.scope, 0), 0);
    CHECK_EQ(uvasync_fs_stat(counted(&r), f.scope, ".", counted_cb), 0);
    run(&f);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.status, UV_ETIMEDOUT);
    teardown(&f);
}

/* 1,000 operations under one parent ---------------------------------------------------------- */

enum { many = 1000 };

static void parent_cancel_reaches_a_thousand_operations(void) {
    fixture f;
    static counted_req reqs[many];
    static uvasync_scope_t* children[many];
    int i, ecanceled = 0, calls = 0;
    setup(&f);
    for (i = 0; i < many; ++i) {
        CHECK_EQ(uvasync_scope_new(f.rt, f.scope, &children[i]), 0);
        if (i % 2 == 0) {
            CHECK_EQ(uvasync_scope_set_timeout(children[i], 600000), 0);
        }
        CHECK_EQ(uvasync_sleep(counted(&reqs[i]), i % 3 == 0 ? f.scope : children[i], 600000,
                               counted_cb),
                 0);
        uvasync_scope_free(children[i]);
    }
    CHECK_EQ(uv_run(&f.loop, UV_RUN_NOWAIT), 1);
    CHECK_EQ(uvasync_scope_cancel(f.scope, "stop all"), 0);
    run(&f);
    for (i = 0; i < many; ++i) {
        calls += reqs[i].calls;
        ecanceled += reqs[i].status == UV_ECANCELED;
    }
    CHECK_EQ(calls, many);
    CHECK_EQ(ecanceled, many);
    teardown(&f);
}

int main(void) {
    RUN_TEST(sleep_completes);
    RUN_TEST(sleep_cancelled_before_start);
    RUN_TEST(sleep_cancelled_while_pending);
    RUN_TEST(sleep_cancelled_after_completion);
    RUN_TEST(sleep_times_out);
    RUN_TEST(runtime_close_cancels_pending_with_closed);
    RUN_TEST(runtime_closed_from_a_callback);
    RUN_TEST(getaddrinfo_cases);
    RUN_TEST(work_cases);
    RUN_TEST(work_times_out);
    RUN_TEST(fs_round_trip);
    RUN_TEST(fs_directories_and_cancellation);
    RUN_TEST(fs_times_out_before_start);
    RUN_TEST(parent_cancel_reaches_a_thousand_operations);
    return check_summary();
}
