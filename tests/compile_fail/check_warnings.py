#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compiles tests/compile_fail/discarded_awaitables.cpp once per case.

    check_warnings.py SOURCE CASES COMPILER ARGS...

CASE=0 must compile with -Wall -Werror; every other case must fail with a diagnostic about a
discarded [[nodiscard]] value (a forgotten co_await is never silent).
"""
import subprocess
import sys


def compile_case(cmd, source, case):
    return subprocess.run(cmd + ["-Wall", "-Werror", "-fsyntax-only", f"-DCASE={case}", source],
                          capture_output=True, text=True)


def main() -> int:
    source, cases, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    failures = 0
    r = compile_case(cmd, source, 0)
    if r.returncode != 0:
        print("CASE 0 (everything awaited) does not compile:\n" + r.stderr, file=sys.stderr)
        return 1
    for case in range(1, cases + 1):
        r = compile_case(cmd, source, case)
        if r.returncode == 0 or "nodiscard" not in r.stderr:
            failures += 1
            print(f"CASE {case}: a discarded awaitable compiled without a nodiscard error",
                  file=sys.stderr)
            print(r.stderr[-2000:], file=sys.stderr)
        else:
            print(f"CASE {case}: rejected")
    print(f"check_warnings: {cases} discarded awaitables, {failures} silent")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
