import EngineContract
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What to back up and how.
public struct BackupOptions: Sendable {
  public var paths: [String]
  public var dataType: KeyType
  public var tags: [String: String]
  public var hostname: String
  /// Back up standard input as one file with this name instead of `paths`.
  public var stdinName: String?
  /// The descriptor read for `stdinName` (0 = standard input).
  public var stdinFD: Int32
  /// Worker threads for hash/compress/encrypt.
  public var workers: Int
  /// How hard file and stream data is compressed (trees and metadata always use the default level).
  public var compression: Compression
  public var progress: ProgressHandler?
  /// Called once all input is read, before anything refers to it (tree, index, snapshot): a stream's producer in
  /// another process can still fail the backup here, so that no snapshot records a truncated dump.
  public var inputComplete: (@Sendable () throws -> Void)?
  /// The time recorded in the snapshot (restic's `backup --time`); nil records when the backup started.
  public var time: Date? = nil
  /// What to leave out below `paths` (restic's `--exclude`, `--one-file-system`, `--exclude-if-present`).
  public var selection = BackupSelection()

  public init(
    paths: [String], dataType: KeyType = .files, tags: [String: String] = [:],
    hostname: String = ProcessInfo.processInfo.hostName, stdinName: String? = nil, stdinFD: Int32 = 0,
    workers: Int = max(2, ProcessInfo.processInfo.activeProcessorCount), compression: Compression = .auto,
    progress: ProgressHandler? = nil
  ) {
    self.paths = paths
    self.dataType = dataType
    self.tags = tags
    self.hostname = hostname
    self.stdinName = stdinName
    self.stdinFD = stdinFD
    self.workers = workers
    self.compression = compression
    self.progress = progress
  }
}

/// The outcome of a backup.
public struct BackupResult: Sendable {
  public var snapshotID: ID
  public var files: Int
  public var dirs: Int
  /// Logical bytes of all files in the snapshot.
  public var bytesRead: Int64
  /// Bytes of the pack files this run wrote (sealed blobs and headers, after deduplication, compression and
  /// encryption): what the snapshot added to the repository's data (index files and the manifest not counted).
  public var bytesStored: Int64
  /// Plaintext bytes of blobs that were new.
  public var bytesNew: Int64
  public var filesUnchanged: Int
  public var blobsNew: Int
  public var blobsDeduplicated: Int
  public var adoptedPacks: Int
  /// Sources that could not be read or changed while read; the snapshot omits or flags them.
  public var errors: [String]
  /// Entries the selection (`BackupOptions.selection`) left out, each counted once: an excluded directory's content
  /// is not read.
  public var excluded: Int = 0
  /// What the snapshot leaves out on purpose (sockets), or records incompletely without failing (extended
  /// attributes that cannot be read).
  public var warnings: [String] = []
  /// The manifest's time (RFC 3339): when the backup started reading, or its `--time`.
  public var time: String = ""
  /// The sizes of every pack file under data/ after the run, summed: those the run listed when it started (adopted,
  /// unindexed and doubted packs included) and those it wrote. Index files, manifests and keys are not counted.
  public var repositoryPackBytes: Int64 = 0
  /// 1 - new bytes / logical bytes: the share of the data that was already stored.
  public var dedupRatio: Double { bytesRead == 0 ? 1 : max(0, 1 - Double(bytesNew) / Double(bytesRead)) }
}

/// One chunk on its way from the reader to a worker.
struct ChunkJob {
  var slot: Int
  var seq: Int
  var data: [UInt8]
  /// False for every chunk of a file or stream that starts as an already-compressed format does
  /// (`CompressedFormat.starts`): its blobs are stored as they are, without spending zstd on them.
  var compress = true
}

/// Shared mutable state of one backup run.
final class BackupRun: @unchecked Sendable {
  let lock = NSLock()
  /// The chunk ids of the files being read, in one list: the scan reads one file at a time, so a file's chunks are
  /// contiguous, from `slotStarts[slot]` to the next slot's start. Each id is set by the worker that hashed it.
  var chunkIDs: [ID] = []
  var slotStarts: [Int] = []
  /// Chunks queued whose id is not set yet.
  var chunksPending = 0
  var inflight = Set<ID>()
  var pendingIndex: [IndexPack] = []
  var packsWritten = 0
  var bytesStored: Int64 = 0
  /// The pack files written, id → size.
  var packSizes: [ID: Int64] = [:]
  var bytesNew: Int64 = 0
  var blobsNew = 0
  var blobsDup = 0
  var bytesRead: Int64 = 0
  var files = 0
  var dirs = 0
  var filesUnchanged = 0
  var excluded = 0
  var errors: [String] = []
  /// Sockets passed over (not backed up: there is nothing to restore), reported in one warning.
  var sockets: [String] = []
  /// Entries whose extended attributes could not be read (recorded without them), reported in one warning.
  var unreadXattrs: [String] = []
  var fatal: (any Error)?
  var lastProgress = Date()

