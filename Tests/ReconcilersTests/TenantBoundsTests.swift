import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

// Issue 14 item 10: what a tenant's policy may ask of the shared backup namespace: resources within the
// administrator's bounds, and claims of its own namespace only.

func boundedSettings() -> ControllerSettings {
  var s = settings()
  s.resourceBounds = ResourceBounds(
    defaultRequests: ["cpu": "100m", "memory": "256Mi"], defaultLimits: ["cpu": "1", "memory": "1Gi"],
    maximum: ["cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi"])
  return s
}

@Suite struct TenantBoundsTests {
  let names = ChildNames(namespace: "shop", name: "payments-db")

  /// Every container of every pod template the builders return for the policy, with its resources.
  func containers(_ cs: [DesiredChild]) -> [(String, JSONValue?)] {
    var out: [(String, JSONValue?)] = []
    for c in cs {
      let pod =
        c.body[path: "spec", "jobTemplate", "spec", "template", "spec"] ?? c.body[path: "spec", "template", "spec"]
      for k in (pod?["containers"]?.arrayValue ?? []) + (pod?["initContainers"]?.arrayValue ?? []) {
        out.append(("\(c.name)/\(k["name"]?.stringValue ?? "")", k["resources"]))
      }
    }
    return out
  }

  @Test func noResourcesInSpecGetsTheAdministratorsDefaultsEverywhere() throws {
    let s = boundedSettings()
    let p = dumpPolicy(trigger: "r1")
    let input = ChildInputs(
      policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), settings: s, secrets: allSecrets)
    let all = try build(p, s) + [try BackupPolicyChildren.deleteRepositoryJob(input)]
    let list = containers(all)
    #expect(list.count >= 6, "backup (dump + engine), on-demand (dump + engine), prune, delete")
    for (name, r) in list {
      #expect(
        r == [
          "requests": ["cpu": "100m", "memory": "256Mi"],
          "limits": ["cpu": "1", "memory": "1Gi", "ephemeral-storage": "10Gi"],
        ], "\(name)")
    }
  }

  /// A RecoveryPlan's and a DRDrill's Jobs get the same defaults: a drill runs in a scratch namespace, outside any
  /// tenant's quota.
  @Test func plansAndDrillsGetTheAdministratorsDefaultsToo() throws {
    let plan = try recoveryTestPlan()
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    var ctx = RecoveryJobContext(
      settings: ControllerSettings(engineImage: "registry.local/botrt-engine:1"),
      policies: ["db": try recoveryTestPolicy()], namespace: "shop", labels: [:], owner: plan.ownerReference())
    ctx.settings.resourceBounds = boundedSettings().resourceBounds
    var seen = 0
    for step in steps {
      guard let body = try? RecoveryJobs.stepJob(step, jobName: "rp-x", ctx: ctx) else { continue }
      let pod = try #require(body[path: "spec", "template", "spec"])
      for c in (pod["containers"]?.arrayValue ?? []) + (pod["initContainers"]?.arrayValue ?? []) {
        seen += 1
        #expect(c[path: "resources", "requests", "memory"] == "256Mi", "\(c["name"]?.stringValue ?? "")")
        #expect(c[path: "resources", "limits", "ephemeral-storage"] == "10Gi")
      }
    }
    #expect(seen >= 3, "restore, load and verify containers")
    // Without bounds, nothing is set.
    ctx.settings.resourceBounds = ResourceBounds()
    let plain = try RecoveryJobs.stepJob(steps[1], jobName: "rp-x", ctx: ctx)
    #expect(plain[path: "spec", "template", "spec", "initContainers"]?[0]?["resources"] == nil)
  }

  @Test func specAboveTheMaximumIsRefusedNamingFieldAndMaximum() throws {
    var p = dumpPolicy()
    p.spec.resources = ResourceRequirements(limits: ["memory": "64Gi"])
    #expect {
      try build(p, boundedSettings())
    } throws: { e in
      let e = e as? SpecError
      return e?.field == "spec.resources.limits.memory" && e?.message.contains("4Gi") == true
        && e?.message.contains("64Gi") == true
    }
    p.spec.resources = ResourceRequirements(requests: ["cpu": "3"])
    #expect(throws: SpecError.self) { try build(p, boundedSettings()) }
    // Unbounded names pass through; asked values within the bounds are kept, the rest defaulted.
    p.spec.resources = ResourceRequirements(requests: ["cpu": "500m", "nvidia.com/gpu": "1"], limits: ["cpu": "2"])
    let r = try #require(try boundedSettings().resourceBounds.effective(p.spec.resources))
    #expect(r.requests == ["cpu": "500m", "memory": "256Mi", "nvidia.com/gpu": "1"])
    #expect(r.limits == ["cpu": "2", "memory": "1Gi", "ephemeral-storage": "10Gi"])
    // A spec limit below the default request lowers the request to it.
    let low = try boundedSettings().resourceBounds.effective(ResourceRequirements(limits: ["memory": "128Mi"]))
    #expect(low?.requests?["memory"] == "128Mi")
    // Without bounds, the spec is used as written.
    #expect(try ResourceBounds().effective(p.spec.resources) == p.spec.resources)
    #expect(try ResourceBounds().effective(nil) == nil)
  }

  @Test func boundsOptionsAreParsedAndChecked() throws {
    #expect(
      try ResourceBounds.parseList("cpu=2,memory=4Gi", option: "--max-resources") == ["cpu": "2", "memory": "4Gi"])
    #expect(throws: ControllerOptionsError.self) { try ResourceBounds.parseList("cpu", option: "--max-resources") }
    #expect(throws: ControllerOptionsError.self) { try ResourceBounds.parseList("cpu=lots", option: "--max-resources") }
    #expect(throws: ControllerOptionsError.self) {
      try ResourceBounds(defaultLimits: ["cpu": "8"], maximum: ["cpu": "2"]).validate()
    }
    #expect(throws: ControllerOptionsError.self) {
      try ResourceBounds(defaultRequests: ["cpu": "2"], defaultLimits: ["cpu": "1"]).validate()
    }
    #expect(QuantityValue.parse("500m") == 0.5)
    #expect(QuantityValue.parse("1Gi") == 1_073_741_824)
    #expect(QuantityValue.parse("2k") == 2000)
    #expect(QuantityValue.parse("1e3") == 1000)
    #expect(QuantityValue.parse("-1") == nil)
  }

  @Test func aPolicyInTheSharedNamespaceMayNotNameAClaim() throws {
    // A dump policy runs in the shared backup namespace: a local repository on a claim would be resolved among
    // the claims there, which may be another tenant's repository.
    var p = dumpPolicy()
    p.spec.repository = RepositorySpec(local: LocalRepository(path: "/repository/x", claimName: "bank-repository"))
    #expect {
      try build(p)
    } throws: { e in
      (e as? SpecError)?.field == "spec.repository.local.claimName"
        && (e as? SpecError)?.message.contains("bank-repository") == true
    }
    var r = dumpPolicy()
    r.spec.replicas = [
      ReplicaSpec(name: "dr", repository: RepositorySpec(local: LocalRepository(path: "/r", claimName: "other")))
    ]
    #expect {
      try build(r)
    } throws: { e in
      (e as? SpecError)?.field == "spec.replicas[0].repository.local.claimName"
    }
    // A claim source runs in the policy's own namespace: its claims are its own, and allowed.
    var own = dumpPolicy()
    own.spec.source = BackupSource(pvc: PVCSource(claimName: "uploads"))
    own.spec.repository = RepositorySpec(local: LocalRepository(path: "/repository/x", claimName: "airgap"))
    own.spec.encryption.kms = KMSSpec(localKeySecretRef: SecretReference(name: "local-key"))
    let cs = try build(own, secrets: ["local-key": secret("local-key", ["key": "k"])])
    let cj = try #require(child(cs, "CronJob", names.backupCronJob))
    #expect(cj.namespace == "shop")
    let claims = (cj.body[path: "spec", "jobTemplate", "spec", "template", "spec", "volumes"]?.arrayValue ?? [])
      .compactMap { $0[path: "persistentVolumeClaim", "claimName"]?.stringValue }
    #expect(Set(claims) == ["uploads", "airgap"])
  }
}
