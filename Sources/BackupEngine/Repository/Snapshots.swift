import Foundation

extension Repository {
  /// Lists and opens every snapshot. With `collectErrors`, damaged ones are reported instead of thrown.
  public func loadSnapshots(collectErrors: Bool = false) async throws -> ([Snapshot], [EngineError]) {
    let objs = try await listObjects("snapshots/")
    var out: [Snapshot] = []
    var errors: [EngineError] = []
    let meta = try AESGCM(key: metaKey)
    let z = ZstdContext()
    for o in objs {
      let name = String(o.key.split(separator: "/").last ?? "")
      do {
        guard let id = ID(hex: name) else {
          throw EngineError.integrity(object: o.key, message: "snapshot name is not a 64-hex-digit id")
        }
        let bytes = try await getContentAddressed(o.key)
        let m = try SnapshotFormat.decodeManifest(
          bytes, name: name, publicKey: publicKey, meta: meta, zstd: z, repo: repoID, repositoryID: config.id)
        out.append(Snapshot(id: id, manifest: m))
      } catch let e as EngineError {
        if !collectErrors { throw e }
        errors.append(e)
      }
    }
    // Sequence check: a snapshot's seq must be greater than its parent's.
    let byID = Dictionary(out.map { ($0.id.hex, $0) }, uniquingKeysWith: { a, _ in a })
    var bad = Set<ID>()
    for s in out {
      if let p = s.manifest.parent, let ps = byID[p], ps.manifest.seq >= s.manifest.seq {
        let e = EngineError.integrity(
          object: "snapshots/\(s.id.hex)",
          message: "sequence \(s.manifest.seq) is not after its parent's \(ps.manifest.seq) (replayed old manifest)")
        if !collectErrors { throw e }
        errors.append(e)
        bad.insert(s.id)
      }
    }
    out.removeAll { bad.contains($0.id) }
    out.sort { ($0.manifest.seq, $0.manifest.time) < ($1.manifest.seq, $1.manifest.time) }
    return (out, errors)
  }

  /// Loads every snapshot whose manifest passes its checks; the others (damaged, planted, replayed, unsigned) are
  /// named in `warnings` and left out, so one bad manifest blocks neither listing, restore nor backup.
  public func loadSnapshotsSkippingDamaged() async throws -> [Snapshot] {
    let (snaps, errors) = try await loadSnapshots(collectErrors: true)
    addWarnings(errors.map { "skipped snapshot manifest: \($0.description)" })
    return snaps
  }

  /// Finds a snapshot by id, unique id prefix, or "latest".
  public func findSnapshot(_ ref: String, in snaps: [Snapshot]) throws -> Snapshot {
    if ref == "latest" {
      guard let s = snaps.last else { throw EngineError.snapshotNotFound("latest (the repository has no snapshots)") }
      return s
    }
    let m = snaps.filter { $0.id.hex.hasPrefix(ref.lowercased()) }
    guard m.count == 1 else {
      if m.isEmpty { throw EngineError.snapshotNotFound(ref) }
      throw EngineError.usage("snapshot prefix \(ref) is ambiguous; give more digits")
    }
    return m[0]
  }

  /// Reads and decrypts one blob, checking its id. Throws `EngineError.integrity` naming the pack.
  func readBlob(_ id: ID, index: MasterIndex, ciphers: [KeyType: AESGCM], zstd: ZstdContext) async throws -> [UInt8] {
    guard let loc = index.lookup(id) else {
      throw EngineError.integrity(
        object: "blob \(id.short)",
        message:
          "not in any index (index file missing or damaged); run `botrt-engine verify`; a new backup re-indexes orphaned packs"
      )
    }
    do {
      return try await readBlob(at: loc, ciphers: ciphers, zstd: zstd)
    } catch let first as EngineError {
      guard case .integrity = first else { throw first }
      // The pack was overwritten or damaged: read the version of it that matches its name, else another copy.
      if let d = try await verifiedPack(loc.pack) {
        if let plain = try? Self.slice(d, loc.entry).withUnsafeBytes({
          try openBlob($0, entry: loc.entry, pack: loc.pack, ciphers: ciphers, zstd: zstd)
        }) {
          return plain
        }
      }
      for alt in index.alternates(id) {
        if let plain = try? await readBlob(at: alt, ciphers: ciphers, zstd: zstd) {
          addWarnings(["blob \(id.short) read from \(Self.packKey(alt.pack)) instead: \(first.description)"])
          return plain
        }
      }
      throw first
    }
  }