  func fail(_ e: any Error) {
    lock.withLock {
      if fatal == nil { fatal = e }
    }
  }
  var failed: Bool { lock.withLock { fatal != nil } }
}

/// A sealed pack waiting for upload.
struct FinishedPack: @unchecked Sendable {
  var id: ID
  var data: [UInt8]
  var entries: [BlobEntry]
}

/// Accumulates sealed blobs for one pack.
struct PackBuilder {
  var body: [UInt8] = []
  var entries: [BlobEntry] = []
  var rawBytes: Int64 = 0
}

extension Repository {
  /// Runs a backup: packs, then index, then tree, then the signed manifest.
  public func backup(_ opts: BackupOptions) async throws -> BackupResult {
    let started = opts.time ?? Date()
    // Damaged or planted index files and manifests are skipped (named in `warnings`), and packs whose integrity is in
    // doubt are not deduplicated against (nor adopted): their blobs are stored again, so the new snapshot never
    // depends on an object an attacker overwrote.
    let index = try await loadIndexSkippingDamaged()
    var listed = try await listPacks()
    // Every pack file there is, for the repository's size after the run (no second listing).
    let packsBefore = listed
    let doubt = try await packsInDoubt(index: index, listed: listed)
    for id in doubt { listed[id] = nil }
    index.retainOnly(packs: Set(listed.keys))
    let adopted = try await adoptOrphanPacks(index: index, listed: listed)
    let snaps = try await loadSnapshotsSkippingDamaged()
    let sortedPaths = opts.stdinName.map { ["stdin:" + $0] } ?? opts.paths.map { Self.normalize($0) }.sorted()
    let parent = snaps.last {
      $0.manifest.hostname == opts.hostname && $0.manifest.dataType == opts.dataType.name
        && $0.manifest.paths == sortedPaths
    }
    // What the scan compares a file with, not whole nodes; dropped once the scan is done.
    let parentFiles = ParentFiles()
    if let parent, opts.stdinName == nil {
      do {
        let bytes = try await loadTreeBytes(parent, index: index)
        do { try parentFiles.load(bytes) } catch let e as FormatError {
          throw EngineError.integrity(object: "tree of snapshot \(parent.id.short)", message: e.message)
        }
      } catch {
        logger.warning("parent snapshot \(parent.id.short) unusable, reading every file: \(error)")
      }
    }
    let keys = try await keys(for: [opts.dataType])
    let dataKey = keys[opts.dataType]!
    let macK = macKey(opts.dataType)
    let run = BackupRun()
    // 8 MiB of chunks in flight between the reader and the workers (about 8 average chunks).
    let queue = BoundedQueue<ChunkJob>(maxBytes: 8 << 20)
    let nodes = ScannedNodes()
    let packSize = config.packSize
    let chunker = self.chunker

    // Thread 0 reads and chunks; workers hash, dedup, compress, encrypt and pack; uploaders store packs.
    let workers = max(1, opts.workers)
    let uploaders = 1
    let uploads = BoundedQueue<FinishedPack>(maxBytes: packSize)
    let workersLeft = Locked(workers)
    await runThreads(1 + workers + uploaders, name: "backup") { i in
      if i == 0 {
        defer { queue.close() }
        let scanner = Scanner(
          repo: self, run: run, queue: queue, chunker: chunker, parentFiles: parentFiles, nodes: nodes, index: index,
          progress: opts.progress, selection: opts.selection)
        if let name = opts.stdinName {
          scanner.scanStdin(fd: opts.stdinFD, name: name)
        } else {
          for p in opts.paths { scanner.scanRoot(p) }
        }
        return
      }
      if i > workers {
        while let fp = uploads.pop(size: { $0.data.count }) {
          do { try self.upload(fp, run: run, index: index) } catch {
            run.fail(error)
            queue.close()
            uploads.close()
          }
        }
        return
      }
      defer {
        if workersLeft.with({ n -> Int in
          n -= 1
          return n
        }) == 0 {
          uploads.close()
        }
      }
      do {
        try self.worker(
          run: run, queue: queue, index: index, dataKey: dataKey, keyType: opts.dataType, macKey: macK,
          compression: opts.compression, packSize: packSize, uploads: uploads)
      } catch {
        run.fail(error)
        queue.close()
      }
    }
    parentFiles.removeAll()
    if let e = run.lock.withLock({ run.fatal }) { throw e }
    if let check = opts.inputComplete { try check() }
    // One last status with the totals, however short the run (progress lines are otherwise at most every 0.5 s).
    if let progress = opts.progress {
      progress(
        run.lock.withLock {
          ProgressEvent(
            phase: "backup", files: Int64(run.files), bytesDone: run.bytesRead, bytesTotal: run.bytesRead,
            bytesStored: run.bytesStored, errors: Int64(run.errors.count))
        })
    }

    // Object Lock: the packs the new snapshot's files reference.
    var snapshotPacks = Set<ID>()
    if retention() != nil, store.supportsRetention {
      for c in nodes.knownContent { if let l = index.lookup(c) { snapshotPacks.insert(l.pack) } }
      for c in run.chunkIDs { if let l = index.lookup(c) { snapshotPacks.insert(l.pack) } }
    }
    let (files, dirs, total) = (nodes.files, nodes.dirs, nodes.bytes)
    // storeTree uploads through blockingAwait (for remote stores): off the cooperative pool.
    let treeIDs = try await onOwnThread { try self.storeTree(nodes, run: run, index: index) }
    let pending = run.lock.withLock { () -> [IndexPack] in
      defer { run.pendingIndex.removeAll() }
      return run.pendingIndex
    }
    if !pending.isEmpty {
      let name = try await writeIndex(pending)
      audit.record("stored", details: ["index": name, "packs": "\(pending.count)"])
    }

    // Object Lock: extend the retention of every pack the new snapshot references, the config and key file.
    if let r = retention(), store.supportsRetention {
      var packs = snapshotPacks
      for t in treeIDs { if let l = index.lookup(t) { packs.insert(l.pack) } }
      for p in packs { try await store.extendRetention(Self.packKey(p), to: r) }
      // And of the config and the key file: a locked snapshot is readable only with them.
      try await extendKeyRetention(to: r)
    }

    let errors = run.lock.withLock { run.errors }
    var warnings: [String] = []
    let (sockets, unreadXattrs) = run.lock.withLock { (run.sockets, run.unreadXattrs) }
    func names(_ a: [String], _ sep: String) -> String {
      a.prefix(5).joined(separator: sep) + (a.count > 5 ? "\(sep)..." : "")
    }
    if !sockets.isEmpty {
      warnings.append("skipped \(sockets.count) socket(s) (\(names(sockets, ", "))): sockets are not backed up")
    }
    if !unreadXattrs.isEmpty {
      warnings.append(
        "recorded \(unreadXattrs.count) entr\(unreadXattrs.count == 1 ? "y" : "ies") without (some of) their "
          + "extended attributes, which could not be read (\(names(unreadXattrs, "; ")))")
    }
    let manifest = Manifest(
      version: 1, repo: config.id, seq: (snaps.map { $0.manifest.seq }.max() ?? 0) + 1, parent: parent?.id.hex,
      time: Manifest.formatTime(started), hostname: opts.hostname, dataType: opts.dataType.name, paths: sortedPaths,
      stdinName: opts.stdinName, tags: opts.tags, tree: treeIDs.map { $0.hex },
      summary: .init(files: files, dirs: dirs, bytes: total, errors: errors.count))
    let obj = try SnapshotFormat.encodeObject(
      manifest, signingKey: signingKey, meta: try AESGCM(key: metaKey), zstd: ZstdContext(), repo: repoID)
    let sid = try await putContentAddressed(prefix: "snapshots/", bytes: obj)
    let res = run.lock.withLock {
      BackupResult(
        snapshotID: sid, files: files, dirs: dirs, bytesRead: total, bytesStored: run.bytesStored,
        bytesNew: run.bytesNew,
        filesUnchanged: run.filesUnchanged, blobsNew: run.blobsNew, blobsDeduplicated: run.blobsDup,
        adoptedPacks: adopted, errors: errors, excluded: run.excluded, warnings: warnings, time: manifest.time,
        repositoryPackBytes: packsBefore.merging(run.packSizes) { $1 }.values.reduce(0, +))
    }
    audit.record(
      "encrypted",
      details: ["keyType": opts.dataType.name, "newBlobs": "\(res.blobsNew)", "algorithm": "AES-256-GCM"])
    audit.record(
      "stored", outcome: errors.isEmpty ? "success" : "partial",
      details: [
        "snapshot": sid.hex, "files": "\(files)", "bytesRead": "\(total)", "bytesStored": "\(res.bytesStored)",
        "errors": "\(errors.count)",
      ])
    return res
  }

