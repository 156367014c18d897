#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that each given shared libuvasync_c exports exactly the functions its header
declares UVASYNC_EXPORT (nm -D --defined-only): every one of them, and nothing else.

    check_exports.py HEADER LIBRARY.so [LIBRARY.so...]

A file that is not a shared library is an error, not a pass: a static archive has no export
table, so the test suite hands this check a shared build of the same objects instead.
"""
import re
import subprocess
import sys

EXPORT = re.compile(r"^UVASYNC_EXPORT\b[^(;]*?\b(uvasync_\w+)\s*\(", re.MULTILINE)


def check(lib: str, declared: set[str]) -> bool:
    with open(lib, "rb") as f:
        header = f.read(18)
    # An ELF shared object: the magic, then e_type ET_DYN (3) in the file's byte order.
    little = header[5:6] == b"\x01"
    e_type = int.from_bytes(header[16:18], "little" if little else "big")
    if header[:4] != b"\x7fELF" or e_type != 3:
        print(f"{lib}: not a shared library (ELF ET_DYN): nothing could be checked")
        return False
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True,
                         text=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    for n in sorted(names - declared):
        print(f"{lib}: exported but not declared UVASYNC_EXPORT: {n}")
    for n in sorted(declared - names):
        print(f"{lib}: declared UVASYNC_EXPORT but not exported: {n}")
    print(f"{lib}: {len(names & declared)} of {len(declared)} declared functions exported, "
          f"{len(names - declared)} other symbols")
    return names == declared


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        declared = set(EXPORT.findall(f.read()))
    if not declared:
        print(f"{sys.argv[1]}: no UVASYNC_EXPORT declarations found")
        return 1
    results = [check(lib, declared) for lib in sys.argv[2:]]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
