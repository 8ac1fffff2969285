import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Reconcilers

/// How the controller runs (from the command line, or set by tests).
public struct ControllerRunOptions: Sendable {
  public var backupNamespace: String
  public var engineImage: String
  public var workers: Int
  /// "host:port" of the metrics and health server; nil disables it.
  public var metricsAddress: String?
  public var leaderElect: Bool
  public var leaseNamespace: String
  public var identity: String
  /// The wall clock of status and RPO logic (tests inject a shifted one).
  public var now: @Sendable () -> Date
  /// Forces the Calico decision instead of discovery (nil = discover).
  public var calicoOverride: Bool?
  /// Watch BackupPolicies in this namespace only (nil = all namespaces).
  public var watchNamespace: String?
  /// The metrics registry to fill (nil = a new one); set when something outside the controller, such as the
  /// request counter of its client, reports into the same /metrics.
  public var registry: MetricsRegistry?
  /// Egress destinations of the backup pods (`--egress`).
  public var egress: [EgressDestination]
  /// Default and maximum container resources (`--default-requests`, `--default-limits`, `--max-resources`).
  public var resourceBounds: ResourceBounds
  /// `--restore-only`: every policy is restore-only (a disaster recovery cluster).
  public var restoreOnly: Bool
  /// Runs the hooks' commands in the application pods (spec.hooks); nil: the client's pods/exec.
  public var podExecutor: (any PodExecutor)?
  /// The controller's own ServiceAccount (namespace, name), named in the RoleBinding that HooksPermitted asks for.
  public var serviceAccount: (namespace: String, name: String)

  public init(
    backupNamespace: String = "botrt-backup", engineImage: String = BotRTController.defaultEngineImage,
    workers: Int = 2, metricsAddress: String? = "127.0.0.1:8080", leaderElect: Bool = false,
    leaseNamespace: String = "botrt-system",
    identity: String = "\(ProcessInfo.processInfo.hostName)-\(UInt32.random(in: 0...UInt32.max))",
    now: @escaping @Sendable () -> Date = { Date() }, calicoOverride: Bool? = nil, watchNamespace: String? = nil,
    registry: MetricsRegistry? = nil, egress: [EgressDestination] = [],
    resourceBounds: ResourceBounds = ResourceBounds(), restoreOnly: Bool = false
  ) {
    self.restoreOnly = restoreOnly
    self.egress = egress
    self.resourceBounds = resourceBounds
    self.backupNamespace = backupNamespace
    self.engineImage = engineImage
    self.workers = workers
    self.metricsAddress = metricsAddress
    self.leaderElect = leaderElect
    self.leaseNamespace = leaseNamespace
    self.identity = identity
    self.now = now
    self.calicoOverride = calicoOverride
    self.watchNamespace = watchNamespace
    self.registry = registry
    self.podExecutor = nil
    self.serviceAccount = ("botrt-system", "botrt-controller")
  }
}

/// A bad command-line value, naming the flag.
public struct ControllerOptionError: Error, Sendable, CustomStringConvertible {
  public var flag: String
  public var message: String
  public var description: String { "\(flag): \(message)" }
}

/// The wired controller: discovery, the BackupPolicy controller with its related watches, events, metrics,
/// health server, leader election, all run by a `ControllerManager`.
public final class BotRTController: Sendable {
  /// The default engine image.
  public static let defaultEngineImage = "botrt/botrt-engine:dev"
  /// The controller's version.
  public static let version = "0.1.0"

  public let client: KubeClient
  /// The BackupPolicy reconciler.
  public let reconciler: BackupPolicyReconciler
  /// The settings in use (Calico is discovered again when its CRD comes or goes).
  public var settings: ControllerSettings { reconciler.settings }
  public let registry: MetricsRegistry
  public let controller: Controller<BackupPolicy>
  /// The watches and caches the controllers share.
  public let informers: InformerRegistry
  public let manager: ControllerManager
  public let healthServer: HealthServer?
  let logger: Logger
  let watchNamespace: String?

