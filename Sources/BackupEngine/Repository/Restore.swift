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
  public var workers: Int
  public var progress: ProgressHandler?
  public init(
    target: String? = nil, stdoutFD: Int32? = nil, paths: [String] = [],
    // More threads than cores: creating many small files is latency-bound on real disks.
    workers: Int = max(4, 2 * ProcessInfo.processInfo.activeProcessorCount), progress: ProgressHandler? = nil
  ) {
    self.target = target
    self.stdoutFD = stdoutFD
    self.paths = paths
    self.workers = workers
    self.progress = progress
  }
}

/// The outcome of a restore.
public struct RestoreResult: Sendable {
  public var snapshotID: ID
  public var files: Int
  public var bytes: Int64
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
    var nodes = try await loadTree(snapshot, index: index)
    try TreeFormat.checkSafe(nodes)
    if !options.paths.isEmpty {
      let sel = options.paths.map { p -> String in
        var s = p
        while s.hasPrefix("/") { s.removeFirst() }
        while s.hasSuffix("/") { s.removeLast() }
        return s
      }
      let all = Dictionary(nodes.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
      nodes = nodes.filter { n in sel.contains { n.path == $0 || n.path.hasPrefix($0 + "/") } }
      // A hard link whose first file is not selected becomes a copy of that file.
      let chosen = Set(nodes.map { $0.path })
      nodes = nodes.map { n in
        guard n.kind == .hardlink, !chosen.contains(n.linkTarget), let t = all[n.linkTarget] else { return n }
        var c = t
        c.path = n.path
        return c
      }
      guard !nodes.isEmpty else {
        throw EngineError.usage("--path \(options.paths) matches nothing in snapshot \(snapshot.id.short)")
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
    let res = try await restoreTree(nodes, to: target, index: index, keys: keys, options: options)
    audit.record("restored", details: ["snapshot": snapshot.id.hex, "files": "\(res.0)", "bytes": "\(res.1)"])
    return RestoreResult(snapshotID: snapshot.id, files: res.0, bytes: res.1)
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

  func writeAll(fd: Int32, _ bytes: [UInt8], what: String, offset: Int64? = nil) throws {
    try bytes.withUnsafeBytes { b in
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
  }

  private func restoreTree(
    _ nodes: [TreeNode], to target: String, index: MasterIndex, keys: [KeyType: [UInt8]], options: RestoreOptions
  ) async throws -> (Int, Int64) {
    let root = Self.normalize(target)
    try makeDir(root, mode: 0o755, allowExisting: true)
    // Directories (and the parents of selected entries), then empty files.
    var dirs = Set<String>()
    func ensureParents(_ rel: String) throws {
      var comps = rel.split(separator: "/").dropLast()
      var acc = ""
      while !comps.isEmpty {
        let c = comps.removeFirst()
        acc = acc.isEmpty ? String(c) : acc + "/" + c
        if dirs.insert(acc).inserted { try makeDir(root + "/" + acc, mode: 0o700, allowExisting: true) }
      }
    }
    for n in nodes {
      try ensureParents(n.path)
      if n.kind == .directory, dirs.insert(n.path).inserted {
        try makeDir(root + "/" + n.path, mode: 0o700, allowExisting: true)
      }
    }
    // Plan: for each pack, the blobs it holds and where each goes.
    struct Target {
      var file: Int
      var offset: Int64
    }
    let files = nodes.filter { $0.kind == .file }
    var plan: [ID: [ID: [Target]]] = [:]
    var entries: [ID: BlobEntry] = [:]
    for (fi, f) in files.enumerated() {
      let path = root + "/" + f.path
      if f.content.isEmpty {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Self.restoreIOError(path: path, errno) }
        close(fd)
      }
      var off: Int64 = 0
      for c in f.content {
        let l = index.lookup(c)!
        plan[l.pack, default: [:]][c, default: []].append(Target(file: fi, offset: off))
        entries[c] = l.entry
        off += Int64(l.entry.rawLength)
      }
    }
    // Packs in the order of the first file they serve, so files are created roughly in tree order.
    var firstUse: [ID: Int] = [:]
    var remainingWrites = [Int](repeating: 0, count: files.count)
    for (p, blobs) in plan {
      for (_, ts) in blobs {
        for t in ts {
          firstUse[p] = min(firstUse[p] ?? Int.max, t.file)
          remainingWrites[t.file] += 1
        }
      }
    }
    let packs = plan.keys.sorted { firstUse[$0]! < firstUse[$1]! }
    let remaining = Locked(remainingWrites)
    let isRoot = geteuid() == 0
    let run = RestoreRun()
    let total = files.reduce(Int64(0)) { $0 + Int64($1.size) }
    let paths = files.map { root + "/" + $0.path }
    let planC = plan
    let entriesC = entries
    await runThreads(max(1, options.workers), name: "restore") { _ in
      do {
        var ciphers: [KeyType: AESGCM] = [:]
        for (k, v) in keys { ciphers[k] = try AESGCM(key: v) }
        let z = ZstdContext()
        while !run.failed {
          let pi = run.lock.withLock { () -> Int in
            defer { run.nextPack += 1 }
            return run.nextPack
          }
          if pi >= packs.count { break }
          let pack = packs[pi]
          let blobs = planC[pack]!
          let es = blobs.keys.map { entriesC[$0]! }
          let lo = es.map { Int64($0.offset) }.min()!
          let hi = es.map { Int64($0.offset) + Int64($0.sealedLength) }.max()!
          let store = self.store
          let key = Self.packKey(pack)
          let data: Data
          do {
            data = try blockingAwait { try await store.getRange(key, offset: lo, length: hi - lo) }
          } catch StorageError.notFound {
            throw EngineError.integrity(object: key, message: "pack is missing")
          } catch StorageError.failed(_, let m) {
            throw EngineError.integrity(object: key, message: "pack cannot be read (truncated?): \(m)")
          }
          for (id, targets) in blobs {
            let e = entriesC[id]!
            let plain = try data.withUnsafeBytes { d in
              try self.openBlob(
                UnsafeRawBufferPointer(
                  rebasing: d[(Int(Int64(e.offset) - lo))..<(Int(Int64(e.offset) - lo) + Int(e.sealedLength))]),
                entry: e, pack: pack, ciphers: ciphers, zstd: z)
            }
            for t in targets {
              let path = paths[t.file]
              let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
              guard fd >= 0 else { throw Self.restoreIOError(path: path, errno) }
              defer { close(fd) }
              try self.writeAll(fd: fd, plain, what: path, offset: t.offset)
              let last = remaining.with { r -> Bool in
                r[t.file] -= 1
                return r[t.file] == 0
              }
              // The file is complete: set its size, owner, mode and time through the open descriptor.
              if last { try Self.finishFile(fd: fd, node: files[t.file], path: path, isRoot: isRoot) }
            }
            let ev = run.lock.withLock { () -> ProgressEvent? in
              run.bytes += Int64(plain.count * targets.count)
              let now = Date()
              guard now.timeIntervalSince(run.lastProgress) >= 0.5 else { return nil }
              run.lastProgress = now
              return ProgressEvent(
                phase: "restore", files: 0, bytesDone: run.bytes, bytesTotal: total, bytesStored: 0, errors: 0)
            }
            if let ev { options.progress?(ev) }
          }
        }
      } catch {
        run.fail(error)
      }
    }
    if let e = run.lock.withLock({ run.fatal }) { throw e }
    // Hard links, symlinks, then metadata (empty files, then directories deepest first).
    for n in nodes where n.kind == .hardlink {
      let p = root + "/" + n.path
      unlink(p)
      guard link(root + "/" + n.linkTarget, p) == 0 else { throw Self.restoreIOError(path: p, errno) }
    }
    for n in nodes where n.kind == .symlink {
      let p = root + "/" + n.path
      unlink(p)
      guard symlink(n.linkTarget, p) == 0 else { throw Self.restoreIOError(path: p, errno) }
      if isRoot { lchown(p, n.uid, n.gid) }
      var ts = [
        timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
        timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
      ]
      utimensat(AT_FDCWD, p, &ts, AT_SYMLINK_NOFOLLOW)
    }
    func applyMeta(_ n: TreeNode) throws {
      let p = root + "/" + n.path
      if isRoot && lchown(p, n.uid, n.gid) != 0 { throw Self.restoreIOError(path: p, errno) }
      if chmod(p, mode_t(n.mode)) != 0 { throw Self.restoreIOError(path: p, errno) }
      var ts = [
        timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
        timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
      ]
      if utimensat(AT_FDCWD, p, &ts, AT_SYMLINK_NOFOLLOW) != 0 { throw Self.restoreIOError(path: p, errno) }
    }
    for n in files where n.content.isEmpty { try applyMeta(n) }
    for n in nodes.filter({ $0.kind == .directory }).sorted(by: { $0.path.count > $1.path.count }) { try applyMeta(n) }
    return (nodes.filter { $0.kind != .directory }.count, total)
  }

  /// Sets a complete file's size (cutting a longer pre-existing file), owner, mode and mtime.
  static func finishFile(fd: Int32, node n: TreeNode, path: String, isRoot: Bool) throws {
    var st = stat()
    if fstat(fd, &st) != 0 { throw restoreIOError(path: path, errno) }
    // Only a longer file that existed in the target before needs cutting (ext4 flushes truncated files on close).
    if st.st_size != off_t(n.size) && ftruncate(fd, off_t(n.size)) != 0 { throw restoreIOError(path: path, errno) }
    if isRoot && fchown(fd, n.uid, n.gid) != 0 { throw restoreIOError(path: path, errno) }
    if fchmod(fd, mode_t(n.mode)) != 0 { throw restoreIOError(path: path, errno) }
    var ts = [
      timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
      timespec(tv_sec: Int(n.mtimeSec), tv_nsec: Int(n.mtimeNsec)),
    ]
    if futimens(fd, &ts) != 0 { throw restoreIOError(path: path, errno) }
  }

  static func restoreIOError(path: String, _ e: Int32) -> EngineError {
    if e == ENOSPC || e == EDQUOT { return .noSpace(path: path, message: errnoMessage(e)) }
    if e == ELOOP { return .integrity(object: path, message: "refusing to write through a symlink (symlink escape)") }
    return .io(path: path, message: errnoMessage(e))
  }

  /// Creates a directory, refusing an existing symlink in its place.
  func makeDir(_ path: String, mode: mode_t, allowExisting: Bool) throws {
    if mkdir(path, mode) == 0 { return }
    let e = errno
    if e == EEXIST && allowExisting {
      var st = stat()
      guard lstat(path, &st) == 0 else { throw Self.restoreIOError(path: path, errno) }
      if (st.st_mode & S_IFMT) == S_IFDIR { return }
      throw EngineError.integrity(object: path, message: "exists and is not a directory (symlink escape refused)")
    }
    if e == ENOENT {
      let parent = (path as NSString).deletingLastPathComponent
      if !parent.isEmpty && parent != path {
        try makeDir(parent, mode: 0o755, allowExisting: true)
        if mkdir(path, mode) == 0 { return }
      }
    }
    throw Self.restoreIOError(path: path, e)
  }
}
