/* SPDX-License-Identifier: MIT */
/* A tiny test harness for the C API tests: CHECK macros that report file:line and the values,
 * a test runner that prints each test and a pass/fail summary, and the loop helpers every test
 * ends with (close the runtime, run the loop, require uv_loop_close() == 0). */
#ifndef UVASYNC_C_CHECK_H
#define UVASYNC_C_CHECK_H

#include <uv.h>
#include <uvasync.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures_ = 0;
static int check_count_ = 0;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        ++check_count_;                                                                            \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            ++check_failures_;                                                                     \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long va_ = (long long)(a);                                                            \
        long long vb_ = (long long)(b);                                                            \
        ++check_count_;                                                                            \
        if (va_ != vb_) {                                                                          \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld vs %lld", __FILE__, __LINE__,  \
                    #a, #b, va_, vb_);                                                             \
            if (va_ < 0 && va_ > -6000) {                                                          \
                fprintf(stderr, " = %s", uvasync_err_name((int)va_));                              \
            }                                                                                      \
            fprintf(stderr, ")\n");                                                                \
            ++check_failures_;                                                                     \
        }                                                                                          \
    } while (0)

#define CHECK_STREQ(a, b)                                                                          \
    do {                                                                                           \
        ++check_count_;                                                                            \
        if (strcmp((a), (b)) != 0) {                                                               \
            fprintf(stderr, "%s:%d: CHECK_STREQ failed: \"%s\" vs \"%s\"\n", __FILE__, __LINE__,   \
                    (a), (b));                                                                     \
            ++check_failures_;                                                                     \
        }                                                                                          \
    } while (0)

/* Aborts the test program: used where going on would crash. */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define RUN_TEST(fn)                                                                               \
    do {                                                                                           \
        int before_ = check_failures_;                                                             \
        fprintf(stderr, "[ RUN  ] %s\n", #fn);                                                     \
        fn();                                                                                      \
        fprintf(stderr, "[ %s ] %s\n", check_failures_ == before_ ? " OK " : "FAIL", #fn);         \
    } while (0)

static inline int check_summary(void) {
    fprintf(stderr, "%d checks, %d failed\n", check_count_, check_failures_);
    return check_failures_ == 0 && check_count_ > 0 ? 0 : 1;
}

static int closed_calls_ = 0;

static inline void on_runtime_closed_(uvasync_runtime_t* rt) {
    (void)rt;
    ++closed_calls_;
}

/* A fresh loop with a runtime on it. */
static inline uvasync_runtime_t* open_runtime(uv_loop_t* loop) {
    uvasync_runtime_t* rt = NULL;
    REQUIRE(uv_loop_init(loop) == 0);
    REQUIRE(uvasync_runtime_init(loop, &rt) == 0);
    return rt;
}

/* Closes the runtime, runs the loop until it is empty, and checks that the runtime called back
 * once and that the loop closes. */
static inline void close_runtime(uv_loop_t* loop, uvasync_runtime_t* rt) {
    int before = closed_calls_;
    CHECK_EQ(uvasync_runtime_close(rt, on_runtime_closed_), 0);
    CHECK_EQ(uv_run(loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(closed_calls_, before + 1);
    CHECK_EQ(uv_loop_close(loop), 0);
}

/* A request with a callback counter: `calls` counts the callbacks, `status` the last one. */
typedef struct {
    uvasync_req_t req;
    int calls;
    int status;
    ssize_t result;
} counted_req;

static inline void counted_cb(uvasync_req_t* req, int status) {
    counted_req* c = (counted_req*)req->data;
    ++c->calls;
    c->status = status;
    c->result = req->result;
}

static inline uvasync_req_t* counted(counted_req* c) {
    memset(c, 0, sizeof *c);
    c->req.data = c;
    c->status = 1; /* not called yet */
    return &c->req;
}

#endif