  static func normalize(_ p: String) -> String {
    var s = p
    while s.count > 1 && s.hasSuffix("/") { s.removeLast() }
    return s
  }

  /// The name a backed-up path is stored under in the snapshot: its base name ("root" for `/`).
  public static func storedName(of path: String) -> String {
    let p = normalize(path)
    var name = (p as NSString).lastPathComponent
    if name == "/" || name.isEmpty || name == "." || name == ".." {
      name = ((FileManager.default.currentDirectoryPath + "/" + p) as NSString).standardizingPath
      name = (name as NSString).lastPathComponent
      if name == "/" || name.isEmpty { name = "root" }
    }
    return name
  }

  /// The worker loop of one pipeline thread.
  func worker(
    run: BackupRun, queue: BoundedQueue<ChunkJob>, index: MasterIndex, dataKey: [UInt8], keyType: KeyType,
    macKey: Crypto.HMACKey, compression: Compression, packSize: Int, uploads: BoundedQueue<FinishedPack>
  ) throws {
    let z = compression.zstdLevel.map { ZstdContext(level: $0) }
    let cipher = try AESGCM(key: dataKey)
    let meta = try AESGCM(key: metaKey)
    var pack = PackBuilder()
    while let job = queue.pop(size: { $0.data.count }) {
      let id = ID(macKey.mac(job.data))
      let isNew = run.lock.withLock { () -> Bool in
        run.chunkIDs[run.slotStarts[job.slot] + job.seq] = id
        run.chunksPending -= 1
        if run.inflight.contains(id) || index.contains(id) {
          run.blobsDup += 1
          return false
        }
        run.inflight.insert(id)
        run.blobsNew += 1
        run.bytesNew += Int64(job.data.count)
        return true
      }
      if !isNew { continue }
      try addBlob(job.data, id: id, type: .data, keyType: keyType, to: &pack, z: job.compress ? z : nil, cipher: cipher)
      if pack.body.count >= packSize {
        try flushPack(&pack, run: run, index: index, meta: meta, uploads: uploads)
      }
    }
    if run.failed { return }
    try flushPack(&pack, run: run, index: index, meta: meta, uploads: uploads)
  }

