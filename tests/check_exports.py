#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that a shared libuvasync exports only uvasync's namespace.

Usage: check_exports.py NM LIBRARY [BUILD_ROOT]

With BUILD_ROOT it also checks the other direction: every `uvasync::` symbol that the objects of
the tests and examples built there (`*.o` under tests/ and examples/) use without defining is
exported. Those objects include the headers the way a user's program does, so a compiled
function that an inline or template function calls but that lacks `UVASYNC_API` shows up here
instead of as an undefined reference in a program linking the shared library.

Every defined dynamic symbol must demangle to something in namespace `uvasync` (a function, a
variable, or the typeinfo/vtable of one of its classes). The library is built with hidden
visibility; what it exports is what the installed headers mark `UVASYNC_API`, so a symbol of
libstdc++, libuv or a private helper here means a leak, and an empty list means the check
looked at the wrong file.
"""

import os
import re
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


def symbols(nm: str, args: list[str]) -> list[str]:
    """The demangled names `nm` lists (the name is the last field of each line)."""
    out = subprocess.run([nm, "--demangle", *args], check=True, capture_output=True,
                         text=True).stdout
    # "<address> <type> <name>", or "<type> <name>" for an undefined symbol; a demangled name
    # has spaces. Lines naming the object file ("x.o:") and blank lines do not match.
    line_format = re.compile(r"^\s*(?:[0-9a-fA-F]+\s+)?[A-Za-z?]\s(.+)$")
    return [m.group(1) for m in map(line_format.match, out.splitlines()) if m]


def user_objects(build_root: str) -> list[str]:
    found = []
    for top in ("tests", "examples"):
        for dirpath, dirs, files in os.walk(os.path.join(build_root, top)):
            # The consumer test's own builds hold a copy of the library's objects.
            dirs[:] = [d for d in dirs if d != "consumer"]
            found += [os.path.join(dirpath, f) for f in files if f.endswith(".o")]
    return sorted(found)


def private_class_data() -> set[str]:
    """Class data of the types declared only in the library's private headers (runtime/src).

    White-box tests include those headers; under UBSan's vptr check their objects refer to
    such a type's typeinfo. No user can (the headers are not installed), so it need not be
    exported."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runtime", "src")
    declaration = re.compile(r"^(?:struct|class)\s+(?:\[\[[^]]*\]\]\s+)?(\w+)[^;]*$", re.M)
    names = set()
    for dirpath, _, files in os.walk(src):
        for f in files:
            if f.endswith(".hpp"):
                with open(os.path.join(dirpath, f), encoding="utf-8") as header:
                    names.update(declaration.findall(header.read()))
    return {f"{prefix}uvasync::detail::{name}" for name in names for prefix in CLASS_DATA}


def missing_exports(nm: str, exported: set[str], build_root: str) -> tuple[int, list[str]]:
    """Undefined uvasync symbols of the user objects that neither they nor the library define."""
    objects = user_objects(build_root)
    if not objects:
        return 0, []
    used = set(n for n in symbols(nm, ["--undefined-only", *objects]) if in_uvasync(n))
    defined = set(symbols(nm, ["--defined-only", *objects]))
    return len(objects), sorted(used - defined - exported - private_class_data())


def main() -> int:
    nm, library = sys.argv[1], sys.argv[2]
    names = symbols(nm, ["-D", "--defined-only", library])
    names = [n for n in names if n not in LINKER_SYMBOLS and not n.startswith("UVASYNC")]
    leaks = [n for n in names if not in_uvasync(n)]
    ours = [n for n in names if in_uvasync(n)]
    print(f"{library}: {len(ours)} uvasync symbols exported, {len(leaks)} others")
    for n in leaks:
        print("  not in namespace uvasync:", n)
    if not ours:
        print("no uvasync symbol exported: wrong file, or nothing is marked UVASYNC_API")
        return 1
    failed = bool(leaks)
    if len(sys.argv) > 3:
        count, missing = missing_exports(nm, set(ours), sys.argv[3])
        print(f"{count} objects of tests and examples checked, {len(missing)} symbols they use "
              "are not exported")
        for n in missing:
            print("  used but not exported (missing UVASYNC_API):", n)
        failed = failed or bool(missing)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
