import DRAPI
import Foundation
import KubeCore
import Reconcilers
import Testing

/// Years of backups, dated with `backup --time`, thinned by the real `forget` with the flags the controller's prune
/// CronJob carries for each tier and compliance profile: the retention the original design promises holds.
///
/// Snapshots are empty streams and come at most daily: for a long promise the simulation takes one every 7 or 28
/// days (where `maxAge` draws the edge, the oldest kept snapshot is then asserted to within that step). Forget runs
/// every half year of simulated time and at the end; the real CronJob runs daily, which keeps the same snapshots (a
/// snapshot a rule keeps at the end was kept by every earlier run).
@Suite(.serialized) struct RetentionSimulationTests {
  static let day: TimeInterval = 86_400
  static let year: TimeInterval = 365 * day
  /// How often the simulated prune CronJob runs.
  static let forgetEvery: TimeInterval = 182 * day

  /// A policy to prove: its tier and profiles, what the original design (and DRAPI's compliance minimums) promise,
  /// and the simulated backup cadence, newest first: `(step, count)` segments, the last one running to the start.
  struct Case: CustomTestStringConvertible, Sendable {
    var tier: Tier
    var compliance: [ComplianceProfile]
    var promisedSeconds: TimeInterval
    var cadence: [(step: TimeInterval, count: Int)]
    var testDescription: String { ([tier.rawValue] + compliance.map(\.rawValue)).joined(separator: "+") }
  }

  static let cases: [Case] = [
    // The original design's table: critical 7 years, important 2 years, standard 90 days, archive 7 years.
    Case(tier: .critical, compliance: [], promisedSeconds: 7 * year, cadence: [(7 * day, 300), (28 * day, 0)]),
    Case(tier: .important, compliance: [], promisedSeconds: 2 * year, cadence: [(7 * day, 0)]),
    Case(tier: .standard, compliance: [], promisedSeconds: 90 * day, cadence: [(day, 0)]),
    Case(tier: .archive, compliance: [], promisedSeconds: 7 * year, cadence: [(28 * day, 0)]),
    // The compliance minimums (docs/api-reference.md): PCI-DSS 1 year, HIPAA 6 years, SOX 7 years, on the
    // shortest tier.
    Case(tier: .standard, compliance: [.pciDSS], promisedSeconds: year, cadence: [(7 * day, 0)]),
    Case(tier: .standard, compliance: [.hipaa], promisedSeconds: 6 * year, cadence: [(28 * day, 0)]),
    Case(tier: .standard, compliance: [.sox], promisedSeconds: 7 * year, cadence: [(28 * day, 0)]),
  ]

  /// The newest simulated backup: the first of a month, the worst day for monthly rules (the newest snapshot opens
  /// a month, the oldest kept one closes its month).
  static let end = ISO8601DateFormatter().date(from: "2025-03-01T02:00:00Z")!

  /// The prune CronJob's `forget` arguments for a policy, as the controller builds them.
  static func pruneArgs(_ c: Case) throws -> [String] {
    var meta = ObjectMeta(name: "sim", namespace: "shop")
    meta.uid = "uid-sim"
    let spec = BackupPolicySpec(
      tier: c.tier, compliance: c.compliance.isEmpty ? nil : c.compliance,
      source: BackupSource(pvc: PVCSource(claimName: "data")),
      repository: RepositorySpec(local: LocalRepository(path: "/backups", claimName: "backups")),
      encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek", key: "key"))))
    let policy = BackupPolicy(metadata: meta, spec: spec)
    let children = try BackupPolicyChildren.build(
      ChildInputs(
        policy: policy, effective: try EffectivePolicy(spec: spec, now: end),
        settings: ControllerSettings(engineImage: "botrt/engine:1", cronJobAPIVersion: "batch/v1", calicoServed: false),
        secrets: ["kek": Secret(metadata: ObjectMeta(name: "kek", namespace: "shop"), data: ["key": Data(count: 32)])]))
    let names = ChildNames(namespace: "shop", name: "sim")
    let cron = try #require(children.first { $0.resource.kind == "CronJob" && $0.name == names.pruneCronJob })
    let args = try #require(
      cron.body[path: "spec", "jobTemplate", "spec", "template", "spec", "containers"]?[0]?["args"]?.arrayValue)
    return args.compactMap(\.stringValue)
  }

  /// The snapshot times of a case, oldest first: the cadence's segments back from `end`, far enough back that the
  /// promised span plus three steps is covered.
  static func times(_ c: Case) -> [Date] {
    let start = end.addingTimeInterval(-c.promisedSeconds - 3 * c.cadence.last!.step)
    var out: [Date] = []
    var t = end
    for (i, seg) in c.cadence.enumerated() {
      var n = 0
      while t >= start && (i == c.cadence.count - 1 || n < seg.count) {
        out.append(t)
        t = t.addingTimeInterval(-seg.step)
        n += 1
      }
    }
    return out.reversed()
  }

  /// Every case, two (or one per core) at a time: the cases are independent repositories, and each is hundreds of
  /// engine runs one after the other, so running them side by side halves the time on a 2-core machine.
  @Test func keepsWhatEveryTierAndProfilePromises() async throws {
    let width = max(2, ProcessInfo.processInfo.activeProcessorCount)
    // The longest simulations first, so that the lanes end together.
    let order = Self.cases.sorted { Self.times($0).count > Self.times($1).count }
    try await withThrowingTaskGroup(of: Void.self) { group in
      for lane in 0..<width {
        group.addTask {
          for c in order.enumerated().filter({ $0.offset % width == lane }).map(\.element) {
            try Self.simulate(c)
          }
        }
      }
      try await group.waitForAll()
    }
  }

