#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that a shared libuvasync exports only uvasync's namespace.

Usage: check_exports.py NM LIBRARY

Every defined dynamic symbol must demangle to something in namespace `uvasync` (a function, a
variable, or the typeinfo/vtable of one of its classes). The library is built with hidden
visibility; what it exports is what the installed headers mark `UVASYNC_API`, so a symbol of
libstdc++, libuv or a private helper here means a leak, and an empty list means the check
looked at the wrong file.
"""

import subprocess
import sys

# Names the linker defines in every shared object.
LINKER_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start"}

# Demangled prefixes of the compiler's data about a class.
CLASS_DATA = ("typeinfo for ", "typeinfo name for ", "vtable for ", "VTT for ",
              "construction vtable for ", "guard variable for ")


def in_uvasync(name: str) -> bool:
    for prefix in CLASS_DATA:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    # A function's return type may come first for templates ("void uvasync::..."); the name
    # itself is what counts: it starts with uvasync:: after an optional return type.
    head = name.split("(", 1)[0]
    return head.startswith("uvasync::") or " uvasync::" in head.split("<", 1)[0]


def main() -> int:
    nm, library = sys.argv[1], sys.argv[2]
    out = subprocess.run([nm, "-D", "--defined-only", "--demangle", library],
                         check=True, capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3:
            names.append(parts[2])
    names = [n for n in names if n not in LINKER_SYMBOLS and not n.startswith("UVASYNC")]
    leaks = [n for n in names if not in_uvasync(n)]
    ours = [n for n in names if in_uvasync(n)]
    print(f"{library}: {len(ours)} uvasync symbols exported, {len(leaks)} others")
    for n in leaks:
        print("  not in namespace uvasync:", n)
    if not ours:
        print("no uvasync symbol exported: wrong file, or nothing is marked UVASYNC_API")
        return 1
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
