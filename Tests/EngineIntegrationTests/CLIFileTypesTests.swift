import CXattr
import Foundation
import Testing

@testable import BackupEngine

#if canImport(Glibc)
  import Glibc
#endif

/// Issue 15 §1, every kind of file restored exactly: a tree of every file type goes through the real binary's
/// `backup` and `restore` into a fresh directory and comes back byte for byte and stat for stat.
@Suite struct CLIFileTypesTests {
  /// A path held as `FSName` holds names (escaped bytes for a name that is not UTF-8).
  typealias Path = String

  static func lstatAt(_ p: Path) -> stat? {
    var st = stat()
    return FSName.withCString(p) { lstat($0, &st) } == 0 ? st : nil
  }

  /// The relative paths below `root` (not `root` itself), read as bytes.
  static func walk(_ root: Path, _ rel: Path = "") -> [Path] {
    let dir = rel.isEmpty ? root : root + "/" + rel
    guard let d = FSName.withCString(dir, { opendir($0) }) else { return [] }
    var names: [Path] = []
    while let e = readdir(d) {
      let n = withUnsafeBytes(of: e.pointee.d_name) { FSName.decode($0.prefix { $0 != 0 }) }
      if n != "." && n != ".." { names.append(n) }
    }
    closedir(d)
    var out: [Path] = []
    for n in names {
      let r = rel.isEmpty ? n : rel + "/" + n
      out.append(r)
      if let st = lstatAt(root + "/" + r), st.st_mode & S_IFMT == S_IFDIR { out += walk(root, r) }
    }
    return out
  }