  /// The sealed bytes of `entry` in a whole pack, or empty when the pack is too short.
  static func slice(_ pack: Data, _ e: BlobEntry) -> Data {
    let lo = Int(e.offset)
    let hi = lo + Int(e.sealedLength)
    guard hi <= pack.count else { return Data() }
    return pack.subdata(in: (pack.startIndex + lo)..<(pack.startIndex + hi))
  }

  /// Reads and opens one blob at one location, through a ranged read of the current version of its pack.
  func readBlob(at loc: BlobLocation, ciphers: [KeyType: AESGCM], zstd: ZstdContext) async throws -> [UInt8] {
    let key = Self.packKey(loc.pack)
    let sealed: Data
    do {
      sealed = try await store.getRange(key, offset: Int64(loc.entry.offset), length: Int64(loc.entry.sealedLength))
    } catch StorageError.notFound {
      throw EngineError.integrity(object: key, message: "pack is missing")
    } catch StorageError.failed(_, let m) {
      throw EngineError.integrity(object: key, message: "pack cannot be read (truncated?): \(m)")
    }
    return try sealed.withUnsafeBytes {
      try openBlob($0, entry: loc.entry, pack: loc.pack, ciphers: ciphers, zstd: zstd)
    }
  }

  /// Decrypts, decompresses and re-hashes one sealed blob.
  func openBlob(
    _ sealed: UnsafeRawBufferPointer, entry e: BlobEntry, pack: ID, ciphers: [KeyType: AESGCM], zstd: ZstdContext
  ) throws -> [UInt8] {
    let key = Self.packKey(pack)
    guard let c = ciphers[e.keyType] else {
      throw EngineError.integrity(object: key, message: "no key loaded for key type \(e.keyType.name)")
    }
    let payload: [UInt8]
    do {
      payload = try c.open(sealed, aad: BlobEntry.aad(repo: repoID, type: e.type, keyType: e.keyType, id: e.id))
    } catch {
      throw EngineError.integrity(
        object: key, message: "blob \(e.id.short) fails authentication (AES-GCM): damaged or forged")
    }
    let plain: [UInt8]
    if e.compressed {
      do { plain = try payload.withUnsafeBytes { try zstd.decompress($0, rawLength: Int(e.rawLength)) } } catch {
        throw EngineError.integrity(object: key, message: "blob \(e.id.short) does not decompress: \(error)")
      }
    } else {
      plain = payload
    }
    let h = macKeys[e.keyType]!.mac(plain)
    guard ID(h) == e.id else {
      throw EngineError.integrity(object: key, message: "blob \(e.id.short) content does not match its id")
    }
    return plain
  }

