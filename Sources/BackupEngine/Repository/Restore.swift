import CXattr
import EngineContract
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What to restore and where.
public struct RestoreOptions: Sendable {
  /// Restore into this directory (created if missing), or nil with `stdoutFD` set.
  public var target: String?
  /// Write the single selected file to this descriptor.
  public var stdoutFD: Int32?
  /// Restore only these paths (and what is below them).
  public var paths: [String]
  /// Leave these paths (and what is below them) out, e.g. a snapshot's Kubernetes objects (`_kubernetes`) when a
  /// claim's files are restored.
  public var excludePaths: [String] = []
  /// Drop this many leading path components from every restored path, as tar's --strip-components does: entries
  /// that many levels deep or less are not restored (a claim's backup is stored under the claim's name; 1 restores
  /// its content into the target itself).
  public var stripComponents: Int
  public var workers: Int
  public var progress: ProgressHandler?
  /// Keep the set-user-ID and set-group-ID bits of regular files (only as root, which restores the owner first).
  /// Without it they are cleared, with a warning naming the files.
  public var keepSetID: Bool
  /// After a restore to a directory, read every restored file back and check it against the snapshot
  /// (`verifyRestored`, restic's `restore --verify`).
  public var verify: Bool = false
  /// Called at fixed points of a directory restore, for tests that race the restore in its target.
  var hook: (@Sendable (RestoreHookPoint) -> Void)? = nil
  public init(
    target: String? = nil, stdoutFD: Int32? = nil, paths: [String] = [], stripComponents: Int = 0,
    excludePaths: [String] = [],
    // More threads than cores: creating many small files is latency-bound on real disks.
    workers: Int = max(8, 4 * ProcessInfo.processInfo.activeProcessorCount), progress: ProgressHandler? = nil,
    keepSetID: Bool = false, verify: Bool = false
  ) {
    self.verify = verify
    self.target = target
    self.stdoutFD = stdoutFD
    self.paths = paths
    self.excludePaths = excludePaths
    self.stripComponents = stripComponents
    self.workers = workers
    self.progress = progress
    self.keepSetID = keepSetID
  }
}

/// The outcome of a restore.
public struct RestoreResult: Sendable {
  public var snapshotID: ID
  public var files: Int
  public var bytes: Int64
  /// What the restore changed on purpose, e.g. the set-id bits it cleared.
  public var warnings: [String] = []
  /// What `RestoreOptions.verify` read back (nil: not asked).
  public var verification: RestoreVerification?
}

/// Where one blob of a restore goes: a file (index into the restore's file list) and an offset, chained to the
/// blob's next target.
struct RestoreTarget: Sendable {
  var file: Int32
  var offset: Int64
  var next: Int32
}

/// A file of several blobs that workers write under a temporary name, and the identity of the file created there.
struct PendingFile: Sendable {
  var name: String
  var device: UInt64
  var inode: UInt64
}

/// A blob to restore and the head of its chain of targets.
struct RestoreBlob: Sendable {
  var entry: BlobEntry
  var firstTarget: Int32
}

/// Prints how long each stage of a command took to standard error when BOTRT_TIMING is set (for profiling).
final class StageTimer: @unchecked Sendable {
  private let name: String
  private let enabled = ProcessInfo.processInfo.environment[EngineEnv.timing] != nil
  private var last = DispatchTime.now()

  init(name: String) { self.name = name }

  func mark(_ stage: @autoclosure () -> String) {
    guard enabled else { return }
    let now = DispatchTime.now()
    let ms = Double(now.uptimeNanoseconds - last.uptimeNanoseconds) / 1e6
    last = now
    FileHandle.standardError.write(
      Data("timing \(name) \(stage()): \(String(format: "%.0f", ms)) ms, RSS \(Self.rssMiB()) MiB\n".utf8))
  }

  /// The resident set size now, from /proc/self/statm.
  static func rssMiB() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return -1 }
    let f = s.split(separator: " ")
    guard f.count > 1, let pages = Int(f[1]) else { return -1 }
    return (pages * Int(sysconf(Int32(_SC_PAGESIZE)))) >> 20
  }
}

/// What a restore could not put back but went on without: extended attributes the target does not take, device
/// nodes it may not make. Reported as warnings naming the entries.
final class RestoreWarnings: @unchecked Sendable {
  private let lock = NSLock()
  private var attrs: [String] = []
  private var devices: [String] = []

  /// Records the attributes of `path` that could not be set (nothing when `failed` is empty).
  func xattrs(_ path: String, _ failed: [String]) {
    guard !failed.isEmpty else { return }
    lock.withLock { attrs.append("\(path): " + failed.joined(separator: ", ")) }
  }

  func deviceNotMade(_ path: String) { lock.withLock { devices.append(path) } }