  /// Discovers the cluster's capabilities and wires everything; does not start anything.
  public static func make(
    client: KubeClient, options: ControllerRunOptions, logger: Logger, handleSignals: Bool = true
  ) async throws -> BotRTController {
    let version = try await client.send(KubeRequest(method: "GET", path: "/version"), decoding: JSONValue.self)
    let cronV1 = try await client.isServed(group: "batch", version: "v1", resource: "cronjobs")
    let calico: Bool
    if let o = options.calicoOverride {
      calico = o
    } else {
      calico = try await client.isServed(
        group: "crd.projectcalico.org", version: "v1", resource: "globalnetworkpolicies")
    }
    let settings = ControllerSettings(
      backupNamespace: options.backupNamespace, engineImage: options.engineImage,
      cronJobAPIVersion: cronV1 ? "batch/v1" : "batch/v1beta1", calicoServed: calico, egress: options.egress,
      resourceBounds: options.resourceBounds, restoreOnly: options.restoreOnly)
    logger.info(
      "connected",
      metadata: [
        "server": "\(client.config.server)", "user": "\(client.config.userDescription)",
        "serverVersion": "\(version["gitVersion"]?.stringValue ?? "unknown")",
        "cronJobAPIVersion": "\(settings.cronJobAPIVersion)", "calico": "\(calico)",
        "backupNamespace": "\(settings.backupNamespace)",
        "egress": "\(settings.egress.map(\.description).joined(separator: " "))",
        "restoreOnly": "\(settings.restoreOnly)",
      ])
    for w in NetworkIsolation.warnings(settings) { logger.warning("\(w)") }
    return try BotRTController(
      client: client, settings: settings, options: options, logger: logger, handleSignals: handleSignals)
  }

