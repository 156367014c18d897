#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that the includes of runtime/ point only down the layers.

Usage: check_layers.py RUNTIME_DIR

The layers are those of docs/runtime-layout.md: (0) what every layer may use, (1) clock and
deadline queue, (2) cancellation tree, (3) tasks and scheduler, (4) libuv awaitables, (5)
composition, and the umbrella headers on top. Every header and source file of
RUNTIME_DIR/include/uvasync and RUNTIME_DIR/src has a layer in LAYERS below; a file may include
files of its own layer or of a lower one. Fails on an include that points up, and on a file
that has no layer yet (a new file gets one here, next to the concept it belongs to).
"""

import pathlib
import re
import sys

UMBRELLA = 6

# Paths relative to RUNTIME_DIR. A trailing "/" covers every file below that folder that is
# not named on its own.
LAYERS = {
    # 0: below every layer: the export mark, the libuv error category, the library's errors,
    # the intrusive list.
    "include/uvasync/detail/export.hpp": 0,
    "include/uvasync/detail/requires_cxx20.hpp": 0,
    "include/uvasync/detail/intrusive_list.hpp": 0,
    "include/uvasync/error.hpp": 0,
    "include/uvasync/uv_error.hpp": 0,
    "include/uvasync/io/error.hpp": 0,  # forwards to uv_error.hpp
    "src/uv_error.cpp": 0,
    "src/error.cpp": 0,  # the prototype of timeout_error's text (error.hpp)
    # 1: clock and deadline queue.
    "include/uvasync/clock.hpp": 1,
    "include/uvasync/detail/deadline_entry.hpp": 1,
    "include/uvasync/detail/deadline_queue.hpp": 1,
    "include/uvasync/detail/timed_call_node.hpp": 1,
    "src/deadline_queue.cpp": 1,
    # 2: cancellation tree, and the inbox that carries a cancellation from another thread.
    "include/uvasync/detail/cancel_node.hpp": 2,
    "include/uvasync/detail/scope.hpp": 2,
    "src/cancel_node.cpp": 2,
    "src/inbox.hpp": 2,
    # 3: tasks and scheduler, and the cancellation points that park a task (parked_wait).
    "include/uvasync/detail/task_core.hpp": 3,
    "include/uvasync/detail/runtime_state.hpp": 3,
    "include/uvasync/detail/park.hpp": 3,
    "include/uvasync/detail/token_wait.hpp": 3,
    "include/uvasync/detail/list_waiter.hpp": 3,
    "include/uvasync/detail/root.hpp": 3,
    "include/uvasync/detail/spawn.hpp": 3,
    "include/uvasync/detail/local_map.hpp": 3,
    "include/uvasync/cancel.hpp": 3,  # tokens and sources; `token.cancelled()` parks a task
    "include/uvasync/task.hpp": 3,
    "include/uvasync/task_handle.hpp": 3,
    "include/uvasync/outcome.hpp": 3,
    "include/uvasync/runtime.hpp": 3,
    "include/uvasync/sleep.hpp": 3,
    "include/uvasync/timed_call.hpp": 3,
    "include/uvasync/task_local.hpp": 3,
    "include/uvasync/introspection.hpp": 3,  # what runtime::tasks() returns
    "include/uvasync/trace.hpp": 3,  # the tracer of runtime_options
    "include/uvasync/detail/task_info.hpp": 3,
    "include/uvasync/detail/trace_points.hpp": 3,
    "include/uvasync/detail/wait_kind.hpp": 3,
    "src/task_core.cpp": 3,
    "src/this_task.cpp": 3,
    "src/runtime_state.cpp": 3,
    "src/runtime_cold.hpp": 3,
    "src/runtime_handles.hpp": 3,
    "src/run_queue.cpp": 3,
    "src/deadline_timer.cpp": 3,
    "src/timed_call.cpp": 3,
    "src/cross_thread.cpp": 3,
    "src/shutdown.cpp": 3,
    "src/runtime.cpp": 3,
    # 4: libuv awaitables: the one I/O lifecycle, requests, every I/O object, the timer.
    "include/uvasync/detail/handle_state.hpp": 4,
    "include/uvasync/detail/request.hpp": 4,
    "include/uvasync/detail/accept_awaiter.hpp": 4,
    "include/uvasync/io/": 4,
    "include/uvasync/timer.hpp": 4,
    "src/handle_state.cpp": 4,
    "src/timer.cpp": 4,
    "src/io/": 4,
    # 5: composition.
    "include/uvasync/timeout.hpp": 5,
    "include/uvasync/task_group.hpp": 5,
    "include/uvasync/exception_group.hpp": 5,
    "include/uvasync/gather.hpp": 5,
    "include/uvasync/shield.hpp": 5,
    "include/uvasync/wait_for.hpp": 5,
    "include/uvasync/wait_any.hpp": 5,
    "include/uvasync/as_completed.hpp": 5,
    "include/uvasync/as_outcome.hpp": 5,
    "include/uvasync/sync/": 5,
    "include/uvasync/detail/child_set.hpp": 5,
    "include/uvasync/detail/completion_set.hpp": 5,
    "include/uvasync/detail/unit_hold.hpp": 5,  # the sync primitives' guard and permit
    "include/uvasync/detail/deferred.hpp": 5,
    "include/uvasync/detail/scoped_body.hpp": 5,
    "src/child_set.cpp": 5,
    "src/introspection.cpp": 5,  # the dump walks task groups (child_set) as well as tasks
    "src/future.cpp": 5,
    # The umbrella headers include whole layers.
    "include/uvasync/uvasync.hpp": UMBRELLA,
    "include/uvasync/io.hpp": UMBRELLA,
}

NAMES = ["shared", "clock and deadlines", "cancellation", "tasks and scheduler",
         "libuv awaitables", "composition", "umbrella"]

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.MULTILINE)


def layer_of(rel: str):
    if rel in LAYERS:
        return LAYERS[rel]
    best = None
    for key, layer in LAYERS.items():
        if key.endswith("/") and rel.startswith(key) and (best is None or len(key) > len(best[0])):
            best = (key, layer)
    return None if best is None else best[1]


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = pathlib.Path(sys.argv[1]).resolve()
    files = sorted(p for d in ("include/uvasync", "src") for p in (root / d).rglob("*")
                   if p.suffix in (".hpp", ".cpp", ".h"))
    if not files:
        print(f"check_layers: no source files under {root}", file=sys.stderr)
        return 1
    errors = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        mine = layer_of(rel)
        if mine is None:
            errors.append(f"{rel}: no layer: add it to LAYERS in tests/check_layers.py")
            continue
        for kind, name in INCLUDE.findall(path.read_text(encoding="utf-8")):
            if " " in name:
                continue  # requires_cxx20.hpp's deliberate error message, not a file
            if kind == "<":
                if not name.startswith("uvasync/"):
                    continue  # the standard library, libuv, the system
                target = root / "include" / name
            else:
                target = path.parent / name
            target_rel = target.resolve().relative_to(root).as_posix() if target.exists() else None
            if target_rel is None:
                errors.append(f"{rel}: includes {name}, which is not in {root}")
                continue
            theirs = layer_of(target_rel)
            if theirs is None:
                continue  # reported for that file itself
            if theirs > mine:
                errors.append(f"{rel} ({mine}, {NAMES[mine]}) includes {target_rel} "
                              f"({theirs}, {NAMES[theirs]}): an include pointing up the layers")
    for e in errors:
        print(e)
    print(f"check_layers: {len(files)} files, {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
