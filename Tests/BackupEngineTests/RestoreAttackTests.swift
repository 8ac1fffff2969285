import Foundation
import Logging
import Testing

@testable import BackupEngine

#if canImport(Glibc)
  import Glibc
#endif

/// Restore into a target an attacker can write to: pre-planted hard links and symlinks, directories swapped for
/// symlinks at fixed points of the restore and by a thread racing it. Whatever happens to the restore, nothing
/// outside the target is written, truncated, chmod-ed or chown-ed.
@Suite struct RestoreAttackTests {
  struct Fixture {
    let dir: String
    let repo: Repository
    let snapshot: Snapshot
    let index: MasterIndex
    let big: Data

    var target: String { dir + "/target" }
    var outside: String { dir + "/outside" }

    /// A snapshot of `src` with small and multi-blob files at two levels, a 0750 directory and set-id files; and
    /// an `outside` directory (0755) holding `secret` and `big` (0600), which must never change.
    init(smallFiles: Int = 3, raceFiles: Int = 0) async throws {
      dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-rattack-\(UUID().uuidString)").path
      big = Data(Crypto.randomBytes(4 << 20))
      let src = dir + "/src"
      try FileManager.default.createDirectory(atPath: src + "/d/e", withIntermediateDirectories: true)
      try FileManager.default.createDirectory(atPath: src + "/shared", withIntermediateDirectories: true)
      try makeFile(atPath: src + "/a.txt", contents: Data("restored a\n".utf8))
      try makeFile(atPath: src + "/big.bin", contents: big)
      for i in 0..<smallFiles { try makeFile(atPath: src + "/d/f\(i)", contents: Data("file \(i)\n".utf8)) }
      try makeFile(atPath: src + "/d/big2.bin", contents: big)
      try makeFile(atPath: src + "/d/e/g.txt", contents: Data("deep\n".utf8))
      if raceFiles > 0 {
        try FileManager.default.createDirectory(atPath: src + "/r", withIntermediateDirectories: true)
      }
      for i in 0..<raceFiles { try makeFile(atPath: src + "/r/f\(i)", contents: Data("race \(i)\n".utf8)) }
      try makeFile(atPath: src + "/suid", contents: Data("#!/bin/sh\n".utf8))
      try makeFile(atPath: src + "/sgid", contents: Data("#!/bin/sh\n".utf8))
      chmod(src + "/suid", 0o4755)
      chmod(src + "/sgid", 0o2755)
      chmod(src + "/shared", 0o2775)
      chmod(src + "/d", 0o750)
      try makeFile(atPath: dir + "/kek", contents: Data(Crypto.randomBytes(32)))
      repo = try await Repository.initialize(
        store: try LocalStore(root: dir + "/repo"), keyService: try LocalKeyService(path: dir + "/kek"),
        objectLock: nil, logger: Logger(label: "t"))
      _ = try await repo.backup(BackupOptions(paths: [src]))
      let (snaps, _) = try await repo.loadSnapshots()
      snapshot = try #require(snaps.first)
      (index, _) = try await repo.loadIndex()
      try FileManager.default.createDirectory(atPath: dir + "/outside/dir", withIntermediateDirectories: true)
      try makeFile(atPath: dir + "/outside/secret", contents: Data("SECRET\n".utf8))
      try makeFile(atPath: dir + "/outside/big", contents: Data("BIG SECRET\n".utf8))
      chmod(dir + "/outside/secret", 0o600)
      chmod(dir + "/outside/big", 0o600)
      chmod(dir + "/outside/dir", 0o755)
      let old = timespec(tv_sec: 1_500_000_000, tv_nsec: 0)
      for p in ["/outside/secret", "/outside/big", "/outside/dir", "/outside"] {
        var ts = [old, old]
        utimensat(AT_FDCWD, dir + p, &ts, 0)
      }
    }

    func restore(
      workers: Int = 1, keepSetID: Bool = false, hook: (@Sendable (RestoreHookPoint) -> Void)? = nil
    ) async throws -> RestoreResult {
      var o = RestoreOptions(target: target, workers: workers, keepSetID: keepSetID)
      o.hook = hook
      return try await repo.restore(snapshot, index: index, options: o)
    }

    /// The four entries of `outside`: path → "mode uid:gid size mtime content"; the attack must leave them as
    /// they were.
    func outsideState() throws -> [String: String] {
      var out: [String: String] = [:]
      for rel in ["", "/secret", "/big", "/dir"] { out[rel] = try Self.describe(outside + rel) }
      return out
    }

