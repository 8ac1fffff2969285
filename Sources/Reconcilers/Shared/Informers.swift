import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Synchronization

extension InformerRegistry {
  /// The label selector of everything the controller creates.
  public static let managedSelector = "\(ChildLabels.managedBy)=\(ChildLabels.controllerName)"

  /// The controller's own objects of `resource` (labelled managed-by=botrt-controller) in all namespaces: the
  /// policies', plans' and drills' Jobs and Pods, shared by every controller that follows them. Jobs and Pods are a
  /// view of the kind's one watch (`all(_:)`), and keep their managedFields: the run auditor reads from them who
  /// wrote a run's content. Other kinds are a label-selected watch.
  public func managed(_ resource: ResourceDescriptor) -> SharedInformer<Unstructured> {
    if resource == .jobs || resource == .pods || resource == .secrets || resource == .namespaces {
      return shared("\(resource.plural): managed") {
        all(resource).view(name: "\(resource.plural) labelled \(Self.managedSelector)") {
          Self.isManaged($0) ? $0 : nil
        }
      }
    }
    return informer(resource, namespace: nil, labelSelector: Self.managedSelector)
  }

  /// Whether `object` is labelled managed-by=botrt-controller (read from the body: decoding the whole ObjectMeta of
  /// every event costs more).
  static func isManaged(_ object: Unstructured) -> Bool {
    object.body[path: "metadata", "labels", ChildLabels.managedBy]?.stringValue == ChildLabels.controllerName
  }

  /// The controller's one watch of `resource` (Jobs, Pods, Secrets or Namespaces) in all namespaces, of which every
  /// reader of that kind gets a view: one watch per kind, as controller-runtime's manager holds. Its cache keeps
  /// what some view reads (`KeepRule`): the controller's own objects, whole; every object of a namespace kept
  /// whole (the backup namespaces, whose unlabelled Jobs and every Pod the run auditor reads); the part of the
  /// others a view asked for (a Pod's `ClaimUserPod` fields, a Secret's metadata); nothing else. Secrets and
  /// Namespaces are watched as metadata only, never their data; Namespaces are all kept (there are few).
  public func all(_ resource: ResourceDescriptor) -> SharedInformer<Unstructured> {
    if resource == .namespaces {
      return informer(resource, namespace: nil, metadataOnly: true, as: Unstructured.self)
    }
    let rule = keepRule(resource)
    return informer(
      resource, namespace: nil, metadataOnly: resource == .secrets, keepManagedFields: resource != .secrets,
      as: Unstructured.self, keepRule: "\(resource.plural) the controller reads", keep: rule.keep)
  }

  /// The rule of what `all(resource)` keeps.
  func keepRule(_ resource: ResourceDescriptor) -> KeepRule {
    var part: @Sendable (Unstructured) -> Unstructured? = { $0 }
    if resource == .pods { part = { ClaimUserPod.part(of: $0) } }
    return shared("\(resource.plural): keep rule") { KeepRule(part: part) }
  }

  /// Every object of `resource` (Jobs or Pods) in `namespace`, whole, that `isIncluded` accepts: a view of the
  /// kind's one watch, which keeps that namespace whole from now on (listing the kind again if it did not).
  public func whole(
    _ resource: ResourceDescriptor, namespace: String, named name: String,
    where isIncluded: @escaping @Sendable (Unstructured) -> Bool = { _ in true }
  ) -> SharedInformer<Unstructured> {
    let parent = all(resource)
    if keepRule(resource).keepWhole(namespace) { parent.relist() }
    return shared("\(resource.plural): \(name) in \(namespace)") {
      parent.view(name: "\(resource.plural) in namespace \(namespace), \(name)") { o in
        o.body[path: "metadata", "namespace"]?.stringValue == namespace && isIncluded(o) ? o : nil
      }
    }
  }

  /// The metadata of every Secret in `namespace` (nil: all namespaces): a view of the one Secret watch.
  public func secretMetadata(namespace: String?) -> SharedInformer<Unstructured> {
    let parent = all(.secrets)
    if keepRule(.secrets).keepParts(namespace: namespace) { parent.relist() }
    return shared("secrets: metadata in \(namespace ?? "all namespaces")") {
      parent.view(name: "secrets metadata in \(namespace ?? "all namespaces")") { o in
        namespace == nil || o.body[path: "metadata", "namespace"]?.stringValue == namespace ? o : nil
      }
    }
  }

