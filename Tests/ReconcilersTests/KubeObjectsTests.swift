import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Kubernetes objects in a claim's snapshot (BackupPolicy spec.objects) and their restore (into.objects): the pods'
/// shape, the grants and who holds a token.
@Suite struct KubeObjectsTests {
  /// Policy "files" of "shop" backing up claim "uploads", with `objects`.
  func objectsPolicy(_ objects: ObjectsBackupSpec? = ObjectsBackupSpec(), hooks: Bool = false) throws -> BackupPolicy {
    var p = try filesPolicy()
    p.spec.objects = objects
    p.spec.trigger = "t1"
    if hooks {
      let h = BackupHook(name: "freeze", podSelector: HookPodSelector(matchLabels: ["app": "db"]), command: ["sync"])
      p.spec.hooks = BackupHooks(pre: [h])
    }
    return p
  }

  func podSpec(_ cs: [DesiredChild], _ p: BackupPolicy) throws -> JSONValue {
    let names = ChildNames(namespace: "shop", name: p.name)
    let cron = try #require(child(cs, "CronJob", names.backupCronJob))
    return try #require(cron.body[path: "spec", "jobTemplate", "spec", "template", "spec"])
  }

  func containers(_ spec: JSONValue, _ key: String) -> [String: JSONValue] {
    var out: [String: JSONValue] = [:]
    for c in spec[key]?.arrayValue ?? [] { out[c["name"]?.stringValue ?? ""] = c }
    return out
  }

  func mounts(_ c: JSONValue?) -> [String] {
    (c?["volumeMounts"]?.arrayValue ?? []).compactMap { $0["mountPath"]?.stringValue }
  }

  func args(_ c: JSONValue?) -> [String] { c?["args"]?.arrayValue?.compactMap(\.stringValue) ?? [] }

  @Test func theBackupPodExportsTheObjectsFirstAndOnlyThatContainerHasAToken() throws {
    let p = try objectsPolicy(hooks: true)
    let spec = try podSpec(try build(p), p)
    let inits = spec["initContainers"]?.arrayValue ?? []
    // The export, then the hooks gate: the application is frozen only while its data is read.
    #expect(inits.compactMap { $0["name"]?.stringValue } == [KubeObjects.container, HookKeys.gateContainer])
    let export = inits.first
    #expect(export?["command"] == ["/usr/local/bin/botrt-objects"])
    let a = args(export)
    #expect(Array(a.prefix(5)) == ["export", "--namespace", "shop", "--dir", "/objects/_kubernetes"])
    let kinds = stride(from: 0, to: a.count - 1, by: 1).filter { a[$0] == "--kind" }.map { a[$0 + 1] }
    #expect(kinds == ObjectsKind.standard.map(\.description))
    #expect(a.suffix(2) == ["--result-file", "/dev/termination-log"])
    #expect(mounts(export).contains(KubeObjects.tokenDirectory))
    // The engine backs up the claim and the objects; it mounts the objects read-only and no token.
    let backup = containers(spec, "containers")["backup"]
    #expect(args(backup).suffix(2) == ["/backup/uploads", "/objects/_kubernetes"])
    #expect(!mounts(backup).contains(KubeObjects.tokenDirectory))
    let objectsMount = (backup?["volumeMounts"]?.arrayValue ?? []).first { $0["name"] == "objects" }
    #expect(objectsMount?["readOnly"] == true)
    #expect(!mounts(inits.last).contains(KubeObjects.tokenDirectory), "the gate has no token")
    // The pod mounts no token by itself; the objects pass through memory.
    #expect(spec["automountServiceAccountToken"] == false)
    let volumes = spec["volumes"]?.arrayValue ?? []
    #expect(volumes.first { $0["name"] == "objects" }?[path: "emptyDir", "medium"] == "Memory")
    let projected = volumes.first { $0["name"] == .string(KubeObjects.tokenVolume) }
    #expect(projected?[path: "projected", "sources"]?[0]?[path: "serviceAccountToken", "path"] == "token")
  }

