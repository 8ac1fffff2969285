#!/usr/bin/env python3
"""Replaces one benchmark's section of a Markdown file (docs/benchmarks.md) with new text.

    write-section.py FILE NAME TEXT

The section is what lies between `<!-- NAME:begin -->` and `<!-- NAME:end -->`; it is appended when the file has
none. Used by hack/bench-engine.sh (engine-bench) and hack/bench-files.sh (files-bench).
"""
import os, re, sys

path, name, table = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
block = f"{begin}\n{table}\n{end}"
if begin in text:
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: block, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
