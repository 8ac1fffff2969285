import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// A fixed time for the recovery and drill tests.
let drillNow = Date(timeIntervalSince1970: 1_790_000_000)

/// Decodes a resource from JSON text as the API would send it.
func decodeResource<T: Decodable>(_ json: String, as: T.Type = T.self) throws -> T {
  try KubeJSON.decoder().decode(T.self, from: Data(json.utf8))
}

/// A BackupPolicy "db" (S3 + Vault Transit, dump of a database) in namespace "shop".
func recoveryTestPolicy(name: String = "db", local: Bool = false) throws -> BackupPolicy {
  let repo =
    local
    ? #"{"local": {"path": "/repo", "claimName": "repo-pvc"}}"#
    : #"{"s3": {"bucket": "backups", "prefix": "shop", "endpoint": "http://10.0.0.5:5000", "forcePathStyle": true, "credentialsSecretRef": {"name": "s3-creds"}}}"#
  return try decodeResource(
    """
    {"apiVersion": "dr.botrt.io/v1alpha1", "kind": "BackupPolicy",
     "metadata": {"name": "\(name)", "namespace": "shop", "uid": "u-\(name)"},
     "spec": {"tier": "critical", "source": {"command": {"image": "postgres:16", "command": ["pg_dump", "app"]}},
              "repository": \(repo),
              "encryption": {"kms": {"vaultTransit": {"address": "http://10.0.0.6:8200", "key": "botrt",
                                                        "authSecretRef": {"name": "vault-token"}}}}}}
    """)
}

/// A plan: stop the app, restore the database by a command, verify with a query, start the app, wait for it.
func recoveryTestPlan(retries: Int = 0, trigger: String? = "t1", rto: String? = nil) throws -> RecoveryPlan {
  try decodeResource(
    """
    {"apiVersion": "dr.botrt.io/v1alpha1", "kind": "RecoveryPlan",
     "metadata": {"name": "shop-recovery", "namespace": "shop", "uid": "u-plan", "generation": 3},
     "spec": {"tier": "critical", \(rto.map { "\"rtoTarget\": \"\($0)\"," } ?? "")
       \(trigger.map { "\"trigger\": \"\($0)\"," } ?? "")
       "procedures": [
         {"name": "restore-from-backup", "steps": [
           {"name": "stop-app", "action": "scaleDown", "targets": [{"kind": "Deployment", "name": "web"}]},
           {"name": "restore-db", "action": "restore", "timeout": "5m", "retries": \(retries),
            "restore": {"policyRef": {"name": "db"}, "snapshot": "latest",
                        "into": {"command": {"image": "postgres:16", "command": ["psql", "-d", "app"]}}}},
           {"name": "check-rows", "action": "verify",
            "verify": {"policyRef": {"name": "db"}, "readData": true,
                       "databaseQuery": {"image": "postgres:16", "command": ["psql", "-tA", "-d", "app"],
                                         "query": "select count(*) from orders", "expected": "42"}}},
           {"name": "start-app", "action": "scaleUp", "targets": [{"kind": "Deployment", "name": "web"}]},
           {"name": "app-ready", "action": "waitReady", "timeout": "2m",
            "targets": [{"kind": "Deployment", "name": "web"}]}
         ]}
       ]}}
    """)
}

func job(_ name: String, _ state: JobObservation.State, containers: [String: JobObservation.Terminated] = [:])
  -> JobObservation
{
  JobObservation(
    name: name, state: state, containers: containers, failureMessage: state == .failed ? "BackoffLimitExceeded" : nil)
}

let webKey = WorkloadState.key("Deployment", "shop", "web")

@Suite struct RecoveryPlanLogicTests {
  @Test func stepsAreFlattenedInOrderWithTimeoutsAndRetries() throws {
    let steps = try RecoveryPlanLogic.steps(try recoveryTestPlan(retries: 2).spec)
    #expect(steps.map(\.step.name) == ["stop-app", "restore-db", "check-rows", "start-app", "app-ready"])
    #expect(steps.map(\.timeoutSeconds) == [600, 300, 600, 600, 120])
    #expect(steps[1].retries == 2)
    #expect(steps[1].displayName == "restore-from-backup/restore-db")
    #expect(steps.map(\.runsJob) == [false, true, true, false, false])
  }