  init(
    client: KubeClient, settings: ControllerSettings, options: ControllerRunOptions, logger: Logger,
    handleSignals: Bool
  ) throws {
    self.client = client
    self.logger = logger
    self.watchNamespace = options.watchNamespace
    let registry = options.registry ?? MetricsRegistry()
    self.registry = registry
    ControllerManager.leaderGauge(registry)
    let recorder = EventRecorder(
      config: EventRecorderConfig(component: ChildLabels.controllerName), sink: KubeEventSink(client: client),
      logger: logger, metrics: registry)
    let intent = IsolationIntent()
    let security = SecurityMetrics(registry)
    // One watch and cache per collection, shared by every controller below that follows it.
    let informers = InformerRegistry(client: client, logger: logger, metrics: registry)
    self.informers = informers
    // What the reconcilers read instead of listing live: the shared caches of the controller's own objects.
    let managed = informers.managedCaches(cronJobAPIVersion: settings.cronJobAPIVersion)
    // The run auditor watches the controller's backup namespace, and the backup namespaces policies name in
    // spec.backupNamespace as they come and go (after each policy reconcile).
    let auditor = RunAuditor(
      client: client, settings: settings, recorder: recorder, metrics: security, logger: logger,
      watchNamespace: options.watchNamespace)
    let auditedNamespaces = NamespacedRunnables(name: "run-audit-namespaces") {
      auditor.namespaceControllers($0, informers: informers)
    }
    // RWO placement: every Pod of the watched namespaces, kept as the few fields placement reads (ClaimUserPod).
    let claimUsers = informers.claimUsers(namespace: options.watchNamespace)
    // Referenced Secrets: a metadata-only watch (names, labels and resourceVersions, never the data); the reconciler
    // reads a Secret's content once per resourceVersion it shows (SourceSecrets).
    let secretVersions = informers.secretMetadata(namespace: options.watchNamespace)
    // Multi-claim sources (spec.source.claims): the claims of the watched namespaces they select from.
    let claimInformer = informers.informer(PersistentVolumeClaim.self, namespace: options.watchNamespace)
    let reconciler = BackupPolicyReconciler(
      client: client, settings: settings, now: options.now, recorder: recorder, metrics: registry, logger: logger,
      isolation: intent, managed: managed, claimUsers: ClaimUserCache(claimUsers.store),
      secretVersions: secretVersions.store, claims: claimInformer.store)
    self.reconciler = reconciler
    // The echo of the controller's own status write (and any other status-only change) does not reconcile: every
    // reconcile reads the policy from the apiserver, and time-driven work is requeued by the reconcile itself.
    let controller = Controller<BackupPolicy>(
      name: "backuppolicy", informer: informers.informer(BackupPolicy.self, namespace: options.watchNamespace),
      options: ControllerOptions(workers: options.workers), logger: logger, metrics: registry,
      relevant: { cached, new in Self.isRelevantUpdate(cached, new) },
      reconcile: { key, store in
        do {
          let result = try await reconciler.reconcile(key, store)
          await auditedNamespaces.set { reconciler.backupNamespacesInUse() }
          return result
        } catch {
          await auditedNamespaces.set { reconciler.backupNamespacesInUse() }
          throw error
        }
      })
    // Children changes (runs finishing) reconcile the owner, found by labels. NetworkPolicies are watched by the
    // isolation guard below, which restores them and reports who changed them.
    // Pods are not watched: the job controller updates the Job when its Pod ends, and the reconcile then lists
    // the Pods for their termination messages; one cluster-wide Pod watch less. CronJobs are not watched either:
    // the 1.20 CronJob controller rewrites every CronJob's status every few seconds, which made each policy
    // reconcile (and re-apply all children) about once a minute at rest (hack/bench-controller.sh).
    controller.watches(
      informers.managed(ChildResources.jobs),
      mapper: Mappers.labels(
        nameLabel: ChildLabels.policyName, namespaceLabel: ChildLabels.policyNamespace,
        watchNamespace: options.watchNamespace))
    // The metadata of the other kinds the policies own (ManagedCaches): watched to keep the caches that prune, run
    // access and the ownership check read, not to reconcile (a CronJob's status rewrites would wake its policy).
    for cache in informers.managedMetadata(cronJobAPIVersion: settings.cronJobAPIVersion) {
      controller.watches(cache.informer, mapper: { _ in [] })
    }
    // Referenced Secrets, mapped to the policies of the Secret's namespace that reference it, so a Secret that
    // appears or changes is acted on at once. The ClusterRole already has list and watch on Secrets for the copies
    // it manages.
    let store = controller.store
    controller.watches(
      secretVersions,
      mapper: { secret in
        guard let ns = secret.metadata.namespace, let name = secret.metadata.name else { return [] }
        return store.list(namespace: ns).filter { Self.references($0, secret: name) }.map(ObjectKey.init)
      })
    // Pods that mount a policy's source claim (RWO placement, ClaimPlacement.swift): a pod scheduled, moved to
    // another node, finished or gone wakes the policies backing up its claims, so the backup CronJob follows it.
    // Updates that change none of the kept fields (status churn) wake nothing. The ClusterRole already has list and
    // watch on Pods.
    controller.watches(
      claimUsers, relevant: ClaimUserPod.placementChanged(_:old:),
      mapper: { pod in ClaimPlacement.policies(mountedBy: pod, among: store.list(namespace: pod.namespace ?? "")) })
    // Claims created, deleted or relabelled wake the multi-claim policies of their namespace, so a selector's reach
    // is followed without a restart (their status changes wake nothing). The ClusterRole has list and watch on them.
    controller.watches(
      claimInformer, relevant: ClaimPlacement.claimChanged(_:old:),
      mapper: { claim in ClaimPlacement.policies(selecting: claim, among: store.list(namespace: claim.namespace ?? ""))
      })
    // Calico: its GlobalNetworkPolicy CRD is watched (by name), so installing Calico later creates the policy, and
    // removing it stops the controller from applying one.
    // The isolation guard (docs/security-monitoring.md); the Calico policy is guarded as soon as Calico is served:
    // at start, or when its CRD appears later.
    let guardian = IsolationGuard(client: client, intent: intent, recorder: recorder, metrics: security, logger: logger)
    let calicoGuard = GatedRunnable(
      guardian.controller(resource: ChildResources.globalNetworkPolicies, informers: informers))
    if settings.calicoServed { calicoGuard.open() }
    if options.calicoOverride == nil {
      let logger = logger
      controller.watches(
        informers.informer(
          .customResourceDefinitions, namespace: nil, fieldSelector: "metadata.name=\(Self.calicoCRD)",
          as: Unstructured.self),
        mapper: { crd in
          let served = Self.servesCalicoV1(crd)
          if served { calicoGuard.open() }
          guard reconciler.setCalicoServed(served) else { return [] }
          logger.info("calico discovered again", metadata: ["calico": "\(served)"])
          return store.list().map(ObjectKey.init)
        })
    }
    self.controller = controller
    var server: HealthServer? = nil
    if let address = options.metricsAddress {
      let parts = address.split(separator: ":", omittingEmptySubsequences: false)
      guard parts.count == 2, let port = UInt16(parts[1]) else {
        throw ControllerOptionError(
          flag: "--metrics-address", message: "'\(address)' is not HOST:PORT, e.g. 0.0.0.0:8080")
      }
      server = HealthServer(
        host: parts[0].isEmpty ? "0.0.0.0" : String(parts[0]), port: port, registry: registry, logger: logger)
    }
    self.healthServer = server
    var elector: LeaderElector? = nil
    if options.leaderElect {
      elector = LeaderElector(
        config: LeaderElectionConfig(
          namespace: options.leaseNamespace, name: "botrt-controller", identity: options.identity),
        api: KubeLeaseAPI(client: client), logger: logger)
    }
    // RecoveryPlans: their step Jobs run in the plan's namespace, a restore's in its claim's
    // (Sources/Reconcilers/RecoveryPlan/RecoveryPlanReconciler.swift); read from the shared caches.
    // The policies and Namespaces are read from the caches the policy controller and the plan controller share.
    let plans = informers.runsController(
      RecoveryPlanReconciler(
        client: client, settings: settings, now: options.now, recorder: recorder, logger: logger, managed: managed,
        policies: controller.store, namespaces: RecoveryPlanReconciler.namespaceInformer(informers).store),
      namespace: options.watchNamespace, workers: options.workers, logger: logger, metrics: registry)
    // DRDrills: runs in fenced scratch namespaces (Sources/Reconcilers/DRDrill/DrillReconciler.swift); their
    // targets and source claims are read from the policies', plans' and claims' shared caches.
    let drills = informers.runsController(
      DrillReconciler(
        client: client, settings: settings, now: options.now, recorder: recorder, metrics: registry, logger: logger,
        managed: managed, policies: controller.store, plans: plans.store, claims: claimInformer.store,
        claimsNamespace: options.watchNamespace),
      namespace: options.watchNamespace, workers: options.workers, logger: logger, metrics: registry)
    // Security (docs/security-monitoring.md): the isolation guard, the run-access grants of backup windows, and
    // the run auditor.
    var securityControllers: [any Runnable] = [
      guardian.controller(resource: ChildResources.networkPolicies, informers: informers)
    ]
    if settings.calicoServed || options.calicoOverride == nil { securityControllers.append(calicoGuard) }
    let access = BackupAccessReconciler(
      client: client, settings: settings, intent: intent, metrics: security, logger: logger,
      managed: managed)
    securityControllers.append(
      access.controller(informers: informers, namespace: options.watchNamespace, workers: options.workers))
    securityControllers += auditor.controllers(informers: informers) + [auditedNamespaces]
    // Hooks (spec.hooks): run by the controller alone, in the namespaces that opted in (docs/security-model.md).
    let hookRunner = HookRunner(
      client: client, executor: options.podExecutor ?? ClientPodExecutor(client: client),
      policies: controller.store, recorder: recorder, logger: logger, now: options.now,
      serviceAccount: options.serviceAccount, metrics: registry)
    let hooks = hookRunner.controller(
      informers: informers, workers: max(2, options.workers), logger: logger, metrics: registry)
    manager = ControllerManager(
      controllers: [controller, plans, drills, hooks] + securityControllers, leaderElector: elector,
      healthServer: server,
      eventRecorder: recorder,
      handleSignals: handleSignals, logger: logger)
  }

