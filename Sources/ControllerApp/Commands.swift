import ArgumentParser
import Foundation
import KubeClient
import KubeRuntime
import Logging
import Reconcilers

/// `botrt-controller`: the BotRT operator.
public struct ControllerCommand: AsyncParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "botrt-controller", abstract: "The BotRT backup and disaster-recovery operator.",
    discussion: "Environment (run and report):\n"
      + ClientConfig.environmentVariables.map { "  \($0.name)\n      \($0.meaning)" }.joined(separator: "\n"),
    subcommands: [RunCommand.self, ReportCommand.self, VersionCommand.self], defaultSubcommand: RunCommand.self)

  public init() {}
}

/// `botrt-controller run`.
public struct RunCommand: AsyncParsableCommand {
  public static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the controller.")

  @Option(help: "Path of a kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).")
  var kubeconfig: String?
  @Option(help: "The kubeconfig context to use (default: the current context).")
  var context: String?
  @Option(name: .customLong("backup-namespace"), help: "Namespace of the backup Jobs.")
  var backupNamespace = "botrt-backup"
  @Option(name: .customLong("engine-image"), help: "Image with the botrt-engine executable.")
  var engineImage = BotRTController.defaultEngineImage
  @Option(name: .customLong("metrics-address"), help: "HOST:PORT of /metrics, /healthz and /readyz; 'off' disables.")
  var metricsAddress = "127.0.0.1:8080"
  @Flag(name: .customLong("leader-elect"), help: "Run only while holding the Lease (for several replicas).")
  var leaderElect = false
  @Option(name: .customLong("lease-namespace"), help: "Namespace of the leader-election Lease.")
  var leaseNamespace = "botrt-system"
  @Option(name: .customLong("log-format"), help: "json (one object per line) or text.")
  var logFormat = "text"
  @Option(
    name: .customLong("log-level"),
    help: "trace, debug, info, notice, warning, error or critical; info logs one line per reconcile outcome.")
  var logLevel = "info"
  @Option(help: "Concurrent reconciles per kind; one key is never reconciled twice at once.")
  var workers = 8
  @Option(help: "Watch BackupPolicies in this namespace only (default: all namespaces).")
  var namespace: String?
  @Option(
    name: .customLong("egress"), parsing: .singleValue,
    help: ArgumentHelp(
      "An egress destination of the backup pods, repeatable: KIND=CIDR:PORT or KIND=ns/NAMESPACE:PORT, KIND one of "
        + "storage, kms, vault, database, dns, apiserver (e.g. storage=10.20.0.0/16:9000, vault=ns/vault:8200, "
        + "apiserver=10.0.0.1/32:6443).",
      valueName: "KIND=DEST:PORT"))
  var egress: [String] = []
  @Option(
    name: .customLong("default-requests"),
    help: "Requests of the policies' containers where spec.resources sets none (e.g. cpu=100m,memory=256Mi).")
  var defaultRequests = ""
  @Option(
    name: .customLong("default-limits"),
    help: "Limits of the policies' containers where spec.resources sets none (e.g. cpu=2,memory=2Gi).")
  var defaultLimits = ""
  @Option(
    name: .customLong("max-resources"),
    help: "The largest request or limit spec.resources may ask for (e.g. cpu=4,memory=8Gi,ephemeral-storage=20Gi).")
  var maxResources = ""
  @Flag(
    name: .customLong("restore-only"),
    help: ArgumentHelp(
      "A disaster recovery cluster: every BackupPolicy is restore-only (as with spec.mode RestoreOnly): no "
        + "backup, prune, verify, key rotation, replica copy or repository deletion; RecoveryPlans and DRDrills "
        + "restore."))
  var restoreOnly = false

  public init() {}

