import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

/// Issue 7: malformed custom resources, each rejected by the apiserver's schema with the field named, or reported by
/// the running controller (Ready=False, a reason, the field in the message), or (unknown fields) pruned by the
/// apiserver so that the controller never sees them. Writes the table of docs/reliability.md to
/// $BOTRT_RELIABILITY_OUT/malformed.md.
@Suite(.serialized) struct MalformedInputTests {
  enum Expect: Sendable {
    /// Rejected at create, or Ready=False, with this field path in the message.
    case field(String)
    /// Accepted with the field removed (the apiserver prunes unknown fields).
    case pruned([String])
  }

  struct Case: Sendable {
    var kind: String
    var input: String
    var expect: Expect
    var change: @Sendable (inout JSONValue) -> Void
  }

  static func set(_ v: inout JSONValue, _ path: [String], _ value: JSONValue?) {
    guard let first = path.first else {
      if let value { v = value }
      return
    }
    if path.count == 1 {
      v[first] = value
      return
    }
    var child = v[first] ?? .object([:])
    set(&child, Array(path.dropFirst()), value)
    v[first] = child
  }

  static func p(_ path: String, _ value: JSONValue?) -> @Sendable (inout JSONValue) -> Void {
    let parts = path.split(separator: ".").map(String.init)
    return { set(&$0, parts, value) }
  }

  static let long600 = JSONValue.string(String(repeating: "a", count: 600))
  static let huge = JSONValue.string(String(repeating: "x", count: 1 << 20))

