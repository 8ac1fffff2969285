import Foundation
import KubeCore
import KubeRuntime
import Testing

@testable import Reconcilers

/// The caches a reconcile reads instead of listing live, and the record of what is applied (issue 18).
struct ManagedCachesTests {
  static func object(
    _ kind: String, _ ns: String?, _ name: String, labels: [String: String] = [:], annotations: [String: String] = [:],
    generation: Int? = nil, resourceVersion: String = "1", extra: [String: JSONValue] = [:]
  ) -> Unstructured {
    var meta: [String: JSONValue] = [
      "name": .string(name), "labels": .object(labels.mapValues { .string($0) }),
      "annotations": .object(annotations.mapValues { .string($0) }), "resourceVersion": .string(resourceVersion),
    ]
    if let ns { meta["namespace"] = .string(ns) }
    if let generation { meta["generation"] = .int(Int64(generation)) }
    var body = extra
    body["kind"] = .string(kind)
    body["metadata"] = .object(meta)
    return Unstructured(.object(body))
  }

  static let owner = ChildLabels.owner("shop", "db")

  @Test func objectsAreSelectedByNamespaceLabelsAndComponent() {
    let store = Store<Unstructured>()
    let caches = ManagedCaches([ChildResources.jobs: store])
    // Not listed yet: the reconcile reads live.
    #expect(caches.objects(ChildResources.jobs, namespace: "b", labels: Self.owner) == nil)
    let mine = Self.owner.merging([ChildLabels.component: "backup"]) { a, _ in a }
    store.apply(
      .restarted([
        Self.object("Job", "b", "j1", labels: mine),
        Self.object("Job", "b", "j2", labels: Self.owner.merging([ChildLabels.component: "prune"]) { a, _ in a }),
        Self.object("Job", "other", "j3", labels: mine),
        Self.object("Job", "b", "j4", labels: ChildLabels.owner("shop", "db2")),
      ]))
    let all = caches.objects(ChildResources.jobs, namespace: "b", labels: Self.owner)?.map { $0.metadata.name }
    #expect(all == ["j1", "j2"])
    let backups = caches.objects(ChildResources.jobs, namespace: "b", labels: Self.owner, components: ["backup"])
    #expect(backups?.map { $0.metadata.name } == ["j1"])
    #expect(caches.objects(ChildResources.pods, namespace: "b", labels: Self.owner) == nil)
    #expect(caches.contains(ChildResources.jobs, namespace: "b", name: "j1") == true)
    #expect(caches.contains(ChildResources.jobs, namespace: "b", name: "nope") == false)
    #expect(caches.contains(ChildResources.pods, namespace: "b", name: "j1") == nil)
  }

  @Test func aFinishedJobWaitsForItsPodInTheCache() {
    let done: JSONValue = [
      "metadata": ["name": "j1"], "status": ["conditions": [["type": "Complete", "status": "True"]]],
    ]
    let running: JSONValue = ["metadata": ["name": "j2"], "status": ["active": 1]]
    let podRunning: JSONValue = ["metadata": ["labels": ["job-name": "j1"]], "status": ["phase": "Running"]]
    let podDone: JSONValue = ["metadata": ["labels": ["job-name": "j1"]], "status": ["phase": "Succeeded"]]
    #expect(ManagedCaches.podsCaughtUp(jobs: [running], pods: []))
    #expect(!ManagedCaches.podsCaughtUp(jobs: [done, running], pods: [podRunning]))
    #expect(ManagedCaches.podsCaughtUp(jobs: [done, running], pods: [podDone]))
  }