  public func run() async throws {
    guard let format = LogFormat(rawValue: logFormat) else {
      throw ValidationError("--log-format must be json or text, got '\(logFormat)'")
    }
    guard let level = Logger.Level(rawValue: logLevel) else {
      throw ValidationError(
        "--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), got '\(logLevel)'"
      )
    }
    guard (1...64).contains(workers) else { throw ValidationError("--workers must be 1-64, got \(workers)") }
    let destinations: [EgressDestination]
    let bounds: ResourceBounds
    do {
      destinations = try egress.map { (e) throws(ControllerOptionsError) in try EgressDestination.parse(e) }
      bounds = ResourceBounds(
        defaultRequests: try ResourceBounds.parseList(defaultRequests, option: "--default-requests"),
        defaultLimits: try ResourceBounds.parseList(defaultLimits, option: "--default-limits"),
        maximum: try ResourceBounds.parseList(maxResources, option: "--max-resources"))
      try bounds.validate()
    } catch {
      throw ValidationError(error.description)
    }
    let logger = Logger(label: "botrt-controller") { LineLogHandler(label: $0, format: format, level: level) }
    var env = ProcessInfo.processInfo.environment
    if let kubeconfig { env["KUBECONFIG"] = kubeconfig }
    let client: KubeClient
    // Every request to the apiserver is counted (verb, resource, status) on /metrics: the steady state should be
    // watches only (hack/reliability/controller.sh checks it).
    let registry = MetricsRegistry()
    let requests = registry.counter(
      "botrt_kube_requests_total", help: "Requests to the Kubernetes API by verb, resource and HTTP status.",
      labels: ["verb", "resource", "code"])
    do {
      client = KubeClient(
        config: try ClientConfig.fromEnvironment(context: context, environment: env),
        transport: ObservingTransport { requests.inc([$0.verb, $0.resource, String($0.status)]) },
        logger: Logger(label: "botrt.kube") { LineLogHandler(label: $0, format: format, level: level) })
    } catch {
      logger.error("cannot load the cluster configuration", metadata: ["error": "\(error)"])
      throw ExitCode(2)
    }
    let options = ControllerRunOptions(
      backupNamespace: backupNamespace, engineImage: engineImage, workers: workers,
      metricsAddress: metricsAddress == "off" ? nil : metricsAddress, leaderElect: leaderElect,
      leaseNamespace: leaseNamespace, watchNamespace: namespace, registry: registry, egress: destinations,
      resourceBounds: bounds, restoreOnly: restoreOnly)
    let app: BotRTController
    do {
      app = try await BotRTController.make(client: client, options: options, logger: logger)
    } catch {
      logger.error(
        "cannot connect to the cluster", metadata: ["server": "\(client.config.server)", "error": "\(error)"])
      throw ExitCode(1)
    }
    let outcome = try await app.run()
    if outcome == .leadershipLost {
      logger.error("leadership lost; exiting so that a restart can compete again")
      throw ExitCode(1)
    }
  }
}

/// `botrt-controller version`.
public struct VersionCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version.")
  public init() {}
  public func run() { print("botrt-controller \(BotRTController.version)") }
}

/// The entry point of `botrt-controller`: parses, runs, and returns the exit code.
public enum ControllerMain {
  /// Runs with `arguments` (without the program name).
  public static func run(_ arguments: [String]) async -> Int32 {
    var command: any ParsableCommand
    do {
      command = try ControllerCommand.parseAsRoot(arguments)
    } catch {
      let code = ControllerCommand.exitCode(for: error)
      let message = ControllerCommand.fullMessage(for: error)
      if code == .success {
        FileHandle.standardOutput.write(Data((message + "\n").utf8))
        return 0
      }
      FileHandle.standardError.write(Data((message + "\n").utf8))
      return code.rawValue
    }
    do {
      if var async = command as? any AsyncParsableCommand {
        try await async.run()
      } else {
        try command.run()
      }
      return 0
    } catch {
      let code = ControllerCommand.exitCode(for: error)
      if code == .success {
        // Help and version requests arrive as clean exits.
        FileHandle.standardOutput.write(Data((ControllerCommand.fullMessage(for: error) + "\n").utf8))
      } else if !(error is ExitCode) {
        FileHandle.standardError.write(Data((ControllerCommand.fullMessage(for: error) + "\n").utf8))
      }
      return code.rawValue
    }
  }
}
