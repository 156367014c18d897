#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that a shared libuvasync_c exports only uvasync_* symbols (nm -D --defined-only)."""
import subprocess
import sys

lib = sys.argv[1]
if not lib.endswith(".so") and ".so." not in lib:
    print(f"{lib}: not a shared library, nothing to check")
    sys.exit(0)
out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True,
                     text=True).stdout
names = [line.split()[-1] for line in out.splitlines() if line.strip()]
public = [n for n in names if n.startswith("uvasync_")]
foreign = [n for n in names if not n.startswith("uvasync_")]
for n in foreign:
    print(f"exported but not uvasync_*: {n}")
print(f"{len(public)} uvasync_* symbols exported, {len(foreign)} others")
sys.exit(1 if foreign or not public else 0)
