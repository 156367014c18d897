/* SPDX-License-Identifier: MIT */
/* Bad input gets a negative UV_E* code and no callback: NULL arguments, out-of-range values,
 * a closing runtime, a second close, a stream the library closed. */
#include "check.h"

#include <fcntl.h>

static void nulls_and_ranges(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_runtime_t* none = NULL;
    uvasync_scope_t* s = NULL;
    counted_req r;
    char buf[4];
    uv_buf_t b = uv_buf_init(buf, sizeof buf);
    uv_tcp_t tcp;
    struct sockaddr_in addr;
    REQUIRE(uv_tcp_init(&loop, &tcp) == 0);
    REQUIRE(uv_ip4_addr("127.0.0.1", 1, &addr) == 0);

    CHECK_EQ(uvasync_runtime_init(NULL, &none), UV_EINVAL);
    CHECK_EQ(uvasync_runtime_init(&loop, NULL), UV_EINVAL);
    CHECK_EQ(uvasync_runtime_close(NULL, NULL), UV_EINVAL);
    CHECK(uvasync_runtime_loop(rt) == &loop);
    CHECK(uvasync_runtime_loop(NULL) == NULL);
    CHECK_EQ(uvasync_scope_new(NULL, NULL, &s), UV_EINVAL);
    CHECK_EQ(uvasync_scope_new(rt, NULL, NULL), UV_EINVAL);
    CHECK_EQ(uvasync_scope_new(rt, NULL, &s), 0);

    CHECK_EQ(uvasync_scope_set_timeout(NULL, 1), UV_EINVAL);
    CHECK_EQ(uvasync_scope_set_timeout(s, -1), UV_EINVAL);
    CHECK_EQ(uvasync_scope_set_deadline(NULL, 1), UV_EINVAL);
    CHECK_EQ(uvasync_scope_reschedule(NULL, 1), UV_EINVAL);
    CHECK_EQ(uvasync_scope_cancel(NULL, NULL), UV_EINVAL);
    CHECK_EQ(uvasync_scope_cancel_threadsafe(NULL, NULL), UV_EINVAL);
    CHECK_EQ(uvasync_scope_on_cancel(NULL, NULL, NULL), UV_EINVAL);
    CHECK_EQ(uvasync_scope_on_cancel(s, NULL, NULL), UV_EINVAL);
    CHECK_EQ(uvasync_scope_status(NULL), UV_EINVAL);
    CHECK_EQ(uvasync_scope_expired(NULL), 0);
    CHECK_EQ(uvasync_scope_cancel_requested(NULL), 0);
    CHECK_STREQ(uvasync_scope_reason(NULL), "");
    CHECK(uvasync_scope_deadline(NULL) == UVASYNC_NEVER);
    uvasync_scope_free(NULL);

    CHECK_EQ(uvasync_sleep(NULL, s, 1, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_sleep(counted(&r), NULL, 1, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_sleep(counted(&r), s, 1, NULL), UV_EINVAL);
    CHECK_EQ(uvasync_sleep(counted(&r), s, -5, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_getaddrinfo(counted(&r), s, NULL, NULL, NULL, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_queue_work(counted(&r), s, NULL, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_open(counted(&r), s, NULL, O_RDONLY, 0, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_close(counted(&r), s, -1, counted_cb), UV_EBADF);
    CHECK_EQ(uvasync_fs_read(counted(&r), s, 0, NULL, 4, 0, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_write(counted(&r), s, -1, buf, 4, 0, counted_cb), UV_EBADF);
    CHECK_EQ(uvasync_fs_stat(counted(&r), s, NULL, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_unlink(counted(&r), s, NULL, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_rename(counted(&r), s, "a", NULL, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_mkdir(counted(&r), s, NULL, 0755, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_rmdir(counted(&r), s, NULL, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_scandir(counted(&r), s, NULL, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_read_file(counted(&r), s, NULL, buf, 4, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_read_file(counted(&r), s, "x", NULL, 4, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_fs_write_file(counted(&r), s, "x", NULL, 4, counted_cb), UV_EINVAL);
    CHECK(uvasync_fs_scandir_entry(NULL, 0, NULL) == NULL);
    CHECK(uvasync_fs_scandir_entry(&r.req, 0, NULL) == NULL);
    CHECK_EQ(uvasync_read_some(counted(&r), s, NULL, buf, 4, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_read_some(counted(&r), s, (uv_stream_t*)&tcp, NULL, 4, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_read_exactly(counted(&r), s, (uv_stream_t*)&tcp, buf, 0, counted_cb),
             UV_EINVAL);
    CHECK_EQ(uvasync_read_until(counted(&r), s, (uv_stream_t*)&tcp, NULL, 4, '\n', counted_cb),
             UV_EINVAL);
    CHECK_EQ(uvasync_write(counted(&r), s, (uv_stream_t*)&tcp, NULL, 1, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_write(counted(&r), s, (uv_stream_t*)&tcp, &b, 0, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_tcp_connect(counted(&r), s, &tcp, NULL, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_tcp_connect(counted(&r), s, NULL, (const struct sockaddr*)&addr, counted_cb),
             UV_EINVAL);
    CHECK_EQ(uvasync_shutdown(counted(&r), s, NULL, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_listen(NULL, (uv_stream_t*)&tcp, 1), UV_EINVAL);
    CHECK_EQ(uvasync_listen(rt, (uv_stream_t*)&tcp, 0), UV_EINVAL);
    CHECK_EQ(uvasync_accept(counted(&r), s, (uv_stream_t*)&tcp, NULL, counted_cb), UV_EINVAL);
    CHECK_EQ(uvasync_stream_close(NULL, (uv_stream_t*)&tcp, NULL), UV_EINVAL);
    CHECK_EQ(uvasync_stream_close(rt, NULL, NULL), UV_EINVAL);
    /* libuv's own refusal comes back as is: a stream that is not connected cannot be read. */
    CHECK_EQ(uvasync_read_some(counted(&r), s, (uv_stream_t*)&tcp, buf, 4, counted_cb),
             UV_ENOTCONN);
    CHECK_EQ(r.calls, 0);

    /* A parent from another runtime. */
    {
        uv_loop_t loop2;
        uvasync_runtime_t* rt2 = open_runtime(&loop2);
        uvasync_scope_t* s2 = NULL;
        CHECK_EQ(uvasync_scope_new(rt2, s, &s2), UV_EINVAL);
        close_runtime(&loop2, rt2);
    }

    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ(r.calls, 0); /* no failed start ever calls back */
    CHECK_EQ(uvasync_stream_close(rt, (uv_stream_t*)&tcp, NULL), 0);
    uvasync_scope_free(s);
    close_runtime(&loop, rt);
}

static void errors_are_libuvs(void) {
    CHECK_STREQ(uvasync_err_name(UV_ECANCELED), uv_err_name(UV_ECANCELED));
    CHECK_STREQ(uvasync_strerror(UV_ETIMEDOUT), uv_strerror(UV_ETIMEDOUT));
    CHECK_STREQ(uvasync_err_name(UVASYNC_ECLOSED), "UVASYNC_ECLOSED");
    CHECK_STREQ(uvasync_strerror(UVASYNC_ECLOSED), "uvasync runtime is closing");
    CHECK(UVASYNC_ECLOSED < UV_ERRNO_MAX);
}

static void closing_runtime_refuses_work(void) {
    uv_loop_t loop;
    uvasync_runtime_t* rt = open_runtime(&loop);
    uvasync_scope_t *s = NULL, *late = NULL;
    counted_req r, pending;
    CHECK_EQ(uvasync_scope_new(rt, NULL, &s), 0);
    CHECK_EQ(uvasync_sleep(counted(&pending), s, 600000, counted_cb), 0);
    CHECK_EQ(uvasync_runtime_close(rt, on_runtime_closed_), 0);
    CHECK_EQ(uvasync_runtime_close(rt, on_runtime_closed_), UV_EALREADY);
    CHECK_EQ(uvasync_scope_new(rt, NULL, &late), UVASYNC_ECLOSED);
    CHECK_EQ(uvasync_sleep(counted(&r), s, 1, counted_cb), UVASYNC_ECLOSED);
    CHECK_EQ(uvasync_scope_set_timeout(s, 1), UVASYNC_ECLOSED);
    CHECK_EQ(uvasync_scope_cancel(s, NULL), UVASYNC_ECLOSED);
    CHECK_EQ(uvasync_scope_status(s), UVASYNC_ECLOSED);
    CHECK_EQ(uvasync_listen(rt, NULL, 1), UV_EINVAL);
    {
        int before = closed_calls_;
        CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
        CHECK_EQ(closed_calls_, before + 1);
    }
    CHECK_EQ(pending.calls, 1);
    CHECK_EQ(pending.status, UVASYNC_ECLOSED);
    CHECK_EQ(r.calls, 0);
    CHECK_EQ(uv_loop_close(&loop), 0);
    uvasync_scope_free(s); /* scopes may be freed after the close */
}

int main(void) {
    RUN_TEST(nulls_and_ranges);
    RUN_TEST(errors_are_libuvs);
    RUN_TEST(closing_runtime_refuses_work);
    return check_summary();
}
