/* SPDX-License-Identifier: MIT */
/* What the C seed scenarios share: the clock (the real one; --virtual: the virtual test clock,
 * on which the test suite runs them in milliseconds with exact times) and the length of a
 * "second" (1000 ms, or 10 ms with --fast), a line printer with the loop-clock time in
 * scenario seconds (the C++ seed examples' format: both print the lines of
 * examples/seed/expected/), and the end of every program (close the runtime, let the loop
 * finish, close the loop). */
#ifndef UVASYNC_SEED_H
#define UVASYNC_SEED_H

#include <uv.h>
#include <uvasync.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int64_t S = 1000; /* one scenario second, in loop-clock milliseconds */
static uint64_t seed_start;
static uvasync_runtime_t* seed_rt;

static void seed_init(uv_loop_t* loop, uvasync_runtime_t** rt, int argc, char** argv) {
    int virtual_clock = argc > 1 && strcmp(argv[1], "--virtual") == 0;
    if (argc > 1 && strcmp(argv[1], "--fast") == 0) {
        S = 10;
    }
    uv_loop_init(loop);
    if (virtual_clock) {
        uvasync_runtime_init_virtual(loop, rt);
    } else {
        uvasync_runtime_init(loop, rt);
    }
    seed_rt = *rt;
    uv_update_time(loop); /* the start is now, not when the loop was initialised */
    seed_start = uvasync_now(*rt);
}

static void say(const char* fmt, ...) {
    va_list ap;
    printf("[%6.3fs] ", (double)(uvasync_now(seed_rt) - seed_start) / (double)S);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static int seed_finish(uv_loop_t* loop, uvasync_runtime_t* rt) {
    uvasync_runtime_close(rt, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop) == 0 ? 0 : 1;
}

#endif
