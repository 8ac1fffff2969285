import EngineContract
import Foundation

/// The outcome of `verify`.
public struct VerifyResult: Sendable {
  public var snapshots: Int
  public var packs: Int
  public var blobs: Int
  /// Each problem names the damaged object.
  public var errors: [String]
  /// Non-fatal findings (e.g. packs that no index lists yet).
  public var warnings: [String]
  /// Packs read whole and checked (all with --read-data, some with --read-data-subset, none otherwise; with a
  /// snapshot, only the packs that hold its blobs).
  public var packsRead: Int = 0
  /// Bytes of pack data read from the storage to check content.
  public var bytesRead: Int64 = 0
  /// The snapshot verified when one was named (its full id); nil for all.
  public var snapshot: Snapshot? = nil
}

extension Repository {
  /// Checks structure (and with `readData` every pack's content, or the packs `subset` selects).
  /// `snapshotRef` nil = all snapshots; with a snapshot, only the packs holding its blobs (tree and content) are
  /// read, so checking one snapshot's data downloads that snapshot, not the repository.
  ///
  /// A manifest or index file that fails its checks is an error (exit 5): a damaged genuine one cannot be told from one
  /// planted by someone with write access to the storage. It is named, and every good snapshot is still verified.
  /// Objects in `acceptUnreadable` (an operator inspected them and found them planted, e.g. junk Object Lock retains
  /// for years) are reported as warnings instead. Objects hidden behind a delete marker are verified from their stored
  /// versions and named in the warnings.
  public func verify(
    snapshotRef: String?, readData: Bool, subset: ReadDataSubset? = nil, progress: ProgressHandler? = nil,
    acceptUnreadable: Set<String> = []
  ) async throws -> VerifyResult {
    var errors: [String] = []
    var warnings: [String] = []
    let (index, idxErrors) = try await loadIndex(collectErrors: true)
    var (snaps, snapErrors) = try await loadSnapshots(collectErrors: true)
    for e in idxErrors + snapErrors {
      if acceptUnreadable.contains(Self.objectName(of: e)) {
        warnings.append("accepted as planted (--accept-unreadable), not verified: \(e.description)")
      } else {
        errors.append(e.description)
      }
    }
    var named: Snapshot? = nil
    if let ref = snapshotRef {
      let s = try findSnapshot(ref, in: snaps)
      snaps = [s]
      named = s
    }
    let current = try await listPacks()
    let listed = try await listPacks(includingHidden: true)
    for p in listed.keys.sorted() where current[p] == nil {
      warnings.append(
        "\(Self.packKey(p)): \(store.deletedButKept) (deleted with the storage credentials, not by this engine); "
          + "its stored version is read instead: make it current again")
    }
    // Packs the index names must exist with the recorded size.
    for (p, size) in index.packs {
      guard let actual = listed[p] else {
        errors.append("\(Self.packKey(p)): pack is missing (listed in the index)")
        continue
      }
      if UInt64(actual) != size {
        errors.append("\(Self.packKey(p)): size \(actual) but the index says \(size) (truncated or damaged)")
      }
    }
    for p in listed.keys where index.packs[p] == nil {
      warnings.append("\(Self.packKey(p)): not in any index (left by an interrupted backup; the next backup adopts it)")
    }
    // Every snapshot's tree loads and every blob it references is indexed.
    var types = Set<KeyType>()
    var blobCount = 0
    // The packs the verified snapshots' blobs live in (used to scope reading to one snapshot).
    var snapshotPacks = Set<ID>()
    for s in snaps {
      for h in s.manifest.tree {
        if let id = ID(hex: h), let loc = index.lookup(id) { snapshotPacks.insert(loc.pack) }
      }
      do {
        let nodes = try await loadTree(s, index: index)
        try TreeFormat.checkSafe(nodes)
        if let t = KeyType(dataType: s.manifest.dataType) { types.insert(t) }
        var missing = 0
        for n in nodes {
          for c in n.content {
            blobCount += 1
            if let loc = index.lookup(c) { snapshotPacks.insert(loc.pack) } else { missing += 1 }
          }
        }
        if missing > 0 {
          errors.append("snapshots/\(s.id.hex): \(missing) blobs are not in the index (missing index or pack)")
        }
      } catch let e as EngineError {
        errors.append("snapshot \(s.id.short): \(e.description)")
      }
    }
    var packsRead = 0
    var bytesRead: Int64 = 0
    if readData || subset != nil {
      let keys = try await keys(for: Set(KeyType.allCases))
      var ciphers: [KeyType: AESGCM] = [:]
      for (k, v) in keys { ciphers[k] = try AESGCM(key: v) }
      let contents = index.packContents()
      let z = ZstdContext()
      let meta = try AESGCM(key: metaKey)
      let toRead = listed.sorted(by: { $0.key < $1.key }).filter {
        (snapshotRef == nil || snapshotPacks.contains($0.key)) && (subset?.contains($0.key) ?? true)
      }
      for (p, size) in toRead {
        let key = Self.packKey(p)
        packsRead += 1
        progress?(
          ProgressEvent(
            phase: "verify", files: Int64(packsRead), bytesDone: 0, bytesTotal: nil, bytesStored: 0,
            errors: Int64(errors.count)))
        do {
          let bytes = try await getContentAddressed(key)
          bytesRead += Int64(bytes.count)
          let (hdr, _) = try PackFormat.parseHeader(tail: bytes, packSize: Int(size), meta: meta, repo: repoID)
          guard let hdr else { throw EngineError.integrity(object: key, message: "pack header incomplete") }
          // Every entry the index gives this pack must be in its header. The header may hold more: blobs that
          // another pack also holds (a re-adopted leftover, a prune killed before it deleted the old pack).
          if let idxEntries = contents[p], !Set(idxEntries).isSubset(of: Set(hdr)) {
            errors.append("\(key): header does not match the index entries")
          }
          try bytes.withUnsafeBytes { b in
            for e in hdr {
              let end = Int(e.offset) + Int(e.sealedLength)
              guard ciphers[e.keyType] != nil else {
                // A data type no verified snapshot uses: load its key on demand is not possible here synchronously.
                continue
              }
              _ = try openBlob(
                UnsafeRawBufferPointer(rebasing: b[Int(e.offset)..<end]), entry: e, pack: p, ciphers: ciphers, zstd: z)
            }
          }
        } catch let e as EngineError {
          errors.append(e.description)
        } catch let e as FormatError {
          errors.append("\(key): \(e.message)")
        }
      }
    }
    audit.record(
      "verified", outcome: errors.isEmpty ? "success" : "failure",
      details: [
        "snapshots": "\(snaps.count)", "packsRead": "\(packsRead)", "bytesRead": "\(bytesRead)",
        "errors": "\(errors.count)",
        "readData": subset.map { "subset \($0)" } ?? "\(readData)",
      ])
    return VerifyResult(
      snapshots: snaps.count, packs: listed.count, blobs: blobCount, errors: errors, warnings: warnings,
      packsRead: packsRead, bytesRead: bytesRead, snapshot: named)
  }
}

