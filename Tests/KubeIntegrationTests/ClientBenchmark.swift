import Foundation
import KubeClient
import KubeCore
import Testing

/// The issue-2 benchmark, run by hack/bench-kube.sh (not part of the test suite: it needs BOTRT_BENCH=1).
@Suite struct ClientBenchmark {
  static var enabled: Bool { ProcessInfo.processInfo.environment["BOTRT_BENCH"] == "1" }

  /// Resident set size of this process in KiB, from /proc/self/status.
  static func rssKiB() throws -> Int {
    let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
      let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { throw ClientTestEnvironmentError(description: "no VmRSS in /proc/self/status") }
    return kib
  }

  @Test(.enabled(if: enabled)) func decodeAndCache10000ConfigMaps() async throws {
    let total = Int(ProcessInfo.processInfo.environment["BOTRT_BENCH_OBJECTS"] ?? "") ?? 10_000
    let client = try ClientEnv.client()
    try await withTestNamespace("kc-bench", client: client) { ns in
      let payload = String(repeating: "x", count: 256)
      let createStart = ContinuousClock.now
      try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        func add() {
          let i = next
          next += 1
          group.addTask {
            _ = try await client.create(
              ConfigMap(
                metadata: ObjectMeta(
                  name: "bench-\(i)", namespace: ns, labels: ["app": "backup-service", "bench": "list"],
                  annotations: ["botrt.io/index": String(i)]),
                data: ["index": String(i), "payload": payload, "config.yaml": "key: value\nother: \(i)\n"]))
          }
        }
        for _ in 0..<32 { add() }
        while try await group.next() != nil {
          if next < total { add() }
        }
      }
      let createElapsed = ContinuousClock.now - createStart

      // 1. Fetch the raw pages once, then time decoding alone.
      let builder = RequestBuilder(.configMaps)
      var bodies: [Data] = []
      var token: String?
      repeat {
        let req = try builder.list(
          namespace: ns, options: ListOptions(labelSelector: "bench=list", limit: 500, continueToken: token))
        let body = try await client.send(req).body
        bodies.append(body)
        token = try KubeJSON.decoder().decode(KubeList<ConfigMap>.self, from: body).metadata.continueToken
      } while !(token ?? "").isEmpty
      let bytes = bodies.reduce(0) { $0 + $1.count }
      func decodeAll(strip: Bool) throws -> (Duration, [String: ConfigMap]) {
        let decoder = KubeJSON.decoder(stripManagedFields: strip)
        let start = ContinuousClock.now
        var cache: [String: ConfigMap] = [:]
        cache.reserveCapacity(total)
        for body in bodies {
          for cm in try decoder.decode(KubeList<ConfigMap>.self, from: body).items { cache[cm.name] = cm }
        }
        return (ContinuousClock.now - start, cache)
      }
      let rss0 = try Self.rssKiB()
      let (stripElapsed, stripped) = try decodeAll(strip: true)
      let rss1 = try Self.rssKiB()
      let (fullElapsed, full) = try decodeAll(strip: false)
      let rss2 = try Self.rssKiB()
      #expect(stripped.count == total)
      #expect(full.count == total)
      #expect(full.values.first?.metadata.managedFields != nil)
      bodies = []

      // 2. End to end: listAll (HTTP + decode), pages of 500, managedFields stripped as a cache would.
      let cacheClient = KubeClient(config: client.config, stripManagedFields: true)
      let e2eStart = ContinuousClock.now
      let all = try await cacheClient.listAll(
        ConfigMap.self, namespace: ns, options: ListOptions(labelSelector: "bench=list", limit: 500))
      let e2eElapsed = ContinuousClock.now - e2eStart
      #expect(all.items.count == total)

      func secs(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
      let line = String(
        format: "BENCH objects=%d list_bytes=%d create_s=%.1f"
          + " decode_stripped_s=%.3f decode_stripped_objs_per_s=%.0f decode_full_s=%.3f decode_full_objs_per_s=%.0f"
          + " listall_s=%.3f listall_objs_per_s=%.0f rss_before_kib=%d rss_stripped_cache_delta_kib=%d"
          + " rss_full_cache_delta_kib=%d rss_end_kib=%d",
        total, bytes, secs(createElapsed), secs(stripElapsed), Double(total) / secs(stripElapsed), secs(fullElapsed),
        Double(total) / secs(fullElapsed), secs(e2eElapsed), Double(total) / secs(e2eElapsed), rss0, rss1 - rss0,
        rss2 - rss1, rss2)
      print(line)
      let out = ProcessInfo.processInfo.environment["BOTRT_BENCH_OUT"] ?? ""
      if !out.isEmpty { try (line + "\n").write(toFile: out, atomically: true, encoding: .utf8) }
    }
  }
}
