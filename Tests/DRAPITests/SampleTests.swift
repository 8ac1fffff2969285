import Foundation
import KubeCore
import Testing

@testable import DRAPI

/// The value with every RFC 3339 date string rewritten as KubeJSON writes dates, so round trips compare equal.
func normalizingDates(_ v: JSONValue) -> JSONValue {
  switch v {
  case .string(let s): return KubeJSON.parseDate(s).map { .string(KubeJSON.formatDate($0)) } ?? v
  case .array(let a): return .array(a.map(normalizingDates))
  case .object(let o): return .object(o.mapValues(normalizingDates))
  default: return v
  }
}

/// The custom resources in crds/samples/, decoded.
struct Samples {
  var policies: [BackupPolicy] = []
  var plans: [RecoveryPlan] = []
  var drills: [DRDrill] = []
  var secrets: [JSONValue] = []

  init() throws {
    for file in try yamlFiles("crds/samples") {
      for doc in try documents(file) {
        let where_ = "\(file.lastPathComponent) \(doc[path: "metadata", "name"]?.stringValue ?? "?")"
        switch doc["kind"]?.stringValue {
        case "BackupPolicy":
          let p: BackupPolicy = try doc.decode()
          #expect(
            try JSONValue(encoding: p) == normalizingDates(doc),
            "\(where_): decoding and encoding lost or changed a field")
          policies.append(p)
        case "RecoveryPlan":
          let p: RecoveryPlan = try doc.decode()
          #expect(
            try JSONValue(encoding: p) == normalizingDates(doc),
            "\(where_): decoding and encoding lost or changed a field")
          plans.append(p)
        case "DRDrill":
          let d: DRDrill = try doc.decode()
          #expect(
            try JSONValue(encoding: d) == normalizingDates(doc),
            "\(where_): decoding and encoding lost or changed a field")
          drills.append(d)
        case "Namespace":
          #expect(doc[path: "metadata", "name"] == "botrt-samples", "\(where_)")
        case "Secret":
          #expect(file.lastPathComponent == "secrets-example.yaml", "\(where_): Secrets belong in secrets-example.yaml")
          secrets.append(doc)
        default:
          Issue.record("\(where_): unexpected kind \(doc["kind"] ?? .null)")
        }
      }
    }
  }
}

@Suite struct SampleTests {
  @Test func everySampleDecodesAndValidates() throws {
    let s = try Samples()
    #expect(s.policies.count >= 4 && s.plans.count >= 2 && s.drills.count >= 2)
    for p in s.policies {
      #expect(p.metadata.namespace == "botrt-samples", "\(p.name) lives in the samples' namespace")
      #expect(SpecValidation.validate(p.spec).isEmpty, "\(p.name): \(SpecValidation.validate(p.spec))")
      _ = try EffectivePolicy(spec: p.spec, now: now)
      #expect(p.metadata.namespace != nil, "\(p.name) names its namespace")
    }
    for p in s.plans {
      #expect(SpecValidation.validate(p.spec).isEmpty, "\(p.name): \(SpecValidation.validate(p.spec))")
      _ = try effectiveRTO(tier: p.spec.tier, override: p.spec.rtoTarget, compliance: p.spec.compliance)
    }
    for d in s.drills {
      #expect(SpecValidation.validate(d.spec).isEmpty, "\(d.name): \(SpecValidation.validate(d.spec))")
    }
  }