/// Which packs `verify --read-data-subset` reads: a fixed part `n/t` (packs whose id's first byte modulo `t` is
/// `n - 1`; running 1/t to t/t reads every pack once) or a random percentage.
public enum ReadDataSubset: Sendable, Hashable, CustomStringConvertible {
  case part(Int, of: Int)
  case percent(Double)

  /// Parses "n/t" (1 <= n <= t) or "P%" (0 < P <= 100).
  public static func parse(_ s: String) throws -> ReadDataSubset {
    if s.hasSuffix("%") {
      guard let p = Double(s.dropLast()), p > 0, p <= 100 else {
        throw EngineError.usage("--read-data-subset '\(s)': a percentage must be above 0 and at most 100, e.g. 10%")
      }
      return .percent(p)
    }
    let parts = s.split(separator: "/")
    guard parts.count == 2, let n = Int(parts[0]), let t = Int(parts[1]), t >= 1, t <= 256, n >= 1, n <= t else {
      throw EngineError.usage("--read-data-subset '\(s)' must be n/t (1 <= n <= t <= 256, e.g. 1/7) or a percentage")
    }
    return .part(n, of: t)
  }

  func contains(_ pack: ID) -> Bool {
    switch self {
    case .part(let n, let t): return Int(pack.a >> 56) % t == n - 1
    case .percent(let p): return Double.random(in: 0..<100) < p
    }
  }

  public var description: String {
    switch self {
    case .part(let n, let t): return "\(n)/\(t)"
    case .percent(let p): return "\(p)%"
    }
  }
}
