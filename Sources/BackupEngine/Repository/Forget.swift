import Foundation

/// Which snapshots to keep.
public struct RetentionPolicy: Sendable, Hashable {
  public var keepLast = 0
  public var keepHourly = 0
  public var keepDaily = 0
  public var keepWeekly = 0
  public var keepMonthly = 0
  public var keepYearly = 0
  /// Keep every snapshot taken within this many seconds of the group's newest snapshot (restic's `--keep-within`):
  /// a rule like the others, so it only ever adds snapshots to those kept, never removes one another rule keeps.
  public var maxAge: TimeInterval?
  public init() {}

  /// Whether any keep rule is set.
  public var hasKeepRule: Bool { keepLast + keepHourly + keepDaily + keepWeekly + keepMonthly + keepYearly > 0 }

  /// Parses "7y", "90d", "24h", "30m" (minutes), "2w".
  public static func parseAge(_ s: String) throws -> TimeInterval {
    guard let unit = s.last, let n = Double(s.dropLast()), n > 0 else {
      throw EngineError.usage("--max-age '\(s)' must be a number and a unit: h, d, w, m (months) or y, e.g. 90d")
    }
    switch unit {
    case "h": return n * 3600
    case "d": return n * 86400
    case "w": return n * 7 * 86400
    case "m": return n * 30 * 86400
    case "y": return n * 365 * 86400
    default: throw EngineError.usage("--max-age unit '\(unit)' must be h, d, w, m or y")
    }
  }

  /// The retention group of a snapshot: policies apply per host, data type and paths.
  static func group(_ m: Manifest) -> String { "\(m.hostname)|\(m.dataType)|\(m.paths.joined(separator: ","))" }

  /// Splits snapshots of any groups into kept and removed ids: the policy applies to each retention group alone.
  func apply(grouping snaps: [(id: String, manifest: Manifest)], now: Date) -> (keep: Set<String>, remove: Set<String>)
  {
    var keep = Set<String>()
    var remove = Set<String>()
    for g in groups(snaps, now: now) {
      keep.formUnion(g.keep.map { $0.id })
      remove.formUnion(g.remove.map { $0.id })
    }
    return (keep, remove)
  }

  /// The policy applied to each retention group alone: per group (ordered by host, data type and paths) the snapshots
  /// kept, each with the rules that keep it (restic's "Reasons"), and those removed, newest first.
  func groups(_ snaps: [(id: String, manifest: Manifest)], now: Date) -> [ForgetGroup] {
    var byGroup: [String: [(id: String, manifest: Manifest)]] = [:]
    for s in snaps { byGroup[Self.group(s.manifest), default: []].append(s) }
    return byGroup.keys.sorted().map { key in
      let members = byGroup[key]!
      let reasons = keepReasons(members.map { ($0.id, $0.manifest.date) }, now: now)
      let sorted = members.sorted { ($0.manifest.date, $0.id) > ($1.manifest.date, $1.id) }
      let first = sorted[0].manifest
      return ForgetGroup(
        hostname: first.hostname, dataType: first.dataType, paths: first.paths,
        keep: sorted.compactMap { s in
          reasons[s.id].map { ForgetSnapshot(id: s.id, manifest: s.manifest, reasons: $0) }
        },
        remove: sorted.filter { reasons[$0.id] == nil }.map { ForgetSnapshot(id: $0.id, manifest: $0.manifest) })
    }
  }

  /// Splits snapshots (one group) into kept and removed. A snapshot is kept when any rule keeps it.
  ///
  /// `maxAge` is measured from the newest snapshot of the group, not from `now` (restic's `--keep-within`), so a
  /// repository whose backups stopped keeps its last window instead of losing it a day at a time. `now` only
  /// guards against snapshots dated in the future (a wrong clock or `backup --time`): they are always kept and are
  /// not taken as the newest, so one of them cannot push the window past every real snapshot.
  public func apply(_ snaps: [(id: String, time: Date)], now: Date) -> (keep: Set<String>, remove: Set<String>) {
    let keep = Set(keepReasons(snaps, now: now).keys)
    return (keep, Set(snaps.map { $0.id }).subtracting(keep))
  }