  static let policyCases: [Case] = [
    Case(
      kind: "BackupPolicy", input: "tier: 5 (a number)", expect: .field("spec.tier"), change: p("spec.tier", .int(5))),
    Case(
      kind: "BackupPolicy", input: "tier: platinum", expect: .field("spec.tier"), change: p("spec.tier", "platinum")),
    Case(
      kind: "BackupPolicy", input: "schedule: 42 (a number)", expect: .field("spec.schedule"),
      change: p("spec.schedule", .int(42))),
    Case(
      kind: "BackupPolicy", input: "schedule: \"61 * * * *\" (minute out of range)", expect: .field("spec.schedule"),
      change: p("spec.schedule", "61 * * * *")),
    Case(
      kind: "BackupPolicy", input: "schedule: \"every tuesday\"", expect: .field("spec.schedule"),
      change: p("spec.schedule", "every tuesday")),
    Case(
      kind: "BackupPolicy", input: "schedule: 7 fields", expect: .field("spec.schedule"),
      change: p("spec.schedule", "* * * * * * *")),
    Case(
      kind: "BackupPolicy", input: "schedule: \"0 0 31 2 *\" (Feb 31: never runs)", expect: .field("spec.schedule"),
      change: p("spec.schedule", "0 0 31 2 *")),
    Case(
      kind: "BackupPolicy", input: "schedule: 1 MiB string", expect: .field("spec.schedule"),
      change: p("spec.schedule", huge)),
    Case(
      kind: "BackupPolicy", input: "rpo: \"-5m\" (negative)", expect: .field("spec.rpo"), change: p("spec.rpo", "-5m")),
    Case(kind: "BackupPolicy", input: "rpo: \"5 hours\"", expect: .field("spec.rpo"), change: p("spec.rpo", "5 hours")),
    Case(kind: "BackupPolicy", input: "rpo: \"0s\"", expect: .field("spec.rpo"), change: p("spec.rpo", "0s")),
    Case(
      kind: "BackupPolicy", input: "dataType: video", expect: .field("spec.dataType"),
      change: p("spec.dataType", "video")),
    Case(
      kind: "BackupPolicy", input: "compliance: [sox2]", expect: .field("spec.compliance"),
      change: p("spec.compliance", .array(["sox2"]))),
    Case(
      kind: "BackupPolicy", input: "source.command.image: 600 characters", expect: .field("spec.source.command.image"),
      change: p("spec.source.command.image", long600)),
    Case(
      kind: "BackupPolicy", input: "source.command.image: \"\"", expect: .field("spec.source.command.image"),
      change: p("spec.source.command.image", "")),
    Case(
      kind: "BackupPolicy", input: "source.command.args: 200 items", expect: .field("spec.source.command.args"),
      change: p("spec.source.command.args", .array(Array(repeating: "x", count: 200)))),
    Case(
      kind: "BackupPolicy", input: "source.command.env[0].value: 5,000 characters",
      expect: .field("spec.source.command.env.value"),
      change: { v in
        set(
          &v, ["spec", "source", "command", "env"],
          .array([["name": "BIG", "value": .string(String(repeating: "v", count: 5000))]]))
      }),
    Case(
      kind: "BackupPolicy", input: "source: {} (no source)", expect: .field("spec.source"),
      change: p("spec.source", .object([:]))),
    Case(
      kind: "BackupPolicy", input: "repository missing", expect: .field("spec.repository"),
      change: p("spec.repository", nil)),
    Case(
      kind: "BackupPolicy", input: "repository: {} (no backend)", expect: .field("spec.repository"),
      change: p("spec.repository", .object([:]))),
    Case(
      kind: "BackupPolicy", input: "repository: s3 and gcs both", expect: .field("spec.repository"),
      change: p("spec.repository.gcs", ["bucket": "other-bucket", "credentialsSecretRef": ["name": "s3-creds"]])),
    Case(
      kind: "BackupPolicy", input: "repository.s3.bucket: \"Bad_Bucket\"", expect: .field("spec.repository.s3.bucket"),
      change: p("spec.repository.s3.bucket", "Bad_Bucket")),
    Case(
      kind: "BackupPolicy", input: "repository.s3.bucket: [\"a\"] (an array)",
      expect: .field("spec.repository.s3.bucket"), change: p("spec.repository.s3.bucket", .array(["a"]))),
    Case(
      kind: "BackupPolicy", input: "repository.s3.endpoint: \"ftp://x\"", expect: .field("spec.repository.s3.endpoint"),
      change: p("spec.repository.s3.endpoint", "ftp://x")),
    Case(
      kind: "BackupPolicy", input: "encryption missing", expect: .field("spec.encryption"),
      change: p("spec.encryption", nil)),
    Case(
      kind: "BackupPolicy", input: "encryption.kms.vaultTransit.key: \"bad/key\"",
      expect: .field("spec.encryption.kms.vaultTransit.key"),
      change: p("spec.encryption.kms.vaultTransit.key", "bad/key")),
    Case(
      kind: "BackupPolicy", input: "retention.keepDaily: -1", expect: .field("spec.retention.keepDaily"),
      change: p("spec.retention", ["keepDaily": .int(-1)])),
    Case(
      kind: "BackupPolicy", input: "retention.keepDaily: \"seven\"", expect: .field("spec.retention.keepDaily"),
      change: p("spec.retention", ["keepDaily": "seven"])),
    Case(
      kind: "BackupPolicy", input: "successfulJobsHistoryLimit: -3", expect: .field("spec.successfulJobsHistoryLimit"),
      change: p("spec.successfulJobsHistoryLimit", .int(-3))),
    Case(
      kind: "BackupPolicy", input: "trigger: 70 characters", expect: .field("spec.trigger"),
      change: p("spec.trigger", .string(String(repeating: "t", count: 70)))),
    Case(
      kind: "BackupPolicy", input: "backupNamespace: \"Not_A_Namespace\"", expect: .field("spec.backupNamespace"),
      change: p("spec.backupNamespace", "Not_A_Namespace")),
    Case(
      kind: "BackupPolicy",
      input: "backupNamespace: kube-system (an existing namespace that is not a backup namespace)",
      expect: .field("spec.backupNamespace"), change: p("spec.backupNamespace", "kube-system")),
    Case(
      kind: "BackupPolicy", input: "repository.s3.credentialsSecretRef.name: a missing Secret",
      expect: .field("spec.repository.s3.credentialsSecretRef"),
      change: p("spec.repository.s3.credentialsSecretRef.name", "no-such-secret")),
    Case(
      kind: "BackupPolicy", input: "encryption.kms.vaultTransit.authSecretRef.name: a missing Secret",
      expect: .field("spec.encryption.kms.vaultTransit.authSecretRef"),
      change: p("spec.encryption.kms.vaultTransit.authSecretRef.name", "no-such-token")),
    Case(
      kind: "BackupPolicy", input: "env valueFrom.secretKeyRef: a key the Secret lacks",
      expect: .field("spec.source.command.env[0]"),
      change: p(
        "spec.source.command.env",
        .array([["name": "PGPASSWORD", "valueFrom": ["secretKeyRef": ["name": "db-creds", "key": "nope"]]]]))),
    Case(
      kind: "BackupPolicy", input: "unknown field spec.colour", expect: .pruned(["spec", "colour"]),
      change: p("spec.colour", "blue")),
    Case(
      kind: "BackupPolicy", input: "credentialsSecretRef.namespace: kube-system (cross-namespace Secret)",
      expect: .pruned(["spec", "repository", "s3", "credentialsSecretRef", "namespace"]),
      change: p("spec.repository.s3.credentialsSecretRef.namespace", "kube-system")),
  ]

