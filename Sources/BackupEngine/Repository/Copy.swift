import EngineContract
import Foundation

/// What `copy` copies.
public struct CopyOptions: Sendable {
  /// Snapshot ids, unique prefixes or "latest" in the source; empty = every snapshot.
  public var snapshots: [String]
  public var progress: ProgressHandler?
  /// The target's retention: a source snapshot that this policy would remove from the target at once (with the
  /// target's snapshots and the other snapshots to copy, per retention group) is not copied. The caller applies the
  /// policy to the target afterwards (`forget`), so a replica keeps what the policy keeps and an expired snapshot is
  /// not copied again on every run.
  public var retention: RetentionPolicy?
  /// The time retention is evaluated at.
  public var now: Date
  public init(
    snapshots: [String] = [], progress: ProgressHandler? = nil, retention: RetentionPolicy? = nil, now: Date = Date()
  ) {
    self.snapshots = snapshots
    self.progress = progress
    self.retention = retention
    self.now = now
  }
}

/// The outcome of a copy.
public struct CopyResult: Sendable {
  /// (source snapshot id, new target snapshot id) for each snapshot copied, oldest first.
  public var copied: [(source: ID, target: ID)] = []
  /// Source snapshots skipped because the target already holds a copy of them.
  public var skipped: [ID] = []
  /// Source snapshots not copied because the target's retention would remove them.
  public var expired: [ID] = []
  /// Files (non-directory entries) in the copied snapshots.
  public var files = 0
  /// Logical bytes of the copied snapshots.
  public var bytes: Int64 = 0
  /// Plaintext bytes of data blobs read from the source (blobs the target could not be shown to hold already).
  public var bytesRead: Int64 = 0
  /// Bytes written to target packs.
  public var bytesStored: Int64 = 0
  /// Blobs written to the target.
  public var blobsNew = 0
  /// Blobs the target already held.
  public var blobsDeduplicated = 0
  /// Packs written to the target.
  public var packsWritten = 0
}

/// The origin of a snapshot made by `copy`, recorded in its manifest.
public struct SnapshotOrigin: Codable, Sendable, Hashable {
  /// The source repository's id.
  public var repo: String
  /// The source snapshot's id.
  public var snapshot: String
  public init(repo: String, snapshot: String) {
    self.repo = repo
    self.snapshot = snapshot
  }
}

