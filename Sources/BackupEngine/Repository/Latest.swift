import Foundation

/// A snapshot that `latest` passed over, and the check it failed.
public struct SkippedSnapshot: Sendable, Hashable {
  /// The snapshot's id (the object name, also when its manifest cannot be read).
  public var id: String
  public var reason: String
}

/// The snapshot `latest` selected and the newer (or unreadable) ones it passed over.
public struct LatestSelection: Sendable {
  public var snapshot: Snapshot
  public var skipped: [SkippedSnapshot]
  /// Bytes of blob data read from the storage to check the candidates' content (with readData).
  public var bytesRead: Int64 = 0
}

extension Repository {
  /// The newest snapshot that verifies (restic's `latest`, with the promise that it can be restored): candidates are
  /// tried newest first (by manifest time and sequence with `before`, else by sequence), and one is passed over when
  /// its manifest fails its checks (signature, format, repository, sequence) or its data does not verify (see
  /// `checkSnapshotData`). Each one passed over is named in `skipped`.
  ///
  /// A damaged manifest has no trustworthy time, so it is always named as skipped (it may have been the newest).
  /// `required` (`--require-snapshot`) keeps its meaning: a required snapshot that is missing or fails a check is an
  /// error, never skipped. Only integrity failures skip; a storage or KMS failure is thrown, since the next older
  /// snapshot would fail the same way.
  ///
  /// `tags` (`--tag K=V`): only snapshots whose signed manifest has every one of these tags are candidates (one claim
  /// of a multi-claim policy, `claim=NAME`); damaged manifests are still named as skipped, since their tags cannot be
  /// read.
  public func selectLatestVerified(
    before: Date?, required: String?, index: MasterIndex, readData: Bool, tags: [String: String] = [:]
  ) async throws -> LatestSelection {
    let (snaps, manifestErrors) = try await loadSnapshots(collectErrors: true)
    let req = required.flatMap { $0.isEmpty ? nil : $0.lowercased() }
    var skipped: [SkippedSnapshot] = []
    for e in manifestErrors {
      let id = Self.snapshotName(of: e)
      if let req, id.hasPrefix(req) {
        throw EngineError.integrity(
          object: "snapshots/\(id)", message: "the required snapshot fails its checks: \(e.description)")
      }
      skipped.append(SkippedSnapshot(id: id, reason: "manifest: \(e.description)"))
    }
    if let req, !snaps.contains(where: { $0.id.hex.hasPrefix(req) }) {
      throw EngineError.integrity(
        object: "snapshots/\(req)",
        message:
          "snapshot \(req) is not in the repository, though it was required (it is the newest one recorded "
          + "elsewhere, e.g. by the controller): it was deleted or the repository was rolled back, so 'latest' "
          + "would be an older snapshot; the newest present is "
          + (snaps.max { $0.manifest.date < $1.manifest.date }.map { "\($0.id.hex) of \($0.manifest.time)" }
            ?? "none"))
    }
    let tagged = snaps.filter { s in tags.allSatisfy { s.manifest.tags[$0.key] == $0.value } }
    var candidates: [Snapshot]
    if let before {
      candidates = tagged.filter { $0.manifest.date <= before }.sorted {
        ($0.manifest.date, $0.manifest.seq) > ($1.manifest.date, $1.manifest.seq)
      }
    } else {
      candidates = tagged.reversed()  // loadSnapshots sorts by sequence, oldest first
    }
    // Packs a delete marker hides that this engine did not delete count as present: reads use their stored versions.
    let packs = try await listPacks(includingHidden: true)
    var bytesRead: Int64 = 0
    for s in candidates {
      do {
        bytesRead += try await checkSnapshotData(s, index: index, packs: packs, readData: readData)
        return LatestSelection(snapshot: s, skipped: skipped, bytesRead: bytesRead)
      } catch let e as EngineError {
        if case .integrity = e {
          if let req, s.id.hex.hasPrefix(req) {
            throw EngineError.integrity(
              object: "snapshots/\(s.id.hex)", message: "the required snapshot does not verify: \(e.description)")
          }
          skipped.append(SkippedSnapshot(id: s.id.hex, reason: e.description))
          continue
        }
        throw e
      }
    }
    var which: String
    if let before {
      let f = ISO8601DateFormatter()
      which = "latest --before \(f.string(from: before))"
    } else {
      which = "latest"
    }
    for (k, v) in tags.sorted(by: { $0.key < $1.key }) { which += " --tag \(k)=\(v)" }
    if skipped.isEmpty {
      if before != nil, let oldest = tagged.map(\.manifest.date).min() {
        throw EngineError.snapshotNotFound(
          "\(which) (no snapshot was taken at or before that time; the oldest is from "
            + "\(ISO8601DateFormatter().string(from: oldest)))")
      }
      throw EngineError.snapshotNotFound(
        "\(which) (the repository has no snapshots\(tags.isEmpty ? "" : " with these tags"))")
    }
    throw EngineError.integrity(
      object: "snapshots",
      message: "no snapshot for \(which) verifies; "
        + skipped.map { "\($0.id.prefix(12)): \($0.reason)" }.joined(separator: "; "))
  }

