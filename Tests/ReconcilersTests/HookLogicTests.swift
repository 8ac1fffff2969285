import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The hooks' state machine and decisions (spec.hooks), without an apiserver.
@Suite struct HookLogicTests {
  let t0 = Date(timeIntervalSince1970: 1_780_000_000)

  func job(
    finished: Bool = false, post: String? = nil, pods: [HookJobView.PodView], hooked: Bool = true
  ) -> HookJobView {
    HookJobView(name: "j", uid: "job-uid", hooked: hooked, finished: finished, post: post, pods: pods)
  }

  func pod(_ pre: String?, waiting: Bool = true, uid: String = "pod-uid") -> HookJobView.PodView {
    HookJobView.PodView(name: "p", uid: uid, pre: pre, gateWaiting: waiting)
  }

  func hook(_ name: String, onError: HookOnError? = nil, timeout: Int32? = nil) -> BackupHook {
    BackupHook(
      name: name, podSelector: HookPodSelector(matchLabels: ["app": "db"]), command: ["true"],
      timeoutSeconds: timeout, onError: onError)
  }

  @Test func preHooksRunOnceTheGateWaitsAndOnlyOnce() {
    let none = HookMemory()
    // Not yet run, gate waiting: run.
    #expect(HookLogic.steps(job(pods: [pod(nil)]), memory: none, hasPost: true) == [.runPre(pod: "p", uid: "pod-uid")])
    // The gate not started yet (image pull, init): nothing, so the application is not frozen while the Pod starts.
    #expect(HookLogic.steps(job(pods: [pod(nil, waiting: false)]), memory: none, hasPost: true).isEmpty)
    // This process ran them and the cache still shows the Pod unmarked: not again.
    var ran = HookMemory()
    ran.preHandled.insert("pod-uid")
    #expect(HookLogic.steps(job(pods: [pod(nil)]), memory: ran, hasPost: true).isEmpty)
    // done or failed: nothing more.
    #expect(HookLogic.steps(job(pods: [pod(EngineGate.done)]), memory: none, hasPost: true).isEmpty)
    #expect(HookLogic.steps(job(pods: [pod(EngineGate.failed)]), memory: none, hasPost: true).isEmpty)
    // A Job that is not hooked (no gate in its template) has no steps at all.
    #expect(HookLogic.steps(job(finished: true, pods: [pod(nil)], hooked: false), memory: none, hasPost: true).isEmpty)
  }