extension Repository {
  /// Copies snapshots from this repository to `target` (another repository, usually another region or provider).
  ///
  /// Every blob is decrypted with this repository's keys, re-identified with the target's MAC key and, unless the
  /// target already holds it, re-encrypted with the target's data key; the tree and the manifest are rebuilt and
  /// signed with the target's signing key. The manifest records its origin, so a snapshot copied before is skipped,
  /// and the blob ids of an earlier copy of the same host, data type and paths are reused without reading the source
  /// data again. Write order is the backup's: packs, index, manifest. The target's Object Lock applies.
  public func copy(to target: Repository, options: CopyOptions = CopyOptions()) async throws -> CopyResult {
    guard target.config.id != config.id else {
      throw EngineError.usage(
        "source and target are the same repository (\(config.id)); copy needs a second repository: "
          + "create one with `botrt-engine init --repo REPO2 --kms KMS2`")
    }
    // Damaged or planted manifests and index files of either repository are skipped and named in `warnings`: the
    // good snapshots are copied; a blob only a skipped target index file lists is stored again.
    let sourceSnaps = try await loadSnapshotsSkippingDamaged()
    var selected: [Snapshot]
    if options.snapshots.isEmpty {
      selected = sourceSnaps
    } else {
      var seen = Set<ID>()
      selected = []
      for ref in options.snapshots {
        let s = try findSnapshot(ref, in: sourceSnaps)
        if seen.insert(s.id).inserted { selected.append(s) }
      }
      selected.sort { ($0.manifest.seq, $0.manifest.time) < ($1.manifest.seq, $1.manifest.time) }
    }
    let sourceIndex = try await loadIndexSkippingDamaged()

    let targetIndex = try await target.loadIndexSkippingDamaged()
    var listed = try await target.listPacks()
    // As a backup: never deduplicate against a target pack whose integrity is in doubt (overwritten, resized).
    for id in try await target.packsInDoubt(index: targetIndex, listed: listed) { listed[id] = nil }
    targetIndex.retainOnly(packs: Set(listed.keys))
    _ = try await target.adoptOrphanPacks(index: targetIndex, listed: listed)
    var targetSnaps = try await target.loadSnapshotsSkippingDamaged()
    var copiedFrom: [String: Snapshot] = [:]
    for s in targetSnaps {
      if let o = s.manifest.origin, o.repo == config.id { copiedFrom[o.snapshot] = s }
    }

    var result = CopyResult()
    if let policy = options.retention {
      // Retention over what the target would hold after the copy: its snapshots and the ones to copy.
      let held = targetSnaps.map { ("t:" + $0.id.hex, $0.manifest) }
      let incoming = selected.filter { copiedFrom[$0.id.hex] == nil }.map { ("s:" + $0.id.hex, $0.manifest) }
      let removed = policy.apply(grouping: held + incoming, now: options.now).remove
      selected = selected.filter { snap in
        guard removed.contains("s:" + snap.id.hex) else { return true }
        result.expired.append(snap.id)
        return false
      }
    }
    let run = BackupRun()
    // Source blob id → target blob id, learned from earlier copies (same plaintext, other MAC key).
    var idMap: [ID: ID] = [:]
    var seededFrom = Set<ID>()
    for snap in selected {
      if copiedFrom[snap.id.hex] != nil {
        result.skipped.append(snap.id)
        continue
      }
      let m = snap.manifest
      guard let kt = KeyType(dataType: m.dataType) else {
        throw EngineError.integrity(object: "snapshots/\(snap.id.hex)", message: "unknown data type \(m.dataType)")
      }
      let nodes = try await loadTree(snap, index: sourceIndex)
      // Seed the id map from the newest earlier copy of the same group (its source tree and its copy's tree).
      if let prev = sourceSnaps.last(where: {
        $0.manifest.seq < m.seq && $0.manifest.hostname == m.hostname && $0.manifest.dataType == m.dataType
          && $0.manifest.paths == m.paths && copiedFrom[$0.id.hex] != nil && !seededFrom.contains($0.id)
      }), let prevCopy = copiedFrom[prev.id.hex] {
        seededFrom.insert(prev.id)
        do {
          let a = try await loadTree(prev, index: sourceIndex)
          let b = try await target.loadTree(prevCopy, index: targetIndex)
          Self.learnIDs(source: a, target: b, into: &idMap)
        } catch {
          logger.warning("earlier copy \(prevCopy.id.short) unusable for reuse, reading every blob: \(error)")
        }
      }
      let sourceKeys = try await keys(for: [kt])
      let targetKeys = try await target.keys(for: [kt])
      let targetCipher = try AESGCM(key: targetKeys[kt]!)
      let targetMeta = try AESGCM(key: target.metaKey)
      let targetMac = target.macKey(kt)

      // Which source blobs must be read: those the map cannot place in the target.
      var needed: [ID: [BlobEntry]] = [:]
      var neededSet = Set<ID>()
      for n in nodes where n.kind == .file {
        for c in n.content {
          if let t = idMap[c], targetIndex.contains(t) { continue }
          guard neededSet.insert(c).inserted else { continue }
          guard let loc = sourceIndex.lookup(c) else {
            throw EngineError.integrity(
              object: "blob \(c.short) of \(n.path)",
              message: "not in any index of the source (index file missing or damaged); run `botrt-engine verify`")
          }
          needed[loc.pack, default: []].append(loc.entry)
        }
      }
      // Read the needed blobs pack by pack (a few packs at once), re-encrypt them into target packs in order.
      var pack = PackBuilder()
      let z = ZstdContext()
      var added = Set<ID>()
      let packSizes = sourceIndex.packs
      let work = needed.keys.sorted { $0.hex < $1.hex }.map {
        ($0, needed[$0]!.sorted { $0.offset < $1.offset }, Int(packSizes[$0] ?? 0))
      }
      try await withThrowingTaskGroup(of: [(ID, [UInt8])].self) { g in
        var next = 0
        func launch() {
          guard next < work.count else { return }
          let (p, entries, packSize) = work[next]
          next += 1
          g.addTask {
            let ciphers = try sourceKeys.mapValues { try AESGCM(key: $0) }
            let key = Self.packKey(p)
            let zz = ZstdContext()
            do {
              // A few blobs of a large pack are read by range; most of a pack, as one GET.
              let wanted = entries.reduce(0) { $0 + Int($1.sealedLength) }
              if wanted * 2 < packSize {
                var out: [(ID, [UInt8])] = []
                for e in entries {
                  let sealed: Data
                  do {
                    sealed = try await self.store.getRange(
                      key, offset: Int64(e.offset), length: Int64(e.sealedLength))
                  } catch StorageError.notFound {
                    throw EngineError.integrity(object: key, message: "pack is missing")
                  } catch StorageError.failed(_, let m) {
                    throw EngineError.integrity(object: key, message: "pack cannot be read (truncated?): \(m)")
                  }
                  let plain = try sealed.withUnsafeBytes {
                    try self.openBlob($0, entry: e, pack: p, ciphers: ciphers, zstd: zz)
                  }
                  out.append((e.id, plain))
                }
                return out
              }
              let data: Data
              do { data = try await self.store.get(key) } catch StorageError.notFound {
                throw EngineError.integrity(object: key, message: "pack is missing")
              }
              return try self.openEntries(entries, of: data, pack: p, ciphers: ciphers, zstd: zz)
            } catch let e as EngineError {
              // Overwritten, damaged, or hidden behind a delete marker: the stored version that matches its name.
              guard case .integrity = e, let good = try await self.verifiedPack(p) else { throw e }
              return try self.openEntries(entries, of: good, pack: p, ciphers: ciphers, zstd: zz)
            }
          }
        }
        for _ in 0..<3 { launch() }
        while let blobs = try await g.next() {
          launch()
          for (sid, plain) in blobs {
            result.bytesRead += Int64(plain.count)
            let tid = ID(targetMac.mac(plain))
            idMap[sid] = tid
            if targetIndex.contains(tid) || added.contains(tid) {
              result.blobsDeduplicated += 1
              continue
            }
            added.insert(tid)
            result.blobsNew += 1
            try target.addBlob(plain, id: tid, type: .data, keyType: kt, to: &pack, z: z, cipher: targetCipher)
            if pack.body.count >= target.config.packSize {
              try await target.uploadCopiedPack(&pack, run: run, index: targetIndex, meta: targetMeta)
            }
          }
        }
      }
      try await target.uploadCopiedPack(&pack, run: run, index: targetIndex, meta: targetMeta)
      // Blobs placed by the map count as deduplicated.
      result.blobsDeduplicated += Set(nodes.flatMap { $0.kind == .file ? $0.content : [] }).subtracting(neededSet).count

      // The tree with target ids, stored as target tree blobs (after the data packs).
      var newNodes: [TreeNode] = []
      newNodes.reserveCapacity(nodes.count)
      for var n in nodes {
        if n.kind == .file {
          n.content = try n.content.map { c in
            guard let t = idMap[c] else {
              throw EngineError.failed("internal error: blob \(c.short) of \(n.path) was not copied")
            }
            return t
          }
        }
        newNodes.append(n)
      }
      let treeIDs = try await target.storeCopiedTree(TreeFormat.encode(newNodes), run: run, index: targetIndex)
      let pending = run.lock.withLock { () -> [IndexPack] in
        defer { run.pendingIndex.removeAll() }
        return run.pendingIndex
      }
      if !pending.isEmpty {
        let name = try await target.writeIndex(pending)
        target.audit.record("stored", details: ["index": name, "packs": "\(pending.count)"])
      }
      // Object Lock: extend the retention of every target pack the new snapshot references.
      if let r = target.retention(), target.store.supportsRetention {
        var packs = Set<ID>()
        for n in newNodes { for c in n.content { if let l = targetIndex.lookup(c) { packs.insert(l.pack) } } }
        for t in treeIDs { if let l = targetIndex.lookup(t) { packs.insert(l.pack) } }
        for p in packs { try await target.store.extendRetention(Self.packKey(p), to: r) }
        try await target.extendKeyRetention(to: r)
      }
      let parent = targetSnaps.last {
        $0.manifest.hostname == m.hostname && $0.manifest.dataType == m.dataType && $0.manifest.paths == m.paths
      }
      let manifest = Manifest(
        version: 1, repo: target.config.id, seq: (targetSnaps.map { $0.manifest.seq }.max() ?? 0) + 1,
        parent: parent?.id.hex, time: m.time, hostname: m.hostname, dataType: m.dataType, paths: m.paths,
        stdinName: m.stdinName, tags: m.tags, tree: treeIDs.map { $0.hex }, summary: m.summary,
        origin: SnapshotOrigin(repo: config.id, snapshot: snap.id.hex))
      let obj = try SnapshotFormat.encodeObject(
        manifest, signingKey: target.signingKey, meta: targetMeta, zstd: ZstdContext(), repo: target.repoID)
      let tid = try await target.putContentAddressed(prefix: "snapshots/", bytes: obj)
      let copy = Snapshot(id: tid, manifest: manifest)
      targetSnaps.append(copy)
      copiedFrom[snap.id.hex] = copy
      seededFrom.insert(snap.id)
      result.copied.append((snap.id, tid))
      result.files += m.summary.files
      result.bytes += m.summary.bytes
      let stored = run.lock.withLock { run.bytesStored }
      target.audit.record(
        "copied",
        details: [
          "snapshot": tid.hex, "originRepo": config.id, "originSnapshot": snap.id.hex, "source": store.location,
          "bytesStored": "\(stored)",
        ])
      audit.record(
        "copied", details: ["snapshot": snap.id.hex, "target": target.store.location, "targetSnapshot": tid.hex])
      options.progress?(
        ProgressEvent(
          phase: "copy", files: Int64(result.files), bytesDone: result.bytesRead, bytesTotal: nil, bytesStored: stored,
          errors: 0))
    }
    run.lock.withLock {
      result.bytesStored = run.bytesStored
      result.packsWritten = run.packsWritten
    }
    if !result.copied.isEmpty {
      target.audit.record(
        "encrypted",
        details: ["newBlobs": "\(result.blobsNew)", "algorithm": "AES-256-GCM", "reason": "copy re-encryption"])
    }
    return result
  }