  func addBlob(
    _ data: [UInt8], id: ID, type: BlobType, keyType: KeyType, to pack: inout PackBuilder, z: ZstdContext?,
    cipher: AESGCM
  ) throws {
    let compressed = z.flatMap { z in data.withUnsafeBytes { z.compress($0) } }
    let aad = BlobEntry.aad(repo: repoID, type: type, keyType: keyType, id: id)
    let offset = pack.body.count
    let sealedLength = try (compressed ?? data).withUnsafeBytes {
      try cipher.seal($0, aad: aad, appendingTo: &pack.body)
    }
    pack.entries.append(
      BlobEntry(
        id: id, type: type, keyType: keyType, compressed: compressed != nil, offset: UInt32(offset),
        sealedLength: UInt32(sealedLength), rawLength: UInt32(data.count)))
    pack.rawBytes += Int64(data.count)
  }

  /// Finishes a pack and uploads it, directly or through `uploads` (the uploader threads), then records
  /// it for the index.
  func flushPack(
    _ pack: inout PackBuilder, run: BackupRun, index: MasterIndex, meta: AESGCM,
    uploads: BoundedQueue<FinishedPack>? = nil
  ) throws {
    guard !pack.entries.isEmpty else { return }
    var body = pack.body
    let entries = pack.entries
    pack = PackBuilder()
    pack.body.reserveCapacity(config.packSize + (1 << 20))
    try PackFormat.finish(body: &body, entries: entries, meta: meta, repo: repoID)
    let id = ID(Crypto.sha256(body))
    // No copy into a Data here: a local store writes the array as is; remote stores convert when uploading.
    let fp = FinishedPack(id: id, data: body, entries: entries)
    if let uploads {
      if !uploads.push(fp, size: fp.data.count) { throw EngineError.failed("backup aborted") }
    } else {
      try upload(fp, run: run, index: index)
    }
  }

  /// Uploads a finished pack and records it (writing an index file every 64 packs).
  func upload(_ fp: FinishedPack, run: BackupRun, index: MasterIndex) throws {
    let opts = putOptions()
    let store = self.store
    if let local = store as? LocalStore {
      try fp.data.withUnsafeBytes { try local.putBytes(Self.packKey(fp.id), $0, options: opts) }
    } else {
      let data = Data(fp.data)
      try blockingAwait { try await store.put(Self.packKey(fp.id), data: data, options: opts) }
    }
    let ip = IndexPack(packID: fp.id, packSize: UInt64(fp.data.count), entries: fp.entries)
    index.add(ip)
    let toWrite = run.lock.withLock { () -> [IndexPack]? in
      run.pendingIndex.append(ip)
      run.packsWritten += 1
      run.bytesStored += Int64(fp.data.count)
      run.packSizes[fp.id] = Int64(fp.data.count)
      if run.pendingIndex.count >= 64 {
        defer { run.pendingIndex.removeAll() }
        return run.pendingIndex
      }
      return nil
    }
    if let toWrite {
      let name = try blockingAwait { try await self.writeIndex(toWrite) }
      audit.record("stored", details: ["index": name, "packs": "\(toWrite.count)"])
    }
  }

