#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs a seed example on the virtual clock and compares what it prints with its expected output.

    check_output.py [--ignore-times] EXPECTED_FILE PROGRAM [ARGS...]

EXPECTED_FILE (examples/seed/expected/<name>.txt) holds the article's lines in the article's
order, each prefixed with the loop-clock time at which the example must print it ("[ 2.000s] ").
On the virtual clock the times are exact, so the whole output must match line for line: the
words, the order and the timings. With --ignore-times (for the C seed examples, which run on the
real clock, scaled down) the time prefixes are dropped on both sides first: the words and the
order must still match. Exits 1 with a diff otherwise.
"""
import difflib
import re
import subprocess
import sys

TIME_PREFIX = re.compile(r"^\[ *[0-9]+\.[0-9]+s\] ")


def main() -> int:
    args = sys.argv[1:]
    ignore_times = bool(args) and args[0] == "--ignore-times"
    if ignore_times:
        args = args[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        want = f.read().splitlines()
    run = subprocess.run(args[1:], capture_output=True, text=True, timeout=60, check=False)
    got = run.stdout.splitlines()
    sys.stderr.write(run.stderr)
    if run.returncode != 0:
        print(f"check_output: {args[1]} exited with status {run.returncode}", file=sys.stderr)
        return 1
    if ignore_times:
        print("\n".join(got))
        want = [TIME_PREFIX.sub("", line, count=1) for line in want]
        got = [TIME_PREFIX.sub("", line, count=1) for line in got]
    if got != want:
        print(f"check_output: output of {args[1]} differs from {args[0]}:", file=sys.stderr)
        sys.stderr.writelines(line + "\n" for line in difflib.unified_diff(
            want, got, "expected", "actual", lineterm=""))
        return 1
    if not ignore_times:
        print("\n".join(got))
    print(f"check_output: {len(got)} lines match {args[0]}" +
          (" (time prefixes ignored)" if ignore_times else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
