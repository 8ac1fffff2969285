import Foundation

/// Where a blob lives.
public struct BlobLocation: Sendable {
  public var pack: ID
  public var entry: BlobEntry
}

/// The in-memory union of all index files. Blobs are held in a `BlobTable` (48-byte records, their packs numbered),
/// not as a `BlobLocation` per blob: a million blobs take about 56 MB, not 600.
public final class MasterIndex: @unchecked Sendable {
  private struct State {
    var blobs = BlobTable()
    /// Pack ids by number (a record's `pack`), and numbers by id.
    var packIDs: [ID] = []
    var packNumbers: [ID: Int] = [:]
    var packs: [ID: UInt64] = [:]
    var files: [String] = []
    var alternates: [ID: [BlobLocation]] = [:]

    mutating func number(_ pack: ID) -> Int {
      if let n = packNumbers[pack] { return n }
      packIDs.append(pack)
      packNumbers[pack] = packIDs.count - 1
      return packIDs.count - 1
    }
    func location(_ b: PackedBlob) -> BlobLocation { BlobLocation(pack: packIDs[b.pack], entry: b.entry) }
    mutating func packed(_ l: BlobLocation) -> PackedBlob { PackedBlob(pack: number(l.pack), entry: l.entry) }
  }
  private let state = Locked(State())

  init() {}

  /// Adds a pack's entries. A blob already indexed in another pack (stored again by a backup that did not trust
  /// that pack) keeps its first location; the others are kept as alternates for a read that fails.
  func add(_ p: IndexPack) {
    state.with { s in
      s.packs[p.packID] = p.packSize
      let n = s.number(p.packID)
      for e in p.entries {
        let b = PackedBlob(pack: n, entry: e)
        if let r = s.blobs.find(e.id) {
          if s.blobs[r].pack == n {
            s.blobs[r] = b
          } else if !(s.alternates[e.id] ?? []).contains(where: { $0.pack == p.packID }) {
            s.alternates[e.id, default: []].append(BlobLocation(pack: p.packID, entry: e))
          }
        } else {
          s.blobs.insert(b)
        }
      }
    }
  }

  /// Looks up a blob.
  public func lookup(_ id: ID) -> BlobLocation? { state.with { s in s.blobs.lookup(id).map { s.location($0) } } }
  /// Every location of a blob but `lookup`'s: copies in other packs, tried when the first fails its checks.
  func alternates(_ id: ID) -> [BlobLocation] { state.with { $0.alternates[id] ?? [] } }
  /// Whether a blob is indexed.
  public func contains(_ id: ID) -> Bool { state.with { $0.blobs.find(id) != nil } }
  /// The number of blobs indexed (each once, however many packs hold it).
  public var count: Int { state.with { $0.blobs.count } }
  /// Every indexed pack and its size.
  public var packs: [ID: UInt64] { state.with { $0.packs } }
  /// Names of the index files loaded.
  public var files: [String] { state.with { $0.files } }
  func addFile(_ f: String) { state.with { $0.files.append(f) } }
  /// Entries grouped by pack.
  public func packContents() -> [ID: [BlobEntry]] {
    state.with { s in
      var out: [ID: [BlobEntry]] = [:]
      s.blobs.forEach { b in out[s.packIDs[b.pack], default: []].append(b.entry) }
      return out
    }
  }
  /// Makes a location in `preferred` each blob's first one where it has one (its other locations stay alternates): a
  /// prune then serves every blob it can from a pack that is listed, never from one a delete marker hides, and never
  /// takes a listed pack's blobs for served elsewhere when elsewhere is a hidden pack.
  func prefer(packs preferred: Set<ID>) {
    state.with { s in
      for (id, alts) in s.alternates {
        guard let r = s.blobs.find(id), !preferred.contains(s.packIDs[s.blobs[r].pack]),
          let i = alts.firstIndex(where: { preferred.contains($0.pack) })
        else { continue }
        let cur = s.location(s.blobs[r])
        s.blobs[r] = s.packed(alts[i])
        s.alternates[id]![i] = cur
      }
    }
  }

  /// Drops packs (and their blobs) that are not in `existing`; a blob whose pack goes but that has an alternate in a
  /// kept pack is found there.
  func retainOnly(packs existing: Set<ID>) {
    state.with { s in
      var alternates: [ID: [BlobLocation]] = [:]
      let kept = s.packIDs.map { existing.contains($0) }
      var moved: [BlobLocation] = []
      let blobs = s.blobs.compactMap { b in
        let alts = (s.alternates[b.id] ?? []).filter { existing.contains($0.pack) }
        if kept[b.pack] {
          if !alts.isEmpty { alternates[b.id] = alts }
          return b
        }
        // The first kept alternate takes the blob's place (added below: its pack may need a number).
        if let first = alts.first {
          moved.append(first)
          if alts.count > 1 { alternates[b.id] = Array(alts.dropFirst()) }
        }
        return nil
      }
      s.blobs = blobs
      for l in moved { s.blobs.insert(s.packed(l)) }
      s.alternates = alternates
      s.packs = s.packs.filter { existing.contains($0.key) }
    }
  }
}

