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

  public init(
    backupNamespace: String = "botrt-backup", engineImage: String = BotRTController.defaultEngineImage,
    workers: Int = 2, metricsAddress: String? = "127.0.0.1:8080", leaderElect: Bool = false,
    leaseNamespace: String = "botrt-system",
    identity: String = "\(ProcessInfo.processInfo.hostName)-\(UInt32.random(in: 0...UInt32.max))",
    now: @escaping @Sendable () -> Date = { Date() }, calicoOverride: Bool? = nil, watchNamespace: String? = nil,
    registry: MetricsRegistry? = nil
  ) {
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
  public let settings: ControllerSettings
  public let registry: MetricsRegistry
  public let controller: Controller<BackupPolicy>
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
      cronJobAPIVersion: cronV1 ? "batch/v1" : "batch/v1beta1", calicoServed: calico)
    logger.info(
      "connected",
      metadata: [
        "server": "\(client.config.server)", "user": "\(client.config.userDescription)",
        "serverVersion": "\(version["gitVersion"]?.stringValue ?? "unknown")",
        "cronJobAPIVersion": "\(settings.cronJobAPIVersion)", "calico": "\(calico)",
        "backupNamespace": "\(settings.backupNamespace)",
      ])
    return try BotRTController(
      client: client, settings: settings, options: options, logger: logger, handleSignals: handleSignals)
  }

  init(
    client: KubeClient, settings: ControllerSettings, options: ControllerRunOptions, logger: Logger,
    handleSignals: Bool
  ) throws {
    self.client = client
    self.settings = settings
    self.logger = logger
    self.watchNamespace = options.watchNamespace
    let registry = options.registry ?? MetricsRegistry()
    self.registry = registry
    let recorder = EventRecorder(
      config: EventRecorderConfig(component: ChildLabels.controllerName), sink: KubeEventSink(client: client),
      logger: logger, metrics: registry)
    let reconciler = BackupPolicyReconciler(
      client: client, settings: settings, now: options.now, recorder: recorder, metrics: registry, logger: logger)
    let controller = Controller<BackupPolicy>(
      name: "backuppolicy", source: KubeWatchSource<BackupPolicy>(client: client, namespace: options.watchNamespace),
      options: ControllerOptions(workers: options.workers), logger: logger, metrics: registry,
      reconcile: { key, store in try await reconciler.reconcile(key, store) })
    // Children changes (runs finishing, drift of CronJobs and NetworkPolicies) reconcile the owner, found by labels.
    // Pods are not watched: the job controller updates the Job when its Pod ends, and the reconcile then lists
    // the Pods for their termination messages; one cluster-wide Pod watch less. CronJobs are not watched either:
    // the 1.20 CronJob controller rewrites every CronJob's status every few seconds, which made each policy
    // reconcile (and re-apply all children) about once a minute at rest (hack/bench-controller.sh).
    let managed = WatcherConfig(labelSelector: "\(ChildLabels.managedBy)=\(ChildLabels.controllerName)")
    let mapper: KeyMapper<Unstructured> = Mappers.labels(
      nameLabel: ChildLabels.policyName, namespaceLabel: ChildLabels.policyNamespace)
    for resource in [
      ChildResources.jobs, ChildResources.networkPolicies,
    ] {
      controller.watches(
        KubeWatchSource<Unstructured>(client: client, resource: resource, namespace: nil), config: managed,
        mapper: mapper)
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
    // RecoveryPlans: their step Jobs run in the plan's namespace (Sources/Reconcilers/RecoveryPlanReconciler.swift).
    let plans = RecoveryPlanReconciler.controller(
      client: client, settings: settings, namespace: options.watchNamespace, workers: options.workers,
      now: options.now, recorder: recorder, metrics: registry, logger: logger)
    // DRDrills: runs in fenced scratch namespaces (Sources/Reconcilers/DrillReconciler.swift).
    let drills = DrillReconciler.controller(
      client: client, settings: settings, namespace: options.watchNamespace, workers: options.workers,
      now: options.now, recorder: recorder, metrics: registry, logger: logger)
    manager = ControllerManager(
      controllers: [controller, plans, drills], leaderElector: elector, healthServer: server, eventRecorder: recorder,
      handleSignals: handleSignals, logger: logger)
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