  /// Opens `entries` from the whole bytes of pack `pack`.
  func openEntries(
    _ entries: [BlobEntry], of data: Data, pack p: ID, ciphers: [KeyType: AESGCM], zstd: ZstdContext
  ) throws -> [(ID, [UInt8])] {
    var out: [(ID, [UInt8])] = []
    for e in entries {
      let end = Int(e.offset) + Int(e.sealedLength)
      guard end <= data.count else {
        throw EngineError.integrity(
          object: Self.packKey(p), message: "pack is truncated (blob \(e.id.short) ends past it)")
      }
      let plain = try data.withUnsafeBytes {
        try openBlob(
          UnsafeRawBufferPointer(rebasing: $0[Int(e.offset)..<end]), entry: e, pack: p, ciphers: ciphers, zstd: zstd)
      }
      out.append((e.id, plain))
    }
    return out
  }

  /// Learns source → target blob ids from a source tree and the tree of its copy (same paths, same chunk order).
  static func learnIDs(source: [TreeNode], target: [TreeNode], into map: inout [ID: ID]) {
    // Keys of bytes: see `TreeNode.pathKey` (two names that are canonically equivalent text are two files).
    let byPath = Dictionary(target.map { ($0.pathKey, $0) }, uniquingKeysWith: { a, _ in a })
    for n in source where n.kind == .file {
      guard let t = byPath[n.pathKey], t.kind == .file, t.content.count == n.content.count else { continue }
      for (a, b) in zip(n.content, t.content) { map[a] = b }
    }
  }

