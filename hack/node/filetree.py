#!/usr/bin/env python3
"""A tree of every kind of file, and a listing that compares two trees byte for byte and stat for stat.

  filetree.py make DIR      creates DIR/types (as root): regular files of several owners and modes (0600, 0700,
                            set-uid, set-gid), a sparse file, hard links, a dangling symlink, a 250-byte name, a name
                            with a newline, a Latin-1 name (not UTF-8), a fifo, a character device, user.* xattrs on
                            a file, a directory and a Latin-1 name, a POSIX access ACL, times of 1980
  filetree.py list DIR      prints one line per path below DIR: the name's bytes (hex), type, uid:gid, mode (with the
                            set-id bits), size, mtime (ns), the content's SHA-256, link target (hex), device numbers,
                            hard-link group, xattrs (name=hex, sorted), and whether a regular file is sparse (fewer
                            bytes allocated than its size)

Used by hack/node/pvc-e2e.sh (issue 15: every kind of file, restored exactly, on a real node).
"""
import hashlib
import os
import stat
import sys

# A POSIX access ACL as Linux stores it in system.posix_acl_access (version 2; entries tag, perm, id):
# user::rw-, user:1001:rw-, group::r--, mask::rw-, other::r--.
ACL = bytes(
    [2, 0, 0, 0,
     1, 0, 6, 0, 0xFF, 0xFF, 0xFF, 0xFF,
     2, 0, 6, 0, 0xE9, 0x03, 0, 0,
     4, 0, 4, 0, 0xFF, 0xFF, 0xFF, 0xFF,
     0x10, 0, 6, 0, 0xFF, 0xFF, 0xFF, 0xFF,
     0x20, 0, 4, 0, 0xFF, 0xFF, 0xFF, 0xFF])
OLD = 315532800  # 1980-01-01T00:00:00Z
SPARSE = 64 << 20


def make(root):
    t = os.path.join(root, "types").encode()
    os.mkdir(t, 0o755)

    def p(name):
        return os.path.join(t, name if isinstance(name, bytes) else name.encode())

    def write(name, data, mode, uid=0, gid=0):
        with open(p(name), "wb") as f:
            f.write(data)
        # The owner first: chown clears the set-id bits.
        os.chown(p(name), uid, gid)
        os.chmod(p(name), mode)

    write("private-0600", b"only its owner reads this\n", 0o600, 1001, 1001)
    write("script-0700", b"#!/bin/sh\necho hi\n", 0o700, 1002, 1002)
    write("setuid", b"set-uid program\n", 0o4755, 1001, 1001)
    write("setgid", b"set-gid program\n", 0o2755, 1001, 1002)
    write("acl", b"with an access ACL\n", 0o640, 1001, 1001)
    write("foreign-owner", b"owned by a user the node does not know\n", 0o640, 4242, 4343)
    write(b"\xe9t\xe9", b"a Latin-1 name\n", 0o644)
    write("with\nnewline", b"a name with a newline\n", 0o644)
    write("n" * 250, b"a 250-byte name\n", 0o644)
    write("hard1", b"one inode, two names\n", 0o644, 1001, 1001)
    os.link(p("hard1"), p("hard2"))
    # A sparse file: 64 MiB, with 4 KiB of data at 1 MiB and at the end.
    with open(p("sparse"), "wb") as f:
        f.truncate(SPARSE)
        f.seek(1 << 20)
        f.write(os.urandom(4096))
        f.seek(SPARSE - 4096)
        f.write(os.urandom(4096))
    os.symlink(b"does/not/exist", p("dangling"))
    os.mkdir(p("setgid-dir"), 0o2775)
    os.chown(p("setgid-dir"), 1001, 1002)
    os.chmod(p("setgid-dir"), 0o2775)
    os.mkfifo(p("fifo"), 0o640)
    os.chown(p("fifo"), 1002, 1001)
    os.chmod(p("fifo"), 0o640)
    os.mknod(p("null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chmod(p("null"), 0o666)
    os.setxattr(p("hard1"), "user.botrt", b"value")
    os.setxattr(p("hard1"), "user.binary", bytes([0, 1, 2, 0xFF, 0]))
    os.setxattr(p("setgid-dir"), "user.botrt", b"on a directory")
    os.setxattr(p(b"\xe9t\xe9"), "user.botrt", b"on a Latin-1 name")
    os.setxattr(p("acl"), "system.posix_acl_access", ACL)
    for dirpath, dirnames, filenames in os.walk(t, topdown=False):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), ns=(OLD * 10**9, OLD * 10**9 + 123456789), follow_symlinks=False)
    os.utime(t, ns=(OLD * 10**9, OLD * 10**9))


def listing(root):
    root = root.encode()
    inodes = {}
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            kind = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFIFO: "p",
                    stat.S_IFCHR: "c", stat.S_IFBLK: "b", stat.S_IFSOCK: "s"}[stat.S_IFMT(st.st_mode)]
            digest = link = dev = "-"
            sparse = ""
            size = st.st_size if kind in "fl" else "-"
            if kind == "f":
                h = hashlib.sha256()
                with open(full, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                digest = h.hexdigest()[:16]
                if st.st_size >= 1 << 20:
                    sparse = " sparse" if st.st_blocks * 512 < st.st_size // 2 else " dense"
            if kind == "l":
                link = os.readlink(full).hex()
            if kind in "cb":
                dev = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
            group = "-"
            if kind == "f" and st.st_nlink > 1:
                group = inodes.setdefault(st.st_ino, f"h{len(inodes)}")
            xattrs = []
            if kind != "l":
                for x in sorted(os.listxattr(full, follow_symlinks=False)):
                    xattrs.append(f"{x}={os.getxattr(full, x, follow_symlinks=False).hex()}")
            mtime = st.st_mtime_ns if kind != "d" else "-"
            lines.append(
                f"{rel.hex()} {kind} {st.st_uid}:{st.st_gid} {stat.S_IMODE(st.st_mode):o} {size} {mtime} "
                f"{digest} {link} {dev} {group} [{' '.join(xattrs)}]{sparse}")
    for line in sorted(lines):
        print(line)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "list"):
        sys.exit("usage: filetree.py make|list DIR")
    make(sys.argv[2]) if sys.argv[1] == "make" else listing(sys.argv[2])