  static let planCases: [Case] = [
    Case(
      kind: "RecoveryPlan", input: "procedures: [] (none)", expect: .field("spec.procedures"),
      change: p("spec.procedures", .array([]))),
    Case(
      kind: "RecoveryPlan", input: "step action: explode", expect: .field("spec.procedures.steps.action"),
      change: { v in
        set(
          &v, ["spec", "procedures"], .array([["name": "a", "steps": .array([["name": "s", "action": "explode"]])]]))
      }),
    Case(
      kind: "RecoveryPlan", input: "step timeout: \"-1h\" (negative)",
      expect: .field("spec.procedures.steps.timeout"),
      change: { v in
        set(
          &v, ["spec", "procedures"],
          .array([
            [
              "name": "a",
              "steps": .array([["name": "s", "action": "job", "timeout": "-1h", "job": ["image": "busybox:1.36"]]]),
            ]
          ]))
      }),
    Case(
      kind: "RecoveryPlan", input: "rtoTarget: forever", expect: .field("spec.rtoTarget"),
      change: p("spec.rtoTarget", "forever")),
    Case(
      kind: "RecoveryPlan", input: "restore step: policyRef to a missing BackupPolicy",
      expect: .field("spec.procedures[0].steps[0]"),
      change: { v in
        set(
          &v, ["spec", "procedures"],
          .array([
            [
              "name": "a",
              "steps": .array([
                [
                  "name": "s", "action": "restore",
                  "restore": ["policyRef": ["name": "nope"], "into": ["command": ["image": "busybox:1.36"]]],
                ]
              ]),
            ]
          ]))
      }),
  ]

  static let drillCases: [Case] = [
    Case(
      kind: "DRDrill", input: "schedule: \"bogus\"", expect: .field("spec.schedule"),
      change: p("spec.schedule", "bogus")),
    Case(
      kind: "DRDrill", input: "timeout: \"-10m\" (negative)", expect: .field("spec.timeout"),
      change: p("spec.timeout", "-10m")),
    Case(
      kind: "DRDrill", input: "verification.minComplianceScore: 150",
      expect: .field("spec.verification.minComplianceScore"),
      change: p("spec.verification", ["minComplianceScore": .int(150)])),
    Case(
      kind: "DRDrill", input: "target: {} (no reference)", expect: .field("spec.target"),
      change: p("spec.target", .object([:]))),
    Case(
      kind: "DRDrill", input: "target.backupPolicyRef: a missing BackupPolicy",
      expect: .field("spec.target.backupPolicyRef"), change: p("spec.target.backupPolicyRef.name", "nope")),
  ]

