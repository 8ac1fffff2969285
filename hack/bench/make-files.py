#!/usr/bin/env python3
"""Writes a reproducible tree of many small files, the shape of a mail spool or an object cache (issue 18).

    make-files.py DEST --files N --dirs D [--seed S]      # create: N files of 0.5 to 8 KiB in D directories
    make-files.py DEST --files N --dirs D --change PCT    # rewrite every (100/PCT)th file with new content

Contents are text-like (a fixed corpus of words, cut at random places, behind a line unique to the file and the
seed), so they compress about as mail does and no two files are the same. The same arguments always make the same
tree. Prints what it wrote.
"""
import argparse, os, random, sys

ap = argparse.ArgumentParser()
ap.add_argument("dest")
ap.add_argument("--files", type=int, required=True)
ap.add_argument("--dirs", type=int, required=True)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--change", type=float, default=0.0, help="percent of the files to rewrite")
a = ap.parse_args()
if a.files < 1 or a.dirs < 1 or not 0 <= a.change <= 100:
    sys.exit("make-files: --files and --dirs must be at least 1, --change 0-100")

words = ("the of and to in is for on that with as was at by from this be are it or an have not but which one "
         "message received subject date reply forward meeting invoice order account password delivery status "
         "server client request response error warning update backup restore cluster node volume snapshot").split()
rng = random.Random(1234)
corpus = " ".join(rng.choice(words) for _ in range(400_000)).encode()

def content(i, generation):
    r = random.Random(a.seed * 1_000_003 + i * 7 + generation)
    size = r.randint(512, 8192)
    head = b"Message-Id: <%d.%d.%016x@bench>\n" % (i, generation, r.getrandbits(64))
    off = r.randrange(0, len(corpus) - 8192)
    return (head + corpus[off:off + size])[:size]

def path(i):
    return os.path.join(a.dest, "d%04d" % (i % a.dirs), "f%07d.eml" % i)

if a.change:
    step = max(1, round(100 / a.change))
    n = 0
    for i in range(0, a.files, step):
        with open(path(i), "wb") as f:
            f.write(content(i, 1))
        n += 1
    print("changed %d of %d files" % (n, a.files))
else:
    for d in range(a.dirs):
        os.makedirs(os.path.join(a.dest, "d%04d" % d), exist_ok=True)
    total = 0
    for i in range(a.files):
        c = content(i, 0)
        with open(path(i), "wb") as f:
            f.write(c)
        total += len(c)
    print("wrote %d files, %d bytes, in %d directories" % (a.files, total, a.dirs))