extension Repository {
  /// Loads every index file. With `collectErrors`, damaged index files are reported instead of thrown.
  public func loadIndex(collectErrors: Bool = false) async throws -> (MasterIndex, [EngineError]) {
    let idx = MasterIndex()
    let objs = try await listObjects("index/")
    var errors: [EngineError] = []
    // Each file's entries go into the index as it arrives: the decoded files are never all held at once.
    func take(_ name: String, _ r: Result<[IndexPack], EngineError>) throws {
      switch r {
      case .success(let packs):
        for p in packs { idx.add(p) }
        idx.addFile(name)
      case .failure(let e):
        if !collectErrors { throw e }
        errors.append(e)
      }
    }
    try await withThrowingTaskGroup(of: (String, Result<[IndexPack], EngineError>).self) { g in
      var it = objs.makeIterator()
      var running = 0
      func addNext() -> Bool {
        guard let o = it.next() else { return false }
        g.addTask {
          do {
            let bytes = try await self.getContentAddressed(o.key)
            let packs = try IndexFormat.decodeObject(
              bytes, meta: try AESGCM(key: self.metaKey), zstd: ZstdContext(), repo: self.repoID)
            return (o.key, .success(packs))
          } catch let e as EngineError {
            return (o.key, .failure(e))
          } catch let e as FormatError {
            return (o.key, .failure(.integrity(object: o.key, message: e.message)))
          }
        }
        return true
      }
      while running < 8 && addNext() { running += 1 }
      while let (name, r) = try await g.next() {
        try take(name, r)
        if !addNext() { running -= 1 }
      }
    }
    return (idx, errors)
  }

  /// Loads every index file that passes its checks; the others (damaged, planted, or of another repository) are
  /// named in `warnings` and left out, so their packs' blobs are stored again by a backup rather than trusted.
  public func loadIndexSkippingDamaged() async throws -> MasterIndex {
    let (index, errors) = try await loadIndex(collectErrors: true)
    addWarnings(errors.map { "skipped index file: \($0.description)" })
    return index
  }

  /// Packs whose integrity is in doubt, which a backup must not deduplicate against: listed with another size than
  /// the index records, or (on a versioned store) holding more than one version, since a pack is written once and a
  /// second version means it was overwritten. Their blobs are stored again in new packs.
  func packsInDoubt(index: MasterIndex, listed: [ID: Int64]) async throws -> Set<ID> {
    var doubt = Set<ID>()
    for (id, size) in index.packs {
      if let l = listed[id], l != Int64(size) { doubt.insert(id) }
    }
    for (key, n) in try await store.keysWithSeveralVersions(prefix: "data/") {
      if let name = key.split(separator: "/").last, let id = ID(hex: String(name)), index.packs[id] != nil {
        doubt.insert(id)
        _ = n
      }
    }
    if !doubt.isEmpty {
      addWarnings(
        doubt.sorted().map {
          "pack \(Self.packKey($0)) was overwritten or damaged (its size or versions differ from what was written); "
            + "this backup does not deduplicate against it and stores its blobs again"
        })
    }
    return doubt
  }

  /// Writes an index file for `packs`; returns its key.
  @discardableResult
  func writeIndex(_ packs: [IndexPack]) async throws -> String {
    let obj = try IndexFormat.encodeObject(packs, meta: try AESGCM(key: metaKey), zstd: ZstdContext(), repo: repoID)
    let id = try await putContentAddressed(prefix: "index/", bytes: obj)
    return "index/" + id.hex
  }

  /// Lists packs under data/ as id → size. With `includingHidden`, also those a delete marker hides that this engine
  /// did not delete (`listObjects`); a backup never counts those, so it does not deduplicate against them.
  func listPacks(includingHidden: Bool = false) async throws -> [ID: Int64] {
    var out: [ID: Int64] = [:]
    for o in try await includingHidden ? listObjects("data/") : store.list(prefix: "data/") {
      if let name = o.key.split(separator: "/").last, let id = ID(hex: String(name)) { out[id] = o.size }
    }
    return out
  }

  /// Reads a pack's header from its tail.
  func readPackHeader(_ id: ID, size: Int64) async throws -> [BlobEntry] {
    let key = Self.packKey(id)
    let meta = try AESGCM(key: metaKey)
    var want = min(size, 64 << 10)
    while true {
      let tail = [UInt8](try await store.getRange(key, offset: size - want, length: want))
      do {
        let (entries, needed) = try PackFormat.parseHeader(tail: tail, packSize: Int(size), meta: meta, repo: repoID)
        if let entries { return entries }
        want = Int64(needed)
      } catch let e as FormatError {
        throw EngineError.integrity(object: key, message: e.message)
      }
    }
  }

  /// Adopts packs under data/ that no index lists (left by a killed backup): writes an index for them.
  /// Returns the number adopted; unreadable leftovers are skipped and logged.
  func adoptOrphanPacks(index: MasterIndex, listed: [ID: Int64]) async throws -> Int {
    let known = index.packs
    var adopted: [IndexPack] = []
    for (id, size) in listed where known[id] == nil {
      do {
        let entries = try await readPackHeader(id, size: size)
        adopted.append(IndexPack(packID: id, packSize: UInt64(size), entries: entries))
      } catch {
        logger.warning("ignoring unreadable pack \(Self.packKey(id)): \(error)")
      }
    }
    guard !adopted.isEmpty else { return 0 }
    for p in adopted { index.add(p) }
    let name = try await writeIndex(adopted)
    audit.record("stored", details: ["index": name, "adoptedPacks": "\(adopted.count)"])
    return adopted.count
  }
}