  /// Finishes a pack and uploads it without blocking a thread, then records it for the index
  /// (writing an index file every 64 packs, as backup does).
  func uploadCopiedPack(_ pack: inout PackBuilder, run: BackupRun, index: MasterIndex, meta: AESGCM) async throws {
    guard !pack.entries.isEmpty else { return }
    var body = pack.body
    let entries = pack.entries
    pack = PackBuilder()
    try PackFormat.finish(body: &body, entries: entries, meta: meta, repo: repoID)
    let id = ID(Crypto.sha256(body))
    try await store.put(Self.packKey(id), data: Data(body), options: putOptions())
    let ip = IndexPack(packID: id, packSize: UInt64(body.count), entries: entries)
    index.add(ip)
    let toWrite = run.lock.withLock { () -> [IndexPack]? in
      run.pendingIndex.append(ip)
      run.packsWritten += 1
      run.bytesStored += Int64(body.count)
      if run.pendingIndex.count >= 64 {
        defer { run.pendingIndex.removeAll() }
        return run.pendingIndex
      }
      return nil
    }
    if let toWrite {
      let name = try await writeIndex(toWrite)
      audit.record("stored", details: ["index": name, "packs": "\(toWrite.count)"])
    }
  }

  /// Chunks and stores a serialized tree as tree blobs with this repository's chunker and keys; returns their ids.
  func storeCopiedTree(_ bytes: [UInt8], run: BackupRun, index: MasterIndex) async throws -> [ID] {
    let (ids, new) = treePieces(bytes, index: index)
    let z = ZstdContext()
    let meta = try AESGCM(key: metaKey)
    var pack = PackBuilder()
    for (id, range) in new {
      try addBlob(Array(bytes[range]), id: id, type: .tree, keyType: .meta, to: &pack, z: z, cipher: meta)
      if pack.body.count >= config.packSize { try await uploadCopiedPack(&pack, run: run, index: index, meta: meta) }
    }
    try await uploadCopiedPack(&pack, run: run, index: index, meta: meta)
    return ids
  }
}
