import Foundation
import Logging
import Testing

@testable import BackupEngine

/// Counts calls and fails the `n`-th matching one (1-based).
final class NthCall: @unchecked Sendable {
  let lock = NSLock()
  var seen = 0
  let n: Int
  init(_ n: Int) { self.n = n }
  func hit() -> Bool {
    lock.withLock {
      seen += 1
      return seen == n
    }
  }
}

@Suite struct PruneRepackTests {
  /// A repository with one pack holding a live file (keep.bin) and a dead one (drop.bin): two backups, the
  /// first with both files, the second without drop.bin, then the first snapshot forgotten.
  struct Fixture {
    let dir: String
    let kms: LocalKeyService
    let keep: Data
    var repoDir: String { dir + "/repo" }
    func local() throws -> LocalStore { try LocalStore(root: repoDir) }

    init() async throws {
      dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-repack-\(UUID().uuidString)").path
      try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
      try makeFile(atPath: dir + "/kek", contents: Data(Crypto.randomBytes(32)))
      keep = Data(Crypto.randomBytes(3 << 20))
      try makeFile(atPath: dir + "/src/keep.bin", contents: keep)
      try makeFile(atPath: dir + "/src/drop.bin", contents: Data(Crypto.randomBytes(3 << 20)))
      kms = try LocalKeyService(path: dir + "/kek")
      let repo = try await Repository.initialize(
        store: try LocalStore(root: dir + "/repo"), keyService: kms, objectLock: nil, logger: Logger(label: "t"))
      // One worker: both files' blobs land in one pack.
      _ = try await repo.backup(BackupOptions(paths: [dir + "/src"], workers: 1))
      try FileManager.default.removeItem(atPath: dir + "/src/drop.bin")
      _ = try await repo.backup(BackupOptions(paths: [dir + "/src"], workers: 1))
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

    func open(_ store: any ObjectStore) async throws -> Repository {
      try await Repository.open(store: store, keyService: kms, logger: Logger(label: "t"))
    }

    func dataBytes() throws -> Int64 {
      var total: Int64 = 0
      let base = repoDir + "/data"
      for sub in try FileManager.default.contentsOfDirectory(atPath: base) {
        for f in try FileManager.default.contentsOfDirectory(atPath: base + "/" + sub) {
          let a = try FileManager.default.attributesOfItem(atPath: base + "/" + sub + "/" + f)
          total += (a[.size] as? Int64) ?? Int64((a[.size] as? Int) ?? 0)
        }
      }
      return total
    }

    /// Every remaining snapshot restores keep.bin intact, and verify --read-data finds no error.
    func expectIntact(_ label: String) async throws {
      let repo = try await open(try local())
      let (snaps, _) = try await repo.loadSnapshots()
      #expect(!snaps.isEmpty, "\(label): no snapshot left")
      let (index, _) = try await repo.loadIndex()
      for s in snaps {
        let out = dir + "/out-\(UUID().uuidString)"
        _ = try await repo.restore(s, index: index, options: RestoreOptions(target: out))
        let got = FileManager.default.contents(atPath: out + "/src/keep.bin")
        #expect(got == keep, "\(label): keep.bin differs after restore of \(s.id.short)")
        try? FileManager.default.removeItem(atPath: out)
      }
      let v = try await repo.verify(snapshotRef: nil, readData: true)
      #expect(v.errors.isEmpty, "\(label): \(v.errors)")
    }
  }

  static func keepLast1() -> RetentionPolicy {
    var p = RetentionPolicy()
    p.keepLast = 1
    return p
  }

  @Test func pruneRepacksAPartlyUsedPackAndReclaimsItsSpace() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    let before = try f.dataBytes()
    let repo = try await f.open(try f.local())
    let r = try await repo.forget(policy: Self.keepLast1(), prune: true)
    #expect(r.removed.count == 1)
    #expect(r.packsRepacked == 1, "the pack with keep.bin and drop.bin is rewritten")
    #expect(r.packsWritten == 1)
    let after = try f.dataBytes()
    // drop.bin's 3 MiB (incompressible) are gone; keep.bin's 3 MiB stay.
    #expect(before - after > 2_900_000, "reclaimed \(before - after) bytes")
    #expect(after > 3_000_000)
    #expect(r.bytesFreed == before - after)
    #expect(try FileManager.default.contentsOfDirectory(atPath: f.repoDir + "/index").count == 1)
    try await f.expectIntact("after repack")
  }

