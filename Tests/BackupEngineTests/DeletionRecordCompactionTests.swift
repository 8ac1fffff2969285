import Foundation
import Logging
import Testing

@testable import BackupEngine

/// Issue 14: signed deletion records (`deletions/`) would grow by one or two a day with a daily prune, and every
/// run that lists hidden objects reads them all. A prune folds them into one once there are more than
/// `compactDeletionRecordsAbove`, keeping only the keys still hidden; what the engine deleted stays deleted, and
/// what an attacker hid with the storage credentials is still read.
@Suite struct DeletionRecordCompactionTests {
  static let log = Logger(label: "t")

  static let keepLast1: RetentionPolicy = {
    var p = RetentionPolicy()
    p.keepLast = 1
    return p
  }()

  @Test func aPruneFoldsTheRecordsIntoOneAndNothingComesBack() async throws {
    let t = try ScratchRepositorySetup()
    defer { t.cleanup() }
    let store = VersionedLockingStore()
    let repo = try await Repository.initialize(
      store: store, keyService: t.kek, objectLock: try ObjectLockConfig.parse("compliance:30"), logger: Self.log)
    let above = Repository.compactDeletionRecordsAbove
    var forgotten: [ID] = []
    var most = 0
    var compactions = 0
    var last = try await t.backup(repo, Data(Crypto.randomBytes(20_000)), hour: 0)
    // Each round: a backup, then forget --keep-last 1 --prune, which records the manifest's deletion and the
    // prune's (index files, packs): two records a round.
    for round in 1...(above / 2 + 4) {
      let id = try await t.backup(repo, Data(Crypto.randomBytes(20_000)), hour: Double(round) / 10)
      let r = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
      let lock = try await r.lock(exclusive: true)
      let f = try await r.forget(policy: Self.keepLast1, prune: true)
      await lock.release()
      #expect(f.removed == [last.hex])
      #expect(f.pruneRefusedFor.isEmpty)
      forgotten.append(last)
      last = id
      let records = try await store.list(prefix: Repository.deletionsPrefix).count
      if records < most { compactions += 1 }
      most = max(most, records)
    }
    // The records never pile up past the bound (plus the two a prune writes before it compacts), and they were
    // folded at least once.
    #expect(compactions >= 1)
    #expect(most <= above + 2, "\(most) deletion records")
    let records = try await store.list(prefix: Repository.deletionsPrefix)
    #expect(records.count < above / 2, "\(records.count) deletion records after compaction")
    // The merged records are hidden behind delete markers, not deleted: their versions stay (locked like data).
    #expect(store.versions.keys.filter { $0.hasPrefix(Repository.deletionsPrefix) }.count > records.count)

    // Nothing the engine forgot or pruned comes back: the one record names every key still hidden.
    let reopened = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(try await reopened.loadSnapshotsSkippingDamaged().map(\.id) == [last])
    let hiddenSnapshots = try await store.listHidden(prefix: "snapshots/").map(\.key)
    #expect(Set(hiddenSnapshots) == Set(forgotten.map { "snapshots/" + $0.hex }))
    let v = try await reopened.verify(snapshotRef: nil, readData: true)
    #expect(v.errors.isEmpty, "\(v.errors)")
    #expect(v.snapshots == 1)

    // An attacker then hides the kept snapshot with a plain delete: no record names it, so it is still read.
    try await store.delete("snapshots/" + last.hex)
    let victim = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(try await victim.loadSnapshotsSkippingDamaged().map(\.id) == [last])
    #expect(victim.allWarnings.contains { $0.contains("snapshots/\(last.hex) is hidden behind a delete marker") })
  }

  /// The fold keeps only keys still hidden, and a record that fails its checks is neither merged nor deleted.
  @Test func onlyValidRecordsAreMergedAndOnlyHiddenKeysKept() async throws {
    let t = try ScratchRepositorySetup()
    defer { t.cleanup() }
    let store = VersionedLockingStore()
    let repo = try await Repository.initialize(
      store: store, keyService: t.kek, objectLock: try ObjectLockConfig.parse("compliance:30"), logger: Self.log)
    var ids: [ID] = []
    for hour in 1...4 { ids.append(try await t.backup(repo, Data(Crypto.randomBytes(10_000)), hour: Double(hour))) }
    // Three records: two name hidden manifests, one names a manifest whose delete never happened (a run killed
    // between the record and the delete), which is still listed.
    for id in ids.prefix(2) {
      try await repo.recordDeletions(["snapshots/" + id.hex])
      try await store.delete("snapshots/" + id.hex)
    }
    try await repo.recordDeletions(["snapshots/" + ids[2].hex])
    let planted = Repository.deletionsPrefix + Hex.encode(Crypto.randomBytes(16))
    try await store.put(planted, data: Data("junk\n00\n".utf8), options: PutOptions())

    #expect(try await repo.compactDeletionRecords(above: 4) == 0)  // four records: not above four
    #expect(try await repo.compactDeletionRecords(above: 2) == 3)
    let left = try await store.list(prefix: Repository.deletionsPrefix).map(\.key)
    #expect(left.count == 2 && left.contains(planted), "\(left)")
    let folded = try #require(left.first { $0 != planted })
    let body = try await store.get(folded)
    let record = try DeletionRecord.decode(body, repo: repo.config.id, publicKey: repo.publicKey).get()
    #expect(Set(record.keys) == Set(ids.prefix(2).map { "snapshots/" + $0.hex }))

    let reopened = try await Repository.open(store: store, keyService: t.kek, logger: Self.log)
    #expect(Set(try await reopened.loadSnapshotsSkippingDamaged().map(\.id)) == Set(ids.suffix(2)))
    #expect(reopened.allWarnings.contains { $0.contains(planted) && $0.contains("refused") })
  }
}
