import Foundation
import Logging
import Testing

@testable import BackupEngine

/// A store that answers "no config yet" to `head("config")`, as a run sees it that checked just before another
/// run created the repository.
struct LateConfigStore: ObjectStore {
  let inner: LocalStore
  var location: String { inner.location }
  var supportsRetention: Bool { inner.supportsRetention }
  func put(_ key: String, data: Data, options: PutOptions) async throws {
    try await inner.put(key, data: data, options: options)
  }
  func get(_ key: String) async throws -> Data { try await inner.get(key) }
  func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data {
    try await inner.getRange(key, offset: offset, length: length)
  }
  func head(_ key: String) async throws -> ObjectInfo? { key == "config" ? nil : try await inner.head(key) }
  func list(prefix: String) async throws -> [ObjectInfo] { try await inner.list(prefix: prefix) }
  func delete(_ key: String) async throws { try await inner.delete(key) }
  func extendRetention(_ key: String, to retention: ObjectRetention) async throws {
    try await inner.extendRetention(key, to: retention)
  }
}

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
    let late = LateConfigStore(inner: store)
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
    let store = LateConfigStore(inner: try LocalStore(root: dir + "/repo"))
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
