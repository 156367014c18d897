#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that every C++ code block of the given Markdown files is compiled by the build.

    check_doc_blocks.py SOURCE_ROOT FILE.md|DIR...

A DIR argument (runtime/include) stands for every header under it: the ```cpp blocks of their
`///` comments must each be an excerpt of a file under examples/ line by line, indentation
aside (examples/header_examples/header_examples.cpp holds them, clang-formatted).

A ```cpp block passes when it is, line for line, either a whole program under examples/ (the
file without its leading comment header, e.g. docs/tutorial.md's steps are
examples/tutorial/NN_*.cpp) or a contiguous excerpt of one (the README's echo server is part of
examples/readme_echo.cpp). examples/meson.build builds every such file, so a block that passes
compiles. Exits 1 naming each block that matches no file, with the closest file's diff.

A ```text block whose preceding paragraph links to an `examples/.../expected/*.txt` file (the
output a test compares, e.g. docs/introspection.md's dump) must equal that file.
"""
import difflib
import pathlib
import re
import sys

FENCE = re.compile(r"^```cpp\n(.*?)^```", re.S | re.M)
OUTPUT_FENCE = re.compile(r"\((?:\.\./)*(examples/[^)]*/expected/[^)]*\.txt)\)[^\n]*\n+```text\n(.*?)^```",
                          re.S | re.M)


def check_outputs(root: pathlib.Path, md: str, text: str) -> tuple:
    """The ```text blocks that show an expected output file: (checked, failures)."""
    checked = failures = 0
    for m in OUTPUT_FENCE.finditer(text):
        checked += 1
        expected = (root / m.group(1)).read_text(encoding="utf-8")
        line = text.count("\n", 0, m.start()) + 1
        if m.group(2) == expected:
            print(f"{md}:{line}: the output block is {m.group(1)}")
            continue
        failures += 1
        print(f"{md}:{line}: this output block differs from {m.group(1)}", file=sys.stderr)
        sys.stderr.writelines(difflib.unified_diff(
            expected.splitlines(keepends=True), m.group(2).splitlines(keepends=True),
            m.group(1), f"{md}:{line}"))
    return checked, failures


def without_header(text: str) -> str:
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith("//"):
        i += 1
    return "".join(lines[i:])


def doc_comment_text(text: str) -> str:
    """The `///` comment lines of a header, without the marker and one following space."""
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("///"):
            body = stripped[3:]
            out.append((body[1:] if body.startswith(" ") else body) + "\n")
    return "".join(out)


def stripped_lines(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip()) + "\n"


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    root = pathlib.Path(sys.argv[1])
    sources = {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
               for p in sorted((root / "examples").rglob("*.cpp"))}
    failures = 0
    checked = 0
    documents = []
    for arg in sys.argv[2:]:
        path = root / arg
        if path.is_dir():
            for header in sorted(path.rglob("*.hpp")):
                documents.append((header.relative_to(root).as_posix(),
                                  doc_comment_text(header.read_text(encoding="utf-8")), True))
        else:
            documents.append((arg, path.read_text(encoding="utf-8"), False))
    flat_sources = {p: stripped_lines(s) for p, s in sources.items()}
    for md, text, is_header in documents:
        if not is_header:
            n, bad = check_outputs(root, md, text)
            checked += n
            failures += bad
        for m in FENCE.finditer(text):
            block = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            checked += 1
            if is_header:
                # Line numbers count comment lines only; indentation is clang-format's.
                whole = []
                part = [p for p, s in flat_sources.items() if stripped_lines(block) in s]
            else:
                whole = [p for p, s in sources.items() if without_header(s) == block]
                part = [p for p, s in sources.items() if block in s]
            if whole:
                print(f"{md}:{line}: the whole of {whole[0]}")
                continue
            if part:
                print(f"{md}:{line}: an excerpt of {part[0]}")
                continue
            failures += 1
            closest = max(sources, key=lambda p: difflib.SequenceMatcher(
                None, without_header(sources[p]), block).ratio())
            print(f"{md}:{line}: this cpp block is not compiled: it is neither a file under "
                  f"examples/ nor an excerpt of one. Closest: {closest}", file=sys.stderr)
            sys.stderr.writelines(difflib.unified_diff(
                without_header(sources[closest]).splitlines(keepends=True),
                block.splitlines(keepends=True), closest, f"{md}:{line}"))
    print(f"check_doc_blocks: {checked} blocks, {failures} not compiled or not matching")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
