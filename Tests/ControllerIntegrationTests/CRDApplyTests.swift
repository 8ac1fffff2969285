import DRAPI
import Foundation
import KubeClient
import KubeCore
import Testing

// Applies crds/ and crds/samples/ to the real apiserver (KUBECONFIG, from hack/cluster.sh) and checks that the
// Swift types and the schemas agree: nothing a sample or a Swift status sets is pruned, what comes back decodes,
// defaults are applied, and invalid specs are rejected with the field named.

/// The environment of the CRD apply tests is missing or a wait timed out.
private struct CRDTestError: Error, CustomStringConvertible {
  var description: String
}

private enum CRDApply {
  static let fieldManager = "botrt-crd-tests"

  /// The repository root, found from this file's path.
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  /// A client for `KUBECONFIG`; fails (never skips) when it is not set.
  static func client() throws -> KubeClient {
    guard let kc = ProcessInfo.processInfo.environment["KUBECONFIG"], !kc.isEmpty else {
      throw CRDTestError(
        description: "KUBECONFIG is not set: the CRD apply tests need the local control plane. Start it with "
          + "`hack/cluster.sh up` and `source <(hack/cluster.sh env)`, or run hack/test.sh")
    }
    return try KubeClient.fromEnvironment()
  }

  /// Every document of every `.yaml` file in `dir` (relative to the repository root), with its file name.
  static func documents(_ dir: String) throws -> [(file: String, doc: JSONValue)] {
    let url = root.appendingPathComponent(dir)
    let names = try FileManager.default.contentsOfDirectory(atPath: url.path).filter { $0.hasSuffix(".yaml") }.sorted()
    var out: [(String, JSONValue)] = []
    for name in names {
      let text = try String(contentsOf: url.appendingPathComponent(name), encoding: .utf8)
      out += try YAML.parseDocuments(text, file: name).map { (name, $0) }
    }
    return out
  }

  /// Polls `check` every 200 ms until it returns true or `timeout` passes.
  static func eventually(_ what: String, timeout: Duration = .seconds(60), _ check: () async throws -> Bool)
    async throws
  {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if try await check() { return }
      try await Task.sleep(for: .milliseconds(200))
    }
    throw CRDTestError(description: "timed out after \(timeout) waiting for \(what)")
  }

  /// Applies every CRD in crds/ and waits until each is Established and served.
  static func installCRDs(_ client: KubeClient) async throws {
    for (file, crd) in try documents("crds") {
      let name = try #require(crd[path: "metadata", "name"]?.stringValue, "\(file) has no name")
      _ = try await client.apply(
        .customResourceDefinitions, namespace: nil, name: name, Unstructured(crd), fieldManager: fieldManager,
        force: true)
      try await eventually("CRD \(name) to be Established") {
        let got = try await client.get(.customResourceDefinitions, namespace: nil, name: name, as: Unstructured.self)
        var status: [String: String] = [:]
        for c in got.status?["conditions"]?.arrayValue ?? [] {
          if let type = c["type"]?.stringValue { status[type] = c["status"]?.stringValue }
        }
        #expect(status["NonStructuralSchema"] != "True", "\(name) has a non-structural schema")
        return status["Established"] == "True"
      }
    }
    for r in [BackupPolicy.resource, RecoveryPlan.resource, DRDrill.resource] {
      try await eventually("\(r) to be served") {
        client.invalidateDiscovery()
        return try await client.isServed(group: r.group, version: r.version, resource: r.plural)
      }
    }
  }

  /// A fresh namespace, deleted afterwards whatever happens.
  static func withNamespace(_ client: KubeClient, _ body: (String) async throws -> Void) async throws {
    let name = "crd-apply-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    _ = try await client.create(Namespace(metadata: ObjectMeta(name: name, labels: ["botrt.io/test": "crd-apply"])))
    do {
      try await body(name)
    } catch {
      try await deleteNamespace(client, name)
      throw error
    }
    try await deleteNamespace(client, name)
  }

  static func deleteNamespace(_ client: KubeClient, _ name: String) async throws {
    do {
      try await client.delete(Namespace.self, name: name, options: DeleteOptions(propagationPolicy: .background))
    } catch let e as KubeError where e.isNotFound {
      return
    }
  }

  /// Dates rewritten as KubeJSON writes them, so a value and its round trip compare equal.
  static func normalized(_ v: JSONValue) -> JSONValue {
    switch v {
    case .string(let s): return KubeJSON.parseDate(s).map { .string(KubeJSON.formatDate($0)) } ?? v
    case .array(let a): return .array(a.map(normalized))
    case .object(let o): return .object(o.mapValues(normalized))
    default: return v
    }
  }

  /// Paths where `expected` has a value that `actual` lacks or holds differently (extra fields in `actual` are
  /// allowed: server defaults and metadata).
  static func missing(_ expected: JSONValue, in actual: JSONValue?, path: String = "") -> [String] {
    switch expected {
    case .object(let o):
      guard case .object(let a)? = actual else { return [path] }
      return o.keys.sorted().flatMap { missing(o[$0]!, in: a[$0], path: "\(path).\($0)") }
    case .array(let items):
      guard case .array(let a)? = actual, a.count == items.count else { return [path] }
      return items.indices.flatMap { missing(items[$0], in: a[$0], path: "\(path)[\($0)]") }
    default:
      return normalized(expected) == actual.map(normalized) ? [] : [path]
    }
  }
}