  @Test func invalidStepsNameTheField() throws {
    var plan = try recoveryTestPlan()
    plan.spec.procedures[0].steps[0].targets = []
    #expect(throws: SpecError.self) { try RecoveryPlanLogic.steps(plan.spec) }
    do {
      _ = try RecoveryPlanLogic.steps(plan.spec)
    } catch {
      #expect(error.field == "spec.procedures[0].steps[0].targets")
    }
    var bad = try recoveryTestPlan()
    bad.spec.procedures[0].steps[1].timeout = "5 minutes"
    do {
      _ = try RecoveryPlanLogic.steps(bad.spec)
      Issue.record("a bad timeout must throw")
    } catch {
      #expect(error.field == "spec.procedures[0].steps[1].timeout")
    }
  }

  @Test func idleWithoutTriggerAndRTOFromTier() throws {
    let plan = try recoveryTestPlan(trigger: nil)
    let a = RecoveryPlanLogic.advance(plan: plan, world: PlanWorld(), now: drillNow)
    #expect(a.status.phase == .idle)
    #expect(a.status.rtoTargetSeconds == 900)
    #expect(a.status.rtoTarget == "15m")
    #expect(a.status.rtoSource == "tier:critical")
    #expect(a.actions.isEmpty)
    #expect(a.status.conditions?.isTrue(RecoveryPlanCondition.ready) == true)
  }

  @Test func complianceTightensTheRTO() throws {
    var plan = try recoveryTestPlan(trigger: nil, rto: "1h")
    plan.spec.compliance = [.pciDSS]
    let a = RecoveryPlanLogic.advance(plan: plan, world: PlanWorld(), now: drillNow)
    #expect(a.status.rtoTargetSeconds == 900)
    #expect(a.status.rtoSource == "compliance:pci-dss")
    // Before any run the plan's targets are not measured; kubectl describe says so.
    let c = try #require(a.status.conditions?.condition(ComplianceEvaluation.conditionType))
    #expect(c.status == .unknown)
    #expect(c.message.contains("PCI-DSS cardholder data RTO (RTO 15m): not-measured"))
    #expect(c.message.contains("PCI-DSS vulnerability scan RTO (within 5m): not-covered"))
  }

  /// Drives a whole successful run through the state machine with an advancing clock.
  @Test func fullRunSucceedsAndMeasuresRTO() throws {
    var plan = try recoveryTestPlan()
    var world = PlanWorld(workloads: [webKey: WorkloadState(replicas: 3, readyReplicas: 3)])
    var now = drillNow

    // 1. Trigger: the run starts and scales the app down, remembering 3 replicas.
    var a = RecoveryPlanLogic.advance(plan: plan, world: world, now: now)
    #expect(a.status.phase == .running)
    #expect(a.status.lastHandledTrigger == "trigger:t1")
    #expect(a.actions == [.scale(kind: "Deployment", namespace: "shop", name: "web", replicas: 0)])
    #expect(
      a.status.scaledWorkloads == [ScaledWorkload(kind: "Deployment", namespace: "shop", name: "web", replicas: 3)])
    #expect(a.status.steps?[0].state == .running)
    #expect(a.events.map(\.reason) == ["PlanStarted", "StepStarted"])
    plan.status = a.status

