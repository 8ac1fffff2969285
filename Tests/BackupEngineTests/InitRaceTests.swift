import Foundation
import Logging
import Testing

@testable import BackupEngine

@Suite struct InitRaceTests {
  @Test func theRunThatLosesTheRaceToCreateTheRepositoryLeavesNoKeyFile() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-race-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try Data(Crypto.randomBytes(32)).write(to: URL(fileURLWithPath: dir + "/kek"))
    let kms = try LocalKeyService(path: dir + "/kek")
    let store = try LocalStore(root: dir + "/repo")
    let logger = Logger(label: "test")
    let winner = try await Repository.initialize(store: store, keyService: kms, objectLock: nil, logger: logger)
    // The loser checked before the winner wrote the config: it writes its key file, then loses on the config.
    let late = HookedStore.lateConfig(store)
    await #expect(throws: StorageError.self) {
      _ = try await Repository.initialize(store: late, keyService: kms, objectLock: nil, logger: logger)
    }
    let keys = try await store.list(prefix: "keys/").map(\.key)
    #expect(keys == [winner.keyFileName], "orphan key files: \(keys)")
    let opened = try await Repository.open(store: store, keyService: kms, logger: logger)
    #expect(opened.config.id == winner.config.id)
  }

  @Test func manyConcurrentCreatorsLeaveOneRepositoryAndOneKeyFile() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-race-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try Data(Crypto.randomBytes(32)).write(to: URL(fileURLWithPath: dir + "/kek"))
    let kms = try LocalKeyService(path: dir + "/kek")
    let store = HookedStore.lateConfig(try LocalStore(root: dir + "/repo"))
    let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
      for _ in 0..<8 {
        group.addTask {
          do {
            _ = try await Repository.initialize(
              store: store, keyService: kms, objectLock: nil, logger: Logger(label: "test"))
            return true
          } catch StorageError.alreadyExists {
            return false
          }
        }
      }
      return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
    }
    #expect(wins == 1)
    #expect(try await store.list(prefix: "keys/").count == 1)
  }
}