@Suite(.serialized) struct CRDApplyTests {
  @Test func samplesApplyAndDecodeWithNothingPruned() async throws {
    let client = try CRDApply.client()
    try await CRDApply.installCRDs(client)
    try await CRDApply.withNamespace(client) { ns in
      var counts: [String: Int] = [:]
      for (file, sample) in try CRDApply.documents("crds/samples") {
        // The test's own namespace replaces the samples' (00-namespace.yaml).
        if sample["kind"] == "Namespace" { continue }
        var doc = sample
        doc["metadata"]?["namespace"] = .string(ns)
        let kind = try #require(doc["kind"]?.stringValue)
        let name = try #require(doc[path: "metadata", "name"]?.stringValue)
        let resource: ResourceDescriptor
        switch kind {
        case "BackupPolicy": resource = BackupPolicy.resource
        case "RecoveryPlan": resource = RecoveryPlan.resource
        case "DRDrill": resource = DRDrill.resource
        case "Secret": resource = .secrets
        default: throw CRDTestError(description: "\(file): unexpected kind \(kind)")
        }
        _ = try await client.apply(
          resource, namespace: ns, name: name, Unstructured(doc), fieldManager: CRDApply.fieldManager)
        let back = try await client.get(resource, namespace: ns, name: name, as: JSONValue.self)
        counts[kind, default: 0] += 1
        if kind == "Secret" { continue }
        // The schema kept every field of the sample (a pruned field means the schema lacks it).
        let lost = CRDApply.missing(doc["spec"] ?? .null, in: back["spec"], path: "spec")
        #expect(lost.isEmpty, "\(file) \(name): the apiserver dropped or changed \(lost)")
        // And what came back decodes into the Swift types.
        switch kind {
        case "BackupPolicy":
          let p: BackupPolicy = try back.decode()
          #expect(SpecValidation.validate(p.spec).isEmpty, "\(name)")
          #expect(p.metadata.uid != nil && p.metadata.generation == 1)
        case "RecoveryPlan":
          let p: RecoveryPlan = try back.decode()
          #expect(SpecValidation.validate(p.spec).isEmpty, "\(name)")
        default:
          let d: DRDrill = try back.decode()
          #expect(SpecValidation.validate(d.spec).isEmpty, "\(name)")
        }
      }
      #expect(counts["BackupPolicy", default: 0] >= 4)
      #expect(counts["RecoveryPlan", default: 0] >= 2)
      #expect(counts["DRDrill", default: 0] >= 2)

      // Schema defaults were applied to what the sample left out.
      let reporting = try await client.get(BackupPolicy.self, namespace: ns, name: "reporting-data")
      #expect(reporting.spec.dataType == .files)
      #expect(reporting.spec.suspend == false)
      #expect(reporting.spec.deleteBackupsOnDelete == false)
      #expect(reporting.spec.encryption.keyRotationDays == 90)
      #expect(reporting.spec.successfulJobsHistoryLimit == 3)
      let archive = try await client.get(BackupPolicy.self, namespace: ns, name: "audit-logs-archive")
      #expect(archive.spec.encryption.kms.vaultTransit?.mount == "transit")
      let uploads = try await client.get(BackupPolicy.self, namespace: ns, name: "telegram-bot-uploads")
      #expect(uploads.spec.repository.gcs?.credentialsSecretRef?.key == "service-account.json")
      let plan = try await client.get(RecoveryPlan.self, namespace: ns, name: "payments-db-recovery")
      #expect(plan.spec.procedures[1].steps[1].restore?.snapshot == "latest")
      #expect(plan.spec.procedures[0].steps[1].retries == 0)
      let drill = try await client.get(DRDrill.self, namespace: ns, name: "telegram-bot-plan-rehearsal")
      #expect(drill.spec.historyLimit == 10)
      #expect(drill.spec.snapshot == "latest")
    }
  }