  var messages: [String] {
    lock.withLock {
      func list(_ a: [String], sep: String) -> String {
        a.sorted().prefix(5).joined(separator: sep) + (a.count > 5 ? "\(sep)..." : "")
      }
      var out: [String] = []
      if !attrs.isEmpty {
        out.append(
          "could not restore the extended attributes of \(attrs.count) entr\(attrs.count == 1 ? "y" : "ies") ("
            + list(attrs, sep: "; ") + ")")
      }
      if !devices.isEmpty {
        out.append(
          "did not restore \(devices.count) device node(s) (\(list(devices, sep: ", "))): making device nodes "
            + "needs CAP_MKNOD (restore as root)")
      }
      return out
    }
  }
}

private final class RestoreRun: @unchecked Sendable {
  let lock = NSLock()
  var fatal: (any Error)?
  var bytes: Int64 = 0
  var nextPack = 0
  var lastProgress = Date()
  func fail(_ e: any Error) { lock.withLock { if fatal == nil { fatal = e } } }
  var failed: Bool { lock.withLock { fatal != nil } }
}

extension Repository {
  /// Restores a snapshot (or part of it) to a directory or a descriptor.
  public func restore(_ snapshot: Snapshot, index: MasterIndex, options: RestoreOptions) async throws -> RestoreResult {
    let timer = StageTimer(name: "restore")
    var nodes = try await loadTree(snapshot, index: index)
    try TreeFormat.checkSafe(nodes)
    if !options.paths.isEmpty || !options.excludePaths.isEmpty {
      let sel = options.paths.map { snapshot.manifest.treePath($0) }
      let excluded = options.excludePaths.map { snapshot.manifest.treePath($0) }
      let all = Dictionary(nodes.map { ($0.pathKey, $0) }, uniquingKeysWith: { a, _ in a })
      // A path is given as listed (`ls`): bytes that are not UTF-8 as \xE9.
      func under(_ p: String, _ list: [String]) -> Bool { list.contains { p == $0 || p.hasPrefix($0 + "/") } }
      nodes = nodes.filter { n in
        let p = n.displayPath
        return (sel.isEmpty || under(p, sel)) && !under(p, excluded)
      }
      // A hard link whose first file is not selected becomes a copy of that file.
      let chosen = Set(nodes.map { $0.pathKey })
      nodes = nodes.map { n in
        let target = Array(n.linkTarget.utf8)
        guard n.kind == .hardlink, !chosen.contains(target), let t = all[target] else { return n }
        var c = t
        c.path = n.path
        return c
      }
      guard !nodes.isEmpty || sel.isEmpty else {
        throw EngineError.usage("--path \(options.paths) matches nothing in snapshot \(snapshot.id.short)")
      }
    }
    if options.stripComponents > 0 {
      let n = options.stripComponents
      func strip(_ p: String) -> String? {
        let parts = RestoreRoot.components(p)
        return parts.count > n ? parts.dropFirst(n).joined(separator: "/") : nil
      }
      nodes = nodes.compactMap { node in
        guard let p = strip(node.path) else { return nil }
        var c = node
        c.path = p
        // A hard link's first file moves with it. (Only a top-level entry can be stripped away, and a link to one
        // is then stripped too: there is nothing to link to.)
        if c.kind == .hardlink {
          guard let t = strip(c.linkTarget) else { return nil }
          c.linkTarget = t
        }
        return c
      }
      guard !nodes.isEmpty else {
        throw EngineError.usage(
          "--strip-components \(n) leaves nothing of snapshot \(snapshot.id.short) to restore; use a smaller number")
      }
    }
    guard let kt = KeyType(dataType: snapshot.manifest.dataType) else {
      throw EngineError.integrity(
        object: "snapshots/\(snapshot.id.hex)", message: "unknown data type \(snapshot.manifest.dataType)")
    }
    let keys = try await keys(for: [kt])
    // Every blob must be indexed before anything is written.
    for n in nodes where n.kind == .file {
      for c in n.content where !index.contains(c) {
        throw EngineError.integrity(
          object: "blob \(c.short) of \(n.path)",
          message: "not in any index (index file missing or damaged); run `botrt-engine verify`")
      }
    }
    if let fd = options.stdoutFD {
      let files = nodes.filter { $0.kind == .file }
      guard files.count == 1 else {
        throw EngineError.usage(
          "--stdout needs exactly one file but \(files.count) are selected; narrow it with --path")
      }
      let bytes = try await streamFile(files[0], index: index, keys: keys, fd: fd)
      audit.record(
        "restored", details: ["snapshot": snapshot.id.hex, "files": "1", "bytes": "\(bytes)", "target": "stdout"])
      return RestoreResult(snapshotID: snapshot.id, files: 1, bytes: bytes)
    }
    guard let target = options.target else { throw EngineError.usage("restore needs --target DIR or --stdout") }
    var warnings = try Self.applySetIDPolicy(&nodes, keep: options.keepSetID, isRoot: geteuid() == 0)
    timer.mark("tree loaded and checked (\(nodes.count) entries)")
    let notes = RestoreWarnings()
    let res = try await restoreTree(
      nodes, to: target, index: index, keys: keys, options: options, timer: timer, warnings: notes)
    warnings += notes.messages
    var verification: RestoreVerification?
    if options.verify {
      verification = try verifyRestored(
        nodes, target: target, index: index, keyType: kt,
        workers: min(options.workers, 2 * ProcessInfo.processInfo.activeProcessorCount))
      timer.mark("restored files read back and checked")
    }
    audit.record("restored", details: ["snapshot": snapshot.id.hex, "files": "\(res.0)", "bytes": "\(res.1)"])
    var result = RestoreResult(snapshotID: snapshot.id, files: res.0, bytes: res.1, warnings: warnings)
    result.verification = verification
    return result
  }

