import Foundation

/// Which snapshots to keep.
public struct RetentionPolicy: Sendable, Hashable {
  public var keepLast = 0
  public var keepHourly = 0
  public var keepDaily = 0
  public var keepWeekly = 0
  public var keepMonthly = 0
  public var keepYearly = 0
  /// Snapshots older than this many seconds are removed.
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

  /// Splits snapshots (one group) into kept and removed, given `now`.
  public func apply(_ snaps: [(id: String, time: Date)], now: Date) -> (keep: Set<String>, remove: Set<String>) {
    let sorted = snaps.sorted { $0.time > $1.time }
    var keep = Set<String>()
    if !hasKeepRule {
      for s in sorted { keep.insert(s.id) }
    } else {
      for (i, s) in sorted.enumerated() where i < keepLast { keep.insert(s.id) }
      var cal = Calendar(identifier: .gregorian)
      cal.timeZone = TimeZone(identifier: "UTC")!
      let rules: [(Int, (Date) -> String)] = [
        (
          keepHourly,
          { d in
            let c = cal.dateComponents([.year, .month, .day, .hour], from: d);
            return "\(c.year!)-\(c.month!)-\(c.day!)-\(c.hour!)"
          }
        ),
        (
          keepDaily,
          { d in
            let c = cal.dateComponents([.year, .month, .day], from: d); return "\(c.year!)-\(c.month!)-\(c.day!)"
          }
        ),
        (
          keepWeekly,
          { d in
            let c = cal.dateComponents([.yearForWeekOfYear, .weekOfYear], from: d);
            return "\(c.yearForWeekOfYear!)-w\(c.weekOfYear!)"
          }
        ),
        (
          keepMonthly,
          { d in
            let c = cal.dateComponents([.year, .month], from: d); return "\(c.year!)-\(c.month!)"
          }
        ),
        (keepYearly, { d in "\(cal.component(.year, from: d))" }),
      ]
      for (n, bucket) in rules where n > 0 {
        var seen = Set<String>()
        for s in sorted {
          let b = bucket(s.time)
          if seen.contains(b) { continue }
          if seen.count >= n { break }
          seen.insert(b)
          keep.insert(s.id)
        }
      }
    }
    if let maxAge {
      for s in sorted where now.timeIntervalSince(s.time) > maxAge { keep.remove(s.id) }
    }
    let remove = Set(sorted.map { $0.id }).subtracting(keep)
    return (keep, remove)
  }
}

/// The outcome of `forget`.
public struct ForgetResult: Sendable {
  public var kept: [String]
  public var removed: [String]
  public var packsDeleted: Int
  public var bytesFreed: Int64
  /// Objects Object Lock did not let us delete yet (nothing is lost).
  public var retained: [String]
}

extension Repository {
  /// Applies a retention policy; with `prune`, deletes packs no remaining snapshot references.
  public func forget(policy: RetentionPolicy, prune: Bool, now: Date = Date(), dryRun: Bool = false) async throws
    -> ForgetResult
  {
    let (snaps, _) = try await loadSnapshots()
    var groups: [String: [Snapshot]] = [:]
    for s in snaps {
      let m = s.manifest
      groups["\(m.hostname)|\(m.dataType)|\(m.paths.joined(separator: ","))", default: []].append(s)
    }
    var keep = Set<String>()
    var remove = Set<String>()
    for (_, g) in groups {
      let r = policy.apply(g.map { (id: $0.id.hex, time: $0.manifest.date) }, now: now)
      keep.formUnion(r.keep)
      remove.formUnion(r.remove)
    }
    var retained: [String] = []
    if !dryRun {
      for id in remove.sorted() {
        do { try await store.delete("snapshots/" + id) } catch StorageError.locked(let k, let m) {
          retained.append("\(k): \(m)")
        }
      }
      audit.record("forgotten", details: ["removed": "\(remove.count)", "kept": "\(keep.count)"])
    }
    var packsDeleted = 0
    var freed: Int64 = 0
    if prune && !dryRun {
      let (index, _) = try await loadIndex()
      let listed = try await listPacks()
      // Everything still referenced by the snapshots that remain (including any that could not be deleted).
      let (remaining, _) = try await loadSnapshots()
      var used = Set<ID>()
      for s in remaining {
        for t in s.manifest.tree { if let id = ID(hex: t) { used.insert(id) } }
        for n in try await loadTree(s, index: index) { for c in n.content { used.insert(c) } }
      }
      let contents = index.packContents()
      var keepPacks: [IndexPack] = []
      var deletePacks: [ID] = []
      for (p, es) in contents {
        if es.contains(where: { used.contains($0.id) }) {
          keepPacks.append(IndexPack(packID: p, packSize: index.packs[p] ?? 0, entries: es))
        } else {
          deletePacks.append(p)
        }
      }
      // Unindexed leftovers from killed backups that nothing references are removed too.
      for p in listed.keys where index.packs[p] == nil { deletePacks.append(p) }
      let oldIndex = index.files
      let newIndex = try await writeIndex(keepPacks)
      for f in oldIndex where f != newIndex {
        do { try await store.delete(f) } catch StorageError.locked(let k, let m) { retained.append("\(k): \(m)") }
      }
      for p in deletePacks {
        do {
          try await store.delete(Self.packKey(p))
          packsDeleted += 1
          freed += listed[p] ?? 0
        } catch StorageError.locked(let k, let m) {
          retained.append("\(k): \(m)")
        }
      }
      audit.record(
        "pruned",
        details: ["packsDeleted": "\(packsDeleted)", "bytesFreed": "\(freed)", "retained": "\(retained.count)"])
    }
    return ForgetResult(
      kept: keep.sorted(), removed: remove.sorted(), packsDeleted: packsDeleted, bytesFreed: freed, retained: retained)
  }
}