  /// Splits a serialized tree into meta-keyed tree blobs: the ids of all pieces in order, and where in `bytes`
  /// the pieces the index does not hold yet are (each once; ranges, so the tree is not held twice).
  func treePieces(_ bytes: [UInt8], index: MasterIndex) -> (ids: [ID], new: [(id: ID, range: Range<Int>)]) {
    let macK = macKey(.meta)
    var ids: [ID] = []
    var new: [(id: ID, range: Range<Int>)] = []
    var added = Set<ID>()
    var start = 0
    bytes.withUnsafeBytes { all in
      while start < all.count {
        let rest = UnsafeRawBufferPointer(rebasing: all[start...])
        let n = chunker.nextBoundary(rest, isFinal: true) ?? rest.count
        let id = ID(macK.mac(UnsafeRawBufferPointer(rebasing: rest[0..<n])))
        ids.append(id)
        if !index.contains(id) && added.insert(id).inserted { new.append((id, start..<(start + n))) }
        start += n
      }
    }
    return (ids, new)
  }

  /// Chunks and stores the serialized tree as meta-keyed tree blobs; returns their ids.
  func storeTree(_ bytes: [UInt8], run: BackupRun, index: MasterIndex) throws -> [ID] {
    var w = try TreeBlobWriter(repo: self, run: run, index: index)
    var rest = bytes
    try w.consume(&rest, final: true)
    return try w.finish()
  }

  /// Stores a backup's scanned nodes as its tree: encoded in path order a piece at a time, never whole, and cut
  /// into the tree blobs `storeTree` cuts the whole tree into.
  func storeTree(_ nodes: ScannedNodes, run: BackupRun, index: MasterIndex) throws -> [ID] {
    guard run.chunksPending == 0 else {
      throw EngineError.failed("internal error: \(run.chunksPending) chunks of the files read have no id")
    }
    var w = try TreeBlobWriter(repo: self, run: run, index: index)
    try nodes.encode(
      flushAt: chunker.parameters.max,
      slotContent: { slot in
        let end = slot + 1 < run.slotStarts.count ? run.slotStarts[slot + 1] : run.chunkIDs.count
        return Array(run.chunkIDs[run.slotStarts[slot]..<end])
      },
      emit: { buffer, final in try w.consume(&buffer, final: final) })
    return try w.finish()
  }
}

/// Cuts a serialized tree, handed over a piece at a time, into meta-keyed tree blobs (where the chunker cuts the
/// whole tree: it cuts where it finds a boundary, or at its maximum, from each blob's start), and packs and stores
/// those the index does not hold yet, a pack at a time.
struct TreeBlobWriter {
  let repo: Repository
  let run: BackupRun
  let index: MasterIndex
  let macKey: Crypto.HMACKey
  let z = ZstdContext()
  let meta: AESGCM
  var pack = PackBuilder()
  var ids: [ID] = []
  var added = Set<ID>()

  init(repo: Repository, run: BackupRun, index: MasterIndex) throws {
    self.repo = repo
    self.run = run
    self.index = index
    macKey = repo.macKey(.meta)
    meta = try AESGCM(key: repo.metaKey)
  }

  /// Stores the blobs that end in `buffer` (all of it when `final`) and drops their bytes from its front.
  mutating func consume(_ buffer: inout [UInt8], final: Bool) throws {
    var start = 0
    while start < buffer.count {
      let n = buffer.withUnsafeBytes { all in
        repo.chunker.nextBoundary(UnsafeRawBufferPointer(rebasing: all[start...]), isFinal: final)
      }
      guard let n else { break }
      let piece = Array(buffer[start..<(start + n)])
      let id = ID(macKey.mac(piece))
      ids.append(id)
      if !index.contains(id) && added.insert(id).inserted {
        try repo.addBlob(piece, id: id, type: .tree, keyType: .meta, to: &pack, z: z, cipher: meta)
        if pack.body.count >= repo.config.packSize { try repo.flushPack(&pack, run: run, index: index, meta: meta) }
      }
      start += n
    }
    buffer.removeFirst(start)
  }

  /// Stores the last pack; the ids of all the tree's blobs, in order.
  mutating func finish() throws -> [ID] {
    try repo.flushPack(&pack, run: run, index: index, meta: meta)
    return ids
  }
}

