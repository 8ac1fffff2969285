import CurlHTTP
import Foundation
import KubeCore
import Testing

@testable import KubeClient

let cmJSON =
  #"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","namespace":"ns","resourceVersion":"5"},"#
  + #""data":{"k":"v"}}"#

func statusJSON(_ code: Int, _ reason: String, _ message: String, causes: String = "") -> String {
  let details = causes.isEmpty ? "" : #","details":{"causes":[\#(causes)]}"#
  return
    #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"\#(message)","#
    + #""reason":"\#(reason)","code":\#(code)\#(details)}"#
}

@Suite struct ClientCallTests {
  @Test func getSendsAuthAndDecodes() async throws {
    let t = FakeTransport([.respond(200, body: cmJSON)])
    let client = makeClient(t)
    let cm = try await client.get(ConfigMap.self, namespace: "ns", name: "a")
    #expect(cm.data == ["k": "v"])
    let req = try #require(t.requests.first)
    #expect(req.url == "https://127.0.0.1:6443/api/v1/namespaces/ns/configmaps/a")
    #expect(req.header("Authorization") == "Bearer s3cr3t-token")
    #expect(req.header("Accept") == "application/json")
    #expect(req.timeout == .seconds(30))
  }

  @Test func notFoundIsTyped() async throws {
    let t = FakeTransport([.respond(404, body: statusJSON(404, "NotFound", #"configmaps \"a\" not found"#))])
    do {
      _ = try await makeClient(t).get(ConfigMap.self, namespace: "ns", name: "a")
      Issue.record("expected NotFound")
    } catch let e as KubeError {
      #expect(e.isNotFound)
      #expect(!e.isRetryable)
      #expect(e.description.contains("GET https://127.0.0.1:6443/api/v1/namespaces/ns/configmaps/a: 404 NotFound"))
    }
    #expect(t.requests.count == 1)
  }

  @Test func invalidCarriesFieldCauses() async throws {
    let causes = #"{"reason":"FieldValueInvalid","message":"Invalid value: \"bad key\"","field":"data[bad key]"}"#
    let t = FakeTransport([.respond(422, body: statusJSON(422, "Invalid", "ConfigMap is invalid", causes: causes))])
    let cm = ConfigMap(metadata: ObjectMeta(name: "a", namespace: "ns"), data: ["bad key": "v"])
    do {
      _ = try await makeClient(t).create(cm)
      Issue.record("expected Invalid")
    } catch let e as KubeError {
      #expect(e.isInvalid)
      #expect(e.apiError?.causes.first?.field == "data[bad key]")
      #expect(e.description.contains("data[bad key]"))
    }
    let req = try #require(t.requests.first)
    #expect(req.method == "POST")
    #expect(req.header("Content-Type") == "application/json")
  }

  @Test func retries429WithRetryAfterThenSucceeds() async throws {
    let t = FakeTransport([
      .respond(429, headers: ["retry-after": "3"], body: statusJSON(429, "TooManyRequests", "slow down")),
      .respond(503, body: "upstream unavailable"),
      .respond(200, body: cmJSON),
    ])
    let sleeper = SleepRecorder()
    let cm = try await makeClient(t, sleeper: sleeper).get(ConfigMap.self, namespace: "ns", name: "a")
    #expect(cm.name == "a")
    #expect(t.requests.count == 3)
    #expect(sleeper.recorded.count == 2)
    #expect(sleeper.recorded[0] == .seconds(3))
    #expect(sleeper.recorded[1] <= .milliseconds(400))
  }

  @Test func retriesAreBounded() async throws {
    let t = FakeTransport(Array(repeating: .respond(500, body: statusJSON(500, "InternalError", "boom")), count: 10))
    let sleeper = SleepRecorder()
    do {
      _ = try await makeClient(t, sleeper: sleeper, maxAttempts: 3).get(ConfigMap.self, namespace: "ns", name: "a")
      Issue.record("expected an error")
    } catch let e as KubeError {
      #expect(e.code == 500)
      #expect(e.isRetryable)
    }
    #expect(t.requests.count == 3)
    #expect(sleeper.recorded.count == 2)
  }

  @Test func createIsNotRetriedOn5xxOrConnectionErrors() async throws {
    let cm = ConfigMap(metadata: ObjectMeta(name: "a", namespace: "ns"))
    let t = FakeTransport([.respond(500, body: statusJSON(500, "InternalError", "boom"))])
    await #expect(throws: KubeError.self) { _ = try await makeClient(t).create(cm) }
    #expect(t.requests.count == 1)
    let t2 = FakeTransport([.fail(.connection)])
    await #expect(throws: KubeError.self) { _ = try await makeClient(t2).create(cm) }
    #expect(t2.requests.count == 1)
    // 429 means the server did not process it: retried even for POST.
    let t3 = FakeTransport([.respond(429, body: statusJSON(429, "TooManyRequests", "x")), .respond(201, body: cmJSON)])
    _ = try await makeClient(t3).create(cm)
    #expect(t3.requests.count == 2)
  }

  @Test func connectionErrorsOnGetAreRetriedAndNameTheURL() async throws {
    let t = FakeTransport([.fail(.connection), .fail(.connection), .fail(.connection)])
    do {
      _ = try await makeClient(t, maxAttempts: 3).get(ConfigMap.self, namespace: "ns", name: "a")
      Issue.record("expected a transport error")
    } catch let e as KubeError {
      guard case .transport(let te, _) = e else {
        Issue.record("expected .transport, got \(e)")
        return
      }
      #expect(te.kind == .connection)
      #expect(e.isRetryable)
      #expect(e.description.contains("https://127.0.0.1:6443/api/v1/namespaces/ns/configmaps/a"))
    }
    #expect(t.requests.count == 3)
  }

  @Test func tlsVerificationErrorNamesTheCA() async throws {
    let t = FakeTransport([.fail(.tls, code: 60)])
    do {
      _ = try await makeClient(t).get(ConfigMap.self, namespace: "ns", name: "a")
      Issue.record("expected a TLS error")
    } catch let e as KubeError {
      #expect(!e.isRetryable)
      #expect(e.description.contains("could not be verified against the CA from /x/ca.crt"))
    }
  }

  @Test func unauthorizedNamesTheUserButNotTheToken() async throws {
    let t = FakeTransport([.respond(401, body: statusJSON(401, "Unauthorized", "Unauthorized"))])
    do {
      _ = try await makeClient(t).get(ConfigMap.self, namespace: "ns", name: "a")
      Issue.record("expected Unauthorized")
    } catch let e as KubeError {
      #expect(e.isUnauthorized)
      #expect(e.description.contains("user \"tester\""))
      #expect(!e.description.contains("s3cr3t-token"))
      #expect(!"\(e)".contains("s3cr3t-token"))
    }
  }

  @Test func tokenFileIsReReadAfter401() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kc-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let tokenFile = dir.appendingPathComponent("token").path
    try "old-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
    let t = FakeTransport([
      .respond(200, body: cmJSON), .respond(401, body: statusJSON(401, "Unauthorized", "x")),
      .respond(200, body: cmJSON),
    ])
    let client = makeClient(t, auth: .tokenFile(tokenFile))
    _ = try await client.get(ConfigMap.self, namespace: "ns", name: "a")
    try "new-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
    _ = try await client.get(ConfigMap.self, namespace: "ns", name: "a")
    let auths = t.requests.map { $0.header("Authorization") }
    #expect(auths == ["Bearer old-token", "Bearer old-token", "Bearer new-token"])
  }

  @Test func decodeErrorNamesTypeAndPath() async throws {
    let t = FakeTransport([.respond(200, body: #"{"metadata":{"name":7}}"#)])
    do {
      _ = try await makeClient(t).get(ConfigMap.self, namespace: "ns", name: "a")
      Issue.record("expected a decode error")
    } catch let e as KubeError {
      guard case .decode(let d) = e else {
        Issue.record("expected .decode, got \(e)")
        return
      }
      #expect(d.typeName == "ConfigMap")
      #expect(d.detail.contains(".metadata.name"))
    }
  }

  @Test func listAllFollowsContinueTokens() async throws {
    func page(_ names: [String], cont: String?) -> String {
      let items = names.map { #"{"metadata":{"name":"\#($0)","namespace":"ns"}}"# }.joined(separator: ",")
      let c = cont.map { #","continue":"\#($0)""# } ?? ""
      return #"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"77"\#(c)},"items":[\#(items)]}"#
    }
    let t = FakeTransport([
      .respond(200, body: page(["a", "b"], cont: "t1")), .respond(200, body: page(["c", "d"], cont: "t/2")),
      .respond(200, body: page(["e"], cont: nil)),
    ])
    let all = try await makeClient(t).listAll(ConfigMap.self, namespace: "ns", options: ListOptions(limit: 2))
    #expect(all.items.map(\.name) == ["a", "b", "c", "d", "e"])
    #expect(all.metadata.resourceVersion == "77")
    let urls = t.requests.map(\.url)
    #expect(urls[0].hasSuffix("/configmaps?limit=2"))
    #expect(urls[1].hasSuffix("/configmaps?limit=2&continue=t1"))
    #expect(urls[2].hasSuffix("/configmaps?limit=2&continue=t%2F2"))
  }

  @Test func applyUsesApplyPatch() async throws {
    let t = FakeTransport([.respond(200, body: cmJSON)])
    let cm = ConfigMap(metadata: ObjectMeta(name: "a", namespace: "ns"), data: ["k": "v"])
    _ = try await makeClient(t).apply(cm, fieldManager: "botrt", force: true)
    let req = try #require(t.requests.first)
    #expect(req.method == "PATCH")
    #expect(req.header("Content-Type") == "application/apply-patch+yaml")
    #expect(req.url.hasSuffix("/namespaces/ns/configmaps/a?fieldManager=botrt&force=true"))
    let body = try JSONValue(jsonData: try #require(req.body))
    #expect(body[path: "data", "k"] == "v")
    #expect(body["kind"] == "ConfigMap")
  }

  @Test func watchYieldsEventsAcrossChunks() async throws {
    let lines =
      [
        #"{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"}}}"#,
        #"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"2"}}}"#,
        #"{"type":"ERROR","object":{"kind":"Status","status":"Failure","#
          + #""reason":"Expired","code":410,"message":"too old"}}"#,
      ].joined(separator: "\n") + "\n"
    let bytes = Data(lines.utf8)
    let chunks = stride(from: 0, to: bytes.count, by: 7).map { bytes[$0..<min(bytes.count, $0 + 7)] }
    let t = FakeTransport([.stream(200, chunks: chunks.map { Data($0) })])
    let stream = try await makeClient(t).watch(
      ConfigMap.self, namespace: "ns", options: ListOptions(resourceVersion: "1", allowWatchBookmarks: true))
    var types: [WatchEventType] = []
    var gone = false
    for try await e in stream {
      types.append(e.type)
      if case .error(let s) = e { gone = s.code == 410 }
    }
    #expect(types == [.added, .bookmark, .error])
    #expect(gone)
    let req = try #require(t.requests.first)
    #expect(req.url.contains("watch=true&resourceVersion=1&allowWatchBookmarks=true&timeoutSeconds=290"))
    #expect(req.timeout == .seconds(320))
  }

  @Test func watchRejectedBeforeStreaming() async throws {
    let t = FakeTransport([.respond(403, body: statusJSON(403, "Forbidden", "configmaps is forbidden"))])
    do {
      _ = try await makeClient(t).watch(ConfigMap.self, namespace: "ns")
      Issue.record("expected Forbidden")
    } catch let e as KubeError {
      #expect(e.isForbidden)
      #expect(e.description.contains("RBAC"))
    }
  }

  @Test func forbiddenInATerminatingNamespaceIsNotCalledAMissingPermission() async throws {
    // The apiserver's answer to a create in a namespace being deleted (a finalizer's last Event, for example).
    let body = statusJSON(
      403, "Forbidden",
      "events \\\"x.1\\\" is forbidden: unable to create new content in namespace team-a because it is being terminated",
      causes:
        #"{"reason":"NamespaceTerminating","message":"namespace team-a is being terminated","field":"metadata.namespace"}"#
    )
    let t = FakeTransport([.respond(403, body: body)])
    do {
      _ = try await makeClient(t).create(ConfigMap(metadata: ObjectMeta(name: "x", namespace: "team-a")))
      Issue.record("expected Forbidden")
    } catch let e as KubeError {
      guard case .api(let api) = e else { throw e }
      #expect(api.isNamespaceTerminating)
      #expect(!e.description.contains("RBAC"), "\(e)")
      #expect(e.description.contains("The namespace is being deleted"))
    }
    // A plain Forbidden still says what to grant.
    let plain = APIError(
      status: Status(message: "configmaps is forbidden", reason: "Forbidden", code: 403), code: 403, method: "GET",
      url: "/api/v1/configmaps")
    #expect(!plain.isNamespaceTerminating && plain.description.contains("RBAC"))
  }

  @Test func discoveryIsCachedUntilInvalidated() async throws {
    let body =
      #"{"kind":"APIResourceList","groupVersion":"batch/v1","resources":["#
      + #"{"name":"jobs","singularName":"","namespaced":true,"kind":"Job","verbs":["get"]},"#
      + #"{"name":"jobs/status","singularName":"","namespaced":true,"kind":"Job","verbs":["get"]}]}"#
    let t = FakeTransport([
      .respond(200, body: body), .respond(404, body: statusJSON(404, "NotFound", "not found")),
      .respond(200, body: body),
    ])
    let client = makeClient(t)
    #expect(try await client.isServed(group: "batch", version: "v1", resource: "jobs"))
    #expect(try await !client.isServed(group: "batch", version: "v1", resource: "cronjobs"))
    #expect(try await !client.isServed(group: "batch", version: "v2", resource: "cronjobs"))
    #expect(t.requests.count == 2)
    client.invalidateDiscovery()
    let d = try await client.discoverResource(group: "batch", version: "v1", resource: "jobs")
    #expect(d == ResourceDescriptor(group: "batch", version: "v1", plural: "jobs", kind: "Job", namespaced: true))
    #expect(t.requests.map(\.url).last == "https://127.0.0.1:6443/apis/batch/v1")
  }
}
