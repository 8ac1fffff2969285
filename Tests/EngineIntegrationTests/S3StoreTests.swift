import Foundation
import Testing

@testable import BackupEngine

/// S3Store against both S3 servers (moto and SeaweedFS), with Object Lock, and through a fault-injecting proxy.
@Suite(.serialized) struct S3StoreTests {
  /// A store on a new Object Lock bucket under a random prefix.
  func makeStore(
    _ server: S3Server, endpoint: String? = nil, policy: RetryPolicy = .standard, bucket: String? = nil,
    create: Bool = true
  ) async throws -> S3Store {
    let (defaultEndpoint, env) = try ServiceEnv.s3(server)
    let b = bucket ?? ServiceEnv.bucketName("s3")
    let url = try #require(URLComponents(string: "s3://\(b)/repo-\(UUID().uuidString.prefix(8))"))
    let store = try S3Store(
      url: url, options: StoreOptions(endpoint: endpoint ?? defaultEndpoint, environment: env), policy: policy)
    if create { try await store.createBucket(objectLock: true) }
    return store
  }

  @Test(arguments: S3Server.allCases) func putGetRangeHeadListDelete(_ server: S3Server) async throws {
    let s = try await makeStore(server)
    let body = randomData(100_000)
    try await s.put("data/ab/abcdef", data: body)
    try await s.put("index/one", data: Data("index".utf8))
    #expect(try await s.get("data/ab/abcdef") == body)
    #expect(try await s.getRange("data/ab/abcdef", offset: 1000, length: 5000) == body.subdata(in: 1000..<6000))
    let info = try #require(try await s.head("data/ab/abcdef"))
    #expect(info.size == 100_000)
    #expect(info.lastModified != nil)
    #expect(try await s.head("data/missing") == nil)
    #expect(try await s.list(prefix: "data/").map(\.key) == ["data/ab/abcdef"])
    #expect(Set(try await s.list(prefix: "").map(\.key)) == ["data/ab/abcdef", "index/one"])
    do {
      _ = try await s.get("data/missing")
      Issue.record("get of a missing object must throw")
    } catch StorageError.notFound(let key) {
      #expect(key == "data/missing")
    }
    try await s.delete("index/one")
    #expect(try await s.head("index/one") == nil)
    try await s.delete("index/one")  // deleting a missing object is not an error
    // On the versioned (Object Lock) bucket a plain delete leaves the version behind a delete marker; only
    // deleteAllVersions (delete-repository) removes every version.
    func versions() async throws -> [S3VersionsPage.Version] {
      let r = try await s.send("test") {
        s.request("GET", key: "", query: [("versions", ""), ("prefix", s.objectKey("index/one"))])
      }
      return try #require(S3VersionsPage.parse(r.body)).versions
    }
    #expect(try await versions().contains { !$0.isDeleteMarker })
    try await s.deleteAllVersions("index/one")
    #expect(try await versions().isEmpty)
  }

  @Test(arguments: S3Server.allCases) func listPaginatesPast1000Keys(_ server: S3Server) async throws {
    let s = try await makeStore(server)
    let n = 1_005
    try await withThrowingTaskGroup(of: Void.self) { g in
      var next = 0
      for _ in 0..<16 {
        let i = next
        next += 1
        g.addTask { try await s.put(String(format: "data/k%05d", i), data: Data("\(i)".utf8)) }
      }
      while try await g.next() != nil, next < n {
        let i = next
        next += 1
        g.addTask { try await s.put(String(format: "data/k%05d", i), data: Data("\(i)".utf8)) }
      }
      try await g.waitForAll()
    }
    try await s.put("other/x", data: Data("x".utf8))
    let keys = try await s.list(prefix: "data/").map(\.key)
    #expect(keys.count == n)
    #expect(Set(keys).count == n)
    #expect(keys.contains("data/k01004"))
  }