/// Walks the sources on the reader thread: stats, compares with the parent, reads and chunks files.
private final class Scanner {
  let repo: Repository
  let run: BackupRun
  let queue: BoundedQueue<ChunkJob>
  let chunker: Chunker
  /// The parent snapshot's files, by `TreeNode.pathKey`.
  let parentFiles: ParentFiles
  let nodes: ScannedNodes
  let index: MasterIndex
  let progress: ProgressHandler?
  let selection: BackupSelection
  /// The device of the path being backed up (`--one-file-system`).
  var rootDevice: UInt64 = 0
  var hardlinks: [String: String] = [:]
  var users: [UInt32: String] = [:]
  var groups: [UInt32: String] = [:]
  let bufSize: Int
  let buf: UnsafeMutableRawBufferPointer

  init(
    repo: Repository, run: BackupRun, queue: BoundedQueue<ChunkJob>, chunker: Chunker,
    parentFiles: ParentFiles, nodes: ScannedNodes, index: MasterIndex, progress: ProgressHandler?,
    selection: BackupSelection
  ) {
    self.selection = selection
    self.repo = repo
    self.run = run
    self.queue = queue
    self.chunker = chunker
    self.parentFiles = parentFiles
    self.nodes = nodes
    self.index = index
    self.progress = progress
    bufSize = chunker.parameters.max * 2
    buf = UnsafeMutableRawBufferPointer.allocate(byteCount: bufSize, alignment: 16)
  }

  deinit { buf.deallocate() }

  /// A chunk's id until a worker sets it.
  static let unset = ID([UInt8](repeating: 0, count: 32))

  func error(_ m: String) { run.lock.withLock { run.errors.append(m) } }

  func report(force: Bool = false) {
    guard let progress else { return }
    let ev = run.lock.withLock { () -> ProgressEvent? in
      let now = Date()
      if !force && now.timeIntervalSince(run.lastProgress) < 0.5 { return nil }
      run.lastProgress = now
      return ProgressEvent(
        phase: "backup", files: Int64(run.files), bytesDone: run.bytesRead, bytesTotal: nil,
        bytesStored: run.bytesStored, errors: Int64(run.errors.count))
    }
    if let ev { progress(ev) }
  }

  func userName(_ uid: UInt32) -> String {
    if let u = users[uid] { return u }
    var pw = passwd()
    var result: UnsafeMutablePointer<passwd>?
    var b = [CChar](repeating: 0, count: 1024)
    var name = ""
    if getpwuid_r(uid, &pw, &b, b.count, &result) == 0, result != nil, let n = pw.pw_name { name = String(cString: n) }
    users[uid] = name
    return name
  }

  func groupName(_ gid: UInt32) -> String {
    if let g = groups[gid] { return g }
    var gr = group()
    var result: UnsafeMutablePointer<group>?
    var b = [CChar](repeating: 0, count: 4096)
    var name = ""
    if getgrgid_r(gid, &gr, &b, b.count, &result) == 0, result != nil, let n = gr.gr_name { name = String(cString: n) }
    groups[gid] = name
    return name
  }

  /// The node of an entry, with its extended attributes (`abs` is the entry's path, held as `FSName` holds names).
  func baseNode(_ kind: TreeNode.Kind, abs: String, rel: String, st: stat, readXattrs: Bool = true) -> TreeNode {
    var n = TreeNode(
      kind: kind, path: rel, mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
      user: userName(st.st_uid), group: groupName(st.st_gid), mtimeSec: Int64(st.st_mtim.tv_sec),
      mtimeNsec: UInt32(st.st_mtim.tv_nsec), size: UInt64(st.st_size), inode: UInt64(st.st_ino),
      device: UInt64(st.st_dev))
    guard readXattrs else { return n }
    let (attrs, err) = FileMetadata.readXattrs(abs)
    n.xattrs = attrs
    if let err { run.lock.withLock { run.unreadXattrs.append("\(FSName.display(abs)): \(err)") } }
    return n
  }

  func scanRoot(_ path: String) {
    let p = Repository.normalize(path)
    // Patterns match the absolute path, as restic matches them (also for a path given relative).
    let matchPath = PathPattern.absolute(p)
    if selection.excludesByName(matchPath) {
      run.lock.withLock { run.excluded += 1 }
      return
    }
    var st = stat()
    guard FSName.withCString(p, { lstat($0, &st) }) == 0 else {
      error("\(FSName.display(p)): \(errnoMessage(errno))")
      return
    }
    rootDevice = UInt64(st.st_dev)
    visit(abs: p, rel: Repository.storedName(of: p), st: st, matchPath: matchPath)
  }