  /// One case: its backups over the simulated years with the prune CronJob's `forget`, then what is kept.
  static func simulate(_ c: Case) throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let built = try pruneArgs(c)
    #expect(built.first == "forget" && built.contains("--prune"), "\(built)")
    // The Job's arguments, pointed at the local repository and key.
    var forget: [String] = []
    var i = 0
    while i < built.count {
      switch built[i] {
      case "--repo": forget += ["--repo", h.repoURL]; i += 2
      case "--kms": forget += ["--kms", h.kmsURL]; i += 2
      default: forget.append(built[i]); i += 1
      }
    }
    #expect(try h.run(["init"]).code == 0)

    let stamp = ISO8601DateFormatter()
    var created: [(id: String, time: Date)] = []
    var lastForget: Date? = nil
    for t in times(c) {
      let b = try h.run(
        ["backup", "--stdin", "--stdin-name", "db.dump", "--time", stamp.string(from: t)], stdinFile: "/dev/null")
      try #require(b.code == 0, "\(b.stderr)")
      created.append((try #require(b.result["snapshotId"] as? String), t))
      if t == Self.end || t.timeIntervalSince(lastForget ?? t.addingTimeInterval(-Self.forgetEvery)) >= Self.forgetEvery
      {
        let f = try h.run(forget, withRepo: false)
        try #require(f.code == 0, "\(forget): \(f.stderr)")
        lastForget = t
      }
    }

    let listed = try #require(try h.run(["snapshots", "--json"]).result["snapshots"] as? [[String: Any]])
    let kept = Set(listed.compactMap { $0["id"] as? String })
    let keptTimes = created.filter { kept.contains($0.id) }.map(\.time)
    #expect(kept.count < created.count, "\(c.testDescription): forget removed nothing: the simulation proves nothing")
    let newest = try #require(created.last?.time)
    let oldestKept = try #require(keptTimes.min())

    // Every snapshot a rule promises is still there.
    let lost = try Self.promised(by: built, created: created).filter { !kept.contains($0.0) }
    let examples = lost.prefix(5).map { "\(stamp.string(from: $0.1)) (\($0.2))" }.joined(separator: ", ")
    #expect(lost.isEmpty, "\(c.testDescription): \(lost.count) promised snapshots were removed, e.g. \(examples)")
    // A snapshot about the promised age is still there: at least that old where calendar rules keep it, and within
    // one simulated step of it where maxAge draws the edge (maxAge keeps what is younger, so the next older
    // snapshot falls out).
    let maxAge = try Self.value(of: "--max-age", in: built).map { try DurationText.parseSeconds($0) }
    let step = c.cadence.last!.step
    let slack = (maxAge.map { TimeInterval($0) >= c.promisedSeconds } ?? false) ? step : 0
    let age = newest.timeIntervalSince(oldestKept)
    let days = Int(age / Self.day)
    let promisedDays = Int(c.promisedSeconds / Self.day)
    #expect(
      age >= c.promisedSeconds - slack,
      "\(c.testDescription): the oldest kept snapshot is \(days) days old, the promise is \(promisedDays) days")
  }

  static func value(of flag: String, in args: [String]) -> String? {
    guard let i = args.firstIndex(of: flag), i + 1 < args.count else { return nil }
    return args[i + 1]
  }

  /// The snapshots the retention flags promise to keep, as the CRD describes the rules: the newest N (keepLast), the
  /// newest of each of the last N hours, days, weeks, months and years that have snapshots (UTC), and every snapshot
  /// within maxAge of the newest.
  static func promised(by args: [String], created: [(id: String, time: Date)]) throws -> [(String, Date, String)] {
    let newestFirst = created.sorted { $0.time > $1.time }
    var cal = Calendar(identifier: .gregorian)
    cal.timeZone = TimeZone(identifier: "UTC")!
    var out: [(String, Date, String)] = []
    if let n = value(of: "--keep-last", in: args).flatMap(Int.init) {
      for s in newestFirst.prefix(n) { out.append((s.id, s.time, "keepLast \(n)")) }
    }
    let units: [(String, Set<Calendar.Component>)] = [
      ("--keep-hourly", [.year, .month, .day, .hour]), ("--keep-daily", [.year, .month, .day]),
      ("--keep-weekly", [.yearForWeekOfYear, .weekOfYear]), ("--keep-monthly", [.year, .month]),
      ("--keep-yearly", [.year]),
    ]
    for (flag, components) in units {
      guard let n = value(of: flag, in: args).flatMap(Int.init) else { continue }
      var seen = Set<DateComponents>()
      for s in newestFirst {
        let bucket = cal.dateComponents(components, from: s.time)
        if seen.contains(bucket) { continue }
        if seen.count >= n { break }
        seen.insert(bucket)
        out.append((s.id, s.time, "\(flag) \(n)"))
      }
    }
    if let text = value(of: "--max-age", in: args), let newest = newestFirst.first {
      let seconds = TimeInterval(try DurationText.parseSeconds(text))
      for s in newestFirst where newest.time.timeIntervalSince(s.time) <= seconds {
        out.append((s.id, s.time, "maxAge \(text)"))
      }
    }
    return out
  }
}