  @Test func aChildIsAppliedAgainOnlyWhenItsBodyOrSomeoneElseChangedIt() {
    let body: JSONValue = ["kind": "CronJob", "metadata": ["name": "cj"], "spec": ["schedule": "1 2 * * *"]]
    let child = DesiredChild(resource: ChildResources.roles, namespace: "b", name: "cj", body: body)
    let hash = AppliedChildren.hash(body)
    // Key order does not change the hash.
    let reordered: JSONValue = ["spec": ["schedule": "1 2 * * *"], "metadata": ["name": "cj"], "kind": "CronJob"]
    #expect(AppliedChildren.hash(reordered) == hash)
    #expect(
      AppliedChildren.annotated(body, hash: hash)[path: "metadata", "annotations", AppliedChildren.annotation]
        == .string(hash))
    let applied = AppliedChildren()
    // Not cached (new, deleted, or the cache not filled): applied.
    #expect(!applied.isCurrent(child, hash: hash, cached: nil))
    // Cached with another hash (the desired body changed, or an older controller applied it): applied.
    let stale = Self.object("CronJob", "b", "cj", annotations: [AppliedChildren.annotation: "00"], generation: 1)
    #expect(!applied.isCurrent(child, hash: hash, cached: stale))
    // A restarted controller trusts the annotation once, and remembers the generation it saw.
    let current = Self.object("CronJob", "b", "cj", annotations: [AppliedChildren.annotation: hash], generation: 3)
    #expect(applied.isCurrent(child, hash: hash, cached: current))
    #expect(applied.isCurrent(child, hash: hash, cached: current))
    // Someone else changed the spec (the generation moved, the annotation kept): applied again.
    let edited = Self.object("CronJob", "b", "cj", annotations: [AppliedChildren.annotation: hash], generation: 4)
    #expect(!applied.isCurrent(child, hash: hash, cached: edited))
    applied.record(child, hash: hash, applied: edited)
    #expect(applied.isCurrent(child, hash: hash, cached: edited))
    // A status write (resourceVersion moves, generation stays) is not a change.
    let statusWritten = Self.object(
      "CronJob", "b", "cj", annotations: [AppliedChildren.annotation: hash], generation: 4, resourceVersion: "99")
    #expect(applied.isCurrent(child, hash: hash, cached: statusWritten))
    // Kinds without a generation: the resourceVersion.
    let role = Self.object("Role", "b", "cj", annotations: [AppliedChildren.annotation: hash], resourceVersion: "5")
    let fresh = AppliedChildren()
    #expect(fresh.isCurrent(child, hash: hash, cached: role))
    let roleEdited = Self.object(
      "Role", "b", "cj", annotations: [AppliedChildren.annotation: hash], resourceVersion: "6")
    #expect(!fresh.isCurrent(child, hash: hash, cached: roleEdited))
    // A deleted child is forgotten.
    fresh.forget(ChildResources.roles, namespace: "b", name: "cj")
    #expect(fresh.isCurrent(child, hash: hash, cached: roleEdited))
  }

  /// A ServiceAccount is not applied again when the token controller adds its token Secret (the resourceVersion
  /// moves, labels and annotations stay), but is when someone changes its labels or annotations.
  @Test func aServiceAccountIsNotAppliedAgainForItsTokenSecret() {
    let body: JSONValue = [
      "kind": "ServiceAccount", "metadata": ["name": "sa", "labels": ["a": "1"]], "automountServiceAccountToken": false,
    ]
    let child = DesiredChild(resource: ChildResources.serviceAccounts, namespace: "b", name: "sa", body: body)
    let hash = AppliedChildren.hash(body)
    let applied = AppliedChildren()
    let created = Self.object(
      "ServiceAccount", "b", "sa", labels: ["a": "1"], annotations: [AppliedChildren.annotation: hash],
      resourceVersion: "10")
    applied.record(child, hash: hash, applied: created)
    // The token controller's write: the resourceVersion moves.
    let withToken = Self.object(
      "ServiceAccount", "b", "sa", labels: ["a": "1"], annotations: [AppliedChildren.annotation: hash],
      resourceVersion: "11")
    #expect(applied.isCurrent(child, hash: hash, cached: withToken))
    // Someone else's label: applied again.
    let relabelled = Self.object(
      "ServiceAccount", "b", "sa", labels: ["a": "2"], annotations: [AppliedChildren.annotation: hash],
      resourceVersion: "12")
    #expect(!applied.isCurrent(child, hash: hash, cached: relabelled))
    // Another kind without a generation still goes by its resourceVersion.
    let roleChild = DesiredChild(resource: ChildResources.roles, namespace: "b", name: "sa", body: body)
    applied.record(roleChild, hash: hash, applied: created)
    #expect(!applied.isCurrent(roleChild, hash: hash, cached: withToken))
  }
}

extension ManagedCachesTests {
  /// A cache that never fills (its watch refused) costs one wait, not one per reconcile.
  @Test func aCacheThatNeverFillsIsWaitedForOnce() async {
    let filled = Store<Unstructured>()
    filled.apply(.restarted([]))
    let caches = ManagedCaches([ChildResources.jobs: filled, ChildResources.pods: Store<Unstructured>()])
    let clock = ContinuousClock()
    let first = await clock.measure { await caches.waitUntilReady(timeout: .milliseconds(300)) }
    #expect(first >= .milliseconds(300))
    let second = await clock.measure { await caches.waitUntilReady(timeout: .seconds(30)) }
    #expect(second < .seconds(5))
    // Reads of the unfilled kind stay live; the filled one is read from its cache.
    #expect(caches.objects(ChildResources.pods, namespace: "b", labels: [:]) == nil)
    #expect(caches.objects(ChildResources.jobs, namespace: "b", labels: [:]) == [])
  }
}

extension ManagedCachesTests {
  /// A drill's stale scratch namespaces come from the cluster-scoped metadata cache of the controller's Namespaces: an
  /// idle reconcile lists nothing live.
  @Test func aDrillsScratchNamespacesAreFoundInTheNamespacesCache() throws {
    let drill = try drillTestDrill()
    let store = Store<Unstructured>()
    let caches = ManagedCaches([ChildResources.namespaces: store])
    let selection = DrillLogic.scratchSelection(drill)
    // Not listed yet: read live.
    #expect(caches.objects(ChildResources.namespaces, namespace: nil, labels: selection) == nil)
    var mine = DrillLogic.labels(drill)
    mine[DrillLogic.scratchLabel] = "true"
    var other = mine
    other[DrillLogic.drillNamespaceLabel] = "elsewhere"
    let ending = Unstructured(
      [
        "kind": "Namespace",
        "metadata": [
          "name": "drill-b", "labels": .object(mine.mapValues { .string($0) }),
          "deletionTimestamp": "2026-09-21T10:00:00Z",
        ],
      ])
    store.apply(
      .restarted([
        Self.object("Namespace", nil, "drill-a", labels: mine), ending,
        // The drill of the same name in another namespace keeps its own.
        Self.object("Namespace", nil, "drill-c", labels: other),
        Self.object("Namespace", nil, "botrt-backup", labels: [ChildLabels.managedBy: ChildLabels.controllerName]),
      ]))
    let found = try #require(caches.objects(ChildResources.namespaces, namespace: nil, labels: selection))
    #expect(found.map { $0.metadata.name } == ["drill-a", "drill-b"])
    // Those already being deleted are not deleted again, nor the one to keep.
    #expect(DrillLogic.staleScratchNamespaces(found.map(\.body), keep: nil) == ["drill-a"])
    #expect(DrillLogic.staleScratchNamespaces(found.map(\.body), keep: "drill-a") == [])
  }
}