  /// The snapshots (one group) the policy keeps, each with every rule that keeps it, in the order the rules are
  /// applied (last, hourly, daily, weekly, monthly, yearly, within, future); the others are removed. See `apply`.
  public func keepReasons(_ snaps: [(id: String, time: Date)], now: Date) -> [String: [KeepReason]] {
    let sorted = snaps.sorted { $0.time > $1.time }
    var keep: [String: [KeepReason]] = [:]
    func add(_ id: String, _ r: KeepReason) { if !(keep[id]?.contains(r) ?? false) { keep[id, default: []].append(r) } }
    if !hasKeepRule && maxAge == nil {
      for s in sorted { add(s.id, .noRule) }
    } else {
      for (i, s) in sorted.enumerated() where i < keepLast { add(s.id, .last) }
      var cal = Calendar(identifier: .gregorian)
      cal.timeZone = TimeZone(identifier: "UTC")!
      let rules: [(Int, KeepReason, (Date) -> String)] = [
        (
          keepHourly, .hourly,
          { d in
            let c = cal.dateComponents([.year, .month, .day, .hour], from: d);
            return "\(c.year!)-\(c.month!)-\(c.day!)-\(c.hour!)"
          }
        ),
        (
          keepDaily, .daily,
          { d in
            let c = cal.dateComponents([.year, .month, .day], from: d); return "\(c.year!)-\(c.month!)-\(c.day!)"
          }
        ),
        (
          keepWeekly, .weekly,
          { d in
            let c = cal.dateComponents([.yearForWeekOfYear, .weekOfYear], from: d);
            return "\(c.yearForWeekOfYear!)-w\(c.weekOfYear!)"
          }
        ),
        (
          keepMonthly, .monthly,
          { d in
            let c = cal.dateComponents([.year, .month], from: d); return "\(c.year!)-\(c.month!)"
          }
        ),
        (keepYearly, .yearly, { d in "\(cal.component(.year, from: d))" }),
      ]
      for (n, reason, bucket) in rules where n > 0 {
        var seen = Set<String>()
        for s in sorted {
          let b = bucket(s.time)
          if seen.contains(b) { continue }
          if seen.count >= n { break }
          seen.insert(b)
          add(s.id, reason)
        }
      }
      if let maxAge {
        if let newest = sorted.first(where: { $0.time <= now }) {
          for s in sorted where s.time <= now && newest.time.timeIntervalSince(s.time) <= maxAge {
            add(s.id, .within(maxAge))
          }
        }
        for s in sorted where s.time > now { add(s.id, .future) }
      }
    }
    return keep
  }
}

/// Why a retention policy keeps a snapshot (restic's "Reasons" column).
public enum KeepReason: Sendable, Hashable {
  /// `keepLast`.
  case last
  case hourly, daily, weekly, monthly, yearly
  /// Taken within this many seconds of the group's newest snapshot (`maxAge`).
  case within(TimeInterval)
  /// Dated after now (kept by `maxAge`, see `RetentionPolicy.apply`).
  case future
  /// The policy has no rule: everything is kept.
  case noRule
}

/// A snapshot `forget` keeps or removes.
public struct ForgetSnapshot: Sendable {
  public var id: String
  public var manifest: Manifest
  /// Why it is kept; empty for a removed one.
  public var reasons: [KeepReason] = []
}

/// One retention group (host, data type and paths) as `forget` applied the policy to it; kept and removed newest first.
public struct ForgetGroup: Sendable {
  public var hostname: String
  public var dataType: String
  public var paths: [String]
  public var keep: [ForgetSnapshot]
  public var remove: [ForgetSnapshot]
}

/// The outcome of `forget`.
public struct ForgetResult: Sendable {
  public var kept: [String]
  public var removed: [String]
  public var packsDeleted: Int
  public var bytesFreed: Int64
  /// Objects Object Lock did not let us delete yet (nothing is lost).
  public var retained: [String]
  /// Partly used packs whose live blobs were copied into new packs (they are among `packsDeleted`).
  public var packsRepacked: Int = 0
  /// New packs written by repacking.
  public var packsWritten: Int = 0
  /// With prune: the sizes of the pack files under data/ after it, summed (the packs it listed, less those it
  /// deleted, plus those repacking wrote); nil without prune (nothing is listed then).
  public var repositoryPackBytes: Int64? = nil
  /// With prune: the manifests and index files that failed their checks (named), because of which no pack and no
  /// index file was deleted or rewritten; empty when the prune ran. The snapshots were forgotten either way.
  public var pruneRefusedFor: [String] = []
  /// The policy applied per retention group, with the reasons each kept snapshot is kept.
  public var groups: [ForgetGroup] = []
}

