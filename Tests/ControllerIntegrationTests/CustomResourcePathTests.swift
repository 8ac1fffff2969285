import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization
import Testing

@testable import Reconcilers

// The controller's custom-resource path on Kubernetes 1.20 and 1.36 (a matrix: CustomResourcePathSupport.swift says
// how the servers are chosen). Each test runs the controller's own code against BackupPolicy, RecoveryPlan and
// DRDrill objects: KubeClient built as the controller builds it, KubeRuntime's Watcher, Store, Controller and
// Finalizer, and the reconcilers' status writers with the field manager botrt-controller.
// Events are core/v1 objects, which the standalone 1.36 server does not serve: that check runs on 1.20 only, and
// on 1.36 asserts that events are indeed not served.

/// A timestamp with whole seconds, so that its round trip through RFC 3339 compares equal.
private let t0 = Date(timeIntervalSince1970: 1_780_000_000)

extension RecordingSource.Entry {
  var isFullList: Bool {
    if case .list(continued: false, _) = self { return true }
    return false
  }
  var isList: Bool {
    if case .list = self { return true }
    return false
  }
  var isWatch: Bool {
    if case .watch = self { return true }
    return false
  }
  /// The resourceVersion an object event or bookmark carried.
  var eventResourceVersion: String? {
    switch self {
    case .object(_, let rv), .bookmark(let rv): return rv
    default: return nil
    }
  }
}

/// The managedFields entries of `manager` in a raw object.
private func managedFields(_ object: JSONValue?, manager: String) -> [JSONValue] {
  (object?[path: "metadata", "managedFields"]?.arrayValue ?? []).filter { $0["manager"]?.stringValue == manager }
}

/// Runs `controller` while `body` runs, and stops it afterwards whatever happens.
private func whileRunning<O: KubeObject>(_ controller: Controller<O>, _ body: () async throws -> Void) async throws {
  let run = Task { await controller.run() }
  var failure: (any Error)?
  do {
    try await body()
  } catch {
    failure = error
  }
  await controller.requestStop()
  await run.value
  if let failure { throw failure }
}

/// The first watch opened after the first bookmark at or after a resourceVersion, read from a RecordingSource log.
private struct BookmarkResume {
  var watchResourceVersion: String?
  var bookmarks: Bool?
  var timeoutSeconds: Int?
  /// The last object event or bookmark before that watch.
  var lastEventWasBookmark: Bool
  var lastEventResourceVersion: String?
  /// The resourceVersions of every object event in the log.
  var objectResourceVersions: Set<String>