  /// The controller of `reconciler`'s kind in `namespace` (nil: all namespaces), which also reconciles an object when
  /// one of the Jobs or Pods it runs changes: the controller's own, shared with the other controllers, mapped back by
  /// `R.owner`; then whatever else the reconciler watches (`RunsReconciler.watches`). The one factory of the
  /// RecoveryPlan and DRDrill controllers.
  public func runsController<R: RunsReconciler>(
    _ reconciler: R, namespace: String?, workers: Int, logger: Logger, metrics: MetricsRegistry?
  ) -> Controller<R.Object> {
    let controller = Controller<R.Object>(
      name: R.controllerName, informer: informer(R.Object.self, namespace: namespace),
      options: ControllerOptions(workers: workers), logger: logger, metrics: metrics, reconcile: reconciler.reconcile)
    let owner = R.owner(watchNamespace: namespace)
    for resource in [ResourceDescriptor.jobs, .pods] { controller.watches(managed(resource), mapper: owner) }
    reconciler.watches(controller, informers: self)
    return controller
  }
}

/// A reconciler of a kind whose runs are the controller's Jobs (RecoveryPlan, DRDrill): what
/// `InformerRegistry.runsController` builds its controller from.
public protocol RunsReconciler: Sendable {
  associatedtype Object: KubeResource
  /// The controller's name (logs, metrics).
  static var controllerName: String { get }
  /// The object a Job or Pod of the controller belongs to, named by its labels; none for one outside
  /// `watchNamespace` (nil: all namespaces), which another controller follows.
  static func owner(watchNamespace: String?) -> KeyMapper<Unstructured>
  /// The Controller's reconcile function.
  func reconcile(_ key: ObjectKey, _ store: Store<Object>) async throws -> ReconcileResult
  /// Adds the watches of the kind besides its Jobs and Pods (none by default).
  func watches(_ controller: Controller<Object>, informers: InformerRegistry)
}

extension RunsReconciler {
  public func watches(_ controller: Controller<Object>, informers: InformerRegistry) {}
}

extension InformerRegistry {
  /// The shared caches of everything the controller creates, in all namespaces (`ManagedCaches`): Jobs, Pods and
  /// NetworkPolicies whole (the run, audit and isolation logic read their specs and status), CronJobs, Roles,
  /// RoleBindings, ServiceAccounts, Secrets and backup Namespaces as metadata only (prune, run access and ownership read labels and
  /// names). `cronJobAPIVersion`: the CronJob version the reconcilers use (batch/v1, or batch/v1beta1 before 1.21).
  public func managedCaches(cronJobAPIVersion: String) -> ManagedCaches {
    var stores: [ResourceDescriptor: Store<Unstructured>] = [:]
    for r in [ResourceDescriptor.jobs, .pods, .networkPolicies] { stores[r] = managed(r).store }
    for i in managedMetadata(cronJobAPIVersion: cronJobAPIVersion) { stores[i.resource] = i.informer.store }
    return ManagedCaches(stores)
  }

  /// The metadata-only informers of `managedCaches`: someone must subscribe to them (the BackupPolicy controller
  /// does) for their watches to run.
  public func managedMetadata(
    cronJobAPIVersion: String
  ) -> [(resource: ResourceDescriptor, informer: SharedInformer<Unstructured>)] {
    [
      ChildResources.cronJobs(apiVersion: cronJobAPIVersion), ChildResources.roles, ChildResources.roleBindings,
      ChildResources.serviceAccounts,
    ].map {
      ($0, informer($0, namespace: nil, labelSelector: Self.managedSelector, metadataOnly: true, as: Unstructured.self))
    } + [ChildResources.secrets, ChildResources.namespaces].map { ($0, managed($0)) }
  }
}

/// What the controller's one watch of a kind (`InformerRegistry.all`) keeps in its cache, as its views ask: the
/// controller's own objects (labelled managed-by) whole, every object of the namespaces kept whole, `part` of the
/// objects of the namespaces kept in part, and nothing of the rest. The rule only grows: a namespace no view reads
/// any more stays kept until the controller restarts.
public final class KeepRule: Sendable {
  private struct State {
    var whole: Set<String> = []
    var partsEverywhere = false
    var partsIn: Set<String> = []
  }

  private let state = Mutex(State())
  /// What is kept of an object of a namespace kept in part (nil: nothing).
  let part: @Sendable (Unstructured) -> Unstructured?

  init(part: @escaping @Sendable (Unstructured) -> Unstructured?) { self.part = part }

  /// Keeps every object of `namespace` whole from now on; whether it was not kept whole before.
  func keepWhole(_ namespace: String) -> Bool { state.withLock { $0.whole.insert(namespace).inserted } }

  /// Keeps `part` of the objects of `namespace` (nil: every namespace) from now on; whether it was not before.
  func keepParts(namespace: String?) -> Bool {
    state.withLock { s in
      if s.partsEverywhere { return false }
      guard let namespace else {
        s.partsEverywhere = true
        return true
      }
      return s.partsIn.insert(namespace).inserted
    }
  }

  /// What the cache keeps of `object` (nil: nothing).
  @Sendable func keep(_ object: Unstructured) -> Unstructured? {
    if InformerRegistry.isManaged(object) { return object }
    let ns = object.body[path: "metadata", "namespace"]?.stringValue ?? ""
    let (whole, parts) = state.withLock { ($0.whole.contains(ns), $0.partsEverywhere || $0.partsIn.contains(ns)) }
    if whole { return object }
    return parts ? part(object) : nil
  }
}