  @Test(arguments: S3Server.allCases) func multipartUploadWithObjectLock(_ server: S3Server) async throws {
    var s = try await makeStore(server)
    s.multipartThreshold = 6 << 20
    s.partSize = 5 << 20
    let body = randomData((13 << 20) + 123)
    let until = Date().addingTimeInterval(3600)
    try await s.put(
      "data/big", data: body, options: PutOptions(retention: ObjectRetention(mode: .governance, retainUntil: until)))
    #expect(try await s.head("data/big")?.size == Int64(body.count))
    #expect(try await s.get("data/big") == body)
    let across = Int64(5 << 20) - 10
    #expect(
      try await s.getRange("data/big", offset: across, length: 20) == body.subdata(in: Int(across)..<Int(across + 20)))
    let retained = try #require(try await s.retainUntil(s.objectKey("data/big")))
    #expect(abs(retained.timeIntervalSince(until)) < 2)
    await #expect(throws: StorageError.self) {
      try await s.put("data/big", data: body, options: PutOptions(ifNoneMatch: true))
    }
  }

  @Test(arguments: S3Server.allCases) func ifNoneMatchRefusesOverwrite(_ server: S3Server) async throws {
    let s = try await makeStore(server)
    try await s.put("locks/a", data: Data("first".utf8), options: PutOptions(ifNoneMatch: true))
    do {
      try await s.put("locks/a", data: Data("second".utf8), options: PutOptions(ifNoneMatch: true))
      Issue.record("a second conditional put must fail")
    } catch StorageError.alreadyExists(let key) {
      #expect(key == "locks/a")
    }
    #expect(try await s.get("locks/a") == Data("first".utf8))
  }

  @Test(arguments: S3Server.allCases) func objectLockComplianceRefusesDeleteAndExtends(_ server: S3Server) async throws
  {
    let s = try await makeStore(server)
    let until = Date().addingTimeInterval(86_400)
    try await s.put(
      "data/locked", data: Data("keep me".utf8),
      options: PutOptions(retention: ObjectRetention(mode: .compliance, retainUntil: until)))
    do {
      try await s.deleteAllVersions("data/locked")
      Issue.record("deleting the versions of an object under COMPLIANCE retention must fail")
    } catch StorageError.locked(let key, let message) {
      #expect(key == "data/locked")
      #expect(message.contains("retained until"))
    }
    #expect(try await s.get("data/locked") == Data("keep me".utf8))
    #expect(try await s.retention(of: "data/locked") != nil)
    let full = s.objectKey("data/locked")
    let first = try #require(try await s.retainUntil(full))
    #expect(abs(first.timeIntervalSince(until)) < 2)
    // Extending moves the date forward.
    let later = until.addingTimeInterval(86_400)
    try await s.extendRetention("data/locked", to: ObjectRetention(mode: .compliance, retainUntil: later))
    let extended = try #require(try await s.retainUntil(full))
    #expect(abs(extended.timeIntervalSince(later)) < 2)
    // An earlier date never shortens it.
    try await s.extendRetention("data/locked", to: ObjectRetention(mode: .compliance, retainUntil: until))
    let unchanged = try #require(try await s.retainUntil(full))
    #expect(abs(unchanged.timeIntervalSince(later)) < 2)
  }

  @Test(arguments: S3Server.allCases) func missingBucketIsNamed(_ server: S3Server) async throws {
    let s = try await makeStore(server, create: false)
    do {
      try await s.put("x", data: Data("x".utf8))
      Issue.record("a put into a missing bucket must fail")
    } catch StorageError.failed(_, let message) {
      #expect(message.contains(s.bucket))
    }
  }

  @Test func credentialsAreRequiredAndNeverShown() throws {
    let url = try #require(URLComponents(string: "s3://b/p"))
    do {
      _ = try S3Store(url: url, options: StoreOptions(endpoint: "http://127.0.0.1:1", environment: [:]))
      Issue.record("a store without credentials must not be built")
    } catch StorageError.accessDenied(_, let message) {
      #expect(message.contains("AWS_ACCESS_KEY_ID"))
    }
    let env = ["AWS_ACCESS_KEY_ID": "AKIDVISIBLE", "AWS_SECRET_ACCESS_KEY": "SuperSecretValue"]
    let s = try S3Store(url: url, options: StoreOptions(endpoint: "http://127.0.0.1:1", environment: env))
    #expect(!"\(s)".contains("SuperSecretValue"))
    #expect(!String(reflecting: s).contains("SuperSecretValue"))
    #expect("\(s)".contains("AKIDVISIBLE"), "the check above must look at a description that shows the credentials")
  }

  /// SeaweedFS checks every SigV4 signature (moto accepts any): a wrong secret or an unknown access key is refused
  /// with 403, so there the engine's signing is really verified, not only sent.
  @Test func seaweedfsVerifiesSignatures() async throws {
    let good = try await makeStore(.seaweedfs)
    try await good.put("data/x", data: Data("x".utf8))
    let (endpoint, env) = try ServiceEnv.s3(.seaweedfs)
    let url = try #require(URLComponents(string: "s3://\(good.bucket)/\(good.prefix)"))
    for (name, value) in [("AWS_SECRET_ACCESS_KEY", "wrong-secret"), ("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN")] {
      let bad = try S3Store(
        url: url, options: StoreOptions(endpoint: endpoint, environment: env.merging([name: value]) { $1 }))
      do {
        _ = try await bad.get("data/x")
        Issue.record("SeaweedFS served a GET signed with a wrong \(name)")
      } catch StorageError.accessDenied(_, let message) {
        #expect(!message.contains("wrong-secret"), "no credentials in messages")
      }
      await #expect(throws: StorageError.self) { try await bad.put("data/y", data: Data("y".utf8)) }
    }
    #expect(try await good.head("data/y") == nil)
    #expect(try await good.get("data/x") == Data("x".utf8))
  }

  // MARK: - Faults

  static let fastPolicy = RetryPolicy(
    maxAttempts: 5, backoff: .init(base: .milliseconds(20), max: .milliseconds(200)), requestTimeout: .seconds(30),
    lowSpeedTime: .seconds(2), connectTimeout: .seconds(2))

  @Test(arguments: S3Server.allCases) func retriesThrough500And503ResetAndStall(_ server: S3Server) async throws {
    let (endpoint, _) = try ServiceEnv.s3(server)
    let bucket = ServiceEnv.bucketName("fault")
    _ = try await makeStore(server, bucket: bucket)  // create the bucket directly
    let proxy = try FaultProxy(
      upstream: endpoint, schedule: ["500", "slowdown", "reset", "stall", "pass", "503", "reset"])
    defer { proxy.stop() }
    let s = try await makeStore(server, endpoint: proxy.url, policy: Self.fastPolicy, bucket: bucket, create: false)
    let body = randomData(50_000)
    let started = ContinuousClock.now
    try await s.put("data/f", data: body)
    #expect(try await s.get("data/f") == body)
    #expect(try proxy.actions() == ["500", "slowdown", "reset", "stall", "pass", "503", "reset", "pass"])
    // The stall was cut after about lowSpeedTime (2 s), not the proxy's 60 s.
    #expect(ContinuousClock.now - started < .seconds(20))
  }

  @Test(arguments: S3Server.allCases) func boundedAttemptsEndInUnavailable(_ server: S3Server) async throws {
    let (endpoint, _) = try ServiceEnv.s3(server)
    let bucket = ServiceEnv.bucketName("fault")
    _ = try await makeStore(server, bucket: bucket)
    let proxy = try FaultProxy(upstream: endpoint, schedule: Array(repeating: "503", count: 5))
    defer { proxy.stop() }
    let s = try await makeStore(server, endpoint: proxy.url, policy: Self.fastPolicy, bucket: bucket, create: false)
    do {
      _ = try await s.get("data/anything")
      Issue.record("five 503s must exhaust five attempts")
    } catch StorageError.unavailable(let location, let message, let attempts) {
      #expect(attempts == 5)
      #expect(location.contains(bucket))
      #expect(message.contains("503"))
      #expect(!message.contains("testing"), "no credentials in messages")
    }
    #expect(try proxy.actions().count == 5)
  }
}
