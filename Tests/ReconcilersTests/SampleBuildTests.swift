import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Every sample in crds/samples/ run through the controller's pure validation and builders: the policies' children,
/// each plan step's Job and each drill's run Job (with its scratch claim), with the sample Secrets present.
@Suite struct SampleBuildTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  struct Loaded {
    var policies: [BackupPolicy] = []
    var plans: [RecoveryPlan] = []
    var drills: [DRDrill] = []
    var secrets: [String: Secret] = [:]
  }

  static func load() throws -> Loaded {
    var out = Loaded()
    let dir = root.appendingPathComponent("crds/samples")
    let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }.sorted()
    #expect(!files.isEmpty)
    for f in files {
      let url = dir.appendingPathComponent(f)
      for doc in try YAML.parseDocuments(String(contentsOf: url, encoding: .utf8), file: f) {
        switch doc["kind"]?.stringValue {
        case "BackupPolicy": out.policies.append(try doc.decode())
        case "RecoveryPlan": out.plans.append(try doc.decode())
        case "DRDrill": out.drills.append(try doc.decode())
        case "Secret":
          var s: Secret = try doc.decode()
          // The samples write stringData; the apiserver would merge it into data.
          var data = s.data ?? [:]
          for (k, v) in s.stringData ?? [:] { data[k] = Data(v.utf8) }
          s.data = data
          out.secrets[s.metadata.name ?? ""] = s
        default: continue
        }
      }
    }
    return out
  }

  /// Every container of every Job, CronJob or Pod template among `objects`.
  static func containers(_ object: JSONValue) -> [JSONValue] {
    var pod = object[path: "spec", "template", "spec"]
    if object["kind"] == "CronJob" { pod = object[path: "spec", "jobTemplate", "spec", "template", "spec"] }
    guard let pod else { return [] }
    return (pod["initContainers"]?.arrayValue ?? []) + (pod["containers"]?.arrayValue ?? [])
  }

  /// Problems of one container: a database client without a server to connect to (libpq's default is a local socket
  /// that no Job has), or kubectl in a Pod without a ServiceAccount token.
  static func problems(_ c: JSONValue, where w: String) -> [String] {
    let image = c["image"]?.stringValue ?? ""
    let words = ((c["command"]?.arrayValue ?? []) + (c["args"]?.arrayValue ?? [])).compactMap(\.stringValue)
    let env = (c["env"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
    var out: [String] = []
    if image.hasPrefix("postgres") {
      let hasHost = env.contains("PGHOST") || words.contains { $0.hasPrefix("--host") || $0 == "-h" }
      if !hasHost { out.append("\(w): container \(c["name"] ?? .null) (\(image)) sets no PGHOST") }
    }
    if words.first == "kubectl" || image.contains("kubectl") {
      out.append("\(w): kubectl runs in a Pod without a ServiceAccount token, so it has no API rights")
    }
    return out
  }

  @Test func everySampleBuildsAndItsDatabaseCommandsNameAServer() throws {
    let s = try Self.load()
    #expect(s.policies.count >= 4 && s.plans.count >= 2 && s.drills.count >= 3)
    let settings = ControllerSettings(engineImage: "registry.local/botrt-engine:1")
    let now = Date(timeIntervalSince1970: 1_790_000_000)
    var policies: [String: BackupPolicy] = [:]
    for p in s.policies { policies[p.name] = p }
    var problems: [String] = []

    for p in s.policies {
      #expect(SpecValidation.validate(p.spec).isEmpty, "\(p.name): \(SpecValidation.validate(p.spec))")
      let eff = try EffectivePolicy(spec: p.spec, now: now)
      let children = try BackupPolicyChildren.build(
        ChildInputs(policy: p, effective: eff, settings: settings, secrets: s.secrets, runToken: "t1"))
      #expect(!children.isEmpty)
      for c in children { for x in Self.containers(c.body) { problems += Self.problems(x, where: "policy \(p.name)") } }
    }

    for plan in s.plans {
      #expect(SpecValidation.validate(plan.spec).isEmpty, "\(plan.name): \(SpecValidation.validate(plan.spec))")
      let ctx = RecoveryJobContext(
        settings: settings, policies: policies, namespace: plan.spec.targetNamespace ?? "botrt-samples",
        labels: ["a": "b"], owner: nil)
      for step in try RecoveryPlanLogic.steps(plan.spec) {
        switch step.step.action {
        case .restore, .verify, .job:
          let job = try RecoveryJobs.stepJob(step, jobName: "rp-\(step.index)", ctx: ctx)
          for x in Self.containers(job) { problems += Self.problems(x, where: "plan \(plan.name) \(step.field)") }
        case .scaleDown, .scaleUp, .waitReady:
          continue
        }
      }
    }

    let plans = Dictionary(uniqueKeysWithValues: s.plans.map { ($0.name, $0) })
    for d in s.drills {
      #expect(SpecValidation.validate(d.spec).isEmpty, "\(d.name): \(SpecValidation.validate(d.spec))")
      let plan = d.spec.target.recoveryPlanRef.flatMap { plans[$0.name] }
      let spec = try DrillLogic.runSpec(d, plan: plan)
      let policy = try #require(policies[spec.restore.policyRef.name], "\(d.name): its policy is a sample")
      let scratch = DrillLogic.scratchNamespace(d, token: "t")
      // A drill restoring into a claim gets one in its scratch namespace, sized from the source claim.
      if spec.restore.into.pvc != nil {
        let ref = try #require(DrillLogic.sourceClaimReference(d, spec: spec, policy: policy))
        let source: JSONValue = [
          "metadata": ["name": .string(ref.name)],
          "spec": ["accessModes": ["ReadWriteOnce"], "resources": ["requests": ["storage": "1Gi"]]],
        ]
        let claim = try DrillLogic.scratchClaim(d, spec: spec, namespace: scratch, policy: policy, source: source)
        #expect(claim?.name == spec.restore.into.pvc?.claimName, "\(d.name)")
      }
      _ = try DrillLogic.secretCopies(d, namespace: scratch, policy: policy, spec: spec, secrets: s.secrets)
      let job = try DrillLogic.runJob(
        d, spec: spec, namespace: scratch, settings: settings, policies: policies, timeoutSeconds: 3600)
      for x in Self.containers(job) { problems += Self.problems(x, where: "drill \(d.name)") }
    }
    #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
  }
}