  @Test func repackThresholdAboveOneNeverRewrites() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    let before = try f.dataBytes()
    let repo = try await f.open(try f.local())
    let r = try await repo.forget(policy: Self.keepLast1(), prune: true, repackUnused: 2)
    #expect(r.packsRepacked == 0)
    #expect(r.packsWritten == 0)
    // Only the first snapshot's own tree pack can go; the shared data pack stays whole.
    #expect(before - (try f.dataBytes()) < 1_000_000)
    try await f.expectIntact("no repack")
  }

  /// A prune killed at each step of its write order (new packs, new index, old index deleted, old packs
  /// deleted) leaves every referenced blob readable; the next prune finishes the job.
  @Test(arguments: [
    ("put", "index/", 1),  // new packs written, new index not
    ("delete", "index/", 1),  // new index written, old index files still there
    ("delete", "data/", 1),  // old index deleted, no old pack deleted yet
    ("delete", "data/", 2),  // one old pack deleted
  ])
  func pruneKilledAtEachStepLosesNothing(op: String, prefix: String, n: Int) async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    let before = try f.dataBytes()
    let counter = NthCall(n)
    let crashing = HookedStore.crashing(try f.local()) { o, k in o == op && k.hasPrefix(prefix) && counter.hit() }
    let repo = try await f.open(crashing)
    await #expect(throws: StorageError.self) {
      _ = try await repo.forget(policy: Self.keepLast1(), prune: true)
    }
    try await f.expectIntact("killed at \(op) \(prefix) #\(n)")
    // The next prune completes and reclaims the space.
    let again = try await f.open(try f.local())
    _ = try await again.forget(policy: Self.keepLast1(), prune: true)
    let reclaimed = before - (try f.dataBytes())
    #expect(reclaimed > 2_900_000, "reclaimed \(reclaimed) of \(before) bytes")
    #expect(try FileManager.default.contentsOfDirectory(atPath: f.repoDir + "/index").count == 1)
    try await f.expectIntact("after the prune that followed \(op) \(prefix) #\(n)")
  }

  /// verify --read-data-subset n/t: the parts 1/t..t/t read every pack exactly once, and a damaged pack is
  /// found by the part that holds it and by no other.
  @Test func readDataSubsetPartsCoverEveryPackOnce() async throws {
    let f = try await Fixture()
    defer { f.cleanup() }
    let repo = try await f.open(try f.local())
    let full = try await repo.verify(snapshotRef: nil, readData: true)
    #expect(full.errors.isEmpty)
    #expect(full.packsRead == full.packs && full.packs >= 2)
    let none = try await repo.verify(snapshotRef: nil, readData: false)
    #expect(none.packsRead == 0)
    var sum = 0
    for n in 1...3 {
      let r = try await repo.verify(snapshotRef: nil, readData: false, subset: .part(n, of: 3))
      #expect(r.errors.isEmpty)
      sum += r.packsRead
    }
    #expect(sum == full.packs)
    // Flip one byte in the middle of the biggest pack (the data pack).
    let packs = try await f.local().list(prefix: "data/")
    let big = try #require(packs.max { $0.size < $1.size })
    let path = f.repoDir + "/" + big.key
    var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    bytes[bytes.count / 2] ^= 0x01
    try bytes.write(to: URL(fileURLWithPath: path))
    let id = try #require(ID(hex: String(big.key.split(separator: "/").last!)))
    let holder = Int(id.a >> 56) % 3 + 1
    for n in 1...3 {
      let r = try await repo.verify(snapshotRef: nil, readData: false, subset: .part(n, of: 3))
      if n == holder {
        #expect(r.errors.contains { $0.contains(big.key) }, "part \(n)/3 must name the damaged pack: \(r.errors)")
      } else {
        #expect(r.errors.isEmpty, "part \(n)/3 does not read the damaged pack")
      }
    }
    // Without reading data the damage is invisible (only presence and size are checked)...
    #expect(try await repo.verify(snapshotRef: nil, readData: false).errors.isEmpty)
    // ...and a percentage of 100 reads everything.
    #expect(!(try await repo.verify(snapshotRef: nil, readData: false, subset: .percent(100))).errors.isEmpty)
    #expect(throws: EngineError.self) { try ReadDataSubset.parse("0/3") }
    #expect(throws: EngineError.self) { try ReadDataSubset.parse("4/3") }
    #expect(throws: EngineError.self) { try ReadDataSubset.parse("0%") }
    #expect(try ReadDataSubset.parse("2/5") == .part(2, of: 5))
    #expect(try ReadDataSubset.parse("12.5%") == .percent(12.5))
  }
}