/// The shared caches of the objects the controller created (labelled managed-by=botrt-controller), by resource: what
/// a reconcile observes instead of listing live, so that a reconcile's reads cost no request.
///
/// A cache lags the apiserver by a watch event: an object the controller applied a moment ago may not be in it yet.
/// The reconcilers allow for that: every child is applied by name (applying it again is a no-op), and a Job or Pod
/// that appears later brings its owner back through the same watch.
public struct ManagedCaches: Sendable {
  let stores: [ResourceDescriptor: Store<Unstructured>]
  /// Set once a wait for the caches timed out: later reconciles do not wait again (reads stay live until the
  /// caches fill).
  private let waitedOut = Waited()

  final class Waited: Sendable {
    let value = Mutex(false)
  }

  public init(_ stores: [ResourceDescriptor: Store<Unstructured>]) { self.stores = stores }

  /// No caches: every read goes to the apiserver.
  public static let none = ManagedCaches([:])

  /// Waits until every cache has its first list, or `timeout` passed (a watch that cannot start, e.g. for want of a
  /// grant, leaves its kind to live reads rather than stopping every reconcile). Reconciles wait here so that a
  /// restarted controller compares with what exists instead of applying everything again.
  ///
  /// Only the first wait that times out waits: a cache that never fills (its watch refused, e.g. a ClusterRole
  /// not updated with the controller) leaves later reconciles to live reads at once, not 30 s each.
  public func waitUntilReady(timeout: Duration = .seconds(30)) async {
    let pending = stores.values.filter { !$0.isReady }
    if pending.isEmpty || waitedOut.value.withLock({ $0 }) { return }
    await withTaskGroup(of: Void.self) { group in
      group.addTask {
        for s in pending { await s.waitUntilReady() }
      }
      group.addTask { try? await Task.sleep(for: timeout) }
      await group.next()
      group.cancelAll()
    }
    if stores.values.contains(where: { !$0.isReady }) { waitedOut.value.withLock { $0 = true } }
  }

  /// The cache of `resource`, once its first list arrived (nil before, and for a resource not cached: read live).
  public func store(_ resource: ResourceDescriptor) -> Store<Unstructured>? {
    guard let s = stores[resource], s.isReady else { return nil }
    return s
  }

  /// The cached objects of `resource` in `namespace` (nil: a cluster-scoped resource, or every namespace) that carry
  /// every label of `labels` and, when `components` is given, a `dr.botrt.io/component` label among them; nil when
  /// `resource` is not cached or not listed yet.
  public func objects(
    _ resource: ResourceDescriptor, namespace: String?, labels: [String: String], components: Set<String>? = nil
  ) -> [Unstructured]? {
    guard let store = store(resource) else { return nil }
    // Labels are read from the body: `Unstructured.metadata` decodes the whole ObjectMeta, which for every cached
    // object on every call cost most of a reconcile's CPU.
    return store.select(namespace: namespace) { o in
      guard let l = o.body[path: "metadata", "labels"]?.objectValue else { return labels.isEmpty && components == nil }
      for (k, v) in labels where l[k]?.stringValue != v { return false }
      if let components { return l[ChildLabels.component]?.stringValue.map(components.contains) ?? false }
      return true
    }
  }

  /// The objects of `resource` in `namespace` with every label of `labels` (and a component among `components`):
  /// from the cache once it is filled, else listed live.
  public func read(
    _ resource: ResourceDescriptor, namespace: String?, labels: [String: String], components: Set<String>? = nil,
    client: KubeClient
  ) async throws -> [JSONValue] {
    if let cached = objects(resource, namespace: namespace, labels: labels, components: components) {
      return cached.map(\.body)
    }
    return try await Self.live(resource, namespace: namespace, labels: labels, components: components, client: client)
  }

  /// The same selection listed from the apiserver.
  public static func live(
    _ resource: ResourceDescriptor, namespace: String?, labels: [String: String], components: Set<String>? = nil,
    client: KubeClient
  ) async throws -> [JSONValue] {
    var selector = labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    if let components { selector.append("\(ChildLabels.component) in (\(components.sorted().joined(separator: ",")))") }
    return try await client.listAll(
      resource, namespace: namespace, options: ListOptions(labelSelector: selector.joined(separator: ",")),
      as: JSONValue.self
    ).items
  }

  /// Whether the object exists among the controller's own (nil: `resource` is not cached). An object of that name
  /// without the controller's labels is not in the cache, and is not the controller's to change.
  public func contains(_ resource: ResourceDescriptor, namespace: String?, name: String) -> Bool? {
    store(resource).map { $0.get(ObjectKey(namespace: namespace, name: name)) != nil }
  }
}