    // 2. The scale took effect but pods still exist: keep waiting, no duplicate remembered count.
    now += 5
    world.workloads[webKey] = WorkloadState(replicas: 0, readyReplicas: 0, currentReplicas: 2)
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: now)
    #expect(a.status.steps?[0].state == .running)
    #expect(a.status.scaledWorkloads?.count == 1)
    plan.status = a.status

    // 3. Pods gone: scaleDown succeeds and the restore Job is created in the same pass.
    now += 5
    world.workloads[webKey] = WorkloadState(replicas: 0, readyReplicas: 0, currentReplicas: 0)
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: now)
    #expect(a.status.steps?[0].state == .succeeded)
    #expect(a.status.steps?[1].state == .running)
    let restoreJob = try #require(a.status.steps?[1].jobName)
    #expect(a.actions == [.createJob(step: 1, jobName: restoreJob)])
    #expect(restoreJob.count <= 63)
    plan.status = a.status

    // 4. The restore Job runs, then completes with the engine's result; the verify Job starts.
    now += 60
    world.jobs[restoreJob] = job(restoreJob, .running)
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: now)
    #expect(a.actions.isEmpty)
    #expect(a.requeueAfter != nil)
    plan.status = a.status
    now += 60
    world.jobs[restoreJob] = job(
      restoreJob, .succeeded,
      containers: [
        "restore": .init(
          exitCode: 0, message: #"{"command":"restore","ok":true,"snapshotId":"abcdef0123456789","bytesRead":1000}"#)
      ])
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: now)
    #expect(a.status.steps?[1].state == .succeeded)
    #expect(a.status.steps?[1].message?.contains("abcdef012345") == true)
    let verifyJob = try #require(a.status.steps?[2].jobName)
    #expect(verifyJob != restoreJob)
    plan.status = a.status

    // 5. Verify completes; scaleUp restores the remembered 3 replicas.
    now += 30
    world.jobs[verifyJob] = job(verifyJob, .succeeded)
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: now)
    #expect(a.actions == [.scale(kind: "Deployment", namespace: "shop", name: "web", replicas: 3)])
    plan.status = a.status

    // 6. Scaled up but not ready; then ready: the plan succeeds within the 15 min RTO.
    now += 10
    world.workloads[webKey] = WorkloadState(replicas: 3, readyReplicas: 1)
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: now)
    #expect(a.status.steps?[3].state == .succeeded)
    #expect(a.status.steps?[4].state == .running)
    #expect(a.status.steps?[4].message?.contains("1/3 ready") == true)
    plan.status = a.status
    now += 20
    world.workloads[webKey] = WorkloadState(replicas: 3, readyReplicas: 3)
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: now)
    #expect(a.status.phase == .succeeded)
    #expect(a.status.rtoAchievedSeconds == 190)
    #expect(a.status.rtoAchieved == "3m10s")
    #expect(a.status.conditions?.isTrue(RecoveryPlanCondition.succeeded) == true)
    #expect(a.status.conditions?.isTrue(RecoveryPlanCondition.rtoMet) == true)
    #expect(a.events.last?.reason == "PlanSucceeded")
    plan.status = a.status

    // 7. Done: the same trigger does not run the plan again; a new one does.
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: now + 100)
    #expect(a.status.phase == .succeeded)
    #expect(a.actions.isEmpty)
    plan.spec.trigger = "t2"
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: now + 100)
    #expect(a.status.phase == .running)
    #expect(a.status.lastHandledTrigger == "trigger:t2")
  }

  /// The engine's `latest` passed over a newer snapshot that did not verify: the restore step's status and a Warning
  /// Event name it.
  @Test func aSkippedSnapshotIsNamedInTheStepAndAWarning() throws {
    var plan = try recoveryTestPlan()
    var world = PlanWorld(workloads: [webKey: WorkloadState(replicas: 0, readyReplicas: 0)])
    var a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow)
    plan.status = a.status
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 5)
    let restoreJob = try #require(a.status.steps?[1].jobName)
    plan.status = a.status
    world.jobs[restoreJob] = job(
      restoreJob, .succeeded,
      containers: [
        "restore": .init(
          exitCode: 0,
          message: #"{"command":"restore","ok":true,"snapshotId":"0123456789abcdef","skippedSnapshots":"#
            + #"[{"id":"fedcba9876543210fedc","reason":"integrity failure in data/fe/fe11: pack of the tree is missing"}]}"#
        )
      ])
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 60)
    let msg = try #require(a.status.steps?[1].message)
    #expect(a.status.steps?[1].state == .succeeded)
    #expect(msg.contains("Skipped snapshot fedcba987654") && msg.contains("pack of the tree is missing"), "\(msg)")
    #expect(msg.contains("used 0123456789ab"), "\(msg)")
    let w = try #require(a.events.first { $0.reason == SkippedSnapshotsText.eventReason })
    #expect(w.warning)
    #expect(w.message.contains("fedcba987654") && w.message.contains("restore-db"), "\(w.message)")
  }

  @Test func failedJobUsesTheRetryBudgetThenStopsThePlan() throws {
    var plan = try recoveryTestPlan(retries: 1)
    var world = PlanWorld(workloads: [webKey: WorkloadState(replicas: 0, readyReplicas: 0)])
    var a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow)
    #expect(a.status.steps?[0].state == .succeeded)  // already at 0 replicas
    let first = try #require(a.status.steps?[1].jobName)
    plan.status = a.status

    let failed = JobObservation.Terminated(
      exitCode: 4, message: #"{"command":"restore","ok":false,"exitCode":4,"errors":["s3: bucket backups not found"]}"#)
    world.jobs[first] = job(first, .failed, containers: ["restore": failed])
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 30)
    let second = try #require(a.status.steps?[1].jobName)
    #expect(second != first)
    #expect(a.status.steps?[1].attempts == 2)
    #expect(a.status.steps?[1].state == .running)
    #expect(a.actions == [.deleteJob(step: 1, name: first), .createJob(step: 1, jobName: second)])
    #expect(a.events.map(\.reason) == ["StepAttemptFailed", "StepRetrying"])
    plan.status = a.status

    world.jobs[second] = job(second, .failed, containers: ["restore": failed])
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 60)
    #expect(a.status.phase == .failed)
    #expect(a.status.failedStep == "restore-from-backup/restore-db")
    #expect(a.status.message?.contains("s3: bucket backups not found") == true)
    #expect(a.status.message?.contains("after 2 attempts") == true)
    #expect(a.status.steps?[2...].allSatisfy { $0.state == .skipped } == true)
    #expect(a.status.conditions?.condition(RecoveryPlanCondition.succeeded)?.status == .false)
    #expect(a.status.conditions?.condition(RecoveryPlanCondition.rtoMet)?.status == .false)
    #expect(a.events.contains { $0.warning && $0.reason == "StepFailed" })
    #expect(a.status.rtoAchievedSeconds == nil)
  }

  @Test func stepTimesOutWithTheInjectedClock() throws {
    var plan = try recoveryTestPlan()
    let world = PlanWorld(workloads: [webKey: WorkloadState(replicas: 0, readyReplicas: 0)])
    var a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow)
    let jobName = try #require(a.status.steps?[1].jobName)
    plan.status = a.status
    // Before the 5 min timeout: still running, requeued for the deadline.
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 200)
    #expect(a.status.phase == .running)
    #expect(a.requeueAfter == 100)
    plan.status = a.status
    // After it: failed with "timed out", its Job deleted.
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 301)
    #expect(a.status.phase == .failed)
    #expect(a.status.steps?[1].message == "timed out after 5m")
    #expect(a.actions == [.deleteJob(step: 1, name: jobName)])
  }

  @Test func missingWorkloadFailsTheScaleStep() throws {
    let plan = try recoveryTestPlan()
    let a = RecoveryPlanLogic.advance(plan: plan, world: PlanWorld(), now: drillNow)
    #expect(a.status.phase == .failed)
    #expect(a.status.message?.contains("not found: Deployment shop/web") == true)
  }

  @Test func slowRecoveryMissesTheRTO() throws {
    var plan = try recoveryTestPlan(rto: "2m")
    plan.spec.procedures[0].steps = [plan.spec.procedures[0].steps[4]]  // only waitReady
    plan.spec.procedures[0].steps[0].timeout = "10m"
    var world = PlanWorld(workloads: [webKey: WorkloadState(replicas: 2, readyReplicas: 0)])
    var a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow)
    plan.status = a.status
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 121)
    #expect(a.status.conditions?.condition(RecoveryPlanCondition.rtoMet)?.status == .false)
    #expect(a.status.phase == .running)
    plan.status = a.status
    world.workloads[webKey] = WorkloadState(replicas: 2, readyReplicas: 2)
    a = RecoveryPlanLogic.advance(plan: plan, world: world, now: drillNow + 150)
    #expect(a.status.phase == .succeeded)
    #expect(a.status.rtoAchievedSeconds == 150)
    #expect(a.status.conditions?.condition(RecoveryPlanCondition.rtoMet)?.reason == "OverTarget")
    #expect(a.events.last?.reason == "RTOMissed")
  }

  @Test func restoreJobStagesTheStreamForTheCommand() throws {
    let plan = try recoveryTestPlan()
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    let ctx = RecoveryJobContext(
      settings: ControllerSettings(engineImage: "registry.local/botrt-engine:1"),
      policies: ["db": try recoveryTestPolicy()],
      namespace: "shop", labels: ["a": "b"], owner: plan.ownerReference())
    let body = try RecoveryJobs.stepJob(steps[1], jobName: "rp-x-1", ctx: ctx)
    #expect(body["kind"]?.stringValue == "Job")
    #expect(body[path: "spec", "activeDeadlineSeconds"]?.intValue == 300)
    #expect(body[path: "spec", "backoffLimit"]?.intValue == 0)
    #expect(body[path: "metadata", "ownerReferences"]?[0]?["uid"]?.stringValue == "u-plan")
    let pod = try #require(body[path: "spec", "template", "spec"])
    // The engine restores in its own image first (an init container), then the command reads the staged file.
    let engine = try #require(pod["initContainers"]?[0])
    #expect(pod["initContainers"]?.arrayValue?.count == 1)
    #expect(engine["name"]?.stringValue == "restore")
    #expect(engine["image"]?.stringValue == "registry.local/botrt-engine:1")
    let args = (engine["args"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: " ")
    #expect(args.hasPrefix("restore --repo s3://backups/shop --kms"))
    #expect(args.hasSuffix("latest --target /botrt/stage --path dump --json"))
    let load = try #require(pod["containers"]?[0])
    #expect(load["name"]?.stringValue == "restore-load")
    #expect(load["image"]?.stringValue == "postgres:16")
    let script = try #require(load["command"]?[2]?.stringValue)
    #expect(script.contains("f=/botrt/stage/dump"))
    #expect(script.contains("psql -d app < \"$f\""))
    // The command's image gets none of the engine's credentials.
    let loadEnv = (load["env"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
    #expect(!loadEnv.contains("AWS_ACCESS_KEY_ID") && !loadEnv.contains("AWS_SECRET_ACCESS_KEY"))
    // A restore left at the CRD default stream name follows the name the policy's backup used.
    var named = try recoveryTestPolicy()
    named.spec.source.command?.fileName = "db.dump"
    var namedCtx = ctx
    namedCtx.policies = ["db": named]
    let body2 = try RecoveryJobs.stepJob(steps[1], jobName: "rp-x-2", ctx: namedCtx)
    let args2 = (body2[path: "spec", "template", "spec", "initContainers"]?[0]?["args"]?.arrayValue ?? [])
      .compactMap(\.stringValue).joined(separator: " ")
    #expect(args2.hasSuffix("latest --target /botrt/stage --path db.dump --json"))
    let c = engine
    let env = c["env"]?.arrayValue ?? []
    #expect(env.contains { $0["name"]?.stringValue == "AWS_ACCESS_KEY_ID" })
    // The Vault token comes from a mounted Secret, never from a literal.
    let mounts = c["volumeMounts"]?.arrayValue ?? []
    #expect(mounts.contains { $0["mountPath"]?.stringValue == "/var/run/botrt/secrets/vault-token" })
  }

  @Test func restoreIntoAClaimRunsAsTheUserItNames() throws {
    var plan = try recoveryTestPlan()
    let ctx = RecoveryJobContext(
      settings: ControllerSettings(engineImage: "e:1"), policies: ["db": try recoveryTestPolicy()], namespace: "shop",
      labels: [:], owner: nil)
    func pod(_ into: RestorePVC) throws -> JSONValue {
      plan.spec.procedures[0].steps[1].restore?.into = RestoreDestination(pvc: into)
      let steps = try RecoveryPlanLogic.steps(plan.spec)
      return try #require(try RecoveryJobs.stepJob(steps[1], jobName: "rp", ctx: ctx)[path: "spec", "template", "spec"])
    }
    // Default: the engine's user, and fsGroup (the kubelet makes the claim writable for it).
    let plain = try pod(RestorePVC(claimName: "data"))
    #expect(plain[path: "containers"]?[0]?[path: "securityContext", "runAsUser"]?.intValue == 65532)
    #expect(plain[path: "containers"]?[0]?[path: "securityContext", "capabilities"] == ["drop": ["ALL"]])
    #expect(plain[path: "securityContext", "fsGroup"]?.intValue == 65532)
    // 0: root with exactly the capabilities that set recorded owners and modes, and no fsGroup (the kubelet would
    // change the group of the claim's files at mount).
    let root = try pod(RestorePVC(claimName: "data", runAsUser: 0))
    let sc = try #require(root[path: "containers"]?[0]?[path: "securityContext"])
    #expect(sc["runAsUser"]?.intValue == 0 && sc["runAsGroup"]?.intValue == 0)
    #expect(sc["runAsNonRoot"] == false && sc["allowPrivilegeEscalation"] == false)
    #expect(sc["capabilities"] == ["drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"]])
    #expect(root[path: "securityContext", "fsGroup"] == nil)
    #expect(
      root[path: "containers"]?[0]?[path: "volumeMounts"]?.arrayValue?.contains { $0["name"] == "restore" } == true)
    // The test policy dumps a command's output: its stream restores as stored.
    #expect(root[path: "containers"]?[0]?["args"]?.arrayValue?.contains("--strip-components") == false)
    // A claim's backup is stored under the claim's name: restored into a claim, its content goes to the root.
    var claimPolicy = try recoveryTestPolicy()
    claimPolicy.spec.source = BackupSource(pvc: PVCSource(claimName: "data"))
    var claimCtx = ctx
    claimCtx.policies = ["db": claimPolicy]
    plan.spec.procedures[0].steps[1].restore?.into = RestoreDestination(pvc: RestorePVC(claimName: "data"))
    let claimJob = try RecoveryJobs.stepJob(try RecoveryPlanLogic.steps(plan.spec)[1], jobName: "rp", ctx: claimCtx)
    let args = (claimJob[path: "spec", "template", "spec", "containers"]?[0]?["args"]?.arrayValue ?? [])
      .compactMap(\.stringValue)
    #expect(args.joined(separator: " ").contains("--target /restore --strip-components 1"), "\(args)")
    // Another uid: that user and group, no added capability.
    let app = try pod(RestorePVC(claimName: "data", runAsUser: 1001, runAsGroup: 2002))
    #expect(app[path: "containers"]?[0]?[path: "securityContext", "runAsUser"]?.intValue == 1001)
    #expect(app[path: "containers"]?[0]?[path: "securityContext", "runAsGroup"]?.intValue == 2002)
    #expect(app[path: "containers"]?[0]?[path: "securityContext", "runAsNonRoot"] == true)
    #expect(app[path: "containers"]?[0]?[path: "securityContext", "capabilities"] == ["drop": ["ALL"]])
  }

  @Test func verifyJobRunsEngineVerifyThenTheQuery() throws {
    let plan = try recoveryTestPlan()
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    let ctx = RecoveryJobContext(
      settings: ControllerSettings(engineImage: "e:1"), policies: ["db": try recoveryTestPolicy()], namespace: "shop",
      labels: [:], owner: nil)
    let body = try RecoveryJobs.stepJob(steps[2], jobName: "v", ctx: ctx)
    let pod = try #require(body[path: "spec", "template", "spec"])
    let verify = try #require(pod["initContainers"]?[0])
    let args = (verify["args"]?.arrayValue ?? []).compactMap(\.stringValue)
    #expect(args.first == "verify")
    #expect(args.contains("--read-data"))
    #expect(args.contains("--all"))
    let query = try #require(pod["containers"]?[0])
    #expect(query["name"]?.stringValue == "query")
    let env = query["env"]?.arrayValue ?? []
    #expect(env.contains { $0["name"]?.stringValue == "BOTRT_EXPECTED" && $0["value"]?.stringValue == "42" })
    // A missing policy is named.
    let none = RecoveryJobContext(
      settings: ControllerSettings(engineImage: "e:1"), policies: [:], namespace: "shop", labels: [:], owner: nil)
    do {
      _ = try RecoveryJobs.stepJob(steps[2], jobName: "v", ctx: none)
      Issue.record("a missing policy must throw")
    } catch {
      #expect(error.message.contains("BackupPolicy 'db' does not exist"))
    }
  }

  @Test func snapshotSelection() {
    #expect(RecoveryJobs.snapshotArguments(snapshot: nil, beforeTime: nil) == ["latest"])
    #expect(RecoveryJobs.snapshotArguments(snapshot: "abc123", beforeTime: nil) == ["abc123"])
    #expect(
      RecoveryJobs.snapshotArguments(snapshot: nil, beforeTime: Date(timeIntervalSince1970: 0))
        == ["latest", "--before", "1970-01-01T00:00:00Z"])
  }

  @Test func jobObservationReadsTerminatedContainers() {
    let j: JSONValue = [
      "metadata": ["name": "j"],
      "status": [
        "startTime": "2026-11-27T01:00:00Z",
        "conditions": [
          [
            "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "lastTransitionTime": "2026-11-27T01:02:00Z",
          ]
        ],
      ],
    ]
    let pod: JSONValue = [
      "metadata": ["creationTimestamp": "2026-11-27T01:00:00Z"],
      "status": [
        "initContainerStatuses": [
          ["name": "restore", "state": ["terminated": ["exitCode": 0, "message": #"{"ok":true,"bytesRead":5}"#]]]
        ],
        "containerStatuses": [
          [
            "name": "verify",
            "state": [
              "terminated": [
                "exitCode": 5, "finishedAt": "2026-11-27T01:01:59Z",
                "message": #"{"command":"verify","ok":false,"errors":["pack 3f/3fab damaged: authentication failed"]}"#,
              ]
            ],
          ]
        ],
      ],
    ]
    let o = JobObservation.observe(job: j, pods: [pod])
    #expect(o.state == .failed)
    #expect(o.containers["restore"]?.engineResult?.bytesRead == 5)
    #expect(o.containers["verify"]?.exitCode == 5)
    #expect(o.failureSummary == "container verify exited with code 5: pack 3f/3fab damaged: authentication failed")
  }

  @Test func mergePatchSetsChangesAndNullsRemovedMembers() {
    let old: JSONValue = [
      "phase": "Running", "currentRun": ["startTime": "t0", "step": "restore"], "history": [["a": 1]], "keep": 1,
    ]
    let new: JSONValue = [
      "phase": "Idle", "currentRun": ["startTime": "t0"], "history": [["a": 1], ["a": 2]], "keep": 1,
    ]
    let p = mergePatch(from: old, to: new)
    #expect(p == ["phase": "Idle", "currentRun": ["step": .null], "history": [["a": 1], ["a": 2]]])
    let gone = mergePatch(from: old, to: ["phase": "Idle", "keep": 1, "history": [["a": 1]]])
    #expect(gone == ["phase": "Idle", "currentRun": .null])
    #expect(mergePatch(from: nil, to: new) == new)
  }

}