    static func describe(_ p: String) throws -> String {
      var st = stat()
      guard lstat(p, &st) == 0 else { return "missing" }
      let content =
        (st.st_mode & S_IFMT) == S_IFREG
        ? String(decoding: try Data(contentsOf: URL(fileURLWithPath: p)), as: UTF8.self) : ""
      return "\(String(st.st_mode, radix: 8)) \(st.st_uid):\(st.st_gid) \(st.st_size) \(st.st_mtim.tv_sec) \(content)"
    }

    func cleanup() {
      // Make every directory removable again (a failed restore may leave 0700 or stricter modes).
      _ = try? FileManager.default.removeItem(atPath: dir)
    }
  }

  static let expectedOutside = [
    "": "40755", "/secret": "100600 SECRET", "/big": "100600 BIG SECRET", "/dir": "40755",
  ]

  /// Checks that `outside` has its original modes, contents and times, and nothing new.
  static func expectOutsideUntouched(_ f: Fixture, _ comment: Comment? = nil) throws {
    let created = try FileManager.default.contentsOfDirectory(atPath: f.outside + "/dir").sorted()
    #expect(
      created.isEmpty, "written outside: \(created.count) entries, \(created.prefix(5)) \(comment?.description ?? "")")
    let s = try f.outsideState()
    for (k, v) in s {
      let fields = v.split(separator: " ", omittingEmptySubsequences: false)
      #expect(fields.count >= 4, comment)
      guard fields.count >= 4 else { continue }
      let modeAndContent = fields.count > 4 ? "\(fields[0]) \(fields[4...].joined(separator: " "))" : String(fields[0])
      #expect(
        modeAndContent.trimmingCharacters(in: .whitespacesAndNewlines) == expectedOutside[k],
        "\(k) \(comment?.description ?? "")")
      #expect(fields[3] == "1500000000", "mtime of outside\(k) changed \(comment?.description ?? "")")
      #expect(fields[1] == "\(getuid()):\(getgid())", "owner of outside\(k) changed")
    }
  }

  static func isIntegrity(_ e: any Error) -> Bool {
    if case EngineError.integrity = e { return true }
    return false
  }

  static func ino(_ p: String) -> UInt64 {
    var st = stat()
    return lstat(p, &st) == 0 ? UInt64(st.st_ino) : 0
  }

  static func isRegular(_ p: String) -> Bool {
    var st = stat()
    return lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
  }

  /// Pre-existing hard links in the target to files outside it (one-blob and multi-blob files, at two levels)
  /// are replaced by the restored files, never written through.
  @Test func existingHardLinksInTheTargetAreReplacedNotWrittenThrough() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    try FileManager.default.createDirectory(atPath: f.target + "/src/d", withIntermediateDirectories: true)
    #expect(link(f.outside + "/secret", f.target + "/src/a.txt") == 0)
    #expect(link(f.outside + "/big", f.target + "/src/big.bin") == 0)
    #expect(link(f.outside + "/secret", f.target + "/src/d/f0") == 0)
    _ = try await f.restore()
    try Self.expectOutsideUntouched(f)
    #expect(FileManager.default.contents(atPath: f.target + "/src/a.txt") == Data("restored a\n".utf8))
    #expect(FileManager.default.contents(atPath: f.target + "/src/big.bin") == f.big)
    #expect(FileManager.default.contents(atPath: f.target + "/src/d/f0") == Data("file 0\n".utf8))
    #expect(Self.ino(f.target + "/src/a.txt") != Self.ino(f.outside + "/secret"))
    #expect(Self.ino(f.target + "/src/big.bin") != Self.ino(f.outside + "/big"))
  }

  /// Pre-existing symlinks where files go are replaced by the files (the symlink's target is not written).
  @Test func existingSymlinksWhereFilesGoAreReplaced() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    try FileManager.default.createDirectory(atPath: f.target + "/src", withIntermediateDirectories: true)
    #expect(symlink(f.outside + "/secret", f.target + "/src/a.txt") == 0)
    #expect(symlink(f.outside + "/big", f.target + "/src/big.bin") == 0)
    _ = try await f.restore()
    try Self.expectOutsideUntouched(f)
    #expect(Self.isRegular(f.target + "/src/a.txt"))
    #expect(Self.isRegular(f.target + "/src/big.bin"))
    #expect(FileManager.default.contents(atPath: f.target + "/src/big.bin") == f.big)
  }

  /// A symlink where a restored directory goes (at the top and one level down) is refused, not followed: nothing
  /// is created, written or chmod-ed through it.
  @Test(arguments: ["src", "src/d"]) func symlinkWhereADirectoryGoesIsRefused(_ rel: String) async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    try FileManager.default.createDirectory(
      atPath: (f.target + "/" + rel as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    #expect(symlink(f.outside + "/dir", f.target + "/" + rel) == 0)
    await #expect { _ = try await f.restore() } throws: { Self.isIntegrity($0) }
    try Self.expectOutsideUntouched(f)
  }

  /// Swaps `target/rel` for a symlink to `outside/dir` (keeping the directory under another name).
  static func swapForSymlink(target: String, outside: String, _ rel: String) {
    let p = target + "/" + rel
    rename(p, p + ".moved")
    symlink(outside + "/dir", p)
  }

  /// A directory swapped for a symlink after it was created, just before a file in it is written: the write does
  /// not follow the symlink (the walk to the file's directory refuses it).
  @Test func directorySwappedForASymlinkBeforeAWriteIsNotFollowed() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    let swapped = Locked(false)
    let (target, outside) = (f.target, f.outside)
    let hook: @Sendable (RestoreHookPoint) -> Void = { p in
      guard case .beforeWrite(let path) = p, path.hasPrefix("src/d/f") else { return }
      if Self.firstTime(swapped) {
        Self.swapForSymlink(target: target, outside: outside, "src/d")
      }
    }
    await #expect { _ = try await f.restore(hook: hook) } throws: { Self.isIntegrity($0) }
    #expect(swapped.with { $0 })
    try Self.expectOutsideUntouched(f)
  }

  /// A directory swapped for a symlink just before its owner, mode and time are set: they are not set through the
  /// symlink on `outside/dir` (0755 stays 0755; the snapshot's directory is 0750).
  @Test(arguments: ["src/d", "src/d/e"]) func directorySwappedForASymlinkBeforeItsMetadataIsNotChmodded(
    _ rel: String
  ) async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    let (target, outside) = (f.target, f.outside)
    let hook: @Sendable (RestoreHookPoint) -> Void = { p in
      if p == .beforeDirectoryMetadata(rel) { Self.swapForSymlink(target: target, outside: outside, rel) }
    }
    await #expect { _ = try await f.restore(hook: hook) } throws: { Self.isIntegrity($0) }
    try Self.expectOutsideUntouched(f)
  }

  /// The temporary file of a multi-blob file replaced by a hard link to a file outside between two writes: the
  /// restore notices the different file and refuses to write to it.
  @Test func temporaryFileReplacedByAHardLinkIsNotWritten() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    let swapped = Locked(false)
    let (target, outside) = (f.target, f.outside)
    let hook: @Sendable (RestoreHookPoint) -> Void = { p in
      guard p == .beforeWrite("src/big.bin") else { return }
      guard
        Self.firstTime(swapped)
      else { return }
      let d = target + "/src"
      for e in (try? FileManager.default.contentsOfDirectory(atPath: d)) ?? [] where e.hasPrefix(".botrt-restore-") {
        unlink(d + "/" + e)
        link(outside + "/big", d + "/" + e)
      }
    }
    await #expect { _ = try await f.restore(hook: hook) } throws: { Self.isIntegrity($0) }
    #expect(swapped.with { $0 })
    try Self.expectOutsideUntouched(f)
  }

  /// A thread swaps `src/r` (300 small files) with a symlink to `outside/dir` as fast as it can, atomically
  /// (`renameat2(RENAME_EXCHANGE)`, so the name is never missing), while four workers restore into it. The restore
  /// may fail (it meets the symlink) or succeed (writing into the directory it opened, under either name), but
  /// nothing lands in `outside` and its modes and times do not change. Bounded: five restores, each raced from the
  /// moment its directories exist until it returns.
  @Test func directoryRacedWithSymlinkSwapsNeverLeadsOutside() async throws {
    let f = try await Fixture(raceFiles: 300)
    defer { f.cleanup() }
    typealias Renameat2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    let exchange = unsafeBitCast(try #require(dlsym(nil, "renameat2")), to: Renameat2.self)
    var swaps = 0
    for round in 0..<5 {
      try? FileManager.default.removeItem(atPath: f.target)
      let stop = Locked(false)
      let count = Locked(0)
      let done = DispatchSemaphore(value: 0)
      let (target, outside) = (f.target, f.outside)
      let hook: @Sendable (RestoreHookPoint) -> Void = { p in
        guard p == .directoriesCreated else { return }
        let d = target + "/src/r"
        symlink(outside + "/dir", d + ".link")
        Thread.detachNewThread {
          while !stop.with({ $0 }) {
            if exchange(AT_FDCWD, d, AT_FDCWD, d + ".link", 2) == 0 { count.with { $0 += 1 } }
          }
          done.signal()
        }
      }
      do {
        _ = try await f.restore(workers: 4, hook: hook)
      } catch {
        #expect(Self.isIntegrity(error), "round \(round): \(error)")
      }
      stop.with { $0 = true }
      done.wait()
      swaps += count.with { $0 }
      try Self.expectOutsideUntouched(f, "round \(round)")
    }
    #expect(swaps > 0)
  }

  static func firstTime(_ flag: Locked<Bool>) -> Bool {
    flag.with { s in
      defer { s = true }
      return !s
    }
  }

  /// Set-id bits of files are cleared by default, with a warning naming the files; `keepSetID` keeps them as root
  /// and is refused otherwise. A directory's set-group-ID bit is kept.
  @Test func setIDBitsAreClearedUnlessKeptAsRoot() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    func mode(_ rel: String) -> mode_t {
      var st = stat()
      return lstat(f.target + "/" + rel, &st) == 0 ? st.st_mode & 0o7777 : 0
    }
    let r = try await f.restore()
    #expect(mode("src/suid") == 0o755)
    #expect(mode("src/sgid") == 0o755)
    #expect(mode("src/shared") == 0o2775)
    #expect(r.warnings.count == 1)
    #expect(r.warnings.first?.contains("2 file(s)") == true)
    #expect(r.warnings.first?.contains("src/suid") == true)
    if geteuid() == 0 {
      try FileManager.default.removeItem(atPath: f.target)
      let k = try await f.restore(keepSetID: true)
      #expect(mode("src/suid") == 0o4755)
      #expect(mode("src/sgid") == 0o2755)
      #expect(k.warnings.isEmpty)
    }
    var nodes = [TreeNode(kind: .file, path: "x", mode: 0o4755)]
    #expect(throws: EngineError.self) { _ = try Repository.applySetIDPolicy(&nodes, keep: true, isRoot: false) }
    #expect(try Repository.applySetIDPolicy(&nodes, keep: true, isRoot: true).isEmpty)
    #expect(nodes[0].mode == 0o4755)
  }
}

