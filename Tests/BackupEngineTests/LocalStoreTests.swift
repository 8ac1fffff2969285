import Foundation
import Testing

@testable import BackupEngine

@Suite struct LocalStoreTests {
  @Test func putGetListDelete() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-store-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let s = try LocalStore(root: dir)
    try await s.put("data/ab/abc", data: Data("hello".utf8))
    try await s.put("index/i1", data: Data("x".utf8))
    #expect(try await s.get("data/ab/abc") == Data("hello".utf8))
    #expect(try await s.getRange("data/ab/abc", offset: 1, length: 3) == Data("ell".utf8))
    #expect(try await s.head("data/ab/abc")?.size == 5)
    #expect(try await s.head("nope") == nil)
    #expect(try await s.list(prefix: "data/").map { $0.key } == ["data/ab/abc"])
    #expect(Set(try await s.list(prefix: "").map { $0.key }) == ["data/ab/abc", "index/i1"])
    await #expect(throws: StorageError.self) {
      try await s.put("index/i1", data: Data("y".utf8), options: PutOptions(ifNoneMatch: true))
    }
    #expect(try await s.get("index/i1") == Data("x".utf8))
    await #expect(throws: StorageError.self) { try await s.getRange("data/ab/abc", offset: 3, length: 10) }
    try await s.delete("data/ab/abc")
    try await s.delete("data/ab/abc")
    do {
      _ = try await s.get("data/ab/abc")
      Issue.record("expected notFound")
    } catch StorageError.notFound(let k) {
      #expect(k == "data/ab/abc")
    }
    await #expect(throws: StorageError.self) { try await s.put("../escape", data: Data()) }
    // No temp files are left behind.
    let names = try FileManager.default.subpathsOfDirectory(atPath: dir)
    #expect(!names.contains { $0.contains(".tmp-") })
  }
}
