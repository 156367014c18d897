#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs a seed example on the virtual clock and compares what it prints with its expected output.

    check_output.py [--stderr] EXPECTED_FILE PROGRAM [ARGS...]

EXPECTED_FILE (examples/seed/expected/<name>.txt) holds the article's lines in the article's
order, each prefixed with the loop-clock time at which the example must print it ("[ 2.000s] ").
On the virtual clock the times are exact, so the whole output must match line for line: the
words, the order and the timings. Exits 1 with a diff otherwise. With --stderr the program's
standard error is compared instead (examples/introspection/trace_log.cpp logs there).
"""
import difflib
import subprocess
import sys


def main() -> int:
    args = sys.argv[1:]
    use_stderr = bool(args) and args[0] == "--stderr"
    if use_stderr:
        args = args[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    sys.argv = [sys.argv[0]] + args
    with open(sys.argv[1], encoding="utf-8") as f:
        want = f.read().splitlines()
    run = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=60, check=False)
    got = (run.stderr if use_stderr else run.stdout).splitlines()
    sys.stderr.write(run.stdout if use_stderr else run.stderr)
    if run.returncode != 0:
        print(f"check_output: {sys.argv[2]} exited with status {run.returncode}", file=sys.stderr)
        return 1
    if got != want:
        print(f"check_output: output of {sys.argv[2]} differs from {sys.argv[1]}:", file=sys.stderr)
        sys.stderr.writelines(line + "\n" for line in difflib.unified_diff(
            want, got, "expected", "actual", lineterm=""))
        return 1
    print("\n".join(got))
    print(f"check_output: {len(got)} lines match {sys.argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
