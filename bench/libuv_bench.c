// SPDX-License-Identifier: MIT
// Raw libuv with callbacks: the practical limit for the workloads in bench/README.md.
//
//   bench_libuv <workload> <n>
//
// Prints one line: `<workload> libuv n=<n> <metric>=<value> ...`. Each "task" is a struct
// holding its handles; it is freed in the close callback of its last handle, as a real
// program must.
#include <uv.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char* what, int rc) {
    fprintf(stderr, "bench_libuv: %s: %s\n", what, uv_strerror(rc));
    exit(1);
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ < 0)                                                                               \
            die(#call, rc_);                                                                       \
    } while (0)

// ---------------------------------------------------------------------------------------------
// W1: n round trips through a uv_idle_t callback (one per loop iteration).

static long w1_left;

static void w1_idle_cb(uv_idle_t* h) {
    if (--w1_left == 0) {
        uv_idle_stop(h);
    }
}

static void w1(uv_loop_t* loop, long n) {
    uv_idle_t idle;
    CHECK(uv_idle_init(loop, &idle));
    w1_left = n;
    double t0 = now_ns();
    CHECK(uv_idle_start(&idle, w1_idle_cb));
    CHECK(uv_run(loop, UV_RUN_DEFAULT));
    double ns = now_ns() - t0;
    uv_close((uv_handle_t*)&idle, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    printf("W1 libuv n=%ld ns_per_op=%.2f\n", n, ns / (double)n);
}

// ---------------------------------------------------------------------------------------------
// W2 / W2b: per task a "sleep" timer and a "timeout" timer; whichever fires first stops the
// other, and the task closes both and frees itself in the last close callback.

struct w2_task {
    uv_timer_t sleep;
    uv_timer_t timeout;
    int open;
};

static long w2_fired;
static long w2_done;

static void w2_close_cb(uv_handle_t* h) {
    struct w2_task* t = h->data;
    if (--t->open == 0) {
        ++w2_done;
        free(t);
    }
}

static void w2_finish(struct w2_task* t) {
    uv_timer_stop(&t->sleep);
    uv_timer_stop(&t->timeout);
    uv_close((uv_handle_t*)&t->sleep, w2_close_cb);
    uv_close((uv_handle_t*)&t->timeout, w2_close_cb);
}

static void w2_sleep_cb(uv_timer_t* h) {
    w2_finish(h->data);
}

static void w2_timeout_cb(uv_timer_t* h) {
    ++w2_fired;
    w2_finish(h->data);
}

static void w2(uv_loop_t* loop, const char* name, long n, uint64_t sleep_ms, uint64_t timeout_ms) {
    double t0 = now_ns();
    for (long i = 0; i < n; ++i) {
        struct w2_task* t = malloc(sizeof *t);
        if (t == NULL) {
            die("malloc", UV_ENOMEM);
        }
        t->open = 2;
        CHECK(uv_timer_init(loop, &t->sleep));
        CHECK(uv_timer_init(loop, &t->timeout));
        t->sleep.data = t;
        t->timeout.data = t;
        CHECK(uv_timer_start(&t->timeout, w2_timeout_cb, timeout_ms, 0));
        CHECK(uv_timer_start(&t->sleep, w2_sleep_cb, sleep_ms, 0));
    }
    CHECK(uv_run(loop, UV_RUN_DEFAULT));
    double ns = now_ns() - t0;
    if (w2_done != n) {
        die("W2: not every task finished", UV_EINVAL);
    }
    printf("%s libuv n=%ld ms=%.3f bytes_per_task=%zu fired=%ld\n", name, n, ns / 1e6,
           sizeof(struct w2_task), w2_fired);
}

// ---------------------------------------------------------------------------------------------
// W3: n tasks parked on a 1 h timer; all cancelled at once (stop the timer, close it, the task
// is done in its close callback); time until the last one is done.

struct w3_task {
    uv_timer_t sleep;
};

static long w3_done;

static void w3_never_cb(uv_timer_t* h) {
    (void)h;
    die("W3: a parked timer fired", UV_EINVAL);
}

static void w3_close_cb(uv_handle_t* h) {
    ++w3_done;
    free(h->data);
}

static void w3(uv_loop_t* loop, long n) {
    struct w3_task** tasks = malloc((size_t)n * sizeof *tasks);
    for (long i = 0; i < n; ++i) {
        tasks[i] = malloc(sizeof **tasks);
        CHECK(uv_timer_init(loop, &tasks[i]->sleep));
        tasks[i]->sleep.data = tasks[i];
        CHECK(uv_timer_start(&tasks[i]->sleep, w3_never_cb, 3600 * 1000, 0));
    }
    double t0 = now_ns();
    for (long i = 0; i < n; ++i) {
        uv_timer_stop(&tasks[i]->sleep);
        uv_close((uv_handle_t*)&tasks[i]->sleep, w3_close_cb);
    }
    CHECK(uv_run(loop, UV_RUN_DEFAULT));
    double ns = now_ns() - t0;
    if (w3_done != n) {
        die("W3: not every task finished", UV_EINVAL);
    }
    free(tasks);
    printf("W3 libuv n=%ld ms=%.3f\n", n, ns / 1e6);
}

// ---------------------------------------------------------------------------------------------
// W5: what a C program does by hand. A registration is an intrusive list node; a timeout scope
// that does not fire is uv_timer_start + uv_timer_stop; a tree is first-child/next-sibling
// nodes cancelled by an iterative walk.

struct reg {
    struct reg* prev;
    struct reg* next;
    void (*fn)(struct reg*);
};

static long reg_calls;

static void reg_fn(struct reg* r) {
    (void)r;
    ++reg_calls;
}

static void w5_registration(long n) {
    struct reg head = {&head, &head, NULL};
    struct reg* volatile list = &head; // keep the loop from being folded away
    double t0 = now_ns();
    for (long i = 0; i < n; ++i) {
        struct reg r;
        r.fn = reg_fn;
        struct reg* h = list;
        r.prev = h->prev;
        r.next = h;
        h->prev->next = &r;
        h->prev = &r;
        __asm__ volatile("" ::: "memory");
        r.prev->next = r.next;
        r.next->prev = r.prev;
    }
    double ns = now_ns() - t0;
    printf("W5reg libuv n=%ld ns_per_op=%.2f\n", n, ns / (double)n);
}

static void w5_never_cb(uv_timer_t* h) {
    (void)h;
    die("W5scope: the timeout fired", UV_EINVAL);
}

static void w5_scope(uv_loop_t* loop, long n) {
    uv_timer_t timer;
    CHECK(uv_timer_init(loop, &timer));
    double t0 = now_ns();
    for (long i = 0; i < n; ++i) {
        CHECK(uv_timer_start(&timer, w5_never_cb, 10000, 0));
        __asm__ volatile("" ::: "memory");
        uv_timer_stop(&timer);
    }
    double ns = now_ns() - t0;
    uv_close((uv_handle_t*)&timer, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    printf("W5scope libuv n=%ld ns_per_op=%.2f\n", n, ns / (double)n);
}

struct tree_node {
    struct tree_node* parent;
    struct tree_node* first_child;
    struct tree_node* next_sibling;
    int cancelled;
};

static void tree_link(struct tree_node* child, struct tree_node* parent) {
    child->parent = parent;
    child->next_sibling = parent->first_child;
    parent->first_child = child;
}

static void w5_tree(long n) {
    long fanout = n >= 1000 ? 1000 : 1;
    struct tree_node* nodes = calloc((size_t)n + 1, sizeof *nodes);
    struct tree_node* root = &nodes[n];
    for (long i = 0; i < fanout; ++i) {
        tree_link(&nodes[i], root);
    }
    for (long i = fanout; i < n; ++i) {
        tree_link(&nodes[i], &nodes[i % fanout]);
    }
    double t0 = now_ns();
    // Pre-order walk without a stack: down the first child, across siblings, back up.
    struct tree_node* t = root;
    for (;;) {
        t->cancelled = 1;
        if (t->first_child != NULL) {
            t = t->first_child;
            continue;
        }
        while (t != root && t->next_sibling == NULL) {
            t = t->parent;
        }
        if (t == root) {
            break;
        }
        t = t->next_sibling;
    }
    double ns = now_ns() - t0;
    long cancelled = 0;
    for (long i = 0; i < n; ++i) {
        cancelled += nodes[i].cancelled;
    }
    free(nodes);
    printf("W5tree libuv n=%ld ms=%.3f cancelled=%ld\n", n, ns / 1e6, cancelled);
}

int main(int argc, char** argv) {
    if (argc != 3 || atol(argv[2]) <= 0) {
        fprintf(stderr, "usage: bench_libuv W1|W2|W2b|W3|W5reg|W5scope|W5tree <n>\n");
        return 2;
    }
    const char* w = argv[1];
    long n = atol(argv[2]);
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop));
    if (strcmp(w, "W1") == 0) {
        w1(&loop, n);
    } else if (strcmp(w, "W2") == 0) {
        w2(&loop, w, n, 1, 10000);
    } else if (strcmp(w, "W2b") == 0) {
        w2(&loop, w, n, 10000, 1);
    } else if (strcmp(w, "W3") == 0) {
        w3(&loop, n);
    } else if (strcmp(w, "W5reg") == 0) {
        w5_registration(n);
    } else if (strcmp(w, "W5scope") == 0) {
        w5_scope(&loop, n);
    } else if (strcmp(w, "W5tree") == 0) {
        w5_tree(n);
    } else {
        fprintf(stderr, "bench_libuv: unknown workload %s\n", w);
        return 2;
    }
    CHECK(uv_loop_close(&loop));
    return 0;
}