extension Repository {
  /// Applies a retention policy; with `prune`, deletes packs no remaining snapshot references and rewrites
  /// partly used packs in which at least `repackUnused` of the bytes are unused (0.1 = 10 %; above 1 never).
  ///
  /// Crash safety of prune: new packs are written first, then one new index listing every kept and new pack,
  /// then the old index files are deleted, and only then the old packs. Killed at any point, the repository
  /// still holds every blob a snapshot references: before the new index exists the old index and packs are
  /// untouched (new packs are unindexed leftovers the next backup adopts or the next prune removes); after it,
  /// the new index alone is complete.
  ///
  /// Manifests and index files that fail their checks (damaged, or planted by someone with write access to the
  /// storage) are skipped and named in `warnings`: the policy applies to the good snapshots. Prune then deletes
  /// nothing at all (`pruneRefusedFor` names them): a skipped manifest may be a genuine snapshot whose data no good
  /// snapshot references, and a skipped index file may list packs that would look unreferenced, so deleting packs
  /// could destroy data (restic refuses to prune with a damaged index for the same reason). Objects in `acceptUnreadable`
  /// (named by an operator who inspected them and found them planted) do not stop the prune.
  public func forget(
    policy: RetentionPolicy, prune: Bool, now: Date = Date(), dryRun: Bool = false, repackUnused: Double = 0.1,
    acceptUnreadable: Set<String> = []
  ) async throws -> ForgetResult {
    let (snaps, snapErrors) = try await loadSnapshots(collectErrors: true)
    addWarnings(snapErrors.map { "skipped snapshot manifest: \($0.description)" })
    let groups = policy.groups(snaps.map { ($0.id.hex, $0.manifest) }, now: now)
    let keep = Set(groups.flatMap { $0.keep.map { $0.id } })
    let remove = Set(groups.flatMap { $0.remove.map { $0.id } })
    var retained: [String] = []
    if !dryRun {
      // Signed first, so that the delete markers these deletes add are known as the engine's own.
      try await recordDeletions(remove.map { "snapshots/" + $0 })
      for id in remove.sorted() {
        do { try await store.delete("snapshots/" + id) } catch StorageError.locked(let k, let m) {
          retained.append("\(k): \(m)")
        }
      }
      audit.record("forgotten", details: ["removed": "\(remove.count)", "kept": "\(keep.count)"])
    }
    var packsDeleted = 0
    var freed: Int64 = 0
    var repacked = 0
    var written = 0
    var packBytes: Int64? = nil
    var refusedFor: [String] = []
    var pruneInputs: (index: MasterIndex, remaining: [Snapshot])? = nil
    if prune && !dryRun {
      let (index, indexErrors) = try await loadIndex(collectErrors: true)
      addWarnings(indexErrors.map { "skipped index file: \($0.description)" })
      // Everything still referenced by the snapshots that remain (including any that could not be deleted).
      let (remaining, remainingErrors) = try await loadSnapshots(collectErrors: true)
      addWarnings(remainingErrors.map { "skipped snapshot manifest: \($0.description)" })
      refusedFor = Array(
        Set((snapErrors + indexErrors + remainingErrors).map(Self.objectName(of:))).subtracting(acceptUnreadable)
      ).sorted()
      if refusedFor.isEmpty {
        pruneInputs = (index, remaining)
      } else {
        addWarnings([
          "prune refused: no pack or index file was deleted, because these manifests or index files fail their "
            + "checks and may be genuine (their data would look unreferenced): \(refusedFor.joined(separator: ", ")); "
            + "inspect them, then remove them or name those found planted with --accept-unreadable"
        ])
        audit.record("pruned", outcome: "failure", details: ["refusedFor": refusedFor.joined(separator: ",")])
      }
    }
    if let (index, remaining) = pruneInputs {
      let listed = try await listPacks()
      // Blobs are served from listed packs where they can be: a listed pack is never deleted as a duplicate of one
      // that a delete marker hides (whose stored version might expire).
      index.prefer(packs: Set(listed.keys))
      var remainingPacks = listed
      var used = Set<ID>()
      for s in remaining {
        for t in s.manifest.tree { if let id = ID(hex: t) { used.insert(id) } }
        for n in try await loadTree(s, index: index) { for c in n.content { used.insert(c) } }
      }
      let contents = index.packContents()
      var keepPacks: [IndexPack] = []
      var deletePacks: [ID] = []
      var repack: [(pack: ID, live: [BlobEntry])] = []
      for (p, es) in contents {
        let live = es.filter { used.contains($0.id) }
        if live.isEmpty {
          deletePacks.append(p)
          continue
        }
        // Unused bytes: everything in the pack file but the live blobs (dead blobs, and blobs another pack
        // now serves), their header entries and the fixed header overhead; exactly 0 for a fully used pack.
        let size = Double(index.packs[p] ?? 0)
        let liveBytes = Double(live.reduce(0) { $0 + Int($1.sealedLength) + BlobEntry.encodedSize })
        let unused = size - liveBytes - Double(PackFormat.trailerSize + AESGCM.overhead)
        if size > 0 && repackUnused <= 1 && unused > 0 && unused >= repackUnused * size {
          repack.append((p, live))
        } else {
          keepPacks.append(IndexPack(packID: p, packSize: index.packs[p] ?? 0, entries: es))
        }
      }
      // Unindexed leftovers from killed backups that nothing references are removed too.
      for p in listed.keys where index.packs[p] == nil { deletePacks.append(p) }
      // So are indexed packs whose every blob the index serves from another pack (duplicates, e.g. left by a prune
      // killed after writing its new index): which copy the index serves depends on the order the index files were
      // read, and the copy left unserved would otherwise drop out of the new index while its file stayed.
      for p in index.packs.keys where contents[p] == nil { deletePacks.append(p) }
      // 1. New packs with the live blobs of the partly used ones, copied sealed (the AAD of a blob binds its id,
      //    type and key type, not its place), from packs whose content hash is checked first.
      let newPacks = try await repackLive(repack.sorted { $0.pack.hex < $1.pack.hex })
      // 2. One index for everything that stays, 3. then the old index files, 4. then the old packs.
      let oldIndex = index.files
      let newIndex = try await writeIndex(keepPacks + newPacks)
      let indexed = Set(keepPacks.map { $0.packID } + newPacks.map { $0.packID })
      let doomedPacks = Set(deletePacks + repack.map({ $0.pack })).subtracting(indexed).sorted(by: { $0.hex < $1.hex })
      try await recordDeletions(oldIndex.filter { $0 != newIndex } + doomedPacks.map(Self.packKey))
      for f in oldIndex where f != newIndex {
        do { try await store.delete(f) } catch StorageError.locked(let k, let m) { retained.append("\(k): \(m)") }
      }
      // Packs are content-addressed: a repacked pack can come out identical to one that exists already (a
      // prune killed after writing it, run again). Never delete a pack the new index lists.
      for p in doomedPacks {
        do {
          try await store.delete(Self.packKey(p))
          packsDeleted += 1
          freed += listed[p] ?? 0
          remainingPacks[p] = nil
        } catch StorageError.locked(let k, let m) {
          retained.append("\(k): \(m)")
        }
      }
      for p in newPacks {
        freed -= Int64(p.packSize)
        remainingPacks[p.packID] = Int64(p.packSize)
      }
      packBytes = remainingPacks.values.reduce(0, +)
      try await compactDeletionRecords()
      repacked = repack.count
      written = newPacks.count
      audit.record(
        "pruned",
        details: [
          "packsDeleted": "\(packsDeleted)", "packsRepacked": "\(repacked)", "packsWritten": "\(written)",
          "bytesFreed": "\(freed)", "retained": "\(retained.count)",
        ])
    }
    return ForgetResult(
      kept: keep.sorted(), removed: remove.sorted(), packsDeleted: packsDeleted, bytesFreed: freed, retained: retained,
      packsRepacked: repacked, packsWritten: written, repositoryPackBytes: packBytes, pruneRefusedFor: refusedFor,
      groups: groups)
  }

