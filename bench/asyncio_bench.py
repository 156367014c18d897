# SPDX-License-Identifier: MIT
"""The Python asyncio implementation of the workloads in bench/README.md.

    python3 asyncio_bench.py [--uvloop] <workload> <n>

Prints one line: `<workload> asyncio|uvloop n=<n> <metric>=<value> ...`. The same script runs
on uvloop with --uvloop (Debian's python3-uvloop).
"""

import asyncio
import sys
import time


async def w1(n):
    await asyncio.sleep(0)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        await asyncio.sleep(0)
    return (time.perf_counter_ns() - t0) / n


async def w2_task():
    async with asyncio.timeout(10):
        await asyncio.sleep(0.001)


fired = 0


async def w2b_task():
    global fired
    try:
        async with asyncio.timeout(0.001):
            await asyncio.sleep(10)
    except TimeoutError:
        fired += 1


async def spawn_and_wait(n, body):
    t0 = time.perf_counter_ns()
    tasks = [asyncio.create_task(body()) for _ in range(n)]
    for t in tasks:
        await t
    return (time.perf_counter_ns() - t0) / 1e6


async def w3(n):
    tasks = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(n)]
    await asyncio.sleep(0)  # every task starts and parks
    t0 = time.perf_counter_ns()
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks)
    return (time.perf_counter_ns() - t0) / 1e6


async def w5_registration(n):
    fut = asyncio.get_running_loop().create_future()

    def cb(f):
        pass

    t0 = time.perf_counter_ns()
    for _ in range(n):
        fut.add_done_callback(cb)
        fut.remove_done_callback(cb)
    return (time.perf_counter_ns() - t0) / n


async def w5_scope(n):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        async with asyncio.timeout(10):
            pass
    return (time.perf_counter_ns() - t0) / n


def main():
    args = sys.argv[1:]
    name = "asyncio"
    if args and args[0] == "--uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        name = "uvloop"
        args = args[1:]
    if len(args) != 2 or int(args[1]) <= 0:
        print("usage: asyncio_bench.py [--uvloop] W1|W2|W2b|W3|W5reg|W5scope <n>", file=sys.stderr)
        return 2
    w, n = args[0], int(args[1])
    if w == "W1":
        print("W1 %s n=%d ns_per_op=%.2f" % (name, n, asyncio.run(w1(n))))
    elif w == "W2":
        print("W2 %s n=%d ms=%.3f fired=0" % (name, n, asyncio.run(spawn_and_wait(n, w2_task))))
    elif w == "W2b":
        ms = asyncio.run(spawn_and_wait(n, w2b_task))
        print("W2b %s n=%d ms=%.3f fired=%d" % (name, n, ms, fired))
    elif w == "W3":
        print("W3 %s n=%d ms=%.3f" % (name, n, asyncio.run(w3(n))))
    elif w == "W5reg":
        print("W5reg %s n=%d ns_per_op=%.2f" % (name, n, asyncio.run(w5_registration(n))))
    elif w == "W5scope":
        print("W5scope %s n=%d ns_per_op=%.2f" % (name, n, asyncio.run(w5_scope(n))))
    else:
        print("asyncio_bench.py: unknown workload %s" % w, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