  /// Writes one file's content to `fd` in order, decoding ahead on worker threads.
  func streamFile(_ node: TreeNode, index: MasterIndex, keys: [KeyType: [UInt8]], fd: Int32) async throws -> Int64 {
    let content = node.content
    let window = 8
    var written: Int64 = 0
    var i = 0
    while i < content.count {
      let batch = Array(content[i..<min(content.count, i + window)])
      let parts = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { g in
        for (j, id) in batch.enumerated() {
          g.addTask {
            var ciphers: [KeyType: AESGCM] = [:]
            for (k, v) in keys { ciphers[k] = try AESGCM(key: v) }
            return (j, try await self.readBlob(id, index: index, ciphers: ciphers, zstd: ZstdContext()))
          }
        }
        var out = [[UInt8]](repeating: [], count: batch.count)
        for try await (j, d) in g { out[j] = d }
        return out
      }
      for p in parts {
        try writeAll(fd: fd, p, what: "standard output")
        written += Int64(p.count)
      }
      i += window
    }
    return written
  }

  /// The set-id policy: the set-user-ID and set-group-ID bits of regular files are cleared (a warning names the
  /// first few) unless `keep` is set, which needs root (the owner is restored before the mode, so a set-id file
  /// is never left owned by the restoring user). Directories keep their bits: set-group-ID on a directory only
  /// makes new entries inherit its group, and set-user-ID on a directory means nothing on Linux. File capabilities
  /// (the `security.capability` attribute) are left out the same way.
  static func applySetIDPolicy(_ nodes: inout [TreeNode], keep: Bool, isRoot: Bool) throws -> [String] {
    let fileCapabilities = "security.capability"
    if keep {
      guard isRoot else {
        throw EngineError.usage(
          "--keep-setid restores set-user-ID and set-group-ID bits only when restoring as root (which restores "
            + "the owner first); without it they are cleared")
      }
      return []
    }
    var cleared: [String] = []
    var capabilities: [String] = []
    for i in nodes.indices where nodes[i].kind == .file {
      if nodes[i].mode & 0o6000 != 0 {
        nodes[i].mode &= ~UInt32(0o6000)
        cleared.append(nodes[i].displayPath)
      }
      // File capabilities grant privileges on exec as set-id bits do: the same policy.
      if nodes[i].xattrs.contains(where: { $0.name == fileCapabilities }) {
        nodes[i].xattrs.removeAll { $0.name == fileCapabilities }
        capabilities.append(nodes[i].displayPath)
      }
    }
    func names(_ a: [String]) -> String { a.prefix(5).joined(separator: ", ") + (a.count > 5 ? ", ..." : "") }
    var out: [String] = []
    if !cleared.isEmpty {
      out.append(
        "cleared the set-user-ID/set-group-ID bits of \(cleared.count) file(s) (\(names(cleared))); restore as root "
          + "with --keep-setid to keep them")
    }
    if !capabilities.isEmpty {
      out.append(
        "left out the file capabilities (\(fileCapabilities)) of \(capabilities.count) file(s) "
          + "(\(names(capabilities))); restore as root with --keep-setid to keep them")
    }
    return out
  }

  func writeAll(fd: Int32, _ bytes: [UInt8], what: String, offset: Int64? = nil) throws {
    try bytes.withUnsafeBytes { try Self.writeAll(fd: fd, $0, what: what, offset: offset) }
  }