  /// Checks that a snapshot's data is there: its tree blobs are indexed, their packs present, and they read,
  /// authenticate and decode into a safe tree; every content blob is indexed and the pack holding it is present.
  /// With `readData`, every content blob is also read, decrypted and re-hashed.
  /// Throws `EngineError.integrity` naming the first damaged object.
  /// Returns the bytes of blob data it read (0 without `readData`).
  @discardableResult
  public func checkSnapshotData(
    _ s: Snapshot, index: MasterIndex, packs: [ID: Int64], readData: Bool
  ) async throws -> Int64 {
    // Presence only: a pack whose size differs from the index (e.g. a damaged trailer) may still hold every blob
    // intact, and restore reads blobs by range and authenticates each; `verify` reports the size.
    func checkPack(_ p: ID, of what: String) throws {
      guard packs[p] != nil else {
        throw EngineError.integrity(object: Self.packKey(p), message: "pack of \(what) is missing")
      }
    }
    for h in s.manifest.tree {
      if let id = ID(hex: h), let loc = index.lookup(id) { try checkPack(loc.pack, of: "the tree") }
    }
    let nodes = try await loadTree(s, index: index)
    try TreeFormat.checkSafe(nodes)
    var seen = Set<ID>()
    var content: [ID] = []
    for n in nodes where n.kind == .file {
      for c in n.content where seen.insert(c).inserted {
        guard let loc = index.lookup(c) else {
          throw EngineError.integrity(
            object: "blob \(c.short) of \(n.path)",
            message: "not in any index (index file missing or damaged); run `botrt-engine verify`")
        }
        try checkPack(loc.pack, of: n.path)
        content.append(c)
      }
    }
    guard readData, !content.isEmpty else { return 0 }
    guard let kt = KeyType(dataType: s.manifest.dataType) else {
      throw EngineError.integrity(object: "snapshots/\(s.id.hex)", message: "unknown data type \(s.manifest.dataType)")
    }
    var ciphers: [KeyType: AESGCM] = [:]
    for (k, v) in try await keys(for: [kt]) { ciphers[k] = try AESGCM(key: v) }
    let z = ZstdContext()
    var bytes: Int64 = 0
    for c in content {
      _ = try await readBlob(c, index: index, ciphers: ciphers, zstd: z)
      bytes += Int64(index.lookup(c)?.entry.sealedLength ?? 0)
    }
    return bytes
  }

  /// The snapshot id an error about a manifest names (its object's base name).
  public static func snapshotName(of e: EngineError) -> String {
    switch e {
    case .integrity(let object, _):
      return String(object.split(separator: "/").last ?? Substring(object))
    case .unsupportedFormat(let m):
      // "snapshots/ID: manifest version N unknown"
      let first = m.split(separator: ":").first.map(String.init) ?? m
      return String(first.split(separator: "/").last ?? Substring(first))
    default:
      return "unknown"
    }
  }
}