  /// Policy "files" of "shop" backing up only the namespace's objects (spec.source.objects), selected by `objects`.
  func objectsOnlyPolicy(_ objects: ObjectsBackupSpec? = nil) throws -> BackupPolicy {
    var p = try filesPolicy()
    p.spec.source = BackupSource(objects: ObjectsSource())
    p.spec.objects = objects
    p.spec.trigger = "t1"
    return p
  }

  @Test func anObjectsSourceBacksUpTheObjectsAloneFromTheBackupNamespace() throws {
    let p = try objectsOnlyPolicy()
    let cs = try build(p)
    let names = ChildNames(namespace: "shop", name: p.name)
    let cron = try #require(child(cs, "CronJob", names.backupCronJob))
    // Nothing of the application is mounted, so the Jobs run in the backup namespace, as a dump command's do.
    let backupNS = BackupPolicyChildren.backupNamespace(p, settings: settings())
    #expect(backupNS != "shop" && cron.namespace == backupNS)
    let spec = try podSpec(cs, p)
    let export = try #require(spec["initContainers"]?.arrayValue?.first)
    #expect(export["name"] == .string(KubeObjects.container))
    let a = args(export)
    #expect(Array(a.prefix(5)) == ["export", "--namespace", "shop", "--dir", "/objects/_kubernetes"])
    let kinds = stride(from: 0, to: a.count - 1, by: 1).filter { a[$0] == "--kind" }.map { a[$0 + 1] }
    #expect(kinds == ObjectsKind.standard.map(\.description), "the standard kinds without spec.objects")
    // The engine backs up the objects alone: one path, no claim volume, no token.
    let backup = containers(spec, "containers")["backup"]
    #expect(args(backup).last == "/objects/_kubernetes")
    #expect(!args(backup).contains { $0.hasPrefix("/backup/") })
    #expect(!mounts(backup).contains(KubeObjects.tokenDirectory))
    let volumes = spec["volumes"]?.arrayValue ?? []
    #expect(!volumes.contains { $0["persistentVolumeClaim"] != nil }, "no claim is mounted")
    #expect(volumes.first { $0["name"] == "objects" }?[path: "emptyDir", "medium"] == "Memory")
    // spec.objects still selects what is exported.
    let selected = try objectsOnlyPolicy(ObjectsBackupSpec(kinds: ["ConfigMap"]))
    let sa = args(try podSpec(try build(selected), selected)["initContainers"]?[0])
    #expect(sa.contains("ConfigMap") && !sa.contains("Secret"))
    // The run reads the policy's namespace as the backup namespace's account.
    let binding = try #require(
      BackupPolicyChildren.runAccess(p, settings: settings()).first { $0.name == names.objectsBinding })
    #expect(binding.namespace == "shop")
    #expect(binding.body[path: "subjects"]?[0]?["namespace"] == .string(backupNS))
    #expect(try BackupPolicyChildren.declaredRBAC(p, settings: settings()).objectsBinding == names.objectsBinding)
  }

  @Test func anObjectsSourceRestoresOnlyIntoObjectsAndRefusesHooks() throws {
    let p = try objectsOnlyPolicy()
    let plan = try objectsPlan(namespace: "shop-dr")
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    let ctx = planContext(plan, policy: p)
    // into.objects restores the snapshot's entry and applies it.
    let job = try RecoveryJobs.stepJob(steps[1], jobName: "j-objects", ctx: ctx)
    let pod = job[path: "spec", "template", "spec"]
    let names = ((pod?["initContainers"]?.arrayValue ?? []) + (pod?["containers"]?.arrayValue ?? [])).compactMap {
      $0["name"]?.stringValue
    }
    #expect(names.count == 2 && names.last == KubeObjects.container, "\(names)")
    // into.pvc (step 0 of the plan) has no files to restore: refused, naming the field.
    do {
      _ = try RecoveryJobs.stepJob(steps[0], jobName: "j-claim", ctx: ctx)
      Issue.record("a claim restore of an objects-only policy was accepted")
    } catch {
      #expect(error.field.hasSuffix(".into.pvc"), "\(error.field)")
      #expect(error.message.contains("into.objects"))
    }
    // Hooks have no application data to surround.
    var spec = p.spec
    spec.hooks = BackupHooks(
      pre: [BackupHook(name: "freeze", podSelector: HookPodSelector(matchLabels: ["app": "db"]), command: ["sync"])])
    #expect(SpecValidation.validate(spec).contains { $0.field == "spec.hooks" })
    let own = SpecValidation.validate(p.spec).filter {
      $0.field.hasPrefix("spec.source") || $0.field.hasPrefix("spec.objects") || $0.field == "spec.hooks"
    }
    #expect(own.isEmpty, "\(own)")
    // Exactly one source.
    spec = p.spec
    spec.source.pvc = PVCSource(claimName: "uploads")
    #expect(SpecValidation.validate(spec).contains { $0.field == "spec.source" })
  }

  @Test func withoutObjectsNothingChanges() throws {
    let p = try objectsPolicy(nil)
    let spec = try podSpec(try build(p), p)
    #expect(spec["initContainers"] == nil)
    #expect(args(containers(spec, "containers")["backup"]).last == "/backup/uploads")
    #expect(!(spec["volumes"]?.arrayValue ?? []).contains { $0["name"] == .string(KubeObjects.tokenVolume) })
    #expect(!BackupPolicyChildren.runAccess(p, settings: settings()).contains { $0.name.hasSuffix("-objects") })
  }

  @Test func kindsCustomResourcesExclusionsAndTheSelectorReachTheExport() throws {
    let o = ObjectsBackupSpec(
      kinds: ["ConfigMap", "Secret", "Deployment.apps"], excludeKinds: ["Secret"],
      customResources: [CustomResourceKind(group: "example.io", kind: "Widget")],
      selector: ClaimSelector(
        matchLabels: ["app": "shop"],
        matchExpressions: [
          ClaimSelectorRequirement(key: "tier", operator: "In", values: ["web", "db"]),
          ClaimSelectorRequirement(key: "legacy", operator: "DoesNotExist"),
        ]))
    #expect(o.effectiveKinds.map(\.description) == ["ConfigMap", "Deployment.apps", "Widget.example.io"])
    #expect(o.selector?.labelSelectorString == "app=shop,tier in (db,web),!legacy")
    let p = try objectsPolicy(o)
    let a = args(try podSpec(try build(p), p)["initContainers"]?[0])
    #expect(
      Array(a.dropFirst(5)) == [
        "--kind", "ConfigMap", "--kind", "Deployment.apps", "--kind", "Widget.example.io", "--selector",
        "app=shop,tier in (db,web),!legacy", "--result-file", "/dev/termination-log",
      ])
  }

  @Test func aRunBindsTheReaderInThePolicysNamespaceOnly() throws {
    let p = try objectsPolicy()
    let names = ChildNames(namespace: "shop", name: p.name)
    let access = BackupPolicyChildren.runAccess(p, settings: settings())
    let binding = try #require(access.first { $0.name == names.objectsBinding })
    #expect(binding.namespace == "shop")
    #expect(binding.body[path: "roleRef", "kind"] == "ClusterRole")
    #expect(binding.body[path: "roleRef", "name"] == .string(KubeObjects.readerClusterRole))
    #expect(binding.body[path: "subjects"]?[0]?["name"] == .string(names.serviceAccount))
    // A claim's backup pods run in the claim's namespace (the workload namespace), and so does their account.
    #expect(binding.body[path: "subjects"]?[0]?["namespace"] == "shop")
    let egress = try #require(access.first { $0.name == names.apiserverEgress })
    let ports = (egress.body[path: "spec", "egress"]?[0]?["ports"]?.arrayValue ?? []).compactMap {
      $0["port"]?.intValue
    }
    #expect(ports == [443, 6443])
    // A declared apiserver destination replaces the default.
    var s = settings()
    s.egress = [try EgressDestination.parse("apiserver=10.0.0.1/32:6443")]
    let declared = try #require(
      BackupPolicyChildren.runAccess(p, settings: s).first { $0.name == names.apiserverEgress })
    #expect(declared.body[path: "spec", "egress"]?[0]?["to"]?[0]?[path: "ipBlock", "cidr"] == "10.0.0.1/32")
  }

  @Test func theMeasuredRBACAcceptsTheReaderBindingAndNothingElseUnderItsName() throws {
    var p = try objectsPolicy()
    // Pods in the policy's own namespace: the binding is beside the policy's Role.
    p.spec.backupNamespace = "shop"
    let d = try BackupPolicyChildren.declaredRBAC(p, settings: settings())
    let names = ChildNames(namespace: "shop", name: p.name)
    func binding(_ name: String, kind: String, role: String) -> JSONValue {
      [
        "metadata": ["name": .string(name)], "roleRef": ["kind": .string(kind), "name": .string(role)],
        "subjects": [["kind": "ServiceAccount", "name": .string(names.serviceAccount), "namespace": "shop"]],
      ]
    }
    #expect(
      d.widerThanDeclared(
        role: nil, bindings: [binding(names.objectsBinding, kind: "ClusterRole", role: KubeObjects.readerClusterRole)])
        == nil)
    #expect(
      d.widerThanDeclared(
        role: nil, bindings: [binding(names.objectsBinding, kind: "ClusterRole", role: "cluster-admin")]) != nil)
    #expect(
      d.widerThanDeclared(
        role: nil, bindings: [binding("other", kind: "ClusterRole", role: KubeObjects.readerClusterRole)]) != nil)
    // A policy without objects may not have it either.
    let plain = try BackupPolicyChildren.declaredRBAC(try objectsPolicy(nil), settings: settings())
    #expect(
      plain.widerThanDeclared(
        role: nil, bindings: [binding(names.objectsBinding, kind: "ClusterRole", role: KubeObjects.readerClusterRole)])
        != nil)
  }

  func objectsPlan(namespace: String? = nil, kinds: [String]? = nil) throws -> RecoveryPlan {
    var plan = try recoveryTestPlan()
    plan.spec.procedures = [
      RecoveryProcedure(
        name: "restore",
        steps: [
          RecoveryStep(
            name: "claim", action: .restore,
            restore: RestoreStepSpec(
              policyRef: LocalObjectReference(name: "files"),
              into: RestoreDestination(pvc: RestorePVC(claimName: "uploads")))),
          RecoveryStep(
            name: "objects", action: .restore,
            restore: RestoreStepSpec(
              policyRef: LocalObjectReference(name: "files"),
              into: RestoreDestination(objects: RestoreObjects(namespace: namespace, kinds: kinds)))),
        ])
    ]
    return plan
  }

  @Test func anObjectsRestoreRunsInTheTargetWithItsOwnAccountAndAClaimRestoreLeavesTheObjectsOut() throws {
    let p = try objectsPolicy()
    let plan = try objectsPlan(namespace: "shop-dr", kinds: ["ConfigMap", "Deployment.apps"])
    let ctx = planContext(plan, policy: p)
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    let claimJob = try RecoveryJobs.stepJob(steps[0], jobName: "j-claim", ctx: ctx)
    let restore = try #require(claimJob[path: "spec", "template", "spec", "containers"]?[0])
    let ca = args(restore)
    #expect(ca.contains("--strip-components") && ca.contains("--exclude-path"))
    #expect(ca[(ca.firstIndex(of: "--exclude-path") ?? 0) + 1] == "_kubernetes")

    let job = try RecoveryJobs.stepJob(steps[1], jobName: "j-objects", ctx: ctx)
    #expect(job[path: "metadata", "namespace"] == "shop-dr")
    let spec = try #require(job[path: "spec", "template", "spec"])
    #expect(spec["serviceAccountName"] == .string(KubeObjects.restoreServiceAccount))
    #expect(spec["automountServiceAccountToken"] == false)
    let engine = try #require(spec["initContainers"]?[0])
    let ea = args(engine)
    #expect(ea.contains("--target") && ea[(ea.firstIndex(of: "--target") ?? 0) + 1] == "/objects")
    #expect(ea[(ea.firstIndex(of: "--path") ?? 0) + 1] == "_kubernetes")
    #expect(!mounts(engine).contains(KubeObjects.tokenDirectory))
    let apply = try #require(spec["containers"]?[0])
    #expect(apply["name"] == .string(KubeObjects.container))
    #expect(
      args(apply) == [
        "apply", "--dir", "/objects/_kubernetes", "--namespace", "shop-dr", "--kind", "ConfigMap", "--kind",
        "Deployment.apps", "--result-file", "/dev/termination-log",
      ])
    #expect(mounts(apply).contains(KubeObjects.tokenDirectory))
    // The Job's NetworkPolicy lets it reach the apiserver.
    let np = try #require(
      try RestoreIsolation.networkPolicy(steps[1], jobName: "j-objects", namespace: "shop-dr", ctx: ctx, owner: nil))
    #expect(np.spec?.egress?.contains(NetworkIsolation.apiserverRules(ctx.settings)[0]) == true)
    // Its account, bound to the restorer in the target only, by a binding named after the Job.
    let (account, binding) = KubeObjects.restoreAccess(
      jobName: "j-objects", namespace: "shop-dr", labels: [:], owner: nil)
    #expect(account.metadata.namespace == "shop-dr" && account.automountServiceAccountToken == false)
    #expect(account.name == KubeObjects.restoreServiceAccount && binding.name == "j-objects")
    #expect(binding.roleRef.kind == "ClusterRole" && binding.roleRef.name == KubeObjects.restorerClusterRole)
    #expect(binding.subjects?.first?.namespace == "shop-dr")
    #expect(binding.subjects?.first?.name == KubeObjects.restoreServiceAccount)
    // The target namespace must allow the plan, as for claims.
    #expect(RecoveryTargetAccess.foreignNamespaces(plan) == ["shop-dr"])
    // Without a namespace: the plan's own.
    let own = try objectsPlan()
    let ownJob = try RecoveryJobs.stepJob(
      try RecoveryPlanLogic.steps(own.spec)[1], jobName: "j2", ctx: planContext(own, policy: p))
    #expect(ownJob[path: "metadata", "namespace"] == "shop")
    #expect(args(ownJob[path: "spec", "template", "spec", "containers"]?[0])[4] == "shop")
  }

  /// The export's result reaches status and Events: a failed export (the backup never started) says which kind
  /// failed and why; a successful run's Event counts the objects.
  @Test func theExportsResultIsReadFromItsContainer() {
    let failedJob: JSONValue = [
      "metadata": ["name": "run-1"],
      "status": ["failed": 1, "conditions": [["type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"]]],
    ]
    let failure = ObjectsResult(
      command: "export", objects: 7,
      failures: [.init(object: "Widget.example.io", message: "list is forbidden: widgets.example.io")])
    let line = String(decoding: try! JSONEncoder().encode(failure), as: UTF8.self)
    let failedPod: JSONValue = [
      "metadata": ["name": "run-1-x"],
      "status": [
        "phase": "Failed",
        "initContainerStatuses": [
          ["name": .string(KubeObjects.container), "state": ["terminated": ["exitCode": 3, "message": .string(line)]]]
        ],
        "containerStatuses": [["name": "backup", "state": ["waiting": ["reason": "PodInitializing"]]]],
      ],
    ]
    let run = BackupRun.observe(job: failedJob, pods: [failedPod])
    #expect(run.state == .failed && run.objects?.failures.count == 1)
    #expect(
      run.failureMessage
        == "the backup did not start: the export of the namespace's Kubernetes objects exited with 3 (7 Kubernetes "
        + "objects, 1 failed (Widget.example.io: list is forbidden: widgets.example.io))")

    let okJob: JSONValue = [
      "metadata": ["name": "run-2"],
      "status": [
        "startTime": "2026-05-28T20:00:00Z", "completionTime": "2026-05-28T20:00:30Z", "succeeded": 1,
        "conditions": [["type": "Complete", "status": "True", "lastTransitionTime": "2026-05-28T20:00:30Z"]],
      ],
    ]
    let okPod: JSONValue = [
      "metadata": ["name": "run-2-x"],
      "status": [
        "initContainerStatuses": [
          [
            "name": .string(KubeObjects.container),
            "state": [
              "terminated": [
                "exitCode": 0,
                "message":
                  #"{"command":"export","objects":19,"existing":0,"skipped":[],"unservedKinds":[],"failures":[]}"#,
              ]
            ],
          ]
        ],
        "containerStatuses": [
          [
            "name": "backup",
            "state": [
              "terminated": ["exitCode": 0, "message": #"{"ok":true,"exitCode":0,"snapshotId":"s1","bytesRead":7}"#]
            ],
          ]
        ],
      ],
    ]
    let ok = BackupRun.observe(job: okJob, pods: [okPod])
    #expect(ok.state == .succeeded && ok.objects?.objects == 19)
    #expect(ok.objects?.summary == "19 Kubernetes objects")
  }

  @Test func aDumpPolicyHasNoObjectsToRestore() throws {
    let p = try recoveryTestPolicy(name: "files")
    let plan = try objectsPlan()
    #expect(throws: SpecError.self) {
      _ = try RecoveryJobs.stepJob(
        try RecoveryPlanLogic.steps(plan.spec)[1], jobName: "j", ctx: planContext(plan, policy: p))
    }
  }

  @Test func validationNamesTheField() throws {
    var dump = try recoveryTestPolicy(name: "db").spec
    dump.objects = ObjectsBackupSpec()
    #expect(SpecValidation.validate(dump).contains { $0.field == "spec.objects" })
    var spec = try objectsPolicy().spec
    spec.objects = ObjectsBackupSpec(
      kinds: ["ConfigMap", "configmap", "ConfigMap"], excludeKinds: ["Deployment."],
      customResources: [CustomResourceKind(group: "nodot", kind: "Widget.x")],
      selector: ClaimSelector(matchExpressions: [ClaimSelectorRequirement(key: "a", operator: "Has")]))
    let fields = Set(SpecValidation.validate(spec).map(\.field))
    #expect(
      fields.isSuperset(of: [
        "spec.objects.kinds[1]", "spec.objects.kinds[2]", "spec.objects.excludeKinds[0]",
        "spec.objects.customResources[0].group", "spec.objects.customResources[0].kind",
        "spec.objects.selector.matchExpressions[0].operator",
      ]), "\(fields)")
    spec.objects = ObjectsBackupSpec(kinds: ["Secret"], excludeKinds: ["Secret"])
    #expect(SpecValidation.validate(spec).contains { $0.field == "spec.objects.excludeKinds" })
    spec.objects = ObjectsBackupSpec()
    #expect(!SpecValidation.validate(spec).contains { $0.field.hasPrefix("spec.objects") })
    // A plan's objects restore: kinds and namespace; a drill may not restore objects.
    var plan = try objectsPlan(namespace: "Bad_NS", kinds: ["nope"])
    let planFields = Set(SpecValidation.validate(plan.spec).map(\.field))
    #expect(planFields.contains { $0.hasSuffix("into.objects.namespace") }, "\(planFields)")
    #expect(planFields.contains { $0.hasSuffix("into.objects.kinds[0]") }, "\(planFields)")
    plan = try objectsPlan()
    #expect(!SpecValidation.validate(plan.spec).contains { $0.field.contains("into.objects") })
    var drill = DRDrillSpec(target: DrillTarget(backupPolicyRef: LocalObjectReference(name: "files")))
    drill.restore = RestoreDestination(objects: RestoreObjects())
    #expect(SpecValidation.validate(drill).contains { $0.field == "spec.restore.objects" })
  }
}
