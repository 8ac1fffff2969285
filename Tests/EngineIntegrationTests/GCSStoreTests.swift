import Foundation
import Testing

@testable import BackupEngine

/// GCSStore against fake-gcs-server (BOTRT_GCS_ENDPOINT).
@Suite struct GCSStoreTests {
  func makeStore() async throws -> GCSStore {
    let endpoint = try ServiceEnv.require("BOTRT_GCS_ENDPOINT")
    let bucket = ServiceEnv.bucketName("gcs")
    let url = try #require(URLComponents(string: "gs://\(bucket)/repo"))
    // The environment holds S3 settings too; the GCS endpoint must win over them.
    let store = try GCSStore(url: url, options: StoreOptions(environment: ["BOTRT_GCS_ENDPOINT": endpoint]))
    try await store.createBucket()
    return store
  }

  @Test func putGetRangeHeadListDelete() async throws {
    let s = try await makeStore()
    #expect(!s.supportsRetention)
    let body = randomData(300_000)
    try await s.put("data/ab/abcdef", data: body)
    try await s.put("index/one", data: Data("index".utf8))
    #expect(try await s.get("data/ab/abcdef") == body)
    #expect(try await s.getRange("data/ab/abcdef", offset: 77, length: 1000) == body.subdata(in: 77..<1077))
    #expect(try await s.head("data/ab/abcdef")?.size == 300_000)
    #expect(try await s.head("nope") == nil)
    #expect(try await s.list(prefix: "data/").map(\.key) == ["data/ab/abcdef"])
    #expect(Set(try await s.list(prefix: "").map(\.key)) == ["data/ab/abcdef", "index/one"])
    do {
      _ = try await s.get("nope")
      Issue.record("get of a missing object must throw")
    } catch StorageError.notFound(let key) {
      #expect(key == "nope")
    }
    try await s.delete("index/one")
    #expect(try await s.head("index/one") == nil)
    try await s.delete("index/one")
  }

  @Test func ifGenerationMatchZeroRefusesOverwrite() async throws {
    let s = try await makeStore()
    try await s.put("locks/a", data: Data("first".utf8), options: PutOptions(ifNoneMatch: true))
    do {
      try await s.put("locks/a", data: Data("second".utf8), options: PutOptions(ifNoneMatch: true))
      Issue.record("a second conditional put must fail")
    } catch StorageError.alreadyExists(let key) {
      #expect(key == "locks/a")
    }
    #expect(try await s.get("locks/a") == Data("first".utf8))
  }

  @Test func listPaginates() async throws {
    let s = try await makeStore()
    let n = 1_010
    try await withThrowingTaskGroup(of: Void.self) { g in
      for i in 0..<n {
        if i >= 16 { try await g.next() }
        g.addTask { try await s.put(String(format: "data/k%05d", i), data: Data("\(i)".utf8)) }
      }
      try await g.waitForAll()
    }
    let keys = try await s.list(prefix: "data/").map(\.key)
    #expect(keys.count == n)
    #expect(Set(keys).count == n)
  }

  @Test func factoryBuildsGCS() throws {
    let endpoint = try ServiceEnv.require("BOTRT_GCS_ENDPOINT")
    let s = try makeObjectStore(url: "gs://b/p", options: StoreOptions(environment: ["BOTRT_GCS_ENDPOINT": endpoint]))
    #expect(s.location == "gs://b/p")
    #expect(throws: StorageError.self) {
      _ = try GCSStore(url: URLComponents(string: "gs://b/p")!, options: StoreOptions(environment: [:]))
    }
  }
}