  /// Whether the selection keeps the directory entry `name` (absolute path `matchPath`) by its name alone, before it
  /// is stat-ed as restic checks it; `tagged` are the tag files the directory holds.
  func keep(name: String, matchPath: String, tagged: [ExcludeTag]) -> Bool {
    if selection.excludesByName(matchPath) { return false }
    // In a tagged directory only the tag file stays (every tag present must name it).
    if !tagged.isEmpty && tagged.contains(where: { $0.name != name }) { return false }
    return true
  }

  func visit(abs: String, rel: String, st: stat, matchPath: String) {
    if run.failed { return }
    switch st.st_mode & S_IFMT {
    case S_IFDIR:
      nodes.append(baseNode(.directory, abs: abs, rel: rel, st: st))
      run.lock.withLock { run.dirs += 1 }
      // --one-file-system: a mount point is kept, empty (restic keeps it so that a restore has the directory).
      if selection.oneFileSystem && UInt64(st.st_dev) != rootDevice { return }
      guard let d = FSName.withCString(abs, { opendir($0) }) else {
        error("\(FSName.display(abs)): cannot read directory: \(errnoMessage(errno))")
        return
      }
      var names: [String] = []
      while let e = readdir(d) {
        // Names are bytes: one that is not UTF-8 is held with escaped bytes (FSName), not replaced.
        let name = withUnsafeBytes(of: e.pointee.d_name) { b in FSName.decode(b.prefix { $0 != 0 }) }
        if name != "." && name != ".." { names.append(name) }
      }
      closedir(d)
      names.sort()
      let tagged = selection.excludeIfPresent.filter { names.contains($0.name) && $0.tags(abs) }
      for n in names {
        var cst = stat()
        let cabs = abs + "/" + n
        let cmatch = matchPath == "/" ? "/" + n : matchPath + "/" + n
        guard keep(name: n, matchPath: cmatch, tagged: tagged) else {
          run.lock.withLock { run.excluded += 1 }
          continue
        }
        guard FSName.withCString(cabs, { lstat($0, &cst) }) == 0 else {
          error("\(FSName.display(cabs)): vanished or unreadable during backup: \(errnoMessage(errno))")
          continue
        }
        // Only directories are kept from another file system (as mount points, see above).
        if selection.oneFileSystem && UInt64(cst.st_dev) != rootDevice && cst.st_mode & S_IFMT != S_IFDIR {
          run.lock.withLock { run.excluded += 1 }
          continue
        }
        visit(abs: cabs, rel: rel + "/" + n, st: cst, matchPath: cmatch)
      }
    case S_IFLNK:
      var b = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
      let n = FSName.withCString(abs) { readlink($0, &b, b.count - 1) }
      guard n >= 0 else {
        error("\(FSName.display(abs)): cannot read symlink: \(errnoMessage(errno))")
        return
      }
      var node = baseNode(.symlink, abs: abs, rel: rel, st: st)
      node.linkTarget = FSName.decode(b[0..<n].map { UInt8(bitPattern: $0) })
      node.size = 0
      nodes.append(node)
      run.lock.withLock { run.files += 1 }
    case S_IFREG:
      if st.st_nlink > 1 {
        let k = "\(st.st_dev):\(st.st_ino)"
        if let first = hardlinks[k] {
          // Another name of the same inode: its attributes are the first name's.
          var node = baseNode(.hardlink, abs: abs, rel: rel, st: st, readXattrs: false)
          node.linkTarget = first
          node.size = 0
          nodes.append(node)
          return
        }
        let before = nodes.count
        scanFile(abs: abs, rel: rel, st: st)
        // Only a file the snapshot holds can be linked to (a hard link to a missing one fails the tree's checks);
        // when this name could not be read, the next name is read in its place.
        if nodes.count > before { hardlinks[k] = rel }
        return
      }
      scanFile(abs: abs, rel: rel, st: st)
    case S_IFIFO, S_IFCHR, S_IFBLK:
      let kind: TreeNode.Kind =
        switch st.st_mode & S_IFMT {
        case S_IFIFO: .fifo
        case S_IFCHR: .charDevice
        default: .blockDevice
        }
      var node = baseNode(kind, abs: abs, rel: rel, st: st)
      node.size = 0
      if kind != .fifo { node.rdev = UInt64(st.st_rdev) }
      nodes.append(node)
      run.lock.withLock { run.files += 1 }
    case S_IFSOCK:
      // Like restic: a socket is made by the program that listens on it; there is nothing to restore.
      run.lock.withLock { run.sockets.append(FSName.display(rel)) }
    default:
      error("\(FSName.display(abs)): unknown file type \(String(st.st_mode & S_IFMT, radix: 8)); not backed up")
    }
  }