  @Test func statusSubresourceKeepsEverySwiftStatusField() async throws {
    let client = try CRDApply.client()
    try await CRDApply.installCRDs(client)
    let t = Date(timeIntervalSince1970: 1_700_000_000)
    let condition = Condition(
      type: "RPOMet", status: .false, reason: "RPOExceeded", message: "The newest backup is 6m old; the RPO is 5m.",
      lastTransitionTime: t, observedGeneration: 1)
    try await CRDApply.withNamespace(client) { ns in
      // BackupPolicy
      var policy = BackupPolicy(
        metadata: ObjectMeta(name: "status-check", namespace: ns),
        spec: BackupPolicySpec(
          tier: .critical, source: BackupSource(pvc: PVCSource(claimName: "data")),
          repository: RepositorySpec(local: LocalRepository(path: "/repo", claimName: "repo")),
          encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "key")))))
      policy = try await client.create(policy)
      policy.status = BackupPolicyStatus(
        observedGeneration: 1, conditions: [condition], lastSuccessfulBackup: t, lastBackupAttempt: t,
        lastSnapshot: "0123abcd", lastBackupBytes: 1_048_576, lastBackupStoredBytes: 4_096,
        lastBackupDurationSeconds: 2.5, rpoAgeSeconds: 360, rpoTargetSeconds: 300, rpoSource: "tier:critical",
        effectiveSchedule: "*/5 * * * *", scheduleSource: "tier:critical", nextScheduledRun: t, lastKeyRotation: t,
        nextKeyRotation: t, lastHandledTrigger: "run-1", backupNamespace: "botrt-backup", lastFailure: "none",
        replicas: [
          ReplicaStatus(
            name: "second-region", state: "InSync", lastCopiedSnapshot: "0123abcd", replicaSnapshot: "4567ef01",
            lastCopiedBackupTime: t, lastCopyTime: t, lagSeconds: 30, copyJob: "ns-p-12345678-copy-9abcdef0",
            message: "ok")
        ])
      let storedPolicy = try await client.updateStatus(policy)
      #expect(storedPolicy.status == policy.status)
      #expect(try await client.get(BackupPolicy.self, namespace: ns, name: "status-check").status == policy.status)

      // RecoveryPlan
      var plan = RecoveryPlan(
        metadata: ObjectMeta(name: "status-check", namespace: ns),
        spec: RecoveryPlanSpec(
          tier: .important,
          procedures: [
            RecoveryProcedure(name: "p", steps: [RecoveryStep(name: "s", action: .job, job: ContainerSpec(image: "x"))])
          ]))
      plan = try await client.create(plan)
      plan.status = RecoveryPlanStatus(
        observedGeneration: 1, conditions: [condition], phase: .failed, lastHandledTrigger: "t1", startTime: t,
        completionTime: t, rtoTargetSeconds: 5_400, rtoTarget: "1h30m", rtoSource: "tier:important",
        rtoAchievedSeconds: 252, rtoAchieved: "4m12s", failedStep: "p/s", message: "Step p/s failed.",
        steps: [
          StepStatus(
            procedure: "p", name: "s", action: "job", state: .failed, attempts: 2, startTime: t, completionTime: t,
            jobName: "status-check-p-s-1", message: "exit code 1")
        ],
        scaledWorkloads: [ScaledWorkload(kind: "Deployment", namespace: ns, name: "api", replicas: 3)])
      let storedPlan = try await client.updateStatus(plan)
      #expect(storedPlan.status == plan.status)

      // DRDrill
      var drill = DRDrill(
        metadata: ObjectMeta(name: "status-check", namespace: ns),
        spec: DRDrillSpec(schedule: "weekly", target: DrillTarget(backupPolicyRef: LocalObjectReference(name: "p"))))
      drill = try await client.create(drill)
      let result = DrillResult(
        startTime: t, completionTime: t, trigger: "schedule", snapshot: "0123abcd", scratchNamespace: "drill-x",
        passed: true, rpoAchievedSeconds: 120, rpoTargetSeconds: 300, rtoAchievedSeconds: 95, rtoTargetSeconds: 900,
        dataIntegrity: true, performanceDegradationPercent: -3.5, restoreBytesPerSecond: 1.25e8,
        securityPosture: true, complianceScore: 98, message: "All checks passed.", failures: ["none"])
      var status = DRDrillStatus(
        observedGeneration: 1, conditions: [condition], target: "BackupPolicy/p", effectiveSchedule: "0 3 * * 0",
        scheduleSource: "preset:weekly", nextScheduledRun: t, lastHandledTrigger: "t", phase: .running,
        currentRun: DrillCurrentRun(startTime: t, scratchNamespace: "drill-y", step: "restore"))
      status.record(result, limit: 10)
      drill.status = status
      let storedDrill = try await client.updateStatus(drill)
      #expect(storedDrill.status == drill.status)
    }
  }

  /// Creating `spec` must fail with Invalid, and the message must name `field`.
  private func expectRejected(
    _ client: KubeClient, _ resource: ResourceDescriptor, ns: String, spec: JSONValue, field: String,
    _ comment: String
  ) async throws {
    let body: JSONValue = [
      "apiVersion": .string(resource.apiVersion), "kind": .string(resource.kind),
      "metadata": ["name": "invalid", "namespace": .string(ns)], "spec": spec,
    ]
    do {
      _ = try await client.create(resource, namespace: ns, Unstructured(body))
      Issue.record("\(comment): the apiserver accepted an invalid spec")
      try await client.delete(resource, namespace: ns, name: "invalid")
    } catch let e as KubeError {
      #expect(e.isInvalid, "\(comment): \(e)")
      #expect(e.description.contains(field), "\(comment): the error does not name \(field): \(e)")
    }
  }

  @Test func invalidSpecsAreRejectedWithTheFieldNamed() async throws {
    let client = try CRDApply.client()
    try await CRDApply.installCRDs(client)
    let valid: JSONValue = [
      "tier": "critical", "source": ["pvc": ["claimName": "data"]], "repository": ["local": ["path": "/repo"]],
      "encryption": ["kms": ["localKeySecretRef": ["name": "key"]]],
    ]
    func with(_ change: (inout JSONValue) -> Void) -> JSONValue {
      var v = valid
      change(&v)
      return v
    }
    try await CRDApply.withNamespace(client) { ns in
      let bp = BackupPolicy.resource
      // The valid base is accepted (so the rejections below are caused by the change alone).
      _ = try await client.create(
        bp, namespace: ns,
        Unstructured([
          "apiVersion": .string(bp.apiVersion), "kind": "BackupPolicy",
          "metadata": ["name": "valid", "namespace": .string(ns)], "spec": valid,
        ]))
      try await expectRejected(client, bp, ns: ns, spec: with { $0["tier"] = "gold" }, field: "spec.tier", "tier")
      try await expectRejected(
        client, bp, ns: ns, spec: with { $0["schedule"] = "every 5 minutes" }, field: "spec.schedule", "cron words")
      try await expectRejected(
        client, bp, ns: ns, spec: with { $0["schedule"] = "*/5 * * *" }, field: "spec.schedule", "cron 4 fields")
      try await expectRejected(
        client, bp, ns: ns, spec: with { $0["retention"] = ["keepDaily": -1] }, field: "spec.retention.keepDaily",
        "negative retention")
      try await expectRejected(
        client, bp, ns: ns, spec: with { $0["retention"] = ["maxAge": "forever"] }, field: "spec.retention.maxAge",
        "bad duration")
      // An unknown backend is pruned, which leaves no backend: the oneOf names spec.repository.
      try await expectRejected(
        client, bp, ns: ns, spec: with { $0["repository"] = ["ftp": ["host": "example"]] }, field: "spec.repository",
        "unknown backend")
      try await expectRejected(
        client, bp, ns: ns,
        spec: with { $0["repository"]?["gcs"] = ["bucket": "abc"] }, field: "spec.repository", "two backends")
      try await expectRejected(
        client, bp, ns: ns, spec: with { $0["encryption"]?["keyRotationDays"] = 120 },
        field: "spec.encryption.keyRotationDays", "rotation > 90 days")
      try await expectRejected(
        client, bp, ns: ns,
        spec: with {
          $0["repository"] = [
            "s3": [
              "bucket": "abc", "credentialsSecretRef": ["name": "c"],
              "objectLock": ["mode": "forever", "days": 0],
            ]
          ]
        },
        field: "spec.repository.s3.objectLock", "object lock")
      try await expectRejected(
        client, bp, ns: ns, spec: with { $0["compliance"] = ["iso27001"] }, field: "spec.compliance", "profile")
      try await expectRejected(
        client, bp, ns: ns, spec: with { $0["source"] = [:] }, field: "spec.source", "no source")
      // Stated pins: the engine's shapes, 32 and 64 lowercase hex digits, both required.
      let id: JSONValue = .string(String(repeating: "5a", count: 16))
      let key: JSONValue = .string(String(repeating: "6b", count: 32))
      _ = try await client.create(
        bp, namespace: ns,
        Unstructured([
          "apiVersion": .string(bp.apiVersion), "kind": "BackupPolicy",
          "metadata": ["name": "stated", "namespace": .string(ns)],
          "spec": with { $0["repository"]?["expectedIdentity"] = ["repositoryId": id, "signingKey": key] },
        ]))
      try await expectRejected(
        client, bp, ns: ns,
        spec: with { $0["repository"]?["expectedIdentity"] = ["repositoryId": "5a5a", "signingKey": key] },
        field: "spec.repository.expectedIdentity.repositoryId", "short repository id")
      try await expectRejected(
        client, bp, ns: ns,
        spec: with {
          $0["repository"]?["expectedIdentity"] = [
            "repositoryId": id, "signingKey": .string(String(repeating: "6B", count: 32)),
          ]
        }, field: "spec.repository.expectedIdentity.signingKey", "uppercase signing key")
      try await expectRejected(
        client, bp, ns: ns, spec: with { $0["repository"]?["expectedIdentity"] = ["repositoryId": id] },
        field: "spec.repository.expectedIdentity.signingKey", "no signing key")

      let step: JSONValue = ["name": "s", "action": "reboot"]
      try await expectRejected(
        client, RecoveryPlan.resource, ns: ns,
        spec: ["tier": "critical", "procedures": [["name": "p", "steps": [step]]]],
        field: "spec.procedures.steps.action", "step action")  // 1.20 omits list indexes
      try await expectRejected(
        client, RecoveryPlan.resource, ns: ns, spec: ["tier": "critical", "procedures": []], field: "spec.procedures",
        "no procedures")
      try await expectRejected(
        client, DRDrill.resource, ns: ns,
        spec: ["schedule": "fortnightly", "target": ["backupPolicyRef": ["name": "p"]]], field: "spec.schedule",
        "drill schedule")
      try await expectRejected(
        client, DRDrill.resource, ns: ns, spec: ["schedule": "weekly"], field: "spec.target", "drill target")
    }
  }
}
