import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The bodies every builder makes (a policy's children, run windows, replica and rotation Jobs, plan step Jobs,
/// drill scratch objects and run Jobs) for every sample in crds/samples/ under several controller settings and spec
/// variants, compared with the JSON committed in Fixtures/children/ (sorted keys). A change of a builder's output
/// fails here; regenerate with `BOTRT_WRITE_FIXTURES=1 swift test --filter ChildrenGoldenTests` only for an intended
/// change, and review the diff.
@Suite struct ChildrenGoldenTests {
  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Fixtures/children")

  /// The controller settings the children are built under.
  static func settingsVariants() throws -> [(String, ControllerSettings)] {
    let plain = ControllerSettings(engineImage: "registry.local/botrt-engine:1")
    var hardened = ControllerSettings(
      backupNamespace: "botrt-alt", engineImage: "registry.local/botrt-engine:2", cronJobAPIVersion: "batch/v1beta1",
      calicoServed: true, runAsUser: 1000,
      resourceBounds: ResourceBounds(
        defaultRequests: ["cpu": "100m", "memory": "128Mi"], defaultLimits: ["memory": "1Gi"],
        maximum: ["cpu": "4", "memory": "8Gi"]))
    hardened.egress = try [
      "storage=10.0.0.0/8:443", "storage=[fd00::/8]:9000", "vault=ns/vault:8200", "kms=192.168.0.0/16:443",
      "dns=169.254.20.10/32:53", "database=10.1.0.0/16:5432",
    ].map { (t) throws(ControllerOptionsError) in try EgressDestination.parse(t) }
    var restoreOnly = plain
    restoreOnly.restoreOnly = true
    return [("plain", plain), ("hardened", hardened), ("restore-only", restoreOnly)]
  }

  /// The samples' policies, with a uid (owner references), and variants of their sources.
  static func policyVariants(_ policies: [BackupPolicy]) -> [(String, BackupPolicy)] {
    var out: [(String, BackupPolicy)] = []
    for var p in policies {
      p.metadata.uid = "uid-\(p.name)"
      out.append((p.name, p))
      if p.spec.replicas != nil {
        // Stated pins (repository.expectedIdentity) of the primary and each replica: --expect-* and --to-expect-*.
        var stated = p
        stated.spec.repository.expectedIdentity = ExpectedRepositoryIdentity(
          repositoryId: String(repeating: "5a", count: 16), signingKey: String(repeating: "6b", count: 32))
        for i in (p.spec.replicas ?? []).indices {
          stated.spec.replicas?[i].repository.expectedIdentity = ExpectedRepositoryIdentity(
            repositoryId: String(repeating: "7c", count: 16), signingKey: String(repeating: "8d", count: 32))
        }
        out.append(("\(p.name)-stated", stated))
      }
      if var pvc = p.spec.source.pvc {
        var root = p
        pvc.runAsUser = 0
        pvc.exclude = ["/cache", "!/cache/keep", "*.tmp"]
        pvc.excludeIfPresent = [".nobackup"]
        pvc.excludeCaches = true
        root.spec.source.pvc = pvc
        root.spec.verify = PolicyVerifySpec(schedule: "30 5 * * 0")
        root.spec.suspend = true
        out.append(("\(p.name)-root", root))
        var other = p
        pvc.runAsUser = 1001
        pvc.runAsGroup = 2002
        pvc.subPath = "data"
        other.spec.source.pvc = pvc
        other.spec.resources = ResourceRequirements(requests: ["cpu": "200m"], limits: ["memory": "2Gi"])
        out.append(("\(p.name)-uid", other))
      }
    }
    return out
  }

  /// Every case's children, by fixture name.
  static func cases() throws -> [String: JSONValue] {
    let s = try SampleBuildTests.load()
    let now = Date(timeIntervalSince1970: 1_790_000_000)
    var out: [String: JSONValue] = [:]
    func children(_ c: [DesiredChild]) -> JSONValue {
      .array(
        c.map {
          [
            "resource": .string("\($0.resource.apiVersion)/\($0.resource.plural)"),
            "namespace": $0.namespace.map { .string($0) } ?? .null, "name": .string($0.name),
            "shared": .bool($0.shared), "body": $0.body,
          ]
        })
    }
    func attempt(_ name: String, _ make: () throws -> JSONValue) {
      do {
        out[name] = try make()
      } catch {
        out[name] = ["error": .string("\(error)")]
      }
    }
    let settings = try settingsVariants()
    let variants = policyVariants(s.policies)
    for (sName, st) in settings {
      for (pName, p) in variants {
        let key = "policy-\(pName)-\(sName)"
        let eff = try EffectivePolicy(spec: p.spec, now: now)
        let input = ChildInputs(policy: p, effective: eff, settings: st, secrets: s.secrets, runToken: "t1")
        attempt("\(key)-build") { children(try BackupPolicyChildren.build(input)) }
        attempt("\(key)-run-access") { children(BackupPolicyChildren.runAccess(p, settings: st)) }
        attempt("\(key)-replication") { children(try ReplicationChildren.build(input)) }
        attempt("\(key)-replica-access") { children(ReplicationChildren.runAccess(p, settings: st)) }
        attempt("\(key)-rotate-kek") {
          children([try BackupPolicyChildren.keyRotationJob(input, KeyRotationJob(token: "k1", newKey: nil))])
        }
        attempt("\(key)-rotate-local") {
          children([try BackupPolicyChildren.keyRotationJob(input, KeyRotationJob(token: "k2", newKey: "next"))])
        }
        attempt("\(key)-delete-repo") { children([try BackupPolicyChildren.deleteRepositoryJob(input)]) }
        for i in (p.spec.replicas ?? []).indices {
          attempt("\(key)-copy-\(i)") {
            children([try ReplicationChildren.copyJob(input, index: i, snapshot: "abc123", backupTime: now)])
          }
          attempt("\(key)-replica-rotate-\(i)") {
            children([try ReplicationChildren.rotationJob(input, index: i, ReplicaRotationJob(token: "r1"))])
          }
          attempt("\(key)-replica-follow-\(i)") {
            children([
              try ReplicationChildren.rotationJob(
                input, index: i, ReplicaRotationJob(token: "r2", followPrimary: true, newKey: "k"))
            ])
          }
        }
      }
    }

    var policies: [String: BackupPolicy] = [:]
    for (_, p) in variants where policies[p.name] == nil { policies[p.name] = p }
    for (sName, st) in settings where sName != "restore-only" {
      for plan in s.plans {
        // As the reconciler builds them: in the plan's namespace, restores into claims where the claim is.
        var ctx = RecoveryJobContext(
          settings: st, policies: policies, namespace: plan.metadata.namespace ?? "botrt-samples",
          labels: ["a": "b"],
          owner: OwnerReference(apiVersion: "dr.botrt.io/v1", kind: "RecoveryPlan", name: plan.name, uid: "u"))
        ctx.targetNamespace = plan.spec.targetNamespace
        for step in try RecoveryPlanLogic.steps(plan.spec) {
          switch step.step.action {
          case .restore, .verify, .job:
            attempt("plan-\(plan.name)-\(step.index)-\(sName)") {
              try RecoveryJobs.stepJob(step, jobName: "rp-\(step.index)", ctx: ctx)
            }
          case .scaleDown, .scaleUp, .waitReady:
            continue
          }
        }
      }
      let plans = Dictionary(uniqueKeysWithValues: s.plans.map { ($0.name, $0) })
      for d in s.drills {
        let plan = d.spec.target.recoveryPlanRef.flatMap { plans[$0.name] }
        let spec = try DrillLogic.runSpec(d, plan: plan)
        guard let policy = policies[spec.restore.policyRef.name] else { continue }
        let scratch = DrillLogic.scratchNamespace(d, token: "t")
        let key = "drill-\(d.name)-\(sName)"
        attempt("\(key)-scratch") {
          children(DrillLogic.scratchChildren(d, namespace: scratch, policy: policy, settings: st))
        }
        attempt("\(key)-claim") {
          let source: JSONValue = [
            "metadata": ["name": "src"],
            "spec": [
              "accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
              "resources": ["requests": ["storage": "1Gi"]],
            ],
          ]
          return children(
            try DrillLogic.scratchClaim(d, spec: spec, namespace: scratch, policy: policy, source: source).map { [$0] }
              ?? [])
        }
        attempt("\(key)-secrets") {
          children(try DrillLogic.secretCopies(d, namespace: scratch, policy: policy, spec: spec, secrets: s.secrets))
        }
        attempt("\(key)-run") {
          try DrillLogic.runJob(
            d, spec: spec, namespace: scratch, settings: st, policies: policies, timeoutSeconds: 3600)
        }
      }
    }
    return out
  }

  static func text(_ v: JSONValue) throws -> String {
    let enc = KubeJSON.encoder()
    enc.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    return String(decoding: try enc.encode(v), as: UTF8.self) + "\n"
  }

  @Test func everyBuilderStillMakesTheCommittedJSON() throws {
    let cases = try Self.cases()
    #expect(cases.count > 100)
    let fm = FileManager.default
    if ProcessInfo.processInfo.environment["BOTRT_WRITE_FIXTURES"] == "1" {
      try? fm.removeItem(at: Self.fixtures)
      try fm.createDirectory(at: Self.fixtures, withIntermediateDirectories: true)
      for (name, v) in cases {
        try Data(try Self.text(v).utf8).write(to: Self.fixtures.appendingPathComponent("\(name).json"))
      }
      return
    }
    let committed = Set(try fm.contentsOfDirectory(atPath: Self.fixtures.path).filter { $0.hasSuffix(".json") })
    #expect(committed == Set(cases.keys.map { "\($0).json" }), "the cases and the fixtures differ")
    for (name, v) in cases.sorted(by: { $0.key < $1.key }) {
      let url = Self.fixtures.appendingPathComponent("\(name).json")
      guard let want = try? String(contentsOf: url, encoding: .utf8) else { continue }
      let got = try Self.text(v)
      #expect(got == want, "\(name) differs from Fixtures/children/\(name).json")
    }
  }
}
