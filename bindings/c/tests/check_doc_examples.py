#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks that every C and C++ code example in docs/c-api.md is compiled code: a block marked
<!-- file: PATH --> must equal that file, one marked <!-- excerpt: PATH --> must appear in it
verbatim. The files are built (and run) by the test suite, so the examples cannot rot."""
import re
import sys
from pathlib import Path

root = Path(sys.argv[1])
doc = root / "docs" / "c-api.md"
lines = doc.read_text().split("\n")
failures = []
checked = 0
i = 0
while i < len(lines):
    m = re.match(r"^```(\w*)$", lines[i])
    if not m:
        i += 1
        continue
    lang = m.group(1)
    j = i + 1
    while lines[j] != "```":
        j += 1
    block = "\n".join(lines[i + 1 : j])
    if lang in ("c", "cpp"):
        k = i - 1
        while k >= 0 and lines[k].strip() == "":
            k -= 1
        marker = re.match(r"^<!-- (file|excerpt): (\S+) -->$", lines[k]) if k >= 0 else None
        if marker is None:
            failures.append(f"c-api.md:{i + 1}: a {lang} block without a file/excerpt marker")
        else:
            kind, path = marker.groups()
            text = (root / path).read_text()
            ok = block == text.rstrip("\n") if kind == "file" else block in text
            if not ok:
                failures.append(f"c-api.md:{i + 1}: the block differs from {path} ({kind})")
            checked += 1
    i = j + 1

for f in failures:
    print(f)
print(f"{checked} examples checked, {len(failures)} failed")
sys.exit(1 if failures or checked == 0 else 0)