/// A FIFO, device node or symlink the restore made is changed (owner, attributes, mode, times) only through a
/// descriptor checked to be that node: a hard link to a file elsewhere put at its temporary name is refused.
@Suite struct RestoreMadeNodeTests {
  @Test func aHardLinkPutInPlaceOfAMadeNodeIsRefused() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-node-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let dfd = open(dir, O_RDONLY | O_DIRECTORY)
    #expect(dfd >= 0)
    defer { close(dfd) }
    #expect(mkfifo(dir + "/fifo", 0o600) == 0)
    let fd = try Repository.openMadeNode(dir: dfd, "fifo", type: S_IFIFO, display: "fifo")
    close(fd)
    // A second name for a FIFO elsewhere (say, one a workload reads), or a file of another type, is refused.
    #expect(link(dir + "/fifo", dir + "/planted") == 0)
    #expect(throws: EngineError.self) { try Repository.openMadeNode(dir: dfd, "planted", type: S_IFIFO, display: "p") }
    #expect(FileManager.default.createFile(atPath: dir + "/file", contents: Data("secret".utf8)))
    #expect(throws: EngineError.self) { try Repository.openMadeNode(dir: dfd, "file", type: S_IFIFO, display: "f") }
    #expect(symlink("/etc/passwd", dir + "/link") == 0)
    #expect(throws: EngineError.self) { try Repository.openMadeNode(dir: dfd, "link", type: S_IFIFO, display: "l") }
    let l = try Repository.openMadeNode(dir: dfd, "link", type: S_IFLNK, display: "l")
    close(l)
  }
}

extension RestoreMadeNodeTests {
  @Test func fileCapabilitiesFollowTheSetIDPolicy() throws {
    var file = TreeNode(kind: .file, path: "bin/ping", mode: 0o755)
    file.xattrs = [
      .init(name: "security.capability", value: [1, 0, 0, 2, 0, 0x20, 0, 0]), .init(name: "user.keep", value: [1]),
    ]
    var nodes = [file]
    let w = try Repository.applySetIDPolicy(&nodes, keep: false, isRoot: true)
    #expect(nodes[0].xattrs.map(\.name) == ["user.keep"])
    #expect(w.count == 1 && w[0].contains("security.capability") && w[0].contains("bin/ping"), "\(w)")
    var kept = [file]
    #expect(try Repository.applySetIDPolicy(&kept, keep: true, isRoot: true).isEmpty)
    #expect(kept == [file])
  }
}