  func newSlot() -> Int {
    run.lock.withLock {
      run.slotStarts.append(run.chunkIDs.count)
      return run.slotStarts.count - 1
    }
  }

  func scanFile(abs: String, rel: String, st: stat) {
    var node = baseNode(.file, abs: abs, rel: rel, st: st)
    if let p = parentFiles.lookup(rel), p.size == node.size, p.mtimeSec == node.mtimeSec,
      p.mtimeNsec == node.mtimeNsec,
      p.inode == node.inode, p.content.allSatisfy({ index.contains($0) })
    {
      node.content = p.content
      nodes.append(node)
      run.lock.withLock {
        run.files += 1
        run.filesUnchanged += 1
        run.bytesRead += Int64(node.size)
      }
      report()
      return
    }
    let fd = FSName.withCString(abs) { open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
    guard fd >= 0 else {
      error("\(FSName.display(abs)): cannot open: \(errnoMessage(errno))")
      return
    }
    defer { close(fd) }
    let slot = newSlot()
    guard let total = readChunks(fd: fd, slot: slot, what: FSName.display(abs)) else { return }
    var after = stat()
    if fstat(fd, &after) == 0
      && (after.st_size != st.st_size || after.st_mtim.tv_sec != st.st_mtim.tv_sec
        || after.st_mtim.tv_nsec != st.st_mtim.tv_nsec || Int64(total) != Int64(st.st_size))
    {
      error("\(FSName.display(abs)): changed while it was read; the snapshot holds the \(total) bytes read")
    }
    node.size = UInt64(total)
    nodes.append(node, slot: slot)
    run.lock.withLock { run.files += 1 }
    report()
  }

  func scanStdin(fd: Int32, name: String) {
    guard TreeFormat.isSafeRelativePath(name) else {
      run.fail(EngineError.usage("--stdin-name '\(name)' must be a relative path without '..'"))
      return
    }
    let slot = newSlot()
    let now = Date().timeIntervalSince1970
    var node = TreeNode(
      kind: .file, path: name, mode: 0o600, uid: getuid(), gid: getgid(), user: userName(getuid()),
      group: groupName(getgid()), mtimeSec: Int64(now), mtimeNsec: 0)
    guard let total = readChunks(fd: fd, slot: slot, what: "standard input") else {
      run.fail(EngineError.io(path: "standard input", message: "read failed"))
      return
    }
    node.size = UInt64(total)
    nodes.append(node, slot: slot)
    run.lock.withLock { run.files += 1 }
    report(force: true)
  }

  /// Streams `fd` through the chunker into the queue; returns the bytes read, or nil on a read error. Progress is
  /// reported as bytes arrive (at most every 0.5 s).
  func readChunks(fd: Int32, slot: Int, what: String) -> Int? {
    var start = 0
    var end = 0
    var eof = false
    var seq = 0
    var total = 0
    var compress = true
    let maxChunk = chunker.parameters.max
    while true {
      if !eof && end - start < maxChunk {
        if start > 0 {
          if end > start { memmove(buf.baseAddress!, buf.baseAddress! + start, end - start) }
          end -= start
          start = 0
        }
        while end < bufSize {
          let n = read(fd, buf.baseAddress! + end, bufSize - end)
          if n < 0 {
            if errno == EINTR { continue }
            error("\(what): read failed: \(errnoMessage(errno))")
            return nil
          }
          if n == 0 {
            eof = true
            break
          }
          end += n
          total += n
          run.lock.withLock { run.bytesRead += Int64(n) }
          // Reported as read, not only per chunk: a slow stream (a dump) fills the buffer for minutes before its
          // first chunk boundary, and its progress would otherwise show nothing until it ends.
          report()
        }
      }
      if start == end && eof { break }
      // The first bytes of the file say whether it is stored in a compressed format already (the buffer is full, or
      // holds the whole file, before the first chunk is cut).
      if seq == 0 && start == 0 {
        compress = !CompressedFormat.starts(UnsafeRawBufferPointer(rebasing: buf[0..<end]))
      }
      guard let n = chunker.nextBoundary(UnsafeRawBufferPointer(rebasing: buf[start..<end]), isFinal: eof) else {
        continue
      }
      let data = Array(UnsafeRawBufferPointer(rebasing: buf[start..<(start + n)]))
      run.lock.withLock {
        run.chunkIDs.append(Self.unset)
        run.chunksPending += 1
      }
      if !queue.push(ChunkJob(slot: slot, seq: seq, data: data, compress: compress), size: n) { return nil }
      seq += 1
      start += n
      report()
    }
    return total
  }
}
