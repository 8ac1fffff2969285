import Foundation
import Logging
import Testing

@testable import BackupEngine

@Suite struct LockTests {
  struct Setup {
    let dir: String
    let store: LocalStore
    let kms: LocalKeyService
    func open(_ store: any ObjectStore) async throws -> Repository {
      try await Repository.open(store: store, keyService: kms, logger: Logger(label: "test"))
    }
    func locks() async throws -> [String] { try await store.list(prefix: "locks/").map(\.key) }
  }

  func setUp() async throws -> Setup {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-lock-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try Data(Crypto.randomBytes(32)).write(to: URL(fileURLWithPath: dir + "/kek"))
    let kms = try LocalKeyService(path: dir + "/kek")
    let store = try LocalStore(root: dir + "/repo")
    _ = try await Repository.initialize(store: store, keyService: kms, objectLock: nil, logger: Logger(label: "test"))
    return Setup(dir: dir, store: store, kms: kms)
  }

  /// A prune (exclusive) and a backup (shared) that both found the repository free: the one that looks again after
  /// writing its lock sees the other's and withdraws, so they never both proceed.
  @Test func twoLockersThatCheckedAtOnceNeverBothHoldTheRepository() async throws {
    let s = try await setUp()
    defer { try? FileManager.default.removeItem(atPath: s.dir) }
    let prune = try await s.open(HookedStore.blindFirstLockList(s.store))
    let backup = try await s.open(HookedStore.blindFirstLockList(s.store))
    let held = try await prune.lock(exclusive: true)
    await #expect(throws: EngineError.self) { _ = try await backup.lock(exclusive: false) }
    #expect(try await s.locks() == [held.key], "the withdrawn lock must be removed")
    await held.release()
    // Free again: the shared lock is taken.
    let later = try await backup.lock(exclusive: false)
    #expect(try await s.locks() == [later.key])
    await later.release()
  }

  @Test func retryLockWaitsForTheHolderOrGivesUp() async throws {
    let s = try await setUp()
    defer { try? FileManager.default.removeItem(atPath: s.dir) }
    let holder = try await s.open(s.store)
    let waiter = try await s.open(s.store)
    let held = try await holder.lock(exclusive: true)
    // Without waiting: refused at once, naming --retry-lock.
    do {
      _ = try await waiter.lock(exclusive: false)
      Issue.record("a shared lock was granted beside an exclusive one")
    } catch let EngineError.locked(message) {
      #expect(message.contains("--retry-lock"))
    }
    // Waiting 1.5 s while the holder keeps it: refused after about that long.
    let t0 = Date()
    await #expect(throws: EngineError.self) { _ = try await waiter.lock(exclusive: false, wait: 1.5) }
    #expect(Date().timeIntervalSince(t0) >= 1.4)
    // Waiting up to 20 s while the holder releases after 1 s: granted.
    let release = Task {
      try await Task.sleep(for: .seconds(1))
      await held.release()
    }
    let t1 = Date()
    let got = try await waiter.lock(exclusive: true, wait: 20)
    #expect(Date().timeIntervalSince(t1) < 15)
    try await release.value
    #expect(try await s.locks() == [got.key])
    await got.release()
  }
}

@Suite struct LostAnswerTests {
  /// Creating the repository, its key file and a lock through writes whose answers were lost: each finds its own
  /// object and goes on (the config was taken for another run's, and the new key file deleted, before).
  @Test func aRetriedCreateThatFindsItsOwnObjectSucceeds() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-lost-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try Data(Crypto.randomBytes(32)).write(to: URL(fileURLWithPath: dir + "/kek"))
    let kms = try LocalKeyService(path: dir + "/kek")
    let local = try LocalStore(root: dir + "/repo")
    let store = HookedStore.lostAnswers(local)
    let logger = Logger(label: "test")
    let repo = try await Repository.initialize(store: store, keyService: kms, objectLock: nil, logger: logger)
    #expect(try await local.list(prefix: "keys/").map(\.key) == [repo.keyFileName])
    let opened = try await Repository.open(store: store, keyService: kms, logger: logger)
    #expect(opened.config.id == repo.config.id)
    let lock = try await opened.lock(exclusive: true)
    #expect(try await local.list(prefix: "locks/").map(\.key) == [lock.key])
    await lock.release()
    // Another object under the name is still a conflict.
    try await local.put("probe", data: Data("theirs".utf8))
    await #expect(throws: StorageError.self) { try await local.create("probe", data: Data("ours".utf8)) }
    #expect(try await local.get("probe") == Data("theirs".utf8))
  }
}