  private func restoreTree(
    _ nodes: [TreeNode], to target: String, index: MasterIndex, keys: [KeyType: [UInt8]], options: RestoreOptions,
    timer: StageTimer, warnings: RestoreWarnings
  ) async throws -> (Int, Int64) {
    // Every path below is reached from the target's descriptor without following a symlink (see RestoreRoot).
    let root = try RestoreRoot.open(target)
    defer { root.close() }
    let hook = options.hook
    let cache = RestoreDirCache(root: root)
    // Directories (and the parents of selected entries), made with mode 0700 until their metadata is set last.
    // Trees list a directory before its entries, so the common case is one set lookup of the immediate parent.
    // (Keys of bytes: see `TreeNode.pathKey`.)
    var dirs = Set<[UInt8]>()
    for n in nodes {
      let parent = RestoreRoot.split(n.path).parent
      if !parent.isEmpty && dirs.insert(Array(parent.utf8)).inserted { _ = try cache.dir(parent, create: true) }
      if n.kind == .directory, dirs.insert(n.pathKey).inserted {
        _ = try cache.dir(Substring(n.path), create: true)
      }
    }
    dirs = []
    hook?(.directoriesCreated)
    timer.mark("directories")
    // Plan: for each pack (in the order of the first file it serves, so files appear roughly in tree order),
    // the blobs it holds and every place each one goes. Files are indices into `nodes`; a blob's targets are a
    // chain through one shared array (most blobs have one target), to keep the plan small.
    var fileNodes: [Int32] = []
    var packSlot: [ID: Int32] = [:]
    var packIDs: [ID] = []
    var packBlobs: [[RestoreBlob]] = []
    var blobSlot: [ID: (pack: Int32, blob: Int32)] = [:]
    var targets: [RestoreTarget] = []
    var remainingWrites: [Int32] = []
    var cutToSize: [Bool] = []
    for (ni, f) in nodes.enumerated() where f.kind == .file {
      let fi = Int32(fileNodes.count)
      fileNodes.append(Int32(ni))
      var off: Int64 = 0
      for c in f.content {
        let slot: (pack: Int32, blob: Int32)
        if let s = blobSlot[c] {
          slot = s
        } else {
          let l = index.lookup(c)!
          let p: Int32
          if let q = packSlot[l.pack] {
            p = q
          } else {
            p = Int32(packIDs.count)
            packSlot[l.pack] = p
            packIDs.append(l.pack)
            packBlobs.append([])
          }
          slot = (p, Int32(packBlobs[Int(p)].count))
          packBlobs[Int(p)].append(RestoreBlob(entry: l.entry, firstTarget: -1))
          blobSlot[c] = slot
        }
        let t = Int32(targets.count)
        targets.append(
          RestoreTarget(file: fi, offset: off, next: packBlobs[Int(slot.pack)][Int(slot.blob)].firstTarget))
        packBlobs[Int(slot.pack)][Int(slot.blob)].firstTarget = t
        off += Int64(packBlobs[Int(slot.pack)][Int(slot.blob)].entry.rawLength)
      }
      remainingWrites.append(Int32(f.content.count))
      cutToSize.append(off != Int64(f.size))
    }
    blobSlot = [:]
    packSlot = [:]
    timer.mark("plan (\(fileNodes.count) files, \(packIDs.count) packs)")
    // Empty files are made here. Files of several blobs are created here under a temporary name, which workers
    // reopen (checking that it is still the same file) to write at offsets; the last write completes the file and
    // renames it into place. A one-blob file is created, completed and renamed by the worker that writes it.
    let isRoot = geteuid() == 0
    let mask = Self.currentUmask()
    var pending = [PendingFile?](repeating: nil, count: fileNodes.count)
    for (fi, ni) in fileNodes.enumerated() where nodes[Int(ni)].content.count != 1 {
      let f = nodes[Int(ni)]
      let (parent, name) = RestoreRoot.split(f.path)
      let shown = root.display(f.displayPath)
      let dir = try cache.dir(parent)
      let (fd, tmp) = try RestoreRoot.createTemp(in: dir, mode: 0o600, display: shown)
      defer { close(fd) }
      if f.content.isEmpty {
        do {
          try Self.finishFile(
            fd: fd, node: f, path: shown, isRoot: isRoot, modeSet: false, cut: f.size != 0, warnings: warnings)
          try RestoreRoot.replace(in: dir, tmp: tmp, name: name, display: shown)
        } catch {
          unlinkat(dir, tmp, 0)
          throw error
        }
      } else {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Self.restoreIOError(path: shown, errno) }
        pending[fi] = PendingFile(name: tmp, device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
      }
    }
    let pendingC = pending
    pending = []
    timer.mark("pre-create")
    let remaining = Locked(remainingWrites)
    let run = RestoreRun()
    let total = fileNodes.reduce(Int64(0)) { $0 + Int64(nodes[Int($1)].size) }
    let blobsC = packBlobs
    packBlobs = []
    let packsC = packIDs
    let cutC = cutToSize
    let targetsC = targets
    targets = []
    let filesC = fileNodes
    // Reads straight from a local repository's files, also when it is opened read-only (`--read-only` wraps it in a
    // ReadOnlyStore, which refuses writes only; reads may bypass it).
    let local = (self.store as? LocalStore) ?? ((self.store as? ReadOnlyStore)?.base as? LocalStore)
    await runThreads(max(1, options.workers), name: "restore") { _ in
      let dirs = RestoreDirCache(root: root)
      do {
        var ciphers: [KeyType: AESGCM] = [:]
        for (k, v) in keys { ciphers[k] = try AESGCM(key: v) }
        let z = ZstdContext()
        let scratch = BlobScratch()
        while !run.failed {
          let pi = run.lock.withLock { () -> Int in
            defer { run.nextPack += 1 }
            return run.nextPack
          }
          if pi >= packsC.count { break }
          let pack = packsC[pi]
          let key = Self.packKey(pack)
          // Read the pack in segments of neighbouring blobs (at most `segmentBytes`, or one larger blob), so a
          // worker holds a few MiB rather than a whole pack.
          // When a blob of this pack fails its checks (the pack was overwritten or damaged), the rest of the pack is
          // read from the stored version that matches its name (`verifiedPack`); a blob it cannot give is read from
          // another pack that holds a copy (`readBlob`'s fallbacks), else the restore fails naming the pack.
          var verified: Data?
          var triedVerified = false
          for seg in Self.segments(blobsC[pi], maxBytes: Self.segmentBytes) {
            let lo = Int64(seg[0].entry.offset)
            let end = seg[seg.count - 1].entry
            let length = Int64(end.offset) + Int64(end.sealedLength) - lo
            func fromVerified(_ d: Data) -> UnsafeMutableRawBufferPointer? {
              guard Int(lo + length) <= d.count else { return nil }
              let buf = scratch.sealed(Int(length))
              d.withUnsafeBytes { buf.copyMemory(from: $0.baseAddress! + Int(lo), byteCount: Int(length)) }
              return UnsafeMutableRawBufferPointer(start: buf, count: Int(length))
            }
            func loadVerified() throws -> UnsafeMutableRawBufferPointer? {
              if !triedVerified {
                triedVerified = true
                verified = try blockingAwait { try await self.verifiedPack(pack) }
              }
              return verified.flatMap(fromVerified)
            }
            var data: UnsafeMutableRawBufferPointer?
            if let v = verified {
              data = fromVerified(v)
            } else {
              do {
                data = try self.readPackRange(key, offset: lo, length: length, local: local, scratch: scratch)
              } catch let e as EngineError {
                guard case .integrity = e else { throw e }
                data = try loadVerified()
              }
            }
            var j = 0
            while j < seg.count {
              let b = seg[j]
              j += 1
              let e = b.entry
              let start = Int(Int64(e.offset) - lo)
              var fallback: [UInt8]?
              var opened = UnsafeRawBufferPointer(start: nil, count: 0)
              do {
                guard let data else {
                  throw EngineError.integrity(object: key, message: "pack cannot be read and no version matches")
                }
                opened = try self.openBlobInPlace(
                  UnsafeMutableRawBufferPointer(rebasing: data[start..<(start + Int(e.sealedLength))]), entry: e,
                  pack: pack, ciphers: ciphers, zstd: z, scratch: scratch)
              } catch let err as EngineError {
                guard case .integrity = err else { throw err }
                if !triedVerified, let d = try loadVerified() {
                  data = d  // the matching version: open this blob again from it
                  j -= 1
                  continue
                }
                // No matching version: a copy in another pack, through the single-blob path.
                fallback = try blockingAwait {
                  var cs: [KeyType: AESGCM] = [:]
                  for (k, v) in keys { cs[k] = try AESGCM(key: v) }
                  return try await self.readBlob(e.id, index: index, ciphers: cs, zstd: ZstdContext())
                }
              }
              try (fallback ?? []).withUnsafeBytes { fb in
                let plain = fallback == nil ? opened : fb
                var ti = b.firstTarget
                var copies = 0
                while ti >= 0 {
                  let t = targetsC[Int(ti)]
                  ti = t.next
                  copies += 1
                  let node = nodes[Int(filesC[Int(t.file)])]
                  hook?(.beforeWrite(node.path))
                  let (parent, name) = RestoreRoot.split(node.path)
                  let shown = root.display(node.displayPath)
                  let dir = try dirs.dir(parent)
                  if node.content.count == 1 {
                    try Self.writeWholeFile(
                      dir: dir, name: name, display: shown, node: node, plain, isRoot: isRoot, umask: mask,
                      cut: cutC[Int(t.file)], warnings: warnings)
                    continue
                  }
                  let temp = pendingC[Int(t.file)]!
                  let fd = try Self.reopenTemp(dir: dir, temp, display: shown)
                  defer { close(fd) }
                  // Aligned blocks of zeros are not written: they stay holes (the size is set when complete).
                  _ = try FileMetadata.writeSparse(fd: fd, plain, offset: t.offset, what: shown)
                  let last = remaining.with { r -> Bool in
                    r[Int(t.file)] -= 1
                    return r[Int(t.file)] == 0
                  }
                  // The file is complete: set its owner, mode and time through the open descriptor, and move it
                  // into place.
                  if last {
                    try Self.finishFile(
                      fd: fd, node: node, path: shown, isRoot: isRoot, modeSet: false, cut: true, warnings: warnings)
                    try RestoreRoot.replace(in: dir, tmp: temp.name, name: name, display: shown)
                  }
                }
                let ev = run.lock.withLock { () -> ProgressEvent? in
                  run.bytes += Int64(plain.count * copies)
                  let now = Date()
                  guard now.timeIntervalSince(run.lastProgress) >= 0.5 else { return nil }
                  run.lastProgress = now
                  return ProgressEvent(
                    phase: "restore", files: 0, bytesDone: run.bytes, bytesTotal: total, bytesStored: 0, errors: 0)
                }
                if let ev { options.progress?(ev) }
              }
            }
            scratch.trim(keep: Self.segmentBytes)
          }
        }
      } catch {
        run.fail(error)
      }
    }
    if let e = run.lock.withLock({ run.fatal }) {
      // Remove the temporary files of incomplete files (by name in their directory: unlinking follows nothing).
      let left = remaining.with { $0 }
      for (fi, p) in pendingC.enumerated() where p != nil && left[fi] > 0 {
        let parent = RestoreRoot.split(nodes[Int(filesC[fi])].path).parent
        if let dir = try? cache.dir(parent) { unlinkat(dir, p!.name, 0) }
      }
      throw e
    }
    hook?(.contentsWritten)
    timer.mark("contents (\(options.workers) threads)")
    // Hard links and symlinks are made under a temporary name and renamed into place; then the directories'
    // metadata, deepest first, through descriptors opened without following symlinks.
    for n in nodes where n.kind == .hardlink {
      let (sp, sn) = RestoreRoot.split(n.linkTarget)
      let (dp, dn) = RestoreRoot.split(n.path)
      let shown = root.display(n.displayPath)
      let src = try root.openDir(sp, create: false)
      defer { close(src) }
      let dst = try cache.dir(dp)
      let tmp = try Self.makeTempEntry(display: shown) { t in FSName.withCString(sn) { linkat(src, $0, dst, t, 0) } }
      try RestoreRoot.replace(in: dst, tmp: tmp, name: dn, display: shown)
    }
    for n in nodes where n.kind == .symlink {
      let (dp, dn) = RestoreRoot.split(n.path)
      let shown = root.display(n.displayPath)
      let dst = try cache.dir(dp)
      let tmp = try Self.makeTempEntry(display: shown) { t in
        FSName.withCString(n.linkTarget) { symlinkat($0, dst, t) }
      }
      do {
        // The owner through a descriptor of the symlink, checked to be the one just made (by name, a hard link to
        // a file elsewhere put in its place would be chown-ed).
        let fd = try Self.openMadeNode(dir: dst, tmp, type: S_IFLNK, display: shown)
        defer { close(fd) }
        if isRoot { fchownat(fd, "", n.uid, n.gid, FileMetadata.atEmptyPath | AT_SYMLINK_NOFOLLOW) }
      } catch {
        unlinkat(dst, tmp, 0)
        throw error
      }
      warnings.xattrs(n.displayPath, FileMetadata.writeXattrs(dir: dst, name: tmp, n.xattrs))
      var ts = [
        timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
        timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
      ]
      utimensat(dst, tmp, &ts, AT_SYMLINK_NOFOLLOW)
      try RestoreRoot.replace(in: dst, tmp: tmp, name: dn, display: shown)
    }
    for n in nodes where n.kind == .fifo || n.kind == .charDevice || n.kind == .blockDevice {
      try restoreSpecial(n, root: root, cache: cache, isRoot: isRoot, umask: mask, warnings: warnings)
    }
    for n in nodes.filter({ $0.kind == .directory }).sorted(by: { $0.path.utf8.count > $1.path.utf8.count }) {
      hook?(.beforeDirectoryMetadata(n.path))
      let (dp, dn) = RestoreRoot.split(n.path)
      let shown = root.display(n.displayPath)
      let fd = RestoreRoot.openDirAt(try cache.dir(dp), dn)
      guard fd >= 0 else { throw restoreFSError(path: shown, errno, directory: true) }
      defer { close(fd) }
      if isRoot && fchown(fd, n.uid, n.gid) != 0 { throw Self.restoreIOError(path: shown, errno) }
      // After every entry is made, so that a default ACL does not change the entries made in the directory.
      warnings.xattrs(n.displayPath, FileMetadata.writeXattrs(fd: fd, n.xattrs))
      if fchmod(fd, mode_t(n.mode)) != 0 { throw Self.restoreIOError(path: shown, errno) }
      var ts = [
        timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
        timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
      ]
      if futimens(fd, &ts) != 0 { throw Self.restoreIOError(path: shown, errno) }
    }
    timer.mark("links and directory metadata")
    return (nodes.filter { $0.kind != .directory }.count, total)
  }