  /// Decrypts (in place), decompresses and re-hashes one sealed blob, without allocating: the decrypted payload
  /// overwrites the ciphertext in `sealed`, and a compressed blob is expanded into `scratch`. The result points
  /// into `sealed` or `scratch` and is valid until either is reused.
  func openBlobInPlace(
    _ sealed: UnsafeMutableRawBufferPointer, entry e: BlobEntry, pack: ID, ciphers: [KeyType: AESGCM],
    zstd: ZstdContext, scratch: BlobScratch
  ) throws -> UnsafeRawBufferPointer {
    let key = Self.packKey(pack)
    guard let c = ciphers[e.keyType] else {
      throw EngineError.integrity(object: key, message: "no key loaded for key type \(e.keyType.name)")
    }
    guard sealed.count >= AESGCM.overhead else {
      throw EngineError.integrity(object: key, message: "blob \(e.id.short) is shorter than its seal")
    }
    let payloadLength = sealed.count - AESGCM.overhead
    let payload = sealed.baseAddress! + 12
    do {
      _ = try c.open(
        UnsafeRawBufferPointer(sealed), aad: BlobEntry.aad(repo: repoID, type: e.type, keyType: e.keyType, id: e.id),
        into: payload.assumingMemoryBound(to: UInt8.self))
    } catch {
      throw EngineError.integrity(
        object: key, message: "blob \(e.id.short) fails authentication (AES-GCM): damaged or forged")
    }
    let plain: UnsafeRawBufferPointer
    if e.compressed {
      let out = scratch.plain(Int(e.rawLength))
      do {
        try zstd.decompress(
          UnsafeRawBufferPointer(start: payload, count: payloadLength), rawLength: Int(e.rawLength), into: out)
      } catch {
        throw EngineError.integrity(object: key, message: "blob \(e.id.short) does not decompress: \(error)")
      }
      plain = UnsafeRawBufferPointer(start: out, count: Int(e.rawLength))
    } else {
      plain = UnsafeRawBufferPointer(start: payload, count: payloadLength)
    }
    let h = macKeys[e.keyType]!.mac(plain)
    guard ID(h) == e.id else {
      throw EngineError.integrity(object: key, message: "blob \(e.id.short) content does not match its id")
    }
    return plain
  }

  /// Loads a snapshot's tree.
  public func loadTree(_ s: Snapshot, index: MasterIndex) async throws -> [TreeNode] {
    let bytes = try await loadTreeBytes(s, index: index)
    do { return try TreeFormat.decode(bytes) } catch let e as FormatError {
      throw EngineError.integrity(object: "tree of snapshot \(s.id.short)", message: e.message)
    }
  }

  /// A snapshot's serialized tree, its blobs joined (in one allocation of the size the index gives).
  func loadTreeBytes(_ s: Snapshot, index: MasterIndex) async throws -> [UInt8] {
    let ciphers: [KeyType: AESGCM] = [.meta: try AESGCM(key: metaKey)]
    let z = ZstdContext()
    var ids: [ID] = []
    for h in s.manifest.tree {
      guard let id = ID(hex: h) else {
        throw EngineError.integrity(object: "snapshots/\(s.id.hex)", message: "bad tree id")
      }
      ids.append(id)
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(ids.reduce(0) { $0 + Int(index.lookup($1)?.entry.rawLength ?? 0) })
    for id in ids { bytes += try await readBlob(id, index: index, ciphers: ciphers, zstd: z) }
    return bytes
  }
}

/// Growable buffers one thread reuses while restoring (sealed bytes read from a pack, and decompressed
/// plaintext), so restoring does not allocate, fault in and zero fresh pages for every blob.
final class BlobScratch {
  private var plainBuf: UnsafeMutableRawPointer?
  private var plainCap = 0
  private var sealedBuf: UnsafeMutableRawPointer?
  private var sealedCap = 0

  init() {}

  deinit {
    free(plainBuf)
    free(sealedBuf)
  }

  /// A buffer of at least `n` bytes for sealed bytes read from a pack.
  func sealed(_ n: Int) -> UnsafeMutableRawPointer {
    if n > sealedCap || sealedBuf == nil {
      free(sealedBuf)
      sealedCap = max(n, 64 << 10)
      sealedBuf = malloc(sealedCap)!
    }
    return sealedBuf!
  }

  /// Releases a buffer that one unusually large blob grew past `keep` bytes, so the rare 8 MiB chunk does not
  /// pin that much memory in every worker for the rest of the run.
  func trim(keep: Int) {
    if plainCap > keep {
      free(plainBuf)
      plainBuf = nil
      plainCap = 0
    }
    if sealedCap > keep {
      free(sealedBuf)
      sealedBuf = nil
      sealedCap = 0
    }
  }

  /// A buffer of at least `n` bytes for the plaintext.
  func plain(_ n: Int) -> UnsafeMutableRawPointer {
    if n > plainCap || plainBuf == nil {
      free(plainBuf)
      plainCap = max(n, 64 << 10)
      plainBuf = malloc(plainCap)!
    }
    return plainBuf!
  }
}