  /// The CRD of Calico's GlobalNetworkPolicies.
  static let calicoCRD = "globalnetworkpolicies.crd.projectcalico.org"

  /// Whether a GlobalNetworkPolicy CRD (as watched) is established and serves v1; false once it is being deleted.
  static func servesCalicoV1(_ crd: Unstructured) -> Bool {
    let o = crd.body
    guard crd.metadata.deletionTimestamp == nil else { return false }
    let established = (o[path: "status", "conditions"]?.arrayValue ?? []).contains {
      $0["type"]?.stringValue == "Established" && $0["status"]?.stringValue == "True"
    }
    let v1 = (o[path: "spec", "versions"]?.arrayValue ?? []).contains {
      $0["name"]?.stringValue == "v1" && $0["served"]?.boolValue == true
    }
    return established && v1
  }

  /// Whether a change of a policy needs a reconcile: spec (generation), metadata the controller acts on, deletion.
  /// A status-only change (the echo of the controller's own status write) does not, nor does the echo of the
  /// controller adding its own finalizer (the reconcile that added it went on to apply the policy).
  public static func isRelevantUpdate(_ old: BackupPolicy, _ new: BackupPolicy) -> Bool {
    let a = old.metadata
    let b = new.metadata
    let finalizers =
      a.finalizers != b.finalizers && !Finalizer.addsOnly(a, b, finalizer: BackupPolicyReconciler.finalizer)
    return a.generation != b.generation || a.annotations != b.annotations || a.labels != b.labels
      || finalizers || a.deletionTimestamp != b.deletionTimestamp || a.uid != b.uid
  }

  /// Whether `policy` references the Secret `name` of its namespace: any Secret its spec names
  /// (`BackupPolicySpec.referencedSecretNames`, built from exhaustive switches over the repository, key service and
  /// source kinds, the primary's and every replica's), valid or not.
  public static func references(_ policy: BackupPolicy, secret name: String) -> Bool {
    policy.spec.referencedSecretNames.contains(name)
  }

  /// Runs until stopped (a signal or `stop()`).
  public func run() async throws -> ControllerManager.Outcome {
    logger.info(
      "watching backuppolicies",
      metadata: [
        "resource": "\(BackupPolicy.resource)",
        "scope": "\(watchNamespace.map { "namespace \($0)" } ?? "all namespaces")",
      ])
    return try await manager.run()
  }

  /// Asks `run()` to stop gracefully.
  public func stop() { manager.stop() }
}