  init?(_ log: [RecordingSource<BackupPolicy>.Entry], after minimum: Int) {
    var bookmarkIndex: Int?
    for (i, e) in log.enumerated() {
      if case .bookmark(let rv) = e, (Int(rv) ?? 0) >= minimum {
        bookmarkIndex = i
        break
      }
    }
    guard let b = bookmarkIndex else { return nil }
    var watchIndex: Int?
    for i in b..<log.count {
      if case .watch(let rv, let bookmarks, let timeout) = log[i] {
        watchIndex = i
        watchResourceVersion = rv
        self.bookmarks = bookmarks
        timeoutSeconds = timeout
        break
      }
    }
    guard let w = watchIndex else { return nil }
    var last: RecordingSource<BackupPolicy>.Entry?
    for e in log[..<w] where e.eventResourceVersion != nil { last = e }
    if case .bookmark = last { lastEventWasBookmark = true } else { lastEventWasBookmark = false }
    lastEventResourceVersion = last?.eventResourceVersion
    var objects = Set<String>()
    for e in log {
      if case .object(_, let rv) = e { objects.insert(rv) }
    }
    objectResourceVersions = objects
  }
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct CustomResourcePathTests {
  // MARK: - List and watch

  /// A paged list, then a watch with bookmarks; a bookmark moves the point the next watch resumes from, without a
  /// relist.
  @Test(arguments: CRMatrix.servers) func listAndWatchWithBookmarks(server name: String) async throws {
    let s = try await CRServer.connect(name)
    try await s.withNamespace("cr-watch") { ns in
      let selected = ["botrt.io/cr-path": "watch"]
      for i in 0..<5 { try await s.create(BackupPolicy.resource, ns, crPolicyYAML("p\(i)", labels: selected)) }
      let source = RecordingSource(KubeWatchSource<BackupPolicy>(client: s.client, namespace: ns))
      let store = Store<BackupPolicy>()
      let metrics = MetricsRegistry()
      let watcher = Watcher(
        source: source,
        config: WatcherConfig(pageSize: 2, watchTimeoutSeconds: 5, labelSelector: "botrt.io/cr-path=watch"),
        backoff: { Backoff(initial: .milliseconds(200), max: .seconds(2)) }, logger: crLogger("watcher"),
        metrics: metrics)
      let task = Task { await watcher.run { store.apply($0) } }
      defer { task.cancel() }

      try await crEventually("the initial list of 5") { store.isReady && store.count == 5 }
      // 5 objects in pages of 2: one list and two continued pages.
      #expect(
        source.log.filter(\.isList) == [
          .list(continued: false, resourceVersion: nil), .list(continued: true, resourceVersion: nil),
          .list(continued: true, resourceVersion: nil),
        ])

      // Changes arrive through the watch.
      _ = try await s.client.patch(
        BackupPolicy.resource, namespace: ns, name: "p0", .merge(["spec": ["tier": "critical"]]), as: JSONValue.self)
      try await s.client.delete(BackupPolicy.resource, namespace: ns, name: "p1")
      try await s.create(BackupPolicy.resource, ns, crPolicyYAML("p5", labels: selected))
      try await crEventually("the watch's changes in the cache") {
        store.list().map(\.name) == ["p0", "p2", "p3", "p4", "p5"]
          && store.get(ObjectKey(namespace: ns, name: "p0"))?.spec.tier == .critical
      }

      // A write the selector leaves out moves the collection's resourceVersion; only a bookmark tells the watcher.
      let other = try await s.create(BackupPolicy.resource, ns, crPolicyYAML("unselected"))
      let otherRV = try #require(other[path: "metadata", "resourceVersion"]?.stringValue.flatMap { Int($0) })
      try await crEventually("a watch resumed after a bookmark at or after \(otherRV)", timeout: .seconds(60)) {
        BookmarkResume(source.log, after: otherRV) != nil
      }
      let log = source.log
      let resume = try #require(BookmarkResume(log, after: otherRV))
      // The watch resumes from the bookmark, a resourceVersion none of the watched objects carries.
      #expect(resume.lastEventWasBookmark, "the last event before the watch was not a bookmark: \(log)")
      #expect(resume.watchResourceVersion == resume.lastEventResourceVersion)
      #expect((Int(resume.watchResourceVersion ?? "") ?? 0) >= otherRV)
      #expect(!resume.objectResourceVersions.contains(resume.watchResourceVersion ?? ""))
      #expect(resume.bookmarks == true)
      #expect(resume.timeoutSeconds == 5)
      // No relist on the way: one full list, counted once by the watcher's metric.
      #expect(log.filter(\.isFullList).count == 1)
      #expect(metrics.value("botrt_watcher_lists_total", labels: [source.resourceName]) == 1)
      let fresh = try await s.client.listAll(
        BackupPolicy.self, namespace: ns, options: ListOptions(labelSelector: "botrt.io/cr-path=watch"))
      #expect(
        store.list().map { "\($0.name)@\($0.metadata.resourceVersion ?? "")" }
          == fresh.items.map { "\($0.name)@\($0.metadata.resourceVersion ?? "")" }.sorted())
    }
  }

  /// A watcher that lost its connection while the server compacted its history gets 410 Gone, relists, and its
  /// cache then holds exactly what the server has, including the changes the watch never delivered.
  @Test(arguments: CRMatrix.servers) func goneWatchRelists(server name: String) async throws {
    let s = try await CRServer.connect(name)
    try await s.withNamespace("cr-gone") { ns in
      for i in 0..<3 { try await s.create(BackupPolicy.resource, ns, crPolicyYAML("p\(i)")) }
      let source = RecordingSource(KubeWatchSource<BackupPolicy>(client: s.client, namespace: ns))
      let store = Store<BackupPolicy>()
      let metrics = MetricsRegistry()
      let watcher = Watcher(
        source: source, config: WatcherConfig(watchTimeoutSeconds: 5),
        backoff: { Backoff(initial: .milliseconds(200), max: .seconds(2)) }, logger: crLogger("watcher"),
        metrics: metrics)
      let task = Task { await watcher.run { store.apply($0) } }
      defer { task.cancel() }
      try await crEventually("the initial list") { store.isReady && store.count == 3 }
      try await crEventually("an open watch") { source.log.contains(where: \.isWatch) }

      source.disconnect()
      try await crEventually("the watcher to lose its watch", timeout: .seconds(30)) { source.parked }
      // Changes the watcher does not see.
      _ = try await s.client.patch(
        BackupPolicy.resource, namespace: ns, name: "p0", .merge(["spec": ["tier": "critical"]]), as: JSONValue.self)
      try await s.client.delete(BackupPolicy.resource, namespace: ns, name: "p1")
      try await s.create(BackupPolicy.resource, ns, crPolicyYAML("p3"))
      source.reconnectCompacted()

      try await crEventually("the relisted cache") {
        store.list().map(\.name) == ["p0", "p2", "p3"]
          && store.get(ObjectKey(namespace: ns, name: "p0"))?.spec.tier == .critical
      }
      let log = source.log
      let w = try #require(
        log.firstIndex(of: .watch(resourceVersion: "1", bookmarks: true, timeoutSeconds: 5)),
        "no watch from the compacted resourceVersion: \(log)")
      // The server answers 410 (both servers send it as an ERROR event of the open watch); then the watcher lists.
      let after = Array(log[(w + 1)...])
      let gone = after.firstIndex {
        switch $0 {
        case .errorEvent(let code, _): return code == 410
        case .watchFailed(let gone, _): return gone
        default: return false
        }
      }
      let relist = after.firstIndex(where: \.isFullList)
      #expect(gone != nil, "no 410 after the watch from resourceVersion 1: \(after)")
      #expect(relist != nil && gone != nil && relist! > gone!, "no list after the 410: \(after)")
      #expect(log.filter(\.isFullList).count == 2)
      #expect(metrics.value("botrt_watcher_lists_total", labels: [source.resourceName]) == 2)
      let fresh = try await s.client.listAll(BackupPolicy.self, namespace: ns)
      #expect(
        store.list().map { "\($0.name)@\($0.metadata.resourceVersion ?? "")" }
          == fresh.items.map { "\($0.name)@\($0.metadata.resourceVersion ?? "")" }.sorted())
    }
  }

  // MARK: - Status

  /// BackupPolicyReconciler.writeStatus: a merge patch of status through the subresource (ReconcileEntry, as every
  /// kind writes it), skipped when only the RPO age changed; the main resource ignores status; spec and generation
  /// stay.
  @Test(arguments: CRMatrix.servers) func backupPolicyStatusWrites(server name: String) async throws {
    let s = try await CRServer.connect(name)
    try await s.withNamespace("cr-bpstatus") { ns in
      try await s.create(BackupPolicy.resource, ns, crPolicyYAML("p"))
      let reconciler = BackupPolicyReconciler(
        client: s.client, settings: ControllerSettings(engineImage: "botrt-engine:test"), recorder: nil,
        metrics: nil, logger: crLogger("backuppolicy"))
      var status = BackupPolicyStatus()
      status.observedGeneration = 1
      status.conditions = [
        Condition(
          type: BackupPolicyCondition.ready, status: .true, reason: "Reconciled", message: "ok",
          lastTransitionTime: t0, observedGeneration: 1)
      ]
      status.effectiveSchedule = "0 */4 * * *"
      status.lastSnapshot = "0123abcd"
      status.lastSuccessfulBackup = t0
      status.rpoAgeSeconds = 60
      status.rpoTargetSeconds = 14_400
      let before = try await s.client.get(BackupPolicy.self, namespace: ns, name: "p")
      try await reconciler.writeStatus(before, status)

      let written = try await s.client.get(BackupPolicy.self, namespace: ns, name: "p")
      #expect(written.status == status)
      #expect(written.metadata.generation == 1)
      #expect(written.spec == before.spec)
      let raw = try await s.raw(BackupPolicy.resource, ns, "p")
      let entries = managedFields(raw, manager: BackupPolicyReconciler.fieldManager)
      #expect(entries.count == 1)
      #expect(entries.first?["operation"] == "Update")
      #expect(entries.first?[path: "fieldsV1", "f:status"] != nil)
      #expect(entries.first?[path: "fieldsV1", "f:spec"] == nil)
      if name == "1.20" {
        // managedFields[].subresource arrived in 1.22: 1.20 records a status apply without naming the subresource.
        #expect(entries.first?["subresource"] == nil)
      } else {
        #expect(entries.first?["subresource"] == "status")
      }

      // Only the RPO age differs: no write (the resourceVersion stays).
      var aged = status
      aged.rpoAgeSeconds = 120
      try await reconciler.writeStatus(written, aged)
      let unchanged = try await s.client.get(BackupPolicy.self, namespace: ns, name: "p")
      #expect(unchanged.metadata.resourceVersion == written.metadata.resourceVersion)
      #expect(unchanged.status?.rpoAgeSeconds == 60)

      // Anything else differs: written.
      var next = status
      next.lastSnapshot = "feedbeef"
      try await reconciler.writeStatus(unchanged, next)
      let rewritten = try await s.client.get(BackupPolicy.self, namespace: ns, name: "p")
      #expect(rewritten.status?.lastSnapshot == "feedbeef")
      #expect(rewritten.metadata.resourceVersion != written.metadata.resourceVersion)

      // A field the new status drops goes (the merge patch sets it to null).
      var failing = next
      failing.lastFailure = "backup-p-1: exit 12"
      try await reconciler.writeStatus(rewritten, failing)
      let withFailure = try await s.client.get(BackupPolicy.self, namespace: ns, name: "p")
      #expect(withFailure.status?.lastFailure == "backup-p-1: exit 12")
      try await reconciler.writeStatus(withFailure, next)
      let cleared = try await s.raw(BackupPolicy.resource, ns, "p")
      #expect(cleared?[path: "status", "lastFailure"] == nil, "\(cleared?["status"] ?? nil)")
      #expect(cleared?[path: "status", "lastSnapshot"] == "feedbeef")

      // The main resource ignores status.
      _ = try await s.client.patch(
        BackupPolicy.resource, namespace: ns, name: "p", .merge(["status": ["lastSnapshot": "ffffffff"]]),
        as: JSONValue.self)
      let ignored = try await s.client.get(BackupPolicy.self, namespace: ns, name: "p")
      #expect(ignored.status?.lastSnapshot == "feedbeef")
      #expect(ignored.metadata.generation == 1)
    }
  }

  /// RecoveryPlanReconciler.writeStatus and DrillReconciler.writeStatus: a merge patch of the status subresource
  /// with the field manager, which also removes the fields the new status no longer has.
  @Test(arguments: CRMatrix.servers) func planAndDrillStatusWrites(server name: String) async throws {
    let s = try await CRServer.connect(name)
    try await s.withNamespace("cr-status") { ns in
      let settings = ControllerSettings(engineImage: "botrt-engine:test")
      try await s.create(
        RecoveryPlan.resource, ns,
        """
        apiVersion: dr.botrt.io/v1alpha1
        kind: RecoveryPlan
        metadata: {name: plan}
        spec:
          tier: critical
          procedures:
          - name: p
            steps:
            - {name: s, action: job, job: {image: busybox, command: ["true"]}}
        """)
      let plans = RecoveryPlanReconciler(client: s.client, settings: settings, recorder: nil, logger: crLogger("plan"))
      var running = RecoveryPlanStatus()
      running.observedGeneration = 1
      running.phase = .running
      running.startTime = t0
      running.message = "running step s"
      running.rtoTargetSeconds = 900
      try await plans.entry.writeStatus(try await s.client.get(RecoveryPlan.self, namespace: ns, name: "plan"), running)
      let plan1 = try await s.client.get(RecoveryPlan.self, namespace: ns, name: "plan")
      #expect(plan1.status == running)
      var done = running
      done.phase = .succeeded
      done.message = nil
      done.completionTime = t0.addingTimeInterval(60)
      try await plans.entry.writeStatus(plan1, done)
      let plan2 = try await s.client.get(RecoveryPlan.self, namespace: ns, name: "plan")
      #expect(plan2.status == done)
      #expect(try await s.raw(RecoveryPlan.resource, ns, "plan")?[path: "status", "message"] == nil)
      #expect(plan2.metadata.generation == 1)

      try await s.create(
        DRDrill.resource, ns,
        """
        apiVersion: dr.botrt.io/v1alpha1
        kind: DRDrill
        metadata: {name: drill}
        spec: {schedule: weekly, target: {backupPolicyRef: {name: p}}}
        """)
      let drills = DrillReconciler(
        client: s.client, settings: settings, recorder: nil, metrics: nil, logger: crLogger("drill"))
      var inRun = DRDrillStatus()
      inRun.observedGeneration = 1
      inRun.phase = .running
      inRun.currentRun = DrillCurrentRun(startTime: t0, scratchNamespace: "drill-scratch-1", step: "restore")
      try await drills.entry.writeStatus(try await s.client.get(DRDrill.self, namespace: ns, name: "drill"), inRun)
      let drill1 = try await s.client.get(DRDrill.self, namespace: ns, name: "drill")
      #expect(drill1.status == inRun)
      var idle = inRun
      idle.phase = .idle
      idle.currentRun = nil
      idle.lastRunTime = t0
      try await drills.entry.writeStatus(drill1, idle)
      let drill2 = try await s.client.get(DRDrill.self, namespace: ns, name: "drill")
      #expect(drill2.status == idle)
      #expect(try await s.raw(DRDrill.resource, ns, "drill")?[path: "status", "currentRun"] == nil)

      for (resource, object) in [(RecoveryPlan.resource, "plan"), (DRDrill.resource, "drill")] {
        let entries = managedFields(try await s.raw(resource, ns, object), manager: ChildLabels.controllerName)
        #expect(entries.count == 1, "\(object): \(entries)")
        #expect(entries.first?["operation"] == "Update")
        #expect(entries.first?[path: "fieldsV1", "f:status"] != nil)
        #expect(entries.first?["subresource"] == (name == "1.20" ? nil : "status"))
      }
    }
  }

  /// The real RecoveryPlanReconciler in a Controller (without the Job and Pod watches, which need core kinds): a plan
  /// whose verify step names a missing BackupPolicy is reported Ready=False InvalidSpec through the status
  /// subresource, and a spec change (a new generation) is reconciled again through the watch.
  @Test(arguments: CRMatrix.servers) func recoveryPlanReconcilerReportsInvalidSpec(server name: String) async throws {
    let s = try await CRServer.connect(name)
    try await s.withNamespace("cr-plan") { ns in
      let reconciler = RecoveryPlanReconciler(
        client: s.client, settings: ControllerSettings(engineImage: "botrt-engine:test"), recorder: nil,
        logger: crLogger("plan"))
      let controller = Controller<RecoveryPlan>(
        name: "recoveryplan", source: KubeWatchSource<RecoveryPlan>(client: s.client, namespace: ns),
        options: ControllerOptions(workers: 1), logger: crLogger("controller"),
        reconcile: { key, store in try await reconciler.reconcile(key, store) })
      try await whileRunning(controller) {
        try await s.create(
          RecoveryPlan.resource, ns,
          """
          apiVersion: dr.botrt.io/v1alpha1
          kind: RecoveryPlan
          metadata: {name: plan}
          spec:
            tier: critical
            procedures:
            - name: p
              steps:
              - {name: v, action: verify, verify: {policyRef: {name: missing-policy}}}
          """)
        func ready(_ generation: Int64, naming policy: String) async throws -> Bool {
          let plan = try await s.client.get(RecoveryPlan.self, namespace: ns, name: "plan")
          let c = plan.status?.conditions?.first { $0.type == RecoveryPlanCondition.ready }
          return plan.status?.observedGeneration == generation && c?.status == .false && c?.reason == "InvalidSpec"
            && c?.message.contains(policy) == true && plan.status?.phase == .idle
        }
        try await crEventually("Ready=False InvalidSpec naming missing-policy") {
          try await ready(1, naming: "missing-policy")
        }
        _ = try await s.client.patch(
          RecoveryPlan.resource, namespace: ns, name: "plan",
          .json([.replace(path: "/spec/procedures/0/steps/0/verify/policyRef/name", value: "another-policy")]),
          as: JSONValue.self)
        try await crEventually("generation 2 reconciled, naming another-policy") {
          try await ready(2, naming: "another-policy")
        }
      }
    }
  }

  // MARK: - Finalizers

  /// KubeRuntime's Finalizer with KubeJSONPatcher, as the BackupPolicy and DRDrill reconcilers use it, in a
  /// Controller: the finalizer is added beside another party's, cleanup runs on delete and removes only ours, and the
  /// deletion completes once the other party lets go; an object with only our finalizer goes at once.
  @Test(arguments: CRMatrix.servers) func finalizerAddCleanupAndDeletion(server name: String) async throws {
    let s = try await CRServer.connect(name)
    try await s.withNamespace("cr-fin") { ns in
      let finalizer = BackupPolicyReconciler.finalizer
      let applied = Mutex<[String]>([])
      let cleaned = Mutex<[String]>([])
      let client = s.client
      let controller = Controller<BackupPolicy>(
        name: "finalizer-test", source: KubeWatchSource<BackupPolicy>(client: client, namespace: ns),
        options: ControllerOptions(workers: 2), logger: crLogger("controller"),
        reconcile: { key, store in
          guard store.get(key) != nil else { return .awaitChange }
          // As the reconcilers do: decide on the live object.
          let live: BackupPolicy
          do {
            live = try await client.get(BackupPolicy.self, namespace: key.namespace, name: key.name)
          } catch let e as KubeError where e.isNotFound {
            return .awaitChange
          }
          let patcher = KubeJSONPatcher(client: client, resource: BackupPolicy.resource)
          return try await Finalizer.reconcile(live, finalizer: finalizer, patcher: patcher) { event in
            switch event {
            case .apply(let p): applied.withLock { $0.append(p.name) }
            case .cleanup(let p): cleaned.withLock { $0.append(p.name) }
            }
            return .awaitChange
          }
        })
      try await whileRunning(controller) {
        var held = try YAML.parse(crPolicyYAML("held"), file: "held.yaml")
        held["metadata"]?["finalizers"] = ["other.botrt.io/keep"]
        held["metadata"]?["namespace"] = .string(ns)
        _ = try await client.create(BackupPolicy.resource, namespace: ns, held)
        try await s.create(BackupPolicy.resource, ns, crPolicyYAML("plain"))

        try await crEventually("finalizers added and apply reconciled") {
          let h = try await client.get(BackupPolicy.self, namespace: ns, name: "held")
          let p = try await client.get(BackupPolicy.self, namespace: ns, name: "plain")
          let a = applied.withLock { $0 }
          return h.metadata.finalizers == ["other.botrt.io/keep", finalizer] && p.metadata.finalizers == [finalizer]
            && a.contains("held") && a.contains("plain")
        }
        #expect(cleaned.withLock { $0 }.isEmpty)

        // Only our finalizer: the deletion completes after cleanup.
        try await client.delete(BackupPolicy.resource, namespace: ns, name: "plain")
        try await crEventually("plain deleted") { try await s.raw(BackupPolicy.resource, ns, "plain") == nil }
        #expect(cleaned.withLock { $0 } == ["plain"])

        // Another party's finalizer stays; ours goes after cleanup.
        try await client.delete(BackupPolicy.resource, namespace: ns, name: "held")
        try await crEventually("cleanup of held, our finalizer removed") {
          let h = try await client.get(BackupPolicy.self, namespace: ns, name: "held")
          return h.metadata.isDeleting && h.metadata.finalizers == ["other.botrt.io/keep"]
            && cleaned.withLock { $0 }.contains("held")
        }
        _ = try await client.patch(
          BackupPolicy.resource, namespace: ns, name: "held",
          .json([
            .test(path: "/metadata/finalizers/0", value: "other.botrt.io/keep"),
            .remove(path: "/metadata/finalizers/0"),
          ]), as: JSONValue.self)
        try await crEventually("held deleted and gone from the cache") {
          try await s.raw(BackupPolicy.resource, ns, "held") == nil
            && controller.store.get(ObjectKey(namespace: ns, name: "held")) == nil
        }
        #expect(cleaned.withLock { $0 }.sorted() == ["held", "plain"])
      }
    }
  }

  // MARK: - Server-side apply

  /// SSA with the controller's field manager: another manager changing a field botrt-controller owns conflicts (the
  /// error names the manager and the field), the same value is shared; on status, the controller's forced apply
  /// takes a field back from another manager.
  @Test(arguments: CRMatrix.servers) func serverSideApplyConflicts(server name: String) async throws {
    let s = try await CRServer.connect(name)
    try await s.withNamespace("cr-ssa") { ns in
      let manager = ChildLabels.controllerName
      var intent = try YAML.parse(crPolicyYAML("p"), file: "p.yaml")
      intent["metadata"]?["namespace"] = .string(ns)
      _ = try await s.client.apply(
        BackupPolicy.resource, namespace: ns, name: "p", intent, fieldManager: manager)
      var theirs = intent
      theirs["spec"]?["tier"] = "archive"
      do {
        _ = try await s.client.apply(
          BackupPolicy.resource, namespace: ns, name: "p", theirs, fieldManager: "someone-else")
        Issue.record("another manager changed .spec.tier owned by \(manager) without a conflict")
      } catch let e as KubeError {
        #expect(e.isConflict, "\(e)")
        #expect("\(e)".contains(manager) && "\(e)".contains(".spec.tier"), "\(e)")
      }
      #expect(try await s.client.get(BackupPolicy.self, namespace: ns, name: "p").spec.tier == .standard)
      // The same value: no conflict, both managers own the field.
      _ = try await s.client.apply(
        BackupPolicy.resource, namespace: ns, name: "p", intent, fieldManager: "someone-else")
      let raw = try await s.raw(BackupPolicy.resource, ns, "p")
      for m in [manager, "someone-else"] {
        #expect(managedFields(raw, manager: m).first?[path: "fieldsV1", "f:spec", "f:tier"] != nil, "\(m)")
      }

      // Status: the controller's write (a merge patch: its manager owns the fields it set) and another manager's
      // apply, which conflicts with those fields unless forced.
      let reconciler = BackupPolicyReconciler(
        client: s.client, settings: ControllerSettings(engineImage: "botrt-engine:test"), recorder: nil,
        metrics: nil, logger: crLogger("backuppolicy"))
      var status = BackupPolicyStatus()
      status.observedGeneration = 1
      status.lastSnapshot = "aaaaaaaa"
      try await reconciler.writeStatus(try await s.client.get(BackupPolicy.self, namespace: ns, name: "p"), status)
      let statusIntent: JSONValue = [
        "apiVersion": "dr.botrt.io/v1alpha1", "kind": "BackupPolicy",
        "metadata": ["name": "p", "namespace": .string(ns)], "status": ["lastSnapshot": "bbbbbbbb"],
      ]
      do {
        _ = try await s.client.apply(
          BackupPolicy.resource, namespace: ns, name: "p", subresource: "status", statusIntent,
          fieldManager: "someone-else")
        Issue.record("another manager changed .status.lastSnapshot owned by \(manager) without a conflict")
      } catch let e as KubeError {
        #expect(e.isConflict, "\(e)")
        #expect("\(e)".contains(manager) && "\(e)".contains(".status.lastSnapshot"), "\(e)")
      }
      _ = try await s.client.apply(
        BackupPolicy.resource, namespace: ns, name: "p", subresource: "status", statusIntent,
        fieldManager: "someone-else", force: true)
      let taken = try await s.client.get(BackupPolicy.self, namespace: ns, name: "p")
      #expect(taken.status?.lastSnapshot == "bbbbbbbb")
      status.lastSnapshot = "cccccccc"
      try await reconciler.writeStatus(taken, status)
      let back = try await s.raw(BackupPolicy.resource, ns, "p")
      #expect(back?[path: "status", "lastSnapshot"] == "cccccccc")
      #expect(
        managedFields(back, manager: manager).contains { $0[path: "fieldsV1", "f:status", "f:lastSnapshot"] != nil })
      #expect(
        !managedFields(back, manager: "someone-else").contains {
          $0[path: "fieldsV1", "f:status", "f:lastSnapshot"] != nil
        })
    }
  }

  // MARK: - Defaults and pruning

  /// What the controller reads back (a typed get, and its watch cache) carries the CRD's defaults; unknown fields
  /// and status sent on create are dropped; the spec passes the controller's own validation.
  @Test(arguments: CRMatrix.servers) func defaultsAndPruningAsTheControllerReads(server name: String) async throws {
    let s = try await CRServer.connect(name)
    try await s.withNamespace("cr-defaults") { ns in
      try await s.create(
        BackupPolicy.resource, ns,
        """
        apiVersion: dr.botrt.io/v1alpha1
        kind: BackupPolicy
        metadata: {name: p}
        spec:
          tier: standard
          notAField: dropped
          source: {pvc: {claimName: data, alsoNotAField: 1}}
          repository: {s3: {bucket: botrt-bucket, credentialsSecretRef: {name: s3}}}
          encryption: {kms: {localKeySecretRef: {name: key}}}
        status: {lastSnapshot: not-on-create}
        """)
      let store = Store<BackupPolicy>()
      let watcher = Watcher(
        source: KubeWatchSource<BackupPolicy>(client: s.client, namespace: ns), logger: crLogger("watcher"))
      let task = Task { await watcher.run { store.apply($0) } }
      defer { task.cancel() }
      try await crEventually("the cache") { store.get(ObjectKey(namespace: ns, name: "p")) != nil }
      let cached = try #require(store.get(ObjectKey(namespace: ns, name: "p")))
      let got = try await s.client.get(BackupPolicy.self, namespace: ns, name: "p")
      for p in [got, cached] {
        #expect(p.spec.source.pvc?.readOnly == true)
        #expect(p.spec.repository.s3?.region == "us-east-1")
        #expect(p.spec.repository.s3?.forcePathStyle == false)
        #expect(p.spec.encryption.kms.localKeySecretRef?.key == "key")
        #expect(p.spec.encryption.keyRotationDays == 90)
        #expect(p.spec.dataType == .files)
        #expect(p.spec.suspend == false)
        #expect(p.spec.deleteBackupsOnDelete == false)
        #expect(p.spec.successfulJobsHistoryLimit == 3)
        #expect(p.spec.failedJobsHistoryLimit == 3)
        #expect(p.status == nil)
        #expect(SpecValidation.validate(p.spec).isEmpty, "\(SpecValidation.validate(p.spec))")
      }
      let raw = try await s.raw(BackupPolicy.resource, ns, "p")
      #expect(raw?[path: "spec", "notAField"] == nil)
      #expect(raw?[path: "spec", "source", "pvc", "alsoNotAField"] == nil)
      #expect(raw?[path: "spec", "source", "pvc", "claimName"] == "data")
      #expect(raw?["status"] == nil)
    }
  }

  // MARK: - Events

  /// The controller's EventRecorder about a custom resource (core/v1 Events, aggregated by count) where Events are
  /// served: on 1.20. The standalone 1.36 server serves no Events, which this checks instead.
  @Test(arguments: CRMatrix.servers) func eventsWhereServed(server name: String) async throws {
    let s = try await CRServer.connect(name)
    s.client.invalidateDiscovery()
    let served = try await s.client.isServed(group: "", version: "v1", resource: "events")
    guard s.servesCoreKinds else {
      #expect(!served, "the \(name) server serves core/v1 events now: run the Events check on it")
      #expect(try await !s.client.isServed(group: "events.k8s.io", version: "v1", resource: "events"))
      return
    }
    #expect(served)
    try await s.withNamespace("cr-events") { ns in
      let created = try await s.create(BackupPolicy.resource, ns, crPolicyYAML("p"))
      let policy = try await s.client.get(BackupPolicy.self, namespace: ns, name: "p")
      let recorder = EventRecorder(
        config: EventRecorderConfig(component: ChildLabels.controllerName, instance: "cr-path-test"),
        sink: KubeEventSink(client: s.client), logger: crLogger("events"))
      let run = Task { await recorder.run() }
      recorder.record(policy, type: .warning, reason: "CRPathTest", message: "about a custom resource")
      recorder.record(policy, type: .warning, reason: "CRPathTest", message: "about a custom resource")
      recorder.finish()
      await run.value
      #expect(recorder.writtenCount == 2)
      let events = try await s.client.list(
        Event.self, namespace: ns, options: ListOptions(fieldSelector: "involvedObject.name=p"))
      #expect(events.items.count == 1)
      let e = try #require(events.items.first)
      #expect(e.involvedObject.kind == "BackupPolicy")
      #expect(e.involvedObject.apiVersion == "dr.botrt.io/v1alpha1")
      #expect(e.involvedObject.uid == created[path: "metadata", "uid"]?.stringValue)
      #expect(e.reason == "CRPathTest")
      #expect(e.type == "Warning")
      #expect(e.count == 2)
      #expect(e.source?.component == ChildLabels.controllerName)
    }
  }
}