  static func contents(_ p: Path) -> [UInt8]? {
    let fd = FSName.withCString(p) { open($0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK) }
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let n = read(fd, &buf, buf.count)
      if n <= 0 { break }
      out += buf[0..<n]
    }
    return out
  }

  static func linkTarget(_ p: Path) -> [UInt8] {
    var b = [CChar](repeating: 0, count: 4096)
    let n = FSName.withCString(p) { readlink($0, &b, b.count) }
    return n < 0 ? [] : b[0..<n].map { UInt8(bitPattern: $0) }
  }

  static func xattrs(_ p: Path) -> [String: [UInt8]] {
    let (list, error) = FileMetadata.readXattrs(p)
    #expect(error == nil, "\(p): \(error ?? "")")
    return Dictionary(list.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
  }

  static func setXattr(_ p: Path, _ name: String, _ value: [UInt8]) -> Int32 {
    FSName.withCString(p) { path in value.withUnsafeBytes { lsetxattr(path, name, $0.baseAddress, $0.count, 0) } }
  }

  /// A directory where `user.*` extended attributes can be set: the test directory, else one under the package
  /// (tmpfs and ext4 take them; some overlay or network file systems do not). Nil when none does.
  static func xattrCapableDirectory(candidates: [String]) -> String? {
    for c in candidates {
      try? FileManager.default.createDirectory(atPath: c, withIntermediateDirectories: true)
      let probe = c + "/.xattr-probe-\(UUID().uuidString)"
      guard FileManager.default.createFile(atPath: probe, contents: Data()) else { continue }
      defer { unlink(probe) }
      if setXattr(probe, "user.botrt-probe", [1]) == 0 { return c }
    }
    return nil
  }

  /// A POSIX access ACL as Linux stores it in `system.posix_acl_access` (version 2; entries tag, perm, id):
  /// owner rw-, user 1001 r--, group r--, mask r--, other r--.
  static let acl: [UInt8] = {
    var w = ByteWriter()
    w.u32(2)
    for (tag, perm, id) in [
      (1, 6, UInt32.max), (2, 4, 1001), (4, 4, UInt32.max), (0x10, 4, UInt32.max), (0x20, 4, UInt32.max),
    ] {
      w.bytes([UInt8(tag), 0, UInt8(perm), 0])
      w.u32(id)
    }
    return w.data
  }()

  @Test func everyKindOfFileRestoresExactly() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let isRoot = geteuid() == 0
    let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().path
    let scratch = package + "/.build/test-xattr-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    // Fail, not skip, when no directory takes user xattrs: the test must prove they come back.
    let base = try #require(
      Self.xattrCapableDirectory(candidates: [h.dir, scratch, "/dev/shm/botrt-xattr-\(UUID().uuidString)"]),
      "no directory here supports user.* extended attributes")
    defer { if base.hasPrefix("/dev/shm/") { try? FileManager.default.removeItem(atPath: base) } }
    let src = base + "/src"
    func path(_ rel: Path) -> Path { src + "/" + rel }
    func mkdir(_ rel: Path, _ mode: mode_t = 0o755) {
      #expect(FSName.withCString(path(rel)) { Glibc.mkdir($0, 0o700) } == 0, "\(rel)")
      #expect(FSName.withCString(path(rel)) { chmod($0, mode) } == 0)
    }
    func file(_ rel: Path, _ bytes: [UInt8], _ mode: mode_t = 0o644) {
      let fd = FSName.withCString(path(rel)) { open($0, O_WRONLY | O_CREAT | O_EXCL, 0o600) }
      #expect(fd >= 0, "\(rel): \(String(cString: strerror(errno)))")
      if !bytes.isEmpty { #expect(write(fd, bytes, bytes.count) == bytes.count) }
      #expect(fchmod(fd, mode) == 0)
      close(fd)
    }
    func times(_ rel: Path, _ sec: Int, _ nsec: Int) {
      var ts = [timespec(tv_sec: sec, tv_nsec: nsec), timespec(tv_sec: sec, tv_nsec: nsec)]
      #expect(FSName.withCString(path(rel)) { utimensat(AT_FDCWD, $0, &ts, AT_SYMLINK_NOFOLLOW) } == 0, "\(rel)")
    }
    let latin1 = FSName.decode([0x65, 0xE9, 0x74, 0xE9])  // "été" in Latin-1: not UTF-8
    #expect(FSName.isEscaped(latin1))
    try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
    mkdir("sub")
    mkdir("sticky", 0o1777)
    mkdir("\u{301}accent-first")  // a name that starts with a combining mark: "/" + it is one Swift character
    mkdir(latin1 + "-dir", 0o750)
    file("regular", (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) })
    file("empty", [])
    // One-blob files whose zeros are left as holes: at the end (the size is then set by ftruncate), and all of it.
    file("zero-tail", Array(repeating: 7, count: 5000) + Array(repeating: 0, count: 70_000))
    file("all-zero", Array(repeating: 0, count: 100_000))
    file("hard1", Array("linked twice\n".utf8), 0o640)
    #expect(FSName.withCString(path("hard1")) { a in FSName.withCString(path("sub/hard2")) { link(a, $0) } } == 0)
    #expect(symlink("does/not/exist", path("dangling")) == 0)
    #expect(symlink("sub", path("dirlink")) == 0)
    file(String(repeating: "n", count: 250), Array("long name".utf8))
    file("line\nbreak", Array("newline in the name".utf8))
    file(latin1, Array("Latin-1 name".utf8))
    file(latin1 + "-dir/inside", Array("below a Latin-1 directory".utf8), 0o600)
    file("\u{301}accent-first/inner", Array("accent".utf8))
    // Two names that are the same text to Swift (canonically equivalent) and two names to Linux.
    mkdir("caf\u{E9}")
    mkdir("cafe\u{301}")
    file("caf\u{E9}/composed", Array("NFC".utf8))
    file("cafe\u{301}/decomposed", Array("NFD".utf8))
    #expect(FSName.withCString(latin1) { symlink($0, path("to-latin1")) } == 0)  // a target that is not UTF-8
    file("setuid", Array("#!/bin/sh\n".utf8), 0o4755)
    file("setgid", Array("#!/bin/sh\n".utf8), 0o2755)
    file("old", Array("1970s".utf8))
    times("old", 86_400 * 400, 123_456_789)
    file("future", Array("far future".utf8))
    times("future", 4_102_444_800 + 86_400 * 365 * 50, 5)
    #expect(mkfifo(path("fifo"), 0o640) == 0)
    // 64 MiB with a small island of data in the middle: a hole on both sides.
    let island = Array("an island of data in a sea of holes\n".utf8)
    let sfd = open(path("sparse"), O_WRONLY | O_CREAT | O_EXCL, 0o644)
    #expect(sfd >= 0)
    #expect(ftruncate(sfd, 64 << 20) == 0)
    #expect(pwrite(sfd, island, island.count, 40 << 20) == island.count)
    close(sfd)
    var sst = try #require(Self.lstatAt(path("sparse")))
    #expect(Int(sst.st_blocks) * 512 <= 1 << 20, "the source file is not sparse here")
    #expect(Self.setXattr(path("regular"), "user.botrt", Array("value".utf8)) == 0)
    #expect(Self.setXattr(path("regular"), "user.binary", [0, 1, 2, 0xFF, 0]) == 0)
    #expect(Self.setXattr(path("sub"), "user.botrt", Array("on a directory".utf8)) == 0)
    #expect(Self.setXattr(path(latin1), "user.botrt", Array("on a Latin-1 name".utf8)) == 0)
    // An access ACL where the file system takes them (ext4 and tmpfs do).
    let aclSet = Self.setXattr(path("hard1"), "system.posix_acl_access", Self.acl) == 0
    if isRoot {
      #expect(mknod(path("null"), S_IFCHR | 0o666, makedev(1, 3)) == 0)
      // Foreign owners, restored by the ownership path (root restores owners).
      file("owned", Array("someone else's".utf8), 0o600)
      #expect(chown(path("owned"), 1001, 1002) == 0)
      #expect(chown(path("sub"), 1001, 1002) == 0)
      #expect(lchown(path("dangling"), 1001, 1002) == 0)
      #expect(chown(path("fifo"), 1002, 1001) == 0)
      // File capabilities (cap_net_raw+p, VFS_CAP_REVISION_2), kept by --keep-setid like set-id bits.
      file("capable", Array("#!/bin/sh\n".utf8), 0o755)
      var cap = ByteWriter()
      for v: UInt32 in [0x0200_0000, 1 << 13, 0, 0, 0] { cap.u32(v) }
      #expect(Self.setXattr(path("capable"), "security.capability", cap.data) == 0)
    }
    // A socket is left out, with a warning naming it.
    let sock = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let sockPath = Array(path("sock").utf8CString)
    let fits = sockPath.count <= MemoryLayout.size(ofValue: addr.sun_path)
    if fits {
      withUnsafeMutableBytes(of: &addr.sun_path) { b in
        for (i, c) in sockPath.enumerated() { b[i] = UInt8(bitPattern: c) }
      }
      let r = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          bind(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
      }
      #expect(r == 0)
    }
    close(sock)
    // Directory times last: making entries changes them.
    times("sub", 315_532_800, 7)
    times(latin1 + "-dir", 4_102_444_800, 0)

    #expect(try h.run(["init"]).code == 0)
    let b = try h.run(["backup", src])
    #expect(b.code == 0, "\(b.stderr)")
    #expect((b.result["errors"] as? [String] ?? ["?"]).isEmpty, "\(b.result)")
    if fits {
      #expect((b.result["warnings"] as? [String] ?? []).contains { $0.contains("socket") && $0.contains("src/sock") })
    }
    let out = h.dir + "/restored"
    let r = try h.run(["restore", "latest", "--target", out] + (isRoot ? ["--keep-setid"] : []))
    #expect(r.code == 0, "\(r.stderr)")
    #expect((r.result["warnings"] as? [String] ?? []).filter { !$0.contains("set-user-ID") }.isEmpty, "\(r.result)")
    let dst = out + "/src"

    // Entry by entry: the same names (as bytes), types, modes, owners, times, sizes, contents, targets, devices
    // and extended attributes.
    let expected = Self.walk(src).filter { $0 != "sock" }.sorted()
    let got = Self.walk(dst).sorted()
    #expect(got == expected, "restored \(got.map(FSName.display)) expected \(expected.map(FSName.display))")
    #expect(expected.count >= 20)
    for rel in [""] + expected {
      let a = try #require(Self.lstatAt(rel.isEmpty ? src : src + "/" + rel))
      guard let c = Self.lstatAt(rel.isEmpty ? dst : dst + "/" + rel) else {
        Issue.record("\(FSName.display(rel)) was not restored")
        continue
      }
      let what = FSName.display(rel)
      #expect(a.st_mode & S_IFMT == c.st_mode & S_IFMT, "\(what): type")
      var mode = a.st_mode & 0o7777
      if !isRoot && a.st_mode & S_IFMT == S_IFREG { mode &= ~0o6000 }  // cleared without --keep-setid
      if a.st_mode & S_IFMT != S_IFLNK { #expect(c.st_mode & 0o7777 == mode, "\(what): mode") }
      if isRoot { #expect(a.st_uid == c.st_uid && a.st_gid == c.st_gid, "\(what): owner") }
      #expect(a.st_mtim.tv_sec == c.st_mtim.tv_sec && a.st_mtim.tv_nsec == c.st_mtim.tv_nsec, "\(what): mtime")
      #expect(a.st_rdev == c.st_rdev, "\(what): device number")
      switch a.st_mode & S_IFMT {
      case S_IFREG:
        #expect(a.st_size == c.st_size, "\(what): size")
        #expect(Self.contents(src + "/" + rel) == Self.contents(dst + "/" + rel), "\(what): contents")
      case S_IFLNK:
        #expect(Self.linkTarget(src + "/" + rel) == Self.linkTarget(dst + "/" + rel), "\(what): link target")
      default: break
      }
      #expect(
        Self.xattrs(rel.isEmpty ? src : src + "/" + rel) == Self.xattrs(rel.isEmpty ? dst : dst + "/" + rel),
        "\(what): xattrs")
    }
    // Named checks, so that a comparison of two empty things cannot pass by accident.
    #expect(Self.xattrs(dst + "/regular")["user.botrt"] == Array("value".utf8))
    #expect(Self.xattrs(dst + "/regular")["user.binary"] == [0, 1, 2, 0xFF, 0])
    #expect(Self.xattrs(dst + "/sub")["user.botrt"] == Array("on a directory".utf8))
    #expect(Self.xattrs(dst + "/" + latin1)["user.botrt"] == Array("on a Latin-1 name".utf8))
    if aclSet { #expect(Self.xattrs(dst + "/hard1")["system.posix_acl_access"] == Self.acl) }
    #expect(Self.contents(dst + "/" + latin1) == Array("Latin-1 name".utf8))
    let h1 = try #require(Self.lstatAt(dst + "/hard1"))
    let h2 = try #require(Self.lstatAt(dst + "/sub/hard2"))
    #expect(h1.st_ino == h2.st_ino && h1.st_nlink == 2, "hard links restored as one inode")
    sst = try #require(Self.lstatAt(dst + "/sparse"))
    #expect(sst.st_size == 64 << 20)
    #expect(Int(sst.st_blocks) * 512 <= 1 << 20, "sparse file restored with \(sst.st_blocks) blocks allocated")
    #expect(Self.lstatAt(dst + "/all-zero").map { ($0.st_size, $0.st_blocks) } ?? (0, -1) == (100_000, 0))
    #expect(
      Self.lstatAt(dst + "/zero-tail").map { ($0.st_size, Int($0.st_blocks) * 512 <= 16 << 10) } ?? (0, false) == (
        75_000, true
      ))
    #expect(Self.lstatAt(dst + "/fifo").map { $0.st_mode & S_IFMT == S_IFIFO } == true)
    if isRoot {
      let dev = try #require(Self.lstatAt(dst + "/null"))
      #expect(dev.st_mode & S_IFMT == S_IFCHR && dev.st_rdev == makedev(1, 3))
      #expect(Self.lstatAt(dst + "/owned").map { ($0.st_uid, $0.st_gid) == (1001, 1002) } == true)
      #expect(Self.lstatAt(dst + "/setuid").map { $0.st_mode & 0o7777 } == 0o4755)
    }
    #expect(Self.lstatAt(dst + "/future")?.st_mtim.tv_sec == 4_102_444_800 + 86_400 * 365 * 50)
    // `copy` carries the new node fields to another repository: restored from there, the same entries come back.
    let copyRepo = "file://\(h.dir)/copy"
    let c = try h.run(["copy", "--all", "--to", copyRepo, "--to-kms", h.kmsURL, "--init-if-missing"])
    #expect(c.code == 0, "\(c.stderr)")
    let fromCopy = h.dir + "/from-copy"
    let rc = try h.run(
      ["restore", "latest", "--target", fromCopy] + (isRoot ? ["--keep-setid"] : []), repo: copyRepo)
    #expect(rc.code == 0, "\(rc.stderr)")
    #expect(Self.walk(fromCopy + "/src").sorted() == expected)
    for rel in expected {
      #expect(Self.xattrs(dst + "/" + rel) == Self.xattrs(fromCopy + "/src/" + rel), "\(FSName.display(rel))")
      #expect(Self.lstatAt(dst + "/" + rel)?.st_rdev == Self.lstatAt(fromCopy + "/src/" + rel)?.st_rdev)
    }
    // A name that is not UTF-8 is listed with \xE9 escapes, and selected for a restore the same way.
    let ls = try h.run(["ls", "latest"])
    #expect(ls.code == 0 && ls.text.contains("/src/e\\xE9t\\xE9\n"), "\(ls.text)")
    let one = try h.run(["restore", "latest", "--target", h.dir + "/one", "--path", "src/e\\xE9t\\xE9"])
    #expect(one.code == 0, "\(one.stderr)")
    #expect(Self.contents(h.dir + "/one/src/" + latin1) == Array("Latin-1 name".utf8))
  }

  /// Without the privilege, what cannot be made is named in warnings and the rest is restored: a device node
  /// (CAP_MKNOD) and a `trusted.*` attribute (CAP_SYS_ADMIN), restored by root with both capabilities dropped.
  @Test(.enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
  func whatCannotBeMadeIsNamedAndTheRestoreGoesOn() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let src = h.dir + "/src"
    try h.write("src/plain", Data("plain".utf8))
    #expect(mknod(src + "/null", S_IFCHR | 0o666, makedev(1, 3)) == 0)
    #expect(mkfifo(src + "/fifo", 0o600) == 0)
    #expect(Self.setXattr(src + "/plain", "trusted.botrt", Array("root only".utf8)) == 0)
    #expect(Self.setXattr(src + "/plain", "user.botrt", Array("anyone".utf8)) == 0)
    #expect(try h.run(["init"]).code == 0)
    let b = try h.run(["backup", src])
    #expect(b.code == 0, "\(b.stderr)")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
    p.arguments =
      ["--bounding-set", "-mknod,-sys_admin", "--", try CLIHarness.binary(), "restore", "latest", "--target"]
      + [h.dir + "/out", "--repo", h.repoURL, "--kms", h.kmsURL, "--quiet", "--json"]
    let out = Pipe()
    let err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    #expect(p.terminationStatus == 0, "\(stderr)")
    let result =
      String(decoding: stdout, as: UTF8.self).split(separator: "\n").compactMap {
        try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
      }.last { $0["command"] != nil } ?? [:]
    let warnings = result["warnings"] as? [String] ?? []
    #expect(warnings.contains { $0.contains("device node") && $0.contains("src/null") }, "\(result)")
    #expect(
      warnings.contains { $0.contains("extended attributes") && $0.contains("src/plain: trusted.botrt") }, "\(result)")
    #expect(stderr.contains("warning: did not restore 1 device node(s) (src/null)"), "\(stderr)")
    #expect(Self.lstatAt(h.dir + "/out/src/null") == nil)
    #expect(Self.lstatAt(h.dir + "/out/src/fifo").map { $0.st_mode & S_IFMT == S_IFIFO } == true)
    #expect(Self.contents(h.dir + "/out/src/plain") == Array("plain".utf8))
    #expect(Self.xattrs(h.dir + "/out/src/plain") == ["user.botrt": Array("anyone".utf8)])
  }

  /// Linux's device number encoding (glibc's `makedev`, a macro Swift does not import).
  static func makedevNumber(_ major: UInt64, _ minor: UInt64) -> UInt64 {
    (major & 0xFFF) << 8 | (major & ~0xFFF) << 32 | (minor & 0xFF) | (minor & ~0xFF) << 12
  }
}

private func makedev(_ major: UInt64, _ minor: UInt64) -> dev_t { dev_t(CLIFileTypesTests.makedevNumber(major, minor)) }