  /// The object an error about a manifest or an index file names.
  static func objectName(of e: EngineError) -> String {
    switch e {
    case .integrity(let object, _): return object
    case .unsupportedFormat(let m): return m.split(separator: ":").first.map(String.init) ?? m
    default: return e.description
    }
  }

  /// Copies the live blobs of `packs` into new packs of about the configured size and stores them; returns
  /// their index entries. Reads each source pack whole and checks it against its name (SHA-256) first, so a
  /// damaged pack stops the prune before anything is deleted.
  func repackLive(_ packs: [(pack: ID, live: [BlobEntry])]) async throws -> [IndexPack] {
    guard !packs.isEmpty else { return [] }
    let meta = try AESGCM(key: metaKey)
    var out: [IndexPack] = []
    var body: [UInt8] = []
    var entries: [BlobEntry] = []
    func flush() async throws {
      guard !entries.isEmpty else { return }
      var b = body
      try PackFormat.finish(body: &b, entries: entries, meta: meta, repo: repoID)
      let id = ID(Crypto.sha256(b))
      try await store.put(Self.packKey(id), data: Data(b), options: putOptions())
      out.append(IndexPack(packID: id, packSize: UInt64(b.count), entries: entries))
      audit.record("stored", details: ["pack": id.hex, "blobs": "\(entries.count)", "reason": "repack"])
      body = []
      entries = []
    }
    for (p, live) in packs {
      let key = Self.packKey(p)
      let bytes = try await getContentAddressed(key)
      for e in live.sorted(by: { $0.offset < $1.offset }) {
        let start = Int(e.offset)
        let end = start + Int(e.sealedLength)
        guard end <= bytes.count else {
          throw EngineError.integrity(object: key, message: "blob \(e.id.short) lies beyond the end of the pack")
        }
        var moved = e
        moved.offset = UInt32(body.count)
        body.append(contentsOf: bytes[start..<end])
        entries.append(moved)
        if body.count >= config.packSize { try await flush() }
      }
    }
    try await flush()
    return out
  }
}