  @Test func aPodFoundRunningAtStartIsFailedNotRunAgainAndPostStillRuns() {
    // A new process finds `running` it did not write: a controller restarted during the pre hooks.
    let fresh = HookMemory()
    #expect(
      HookLogic.steps(job(pods: [pod(EngineGate.running)]), memory: fresh, hasPost: true)
        == [.failInterruptedPre(pod: "p", uid: "pod-uid")])
    // The gate then fails the Pod, the Job fails, and the post hooks run.
    #expect(
      HookLogic.steps(job(finished: true, pods: [pod(EngineGate.failed)]), memory: fresh, hasPost: true) == [.runPost])
    // The process that is running them (or just marked them, the cache behind) does not fail them...
    var mine = HookMemory()
    mine.preHandled.insert("pod-uid")
    #expect(HookLogic.steps(job(pods: [pod(EngineGate.running)]), memory: mine, hasPost: true).isEmpty)
    // ...and once they ended here, writes the final mark (again) until the Pod shows it.
    let mark = HookMark(value: EngineGate.done, record: HookRunStatus(job: "j", pre: "Done"))
    mine.preFinal["pod-uid"] = mark
    #expect(
      HookLogic.steps(job(pods: [pod(EngineGate.running)]), memory: mine, hasPost: true)
        == [.markPre(pod: "p", uid: "pod-uid", mark)])
  }

  @Test func postHooksRunOnceWhenTheJobEndsWhateverItsOutcome() {
    let none = HookMemory()
    // Running Job: no post hooks yet.
    #expect(HookLogic.steps(job(pods: [pod(EngineGate.done)]), memory: none, hasPost: true).isEmpty)
    // Ended (Complete or Failed alike): post hooks, once.
    #expect(
      HookLogic.steps(job(finished: true, pods: [pod(EngineGate.done)]), memory: none, hasPost: true) == [.runPost])
    // A Job whose Pod never got to the gate (deleted, unschedulable until its deadline) still gets them.
    #expect(HookLogic.steps(job(finished: true, pods: []), memory: none, hasPost: true) == [.runPost])
    // A finished Job's waiting gate is not served: the run is over.
    #expect(HookLogic.steps(job(finished: true, pods: [pod(nil)]), memory: none, hasPost: true) == [.runPost])
    var ran = HookMemory()
    ran.postHandled.insert("job-uid")
    #expect(HookLogic.steps(job(finished: true, pods: []), memory: ran, hasPost: true).isEmpty)
    for state in [EngineGate.done, EngineGate.failed] {
      #expect(HookLogic.steps(job(finished: true, post: state, pods: []), memory: none, hasPost: true).isEmpty)
    }
    // Found running by a new process: failed, not run twice.
    #expect(
      HookLogic.steps(job(finished: true, post: EngineGate.running, pods: []), memory: none, hasPost: true)
        == [.failInterruptedPost])
    let mark = HookMark(value: EngineGate.done, record: HookRunStatus(job: "j", post: "Done"))
    ran.postFinal["job-uid"] = mark
    #expect(
      HookLogic.steps(job(finished: true, post: EngineGate.running, pods: []), memory: ran, hasPost: true)
        == [.markPost(mark)])
    // No post hooks: nothing to run or record.
    #expect(HookLogic.steps(job(finished: true, pods: []), memory: none, hasPost: false).isEmpty)
  }

  @Test func abortStopsTheListAndContinueGoesOn() {
    func run(_ hooks: [(BackupHook, HookExecOutcome)], isPre: Bool) -> HookLogic.ListOutcome {
      var o = HookLogic.ListOutcome()
      for (h, outcome) in hooks {
        let r = HookLogic.result(h, phase: isPre ? "Pre" : "Post", pod: "db-0", outcome: outcome, now: t0)
        if !HookLogic.fold(h, isPre: isPre, results: [r], outcomes: [outcome], into: &o) { break }
      }
      return o
    }
    let fail = HookExecOutcome.exited(code: 1, stderr: Array("cannot lock\n".utf8))
    let ok = HookExecOutcome.exited(code: 0, stderr: [])
    // Pre hooks abort by default: the second is not run, the gate fails with the first's failure.
    let pre = run([(hook("freeze"), fail), (hook("flush"), ok)], isPre: true)
    #expect(pre.aborted && pre.results.count == 1)
    #expect(pre.failure == "hook freeze failed in pod db-0 (exited with 1: cannot lock)")
    #expect(pre.results[0].result == "Failed" && pre.results[0].exitCode == 1)
    // Continue: recorded, and the next runs.
    let cont = run([(hook("freeze", onError: .continue), fail), (hook("flush"), ok)], isPre: true)
    #expect(!cont.aborted && cont.results.map(\.result) == ["Failed", "Succeeded"])
    #expect(cont.continuedFailures.count == 1)
    // Post hooks continue by default; Abort stops them and marks them failed.
    let post = run([(hook("thaw"), fail), (hook("notify"), ok)], isPre: false)
    #expect(!post.aborted && post.results.count == 2)
    let postAbort = run([(hook("thaw", onError: .abort), fail), (hook("notify"), ok)], isPre: false)
    #expect(postAbort.aborted && postAbort.results.count == 1)
  }

  @Test func aTimeoutIsTimedOutAndCountsAsAFailure() {
    let h = hook("freeze", timeout: 5)
    let out = HookExecOutcome.timedOut(stderr: Array("still waiting".utf8))
    let r = HookLogic.result(h, phase: "Pre", pod: "db-0", outcome: out, now: t0)
    #expect(r.result == "TimedOut" && r.exitCode == nil)
    #expect(r.message == "did not end within 5s: still waiting")
    var o = HookLogic.ListOutcome()
    #expect(!HookLogic.fold(h, isPre: true, results: [r], outcomes: [out], into: &o))
    #expect(o.aborted && o.failure?.hasPrefix("hook freeze timed out in pod db-0") == true)
  }

  @Test func aRefusedExecAbortsEvenAContinueHookAndSaysSo() {
    let h = hook("freeze", onError: .continue)
    let out = HookExecOutcome.forbidden("pods \"db-0\" is forbidden: cannot create resource \"pods/exec\"")
    let r = HookLogic.result(h, phase: "Pre", pod: "db-0", outcome: out, now: t0)
    var o = HookLogic.ListOutcome()
    #expect(!HookLogic.fold(h, isPre: true, results: [r], outcomes: [out], into: &o))
    #expect(o.aborted && o.forbidden != nil)
    let hint = HookKeys.roleBindingHint(
      namespace: "shop", serviceAccount: "botrt-controller", controllerNamespace: "botrt-system")
    #expect(hint.contains("--clusterrole=botrt-hook-executor --serviceaccount=botrt-system:botrt-controller"))
  }

  @Test func theStderrTailIsAtMost256Bytes() {
    let long = Array(repeating: UInt8(ascii: "x"), count: 10_000) + Array("END".utf8)
    let r = HookLogic.result(
      hook("h"), phase: "Post", pod: "p", outcome: .exited(code: 2, stderr: long), now: t0)
    let tail = HookLogic.tail(long)
    #expect(tail.utf8.count == 256 && tail.hasSuffix("END"))
    #expect(r.message == "exited with 2: \(tail)")
  }

  @Test func hooksRunInRunningMatchingPodsAtMostSixteen() {
    func target(_ name: String, labels: [String: String] = ["app": "db"], running: Bool = true) -> HookLogic.Target {
      HookLogic.Target(name: name, labels: labels, running: running, containers: ["main", "sidecar"])
    }
    let h = hook("freeze")
    let some = [
      target("db-1"), target("db-0"), target("web-0", labels: ["app": "web"]), target("db-2", running: false),
    ]
    let picked = HookLogic.select(h, among: some)
    #expect(picked.pods.map(\.name) == ["db-0", "db-1"] && picked.leftOut == 0)
    #expect(HookLogic.select(h, among: [target("web", labels: ["app": "web"])]).pods.isEmpty)
    let many = (0..<20).map { target(String(format: "db-%02d", $0)) }
    let capped = HookLogic.select(h, among: many)
    #expect(capped.pods.count == BackupHooks.maxPods && capped.leftOut == 4)
    #expect(capped.pods.first?.name == "db-00" && capped.pods.last?.name == "db-15")
  }

  @Test func statusShowsTheNewestRecordAndHooksPermitted() throws {
    let rec = HookRunStatus(
      job: "new", pre: "Done",
      results: [HookResultStatus(name: "freeze", phase: "Pre", pod: "db-0", result: "Succeeded")])
    let text = String(decoding: try KubeJSON.encoder().encode(rec), as: UTF8.self)
    let old = HookRunStatus(job: "old", pre: "Failed")
    let oldText = String(decoding: try KubeJSON.encoder().encode(old), as: UTF8.self)
    let runs: [(name: String, start: Date?, annotations: [String: String])] = [
      ("old", t0, [HookKeys.record: oldText]), ("new", t0.addingTimeInterval(60), [HookKeys.record: text]),
      ("plain", t0.addingTimeInterval(120), [:]),
    ]
    let s = HookLogic.lastHooks(runs: runs, hooked: true, previous: nil)
    #expect(s.status == rec)
    #expect(s.permitted?.0 == .true && s.permitted?.1 == "HooksRan")
    // The newest run was refused: HooksPermitted False with the message naming the RoleBinding.
    let refused = runs + [("refused", t0.addingTimeInterval(180), [HookKeys.forbidden: "create a RoleBinding ..."])]
    let f = HookLogic.lastHooks(runs: refused, hooked: true, previous: nil)
    #expect(
      f.permitted?.0 == .false && f.permitted?.1 == "HooksForbidden" && f.permitted?.2 == "create a RoleBinding ...")
    // A Job not started yet (no start time in the cache) is the newest.
    let unstarted = runs + [("fresh", nil, [HookKeys.forbidden: "refused"])]
    #expect(HookLogic.lastHooks(runs: unstarted, hooked: true, previous: nil).permitted?.0 == .false)
    // No hooked run yet: Unknown; the Jobs gone: the previous record stays.
    let none = HookLogic.lastHooks(runs: [], hooked: true, previous: old)
    #expect(none.status == old && none.permitted?.0 == .unknown)
    // Hooks removed from the spec: no condition.
    #expect(HookLogic.lastHooks(runs: runs, hooked: false, previous: nil).permitted == nil)
  }

  @Test func theJobViewReadsTheGateAndTheAnnotations() {
    let gate: JSONValue = ["name": .string(HookKeys.gateContainer)]
    let job: JSONValue = [
      "metadata": ["name": "run-1", "uid": "u1", "annotations": [HookKeys.post: "running"]],
      "spec": ["template": ["spec": ["initContainers": [gate]]]],
      "status": ["conditions": [["type": "Failed", "status": "True"]]],
    ]
    let pods: [JSONValue] = [
      [
        "metadata": ["name": "run-1-b", "uid": "p2", "annotations": [HookKeys.pre: "done"]],
        "spec": ["initContainers": [gate]],
        "status": ["initContainerStatuses": [["name": .string(HookKeys.gateContainer), "state": ["terminated": [:]]]]],
      ],
      [
        "metadata": ["name": "run-1-a", "uid": "p1"],
        "spec": ["initContainers": [gate]],
        "status": ["initContainerStatuses": [["name": .string(HookKeys.gateContainer), "state": ["running": [:]]]]],
      ],
    ]
    let v = HookJobView.observe(job: job, pods: pods)
    #expect(v.hooked && v.finished && v.post == "running" && v.name == "run-1" && v.uid == "u1")
    #expect(v.pods.map(\.name) == ["run-1-a", "run-1-b"])
    #expect(v.pods[0].gateWaiting && v.pods[0].pre == nil && v.pods[0].hasGate)
    #expect(!v.pods[1].gateWaiting && v.pods[1].pre == "done")
    let plain: JSONValue = ["metadata": ["name": "x"], "spec": ["template": ["spec": [:]]]]
    #expect(!HookJobView.observe(job: plain, pods: []).hooked)
  }

  func hookedPolicy() -> BackupPolicy {
    var p = dumpPolicy(trigger: "now-1")
    p.spec.source = BackupSource(pvc: PVCSource(claimName: "data"))
    p.spec.hooks = BackupHooks(
      pre: [hook("freeze", timeout: 30), hook("flush", timeout: 90)], post: [hook("thaw")])
    return p
  }

  @Test func hookedBackupsStartWithTheGateAndAreNotRetried() throws {
    let names = ChildNames(namespace: "shop", name: "payments-db")
    let cs = try build(hookedPolicy())
    let cron = try #require(child(cs, "CronJob", names.backupCronJob))
    let run = try #require(child(cs, "Job", names.runJob(token: "trigger:now-1")))
    for (what, spec) in [
      ("CronJob", cron.body[path: "spec", "jobTemplate", "spec"]), ("Job", run.body[path: "spec"]),
    ] {
      #expect(spec?["backoffLimit"] == 0, "\(what)")
      let pod = try #require(spec?[path: "template", "spec"])
      let gate = try #require(pod["initContainers"]?.arrayValue?.first, "\(what)")
      #expect(gate["name"] == .string(HookKeys.gateContainer) && gate["image"] == "botrt/engine:1")
      let args = gate["args"]?.arrayValue ?? []
      let argv = args.compactMap(\.stringValue)
      // 30 + 90 s of pre hooks and the margin.
      #expect(
        argv == [
          "gate", "--file", "/etc/botrt-gate/annotations", "--key", "dr.botrt.io/pre-hooks", "--message-key",
          "dr.botrt.io/pre-hooks-message", "--timeout", "7m",
        ], "\(what)")
      #expect(gate[path: "securityContext", "runAsNonRoot"] == true && gate["env"] == nil, "no credentials")
      #expect(gate["volumeMounts"] == [["name": "botrt-gate", "mountPath": "/etc/botrt-gate", "readOnly": true]])
      let vol = try #require(pod["volumes"]?.arrayValue?.first { $0["name"] == "botrt-gate" })
      #expect(
        vol["downwardAPI"] == ["items": [["path": "annotations", "fieldRef": ["fieldPath": "metadata.annotations"]]]])
      // Still no ServiceAccount token in the backup Pod.
      #expect(pod["automountServiceAccountToken"] == false)
    }
    // The prune CronJob has no gate, and a policy without hooks keeps its retry.
    let prune = try #require(child(cs, "CronJob", names.pruneCronJob))
    #expect(prune.body[path: "spec", "jobTemplate", "spec", "template", "spec", "initContainers"] == nil)
    var plain = hookedPolicy()
    plain.spec.hooks = nil
    let pc = try #require(child(try build(plain), "CronJob", names.backupCronJob))
    #expect(pc.body[path: "spec", "jobTemplate", "spec", "backoffLimit"] == 1)
    #expect(pc.body[path: "spec", "jobTemplate", "spec", "template", "spec", "initContainers"] == nil)
  }

  @Test func aRunWhoseGateFailedSaysSoInItsFailure() {
    let job: JSONValue = [
      "metadata": ["name": "run-2"],
      "status": ["failed": 1, "conditions": [["type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"]]],
    ]
    let pod: JSONValue = [
      "metadata": ["name": "run-2-x"],
      "status": [
        "phase": "Failed",
        "initContainerStatuses": [
          [
            "name": .string(HookKeys.gateContainer),
            "state": ["terminated": ["exitCode": 20, "message": "gate: dr.botrt.io/pre-hooks is failed: hook lock"]],
          ]
        ],
        "containerStatuses": [["name": "backup", "state": ["waiting": ["reason": "PodInitializing"]]]],
      ],
    ]
    let run = BackupRun.observe(job: job, pods: [pod])
    #expect(run.state == .failed)
    #expect(
      run.failureMessage
        == "the backup did not start: its hooks gate exited with 20 (gate: dr.botrt.io/pre-hooks is failed: hook lock)")
  }

  @Test func execResultsAndErrorsBecomeHookOutcomes() {
    let ok = PodExecResult(
      stdout: Array("out".utf8), stderr: Array(repeating: UInt8(ascii: "e"), count: 1000), exitCode: 3)
    #expect(
      ClientPodExecutor.outcome(.success(ok))
        == .exited(code: 3, stderr: Array(repeating: UInt8(ascii: "e"), count: 256)))
    func err(_ kind: PodExecError.Kind) -> HookExecOutcome {
      ClientPodExecutor.outcome(.failure(PodExecError(kind: kind, namespace: "shop", pod: "db-0", message: "m")))
    }
    if case .forbidden(let m) = err(.forbidden) { #expect(m.contains("pods/exec")) } else { Issue.record("403") }
    #expect(err(.timeout) == .timedOut(stderr: []))
    for k in [PodExecError.Kind.notFound, .failed, .protocolError] {
      if case .failed(let m) = err(k) { #expect(m.contains("db-0")) } else { Issue.record("\(k)") }
    }
  }

  @Test func aMultiClaimSourceRunsTheHooksAroundEachClaimsBackup() throws {
    var p = hookedPolicy()
    p.spec.source = BackupSource(claims: ClaimsSource(claimNames: ["data-a", "data-b"]))
    let eff = try EffectivePolicy(spec: p.spec, now: testNow)
    let cs = try BackupPolicyChildren.build(
      ChildInputs(
        policy: p, effective: eff, settings: settings(), secrets: allSecrets, runToken: "trigger:now-1",
        claims: ClaimSelection(names: ["data-a", "data-b"])))
    let jobs = cs.filter { $0.resource.kind == "Job" }
    let crons = cs.filter {
      $0.resource.kind == "CronJob" && $0.body[path: "metadata", "labels", ChildLabels.component] == "backup"
    }
    #expect(jobs.count == 2 && crons.count == 2)
    for c in jobs.map({ $0.body[path: "spec"] }) + crons.map({ $0.body[path: "spec", "jobTemplate", "spec"] }) {
      #expect(c?["backoffLimit"] == 0)
      #expect(c?[path: "template", "spec", "initContainers"]?[0]?["name"] == .string(HookKeys.gateContainer))
    }
    #expect(BackupPolicyChildren.hasHooks(p))
  }

  @Test func theGateTimeoutCoversThePreHooks() {
    #expect(HookKeys.gateTimeoutSeconds(BackupHooks()) == 300)
    let eight = BackupHooks(pre: (0..<8).map { hook("h\($0)", timeout: 3600) })
    #expect(HookKeys.gateTimeoutSeconds(eight) == 8 * 3600 + 300)
    #expect(HookKeys.gateTimeoutSeconds(BackupHooks(pre: [hook("d")])) == 360)
  }

  /// A hostile tenant: a Job in its own namespace labelled as another namespace's hooked policy's backup run is not
  /// that policy's run (the runner would otherwise exec that policy's hook commands and record its Events); the
  /// policy's own Job, in the policy's namespace, is.
  @Test func aJobLabelledAsAnotherNamespacesPolicyIsNotItsRun() {
    func job(namespace: String?) -> JSONValue {
      var meta: [String: JSONValue] = [
        "name": "run-1",
        "labels": .object([
          ChildLabels.component: "backup", ChildLabels.policyNamespace: "shop", ChildLabels.policyName: "db",
        ]),
      ]
      if let namespace { meta["namespace"] = .string(namespace) }
      return ["metadata": .object(meta)]
    }
    let own = HookRunner.policyKey(ofJob: job(namespace: "shop"))
    #expect(own?.namespace == "shop" && own?.name == "db")
    #expect(HookRunner.policyKey(ofJob: job(namespace: "tenant")) == nil)
    #expect(HookRunner.policyKey(ofJob: job(namespace: nil)) == nil)
  }

  /// Two runs started in the same second (start times have whole seconds, and names are hashes): the newest is the
  /// one whose record the runner wrote last, whatever the names' order.
  @Test func ofTwoRunsStartedInOneSecondTheLastWrittenRecordIsTheNewest() {
    let start = Date(timeIntervalSince1970: 1_800_000_000)
    let record = #"{"job":"x","pre":"Done"}"#
    let earlier: [String: String] = [
      HookKeys.record: record, HookKeys.recordTime: HookLogic.formatRecordTime(start.addingTimeInterval(0.2)),
    ]
    let later: [String: String] = [
      HookKeys.record: record, HookKeys.recordTime: HookLogic.formatRecordTime(start.addingTimeInterval(0.7)),
      HookKeys.forbidden: "exec was refused",
    ]
    for (a, b) in [("run-aaa", "run-zzz"), ("run-zzz", "run-aaa")] {
      let r = HookLogic.lastHooks(
        runs: [(name: a, start: start, annotations: later), (name: b, start: start, annotations: earlier)],
        hooked: true, previous: nil)
      #expect(r.permitted?.1 == "HooksForbidden", "\(a) written last")
    }
  }
}