  @Test func samplesCoverEveryTierBackendAndKMS() throws {
    let s = try Samples()
    #expect(Set(s.policies.map(\.spec.tier)) == Set(Tier.allCases))
    #expect(Set(s.policies.flatMap(\.spec.repository.configuredBackends)) == ["s3", "gcs", "azure", "local"])
    let kinds = s.policies.flatMap { p in
      [p.spec.encryption.kms] + (p.spec.replicas ?? []).compactMap(\.encryption?.kms)
    }.flatMap(\.configuredKinds)
    #expect(Set(kinds) == Set(KMSSpec.allKinds))
    #expect(s.policies.contains { ($0.spec.replicas ?? []).contains { $0.countsForRPO == true } })
    #expect(s.policies.contains { $0.spec.repository.s3?.objectLock?.mode == .compliance })
    #expect(Set(s.policies.flatMap { $0.spec.compliance ?? [] }) == Set(ComplianceProfile.allCases))
    #expect(s.policies.contains { $0.spec.source.command != nil } && s.policies.contains { $0.spec.source.pvc != nil })
    #expect(s.drills.contains { $0.spec.schedule == "weekly" })
    #expect(
      s.drills.contains {
        $0.spec.schedule.map { DrillPreset(rawValue: $0) == nil && CronSchedule.isValid($0) } ?? false
      })
    #expect(s.drills.contains { $0.spec.target.backupPolicyRef != nil })
    #expect(s.drills.contains { $0.spec.target.recoveryPlanRef != nil })
    let actions = Set(s.plans.flatMap { $0.spec.procedures.flatMap { $0.steps.map(\.action) } })
    #expect(actions == Set(StepAction.allCases))
    // A namespace's objects backed up with its claim (spec.objects), and a plan that re-creates them elsewhere.
    let withObjects = Set(s.policies.filter { $0.spec.objects != nil }.map(\.name))
    #expect(!withObjects.isEmpty, "no sample backs up Kubernetes objects (spec.objects)")
    let objectSteps = s.plans.flatMap { $0.spec.procedures.flatMap(\.steps) }.compactMap(\.restore)
      .filter { $0.into.objects != nil }
    #expect(objectSteps.contains { withObjects.contains($0.policyRef.name) }, "no sample plan restores objects")
  }

  @Test func referencesResolveWithinTheSamples() throws {
    let s = try Samples()
    let secrets = Set(s.secrets.compactMap { $0[path: "metadata", "name"]?.stringValue })
    let policies = Set(s.policies.map(\.name))
    let plans = Set(s.plans.map(\.name))
    for p in s.policies {
      var refs: [String] = []
      refs += [
        p.spec.repository.s3?.credentialsSecretRef.name, p.spec.repository.gcs?.credentialsSecretRef?.name,
        p.spec.repository.azure?.credentialsSecretRef.name,
      ].compactMap { $0 }
      let kms = p.spec.encryption.kms
      refs += [
        kms.vaultTransit?.authSecretRef.name, kms.vaultTransit?.caSecretRef?.name,
        kms.awsKms?.credentialsSecretRef?.name, kms.localKeySecretRef?.name,
        p.spec.encryption.rotationKeysSecretRef?.name,
      ].compactMap { $0 }
      refs += (p.spec.source.command?.env ?? []).compactMap { $0.valueFrom?.secretKeyRef.name }
      refs += [kms.azureKeyVault?.credentialsSecretRef.name, kms.gcpKms?.credentialsSecretRef?.name].compactMap { $0 }
      for replica in p.spec.replicas ?? [] {
        refs += [
          replica.repository.s3?.credentialsSecretRef.name, replica.repository.gcs?.credentialsSecretRef?.name,
          replica.repository.azure?.credentialsSecretRef.name,
          replica.encryption?.kms.gcpKms?.credentialsSecretRef?.name,
          replica.encryption?.kms.azureKeyVault?.credentialsSecretRef.name,
          replica.encryption?.kms.vaultTransit?.authSecretRef.name,
          replica.encryption?.kms.awsKms?.credentialsSecretRef?.name,
          replica.encryption?.kms.localKeySecretRef?.name,
        ].compactMap { $0 }
      }
      for r in refs {
        #expect(secrets.contains(r), "\(p.name) references Secret \(r) missing from secrets-example.yaml")
      }
    }
    for p in s.plans {
      for step in p.spec.procedures.flatMap(\.steps) {
        for ref in [step.restore?.policyRef.name, step.verify?.policyRef?.name].compactMap({ $0 }) {
          #expect(policies.contains(ref), "\(p.name)/\(step.name) references BackupPolicy \(ref)")
        }
      }
    }
    for d in s.drills {
      if let r = d.spec.target.backupPolicyRef { #expect(policies.contains(r.name), "\(d.name)") }
      if let r = d.spec.target.recoveryPlanRef { #expect(plans.contains(r.name), "\(d.name)") }
    }
  }

  @Test func exampleSecretsAreMarkedAndFake() throws {
    let text = try String(
      contentsOf: repoRoot.appendingPathComponent("crds/samples/secrets-example.yaml"), encoding: .utf8)
    #expect(text.hasPrefix("# EXAMPLE ONLY"))
    for secret in try Samples().secrets {
      #expect(secret[path: "metadata", "labels", "botrt.io/example"] == "true")
      for (_, value) in secret["stringData"]?.objectValue ?? [:] {
        let v = value.stringValue ?? ""
        let decoded = Data(base64Encoded: v).flatMap { String(data: $0, encoding: .utf8) } ?? ""
        #expect((v + decoded).uppercased().contains("EXAMPLE"), "every example value says it is an example")
      }
    }
  }
}