  /// Largest pack segment a restore worker reads at once (a blob larger than this is read alone).
  static let segmentBytes = 2 << 20

  /// Splits a pack's blobs into runs sorted by offset whose span is at most `maxBytes` (or a single blob).
  static func segments(_ blobs: [RestoreBlob], maxBytes: Int) -> [[RestoreBlob]] {
    let sorted = blobs.sorted { $0.entry.offset < $1.entry.offset }
    var out: [[RestoreBlob]] = []
    var cur: [RestoreBlob] = []
    var start = 0
    for b in sorted {
      let end = Int(b.entry.offset) + Int(b.entry.sealedLength)
      if !cur.isEmpty && end - start > maxBytes {
        out.append(cur)
        cur = []
      }
      if cur.isEmpty { start = Int(b.entry.offset) }
      cur.append(b)
    }
    if !cur.isEmpty { out.append(cur) }
    return out
  }

  /// Reads a pack range into the worker's reusable buffer: directly for a local repository, through the
  /// store's ranged GET otherwise. The bytes are valid until the buffer is reused.
  private func readPackRange(
    _ key: String, offset: Int64, length: Int64, local: LocalStore?, scratch: BlobScratch
  ) throws -> UnsafeMutableRawBufferPointer {
    let buf = scratch.sealed(Int(length))
    do {
      if let local {
        try local.readRange(key, offset: offset, length: Int(length), into: buf)
      } else {
        let store = self.store
        let data = try blockingAwait { try await store.getRange(key, offset: offset, length: length) }
        guard data.count == Int(length) else {
          throw StorageError.failed(key: key, message: "ranged read returned \(data.count) of \(length) bytes")
        }
        data.withUnsafeBytes { buf.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
      }
    } catch StorageError.notFound {
      throw EngineError.integrity(object: key, message: "pack is missing")
    } catch StorageError.failed(_, let m) {
      throw EngineError.integrity(object: key, message: "pack cannot be read (truncated?): \(m)")
    }
    return UnsafeMutableRawBufferPointer(start: buf, count: Int(length))
  }

  /// Creates a one-blob file with its whole content and metadata (open, write, futimens, close for a new file whose
  /// mode the umask leaves intact). Where nothing is at `name` (a fresh target), the file is created there with
  /// `O_CREAT | O_EXCL | O_NOFOLLOW`, which opens nothing that exists; else it is written under a temporary name
  /// and renamed onto `name`: whatever was there (a file, a hard link to a file elsewhere, a symlink) is replaced,
  /// never written. A file that fails is removed either way.
  static func writeWholeFile(
    dir: Int32, name: String, display: String, node: TreeNode, _ bytes: UnsafeRawBufferPointer, isRoot: Bool,
    umask: mode_t, cut: Bool, warnings: RestoreWarnings
  ) throws {
    let perm = mode_t(node.mode) & 0o7777
    // Create with the final permissions when the umask keeps them (no set-id or sticky bits, which are set
    // after the owner).
    let direct = perm & 0o7000 == 0 && perm & ~umask == perm
    let mode = direct ? perm : 0o600
    // The common case, a new file in a new directory: created at its name, without a temporary name's random
    // bytes and rename (two of about eight system calls a small file costs).
    var fd = FSName.withCString(name) {
      openat(dir, $0, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode)
    }
    var tmp: String? = nil
    if fd < 0 {
      guard errno == EEXIST else { throw restoreFSError(path: display, errno) }
      (fd, tmp) = try RestoreRoot.createTemp(in: dir, mode: mode, display: display)
    }
    defer { close(fd) }
    do {
      // Aligned blocks of zeros are not written, and stay holes: the size is then set by ftruncate.
      let tailSkipped = try FileMetadata.writeSparse(fd: fd, bytes, offset: 0, what: display)
      try finishFile(
        fd: fd, node: node, path: display, isRoot: isRoot, modeSet: direct, cut: cut || tailSkipped,
        warnings: warnings)
      if let tmp { try RestoreRoot.replace(in: dir, tmp: tmp, name: name, display: display) }
    } catch {
      // The file this restore created, under whichever name.
      _ = FSName.withCString(tmp ?? name) { unlinkat(dir, $0, 0) }
      throw error
    }
  }

  /// Reopens the temporary file of a file of several blobs for writing, and checks that it is still the file the
  /// restore created (not something put in its place: a hard link, a FIFO, another file).
  static func reopenTemp(dir: Int32, _ p: PendingFile, display: String) throws -> Int32 {
    let fd = openat(dir, p.name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
    guard fd >= 0 else { throw restoreFSError(path: display, errno) }
    var st = stat()
    guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_dev) == p.device,
      UInt64(st.st_ino) == p.inode
    else {
      close(fd)
      throw EngineError.integrity(
        object: display, message: "its temporary file was replaced during the restore; refusing to write to it")
    }
    return fd
  }

  /// Makes a new directory entry under a fresh temporary name with `make` (which returns 0 or -1 with errno),
  /// retrying on a name that exists; returns the name.
  static func makeTempEntry(display: String, _ make: (String) -> Int32) throws -> String {
    for _ in 0..<16 {
      let tmp = RestoreRoot.tempName()
      if make(tmp) == 0 { return tmp }
      if errno != EEXIST { throw restoreIOError(path: display, errno) }
    }
    throw EngineError.io(path: display, message: "cannot create a temporary entry next to it (16 names taken)")
  }

  /// The process umask (read once per restore).
  static func currentUmask() -> mode_t {
    let m = Glibc.umask(0o022)
    Glibc.umask(m)
    return m
  }

  static func writeAll(fd: Int32, _ b: UnsafeRawBufferPointer, what: String, offset: Int64? = nil) throws {
    var off = 0
    while off < b.count {
      let n =
        offset.map { pwrite(fd, b.baseAddress! + off, b.count - off, off_t($0) + off_t(off)) }
        ?? write(fd, b.baseAddress! + off, b.count - off)
      if n < 0 {
        if errno == EINTR { continue }
        let e = errno
        if e == ENOSPC || e == EDQUOT { throw EngineError.noSpace(path: what, message: errnoMessage(e)) }
        throw EngineError.io(path: what, message: "write failed: \(errnoMessage(e))")
      }
      off += n
    }
  }

  /// Sets a complete file's owner, extended attributes, mode and mtime (and its size when the tree's size differs
  /// from what was written: content cut short or longer, or zeros at its end left as a hole).
  static func finishFile(
    fd: Int32, node n: TreeNode, path: String, isRoot: Bool, modeSet: Bool, cut: Bool, warnings: RestoreWarnings
  ) throws {
    if cut && ftruncate(fd, off_t(n.size)) != 0 { throw restoreIOError(path: path, errno) }
    if isRoot && fchown(fd, n.uid, n.gid) != 0 { throw restoreIOError(path: path, errno) }
    // After the owner (chown clears security.capability), before the mode (an access ACL sets group bits; the
    // mode after it puts the recorded ones back, which the ACL's mask was recorded as).
    warnings.xattrs(n.displayPath, FileMetadata.writeXattrs(fd: fd, n.xattrs))
    // chown clears set-id bits, so the mode comes after the owner.
    if !modeSet && fchmod(fd, mode_t(n.mode)) != 0 {
      throw restoreIOError(path: path, errno)
    }
    var ts = [
      timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
      timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
    ]
    if futimens(fd, &ts) != 0 { throw restoreIOError(path: path, errno) }
  }

  /// Makes a FIFO or device node under a temporary name (mknodat), gives it its owner (as root), extended
  /// attributes, mode and times without following it, and renames it into place. A device node needs CAP_MKNOD:
  /// without it the node is named in a warning and the restore goes on.
  func restoreSpecial(
    _ n: TreeNode, root: RestoreRoot, cache: RestoreDirCache, isRoot: Bool, umask mask: mode_t,
    warnings: RestoreWarnings
  ) throws {
    let (dp, dn) = RestoreRoot.split(n.path)
    let shown = root.display(n.displayPath)
    let dst = try cache.dir(dp)
    let type: mode_t =
      switch n.kind {
      case .fifo: S_IFIFO
      case .charDevice: S_IFCHR
      default: S_IFBLK
      }
    let perm = mode_t(n.mode) & 0o7777
    let direct = perm & 0o7000 == 0 && perm & ~mask == perm
    var denied: Int32 = 0
    let tmp: String
    do {
      tmp = try Self.makeTempEntry(display: shown) { t in
        let r = mknodat(dst, t, type | (direct ? perm : 0o600), dev_t(n.rdev))
        if r != 0 && (errno == EPERM || errno == EACCES) && n.kind != .fifo {
          denied = errno
        }
        return r
      }
    } catch let e as EngineError {
      guard denied != 0 else { throw e }
      warnings.deviceNotMade(n.displayPath)
      return
    }
    do {
      // Everything else through a descriptor of the node itself (O_PATH: a device is not opened), checked to be the
      // node just made: someone who can write the directory could have put a hard link to another file there.
      let fd = try Self.openMadeNode(dir: dst, tmp, type: type, display: shown)
      defer { close(fd) }
      let proc = "/proc/self/fd/\(fd)"
      if isRoot && fchownat(fd, "", n.uid, n.gid, FileMetadata.atEmptyPath) != 0 {
        throw Self.restoreIOError(path: shown, errno)
      }
      // The path of the descriptor in /proc leads to that very inode (it is not looked up by name again).
      if !n.xattrs.isEmpty {
        warnings.xattrs(n.displayPath, FileMetadata.writeXattrs(n.xattrs) { setxattr(proc, $0, $1, $2, 0) })
      }
      if !direct && chmod(proc, perm) != 0 { throw Self.restoreIOError(path: shown, errno) }
      var ts = [
        timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
        timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
      ]
      if utimensat(AT_FDCWD, proc, &ts, 0) != 0 { throw Self.restoreIOError(path: shown, errno) }
      try RestoreRoot.replace(in: dst, tmp: tmp, name: dn, display: shown)
    } catch {
      unlinkat(dst, tmp, 0)
      throw error
    }
  }

  /// Opens (O_PATH, not following) the entry `tmp` the restore just made in `dir`, and checks that it is still that
  /// entry: of `type`, with one link. A hard link to a file elsewhere put in its place is refused.
  static func openMadeNode(dir: Int32, _ tmp: String, type: mode_t, display: String) throws -> Int32 {
    let fd = openat(dir, tmp, FileMetadata.openPath | O_NOFOLLOW | O_CLOEXEC)
    guard fd >= 0 else { throw restoreFSError(path: display, errno) }
    var st = stat()
    guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == type, st.st_nlink == 1 else {
      close(fd)
      throw EngineError.integrity(
        object: display, message: "its temporary entry was replaced during the restore; refusing to change it")
    }
    return fd
  }

  static func restoreIOError(path: String, _ e: Int32) -> EngineError {
    if e == ENOSPC || e == EDQUOT { return .noSpace(path: path, message: errnoMessage(e)) }
    if e == ELOOP { return .integrity(object: path, message: "refusing to write through a symlink (symlink escape)") }
    return .io(path: path, message: errnoMessage(e))
  }
}