  static func escape(_ s: String) -> String {
    var s = s
    // "POST https://...: 422 Invalid: BackupPolicy.dr.botrt.io "bad-1" is invalid: <what>": keep <what>.
    if let r = s.range(of: " is invalid: ") { s = "422: " + s[r.upperBound...] }
    let flat = s.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "|", with: "\\|")
    return flat.count > 220 ? String(flat.prefix(220)) + "…" : flat
  }

  /// The Ready condition (type, status, reason, message) of a custom resource, read as JSON.
  static func ready(_ obj: JSONValue) -> (status: String, reason: String, message: String)? {
    guard let c = (obj[path: "status", "conditions"]?.arrayValue ?? []).first(where: { $0["type"] == "Ready" }) else {
      return nil
    }
    return (c["status"]?.stringValue ?? "", c["reason"]?.stringValue ?? "", c["message"]?.stringValue ?? "")
  }

  @Test func malformedResourcesAreRejectedOrReportedWithTheFieldNamed() async throws {
    let rc = try await ReliabilityCluster()
    let client = rc.client
    let ns = try await rc.makeNamespace("rel-bad")
    let backupNS = "\(ns)-backup"
    let log = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-rel-bad-\(ns).log").path
    var controller: ControllerProcess? = nil
    do {
      try await rc.createSecrets(ns)
      controller = try ControllerProcess(namespace: ns, backupNamespace: backupNS, logPath: log)
      _ = try await client.create(ReliabilityCluster.policy(ns, "target"))
      let basePolicy = try JSONValue(encoding: ReliabilityCluster.policy(ns, "x"))
      let basePlan = try ControllerKillTests.planJSON(ns, "x", trigger: nil)
      let baseDrill = try ControllerKillTests.drillJSON(ns, "x", policy: "target", trigger: nil)
      var rows: [String] = []
      var failures: [String] = []
      var rejected = 0
      var reported = 0
      var pruned = 0
      let cases = Self.policyCases + Self.planCases + Self.drillCases
      for (i, c) in cases.enumerated() {
        let name = "bad-\(i)"
        var body: JSONValue
        let resource: ResourceDescriptor
        switch c.kind {
        case "RecoveryPlan":
          (body, resource) = (basePlan, RecoveryPlan.resource)
        case "DRDrill":
          (body, resource) = (baseDrill, DRDrill.resource)
        default:
          (body, resource) = (basePolicy, BackupPolicy.resource)
        }
        body["metadata"]?["name"] = .string(name)
        c.change(&body)
        var outcome = ""
        var observed = ""
        var ok = false
        do {
          _ = try await client.create(resource, namespace: ns, body)
          switch c.expect {
          case .pruned(let path):
            let got = try await client.get(resource, namespace: ns, name: name, as: JSONValue.self)
            var node: JSONValue? = got
            for k in path { node = node?[k] }
            ok = node == nil
            outcome = "accepted, field pruned"
            observed = ok ? "read back without `\(path.joined(separator: "."))`" : "the field was kept: \(node!)"
            if ok { pruned += 1 }
          case .field(let field):
            // Accepted by the schema: the controller must report it.
            var last: (status: String, reason: String, message: String)? = nil
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
              last = Self.ready(try await client.get(resource, namespace: ns, name: name, as: JSONValue.self))
              if let last, last.status == "False" { break }
              try await Task.sleep(for: .milliseconds(250))
            }
            if let last, last.status == "False" {
              outcome = "accepted; controller: Ready=False, \(last.reason)"
              observed = last.message
              ok = last.message.contains(field)
              if ok { reported += 1 }
            } else {
              outcome = "accepted, NOT reported"
              observed = last.map { "Ready=\($0.status) \($0.reason): \($0.message)" } ?? "no Ready condition in 30 s"
            }
          }
        } catch let e as KubeError {
          outcome = "rejected by the apiserver"
          observed = "\(e)"
          if case .field(let field) = c.expect {
            ok = observed.contains(field)
            if ok { rejected += 1 }
          }
        }
        rows.append("| \(i + 1) | \(c.kind) | \(Self.escape(c.input)) | \(outcome) | \(Self.escape(observed)) |")
        if !ok { failures.append("#\(i + 1) \(c.kind) \(c.input): \(outcome): \(observed.prefix(400))") }
      }
      #expect(cases.count >= 30)
      #expect(
        failures.isEmpty, "\(failures.count) inputs not handled as promised:\n\(failures.joined(separator: "\n"))")
      #expect(
        controller?.process.isRunning == true, "the controller died: \(controller?.process.output.suffix(2000) ?? "")")
      Reliability.figure(
        "malformed_inputs", "\(cases.count) rejected=\(rejected) reported=\(reported) pruned=\(pruned)")
      Reliability.append(
        "malformed.md",
        "| # | kind | input | outcome | observed error (first 220 characters; 422 = the apiserver's answer) |\n|---|---|---|---|---|\n"
          + rows.joined(separator: "\n") + "\n")
    } catch {
      controller?.kill()
      await rc.cleanup([ns, backupNS])
      throw error
    }
    controller?.kill()
    await rc.cleanup([ns, backupNS])
  }
}
