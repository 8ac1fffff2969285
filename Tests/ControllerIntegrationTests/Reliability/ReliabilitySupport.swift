import DRAPI
import Foundation
import KubeClient
import KubeCore
import Reconcilers
import Testing

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// Knobs and figures of the reliability tests (issue 7). hack/test.sh runs them with small defaults;
/// hack/reliability/controller.sh raises the counts (BOTRT_RELIABILITY_KILLS=20 ...) and collects the figures.
enum Reliability {
  static func int(_ name: String, default value: Int) -> Int {
    ProcessInfo.processInfo.environment[name].flatMap { Int($0) } ?? value
  }

  /// Prints a figure as `reliability: key=value` and appends it to $BOTRT_RELIABILITY_OUT/controller-figures.txt.
  static func figure(_ key: String, _ value: String) {
    let line = "reliability: \(key)=\(value)"
    print(line)
    append("controller-figures.txt", line + "\n")
  }

  /// Appends `text` to a file of $BOTRT_RELIABILITY_OUT (nothing when it is not set).
  static func append(_ file: String, _ text: String) {
    guard let dir = ProcessInfo.processInfo.environment["BOTRT_RELIABILITY_OUT"], !dir.isEmpty else { return }
    let path = "\(dir)/\(file)"
    do {
      try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
      if !FileManager.default.fileExists(atPath: path) {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
          Issue.record("cannot create \(path)")
          return
        }
      }
      let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
      defer { try? h.close() }
      try h.seekToEnd()
      try h.write(contentsOf: Data(text.utf8))
    } catch {
      Issue.record("cannot write \(path): \(error)")
    }
  }

  /// The built botrt-controller (required: these tests run the real process).
  static func controllerBinary() throws -> String {
    guard let bin = ProcessInfo.processInfo.environment["BOTRT_CONTROLLER_BIN"], !bin.isEmpty else {
      throw ControllerTestError(
        description: "BOTRT_CONTROLLER_BIN is not set: the reliability tests run the built controller; export "
          + "BOTRT_CONTROLLER_BIN=$(swift build --show-bin-path)/botrt-controller (hack/test.sh does)")
    }
    guard FileManager.default.isExecutableFile(atPath: bin) else {
      throw ControllerTestError(description: "BOTRT_CONTROLLER_BIN=\(bin) is not an executable file")
    }
    return bin
  }

  /// Runs `hack/cluster.sh <command>` (stop-apiserver, start-apiserver) with output to a file, not a pipe: the
  /// restarted kube-apiserver inherits the descriptors.
  static func cluster(_ command: String) throws {
    guard ProcessInfo.processInfo.environment["BOTRT_CLUSTER_DIR"] != nil else {
      throw ControllerTestError(description: "BOTRT_CLUSTER_DIR is not set: source <(hack/cluster.sh env)")
    }
    let log = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-rel-cluster-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: log) }
    let p = try SpawnedProcess(
      executable: "/bin/bash", arguments: [TestCluster.repoRoot + "/hack/cluster.sh", command], logPath: log.path)
    let status = p.wait()
    guard status == 0 else {
      let out = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
      throw ControllerTestError(description: "hack/cluster.sh \(command) exited with \(status): \(out)")
    }
  }
}

/// A child process started with posix_spawn, stdout and stderr to a file, an empty signal mask (a Swift test blocks
/// signals and a child would inherit that), stopped with a signal and reaped with waitpid.
final class SpawnedProcess: @unchecked Sendable {
  let pid: pid_t
  let logPath: String
  private var reaped: Int32? = nil

  init(executable: String, arguments: [String], logPath: String, environment: [String: String] = [:]) throws {
    self.logPath = logPath
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attr, &empty)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK))
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    let args = [executable] + arguments
    var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    var cenv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      for a in cargs { free(a) }
      for e in cenv { free(e) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &actions, &attr, &cargs, &cenv)
    guard rc == 0 else { throw ControllerTestError(description: "cannot start \(executable): error \(rc)") }
    self.pid = pid
  }

  /// Whether the process still runs (not yet exited).
  var isRunning: Bool {
    if reaped != nil { return false }
    var status: Int32 = 0
    let r = waitpid(pid, &status, WNOHANG)
    if r == pid {
      reaped = status
      return false
    }
    return true
  }

  /// Waits for the exit; returns the raw wait status.
  @discardableResult func wait() -> Int32 {
    if let reaped { return reaped }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    reaped = status
    return status
  }

  /// Sends `signal` and waits for the exit.
  func kill(_ signal: Int32 = SIGKILL) {
    if reaped == nil { _ = Foundation.kill(pid, signal) }
    wait()
  }

  var output: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
}

/// The built controller, run against the test cluster for one namespace.
final class ControllerProcess: @unchecked Sendable {
  let process: SpawnedProcess
  /// Whether the process serves /metrics (on a port the kernel picks: fixed ports in the ephemeral range collided
  /// with outgoing connections).
  let servesMetrics: Bool
  /// Size of the log file before this process started (a log may be shared by successive processes).
  private let logStart: Int

  /// Starts `botrt-controller run --namespace ns --backup-namespace backupNS` plus `extra` arguments.
  init(
    namespace: String, backupNamespace: String, metrics: Bool = false, logFormat: String = "text",
    extra: [String] = [], logPath: String
  ) throws {
    servesMetrics = metrics
    logStart = ((try? FileManager.default.attributesOfItem(atPath: logPath))?[.size] as? NSNumber)?.intValue ?? 0
    let args =
      [
        "run", "--namespace", namespace, "--backup-namespace", backupNamespace, "--engine-image",
        "botrt/botrt-engine:test", "--log-format", logFormat, "--metrics-address", metrics ? "127.0.0.1:0" : "off",
      ] + extra
    process = try SpawnedProcess(executable: try Reliability.controllerBinary(), arguments: args, logPath: logPath)
  }

  func kill(_ signal: Int32 = SIGKILL) { process.kill(signal) }

  /// The port this process's metrics server listens on, from its log line "serving /metrics, ..." (waits up to
  /// 10 s for it).
  func metricsPort() async throws -> Int {
    guard servesMetrics else { throw ControllerTestError(description: "this controller has no metrics port") }
    for _ in 0..<100 {
      let data = FileManager.default.contents(atPath: process.logPath) ?? Data()
      let text = String(decoding: data.dropFirst(logStart), as: UTF8.self)
      if let line = text.split(separator: "\n").last(where: { $0.contains("serving /metrics") }),
        let r = line.range(of: #"127\.0\.0\.1:[0-9]+"#, options: .regularExpression),
        let port = line[r].split(separator: ":").last.flatMap({ Int($0) })
      {
        return port
      }
      try await Task.sleep(for: .milliseconds(100))
    }
    throw ControllerTestError(description: "no 'serving /metrics' line in \(process.logPath)")
  }

  /// GET /metrics of this process.
  func metrics() async throws -> String {
    let port = try await metricsPort()
    let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/metrics")!)
    return String(decoding: data, as: UTF8.self)
  }

  /// The sum of a metric's samples whose line contains every string of `matching`.
  static func sum(_ metrics: String, _ name: String, matching: [String] = []) -> Double {
    metrics.split(separator: "\n").filter { line in
      (line.hasPrefix(name + "{") || line.hasPrefix(name + " ")) && matching.allSatisfy { line.contains($0) }
    }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
  }
}

/// Fixtures and read-back checks shared by the reliability tests.
struct ReliabilityCluster {
  let client: KubeClient

  init() async throws {
    client = try TestCluster.client()
    try await TestCluster.installCRDs(client)
  }

  func makeNamespace(_ prefix: String) async throws -> String {
    let name = "\(prefix)-\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    _ = try await client.create(Namespace(metadata: ObjectMeta(name: name, labels: ["botrt.io/test": "reliability"])))
    return name
  }

  /// Releases every finalizer of the test's custom resources and deletes the namespaces.
  func cleanup(_ namespaces: [String]) async {
    for ns in namespaces {
      do {
        for p in try await client.listAll(BackupPolicy.self, namespace: ns).items {
          _ = try await client.patch(
            BackupPolicy.self, namespace: ns, name: p.name, .merge(["metadata": ["finalizers": nil]]))
        }
      } catch {}
      do {
        for d in try await client.listAll(DRDrill.self, namespace: ns).items {
          _ = try await client.patch(
            DRDrill.self, namespace: ns, name: d.name, .merge(["metadata": ["finalizers": nil]]))
        }
      } catch {}
      do {
        try await client.delete(Namespace.self, name: ns)
      } catch {}
      // Scratch namespaces of the drills in `ns`.
      do {
        let scratch = try await client.list(
          ChildResources.namespaces, namespace: nil,
          options: ListOptions(labelSelector: "\(DrillLogic.drillNamespaceLabel)=\(ns)"), as: JSONValue.self)
        for item in scratch.items {
          if let name = item[path: "metadata", "name"]?.stringValue {
            try await client.delete(ChildResources.namespaces, namespace: nil, name: name)
          }
        }
      } catch {}
    }
  }

  func createSecrets(_ ns: String, values: [String: [String: String]] = Self.defaultSecrets) async throws {
    for (name, data) in values {
      _ = try await client.create(
        Secret(metadata: ObjectMeta(name: name, namespace: ns), data: data.mapValues { Data($0.utf8) }))
    }
  }

  static let defaultSecrets: [String: [String: String]] = [
    "s3-creds": ["AWS_ACCESS_KEY_ID": "test-id", "AWS_SECRET_ACCESS_KEY": "test-secret"],
    "vault-token": ["token": "test-token"], "db-creds": ["password": "test-password"],
  ]

  static func policy(_ ns: String, _ name: String, schedule: String = "17 3 * * *", trigger: String? = nil)
    -> BackupPolicy
  {
    var spec = BackupPolicySpec(
      tier: .standard, schedule: schedule, dataType: .database,
      source: BackupSource(
        command: ContainerSpec(
          image: "postgres:16", command: ["pg_dump"], args: ["orders"],
          env: [
            EnvVar(
              name: "PGPASSWORD",
              valueFrom: EnvVarSource(secretKeyRef: SecretKeySelector(name: "db-creds", key: "password"))
            )
          ])),
      repository: RepositorySpec(
        s3: S3Repository(
          bucket: "orders", prefix: name, region: "us-east-1", endpoint: "http://10.1.2.3:9000",
          credentialsSecretRef: SecretNameReference(name: "s3-creds"))),
      encryption: EncryptionSpec(
        kms: KMSSpec(
          vaultTransit: VaultTransitKMS(
            address: "https://vault.vault.svc:8200", key: "backup-database-key",
            authSecretRef: SecretReference(name: "vault-token")))))
    spec.trigger = trigger
    return BackupPolicy(metadata: ObjectMeta(name: name, namespace: ns), spec: spec)
  }

  func readyCondition(_ ns: String, _ name: String) async throws -> Condition? {
    try await client.get(BackupPolicy.self, namespace: ns, name: name).status?.conditions?.condition("Ready")
  }

  func exists(_ resource: ResourceDescriptor, _ ns: String?, _ name: String) async throws -> JSONValue? {
    do {
      return try await client.get(resource, namespace: ns, name: name, as: JSONValue.self)
    } catch let e as KubeError where e.isNotFound {
      return nil
    }
  }

  /// The kinds a policy owns, read back by its owner labels.
  func ownedKinds(_ settings: ControllerSettings) -> [ResourceDescriptor] {
    [
      ChildResources.cronJobs(apiVersion: settings.cronJobAPIVersion), ChildResources.networkPolicies,
      ChildResources.roleBindings, ChildResources.roles, ChildResources.serviceAccounts, ChildResources.secrets,
      ChildResources.jobs,
    ]
  }

  /// Differences between the cluster and exactly the desired state of the policies in `ns`:
  /// - each live policy: the finalizer, status of its generation, Ready=True, every child the builder wants (read back
  ///   and compared; with an active run also the backup window's grants), and no other child with its labels; its Jobs are exactly one per handled trigger, the latest
  ///   trigger handled, every Job from a trigger that was really set (`triggers`);
  /// - each name in `gone`: no object, no child left.
  func divergence(
    ns: String, backupNS: String, settings: ControllerSettings, triggers: [String: [String]], gone: Set<String>
  ) async throws -> [String] {
    var problems: [String] = []
    let policies = try await client.listAll(BackupPolicy.self, namespace: ns).items
    var secrets: [String: Secret] = [:]
    for name in Self.defaultSecrets.keys {
      secrets[name] = try await client.get(Secret.self, namespace: ns, name: name)
    }
    for p in policies {
      let id = "policy \(p.name)"
      if p.metadata.isDeleting {
        problems.append("\(id) is still being deleted")
        continue
      }
      if p.metadata.finalizers != [BackupPolicyReconciler.finalizer] {
        problems.append("\(id) finalizers \(p.metadata.finalizers ?? [])")
      }
      if p.status?.observedGeneration != p.metadata.generation {
        problems.append(
          "\(id) observedGeneration \(p.status?.observedGeneration ?? -1) != \(p.metadata.generation ?? -1)")
      }
      if p.status?.conditions?.condition("Ready")?.status != .true {
        problems.append("\(id) Ready is not True: \(p.status?.conditions?.condition("Ready")?.message ?? "none")")
      }
      let eff = try EffectivePolicy(spec: p.spec, now: Date())
      var wanted = try BackupPolicyChildren.build(
        ChildInputs(policy: p, effective: eff, settings: settings, secrets: secrets))
      // The backup window: while one of its runs is active (a trigger's Job; nothing finishes them here, there is
      // no kubelet) the policy also has its storage egress and credentials RoleBinding, and otherwise not.
      let runs = try await client.list(
        ChildResources.jobs, namespace: backupNS,
        options: ListOptions(labelSelector: ChildLabels.selector(namespace: ns, name: p.name)), as: JSONValue.self
      ).items
      if runs.contains(where: SecurityAudit.isActive) {
        wanted += BackupPolicyChildren.runAccess(p, settings: settings)
      }
      for c in wanted {
        guard let got = try await exists(c.resource, c.namespace, c.name) else {
          problems.append("\(id): \(c.displayName) is missing")
          continue
        }
        if let diff = isSubset(c.body, of: got) { problems.append("\(id): \(c.displayName): \(diff)") }
      }
      let selector = ChildLabels.selector(namespace: ns, name: p.name)
      let names = ChildNames(namespace: ns, name: p.name)
      let set = triggers[p.name] ?? []
      for kind in ownedKinds(settings) {
        let got = try await client.list(
          kind, namespace: backupNS, options: ListOptions(labelSelector: selector), as: JSONValue.self
        ).items.compactMap { $0[path: "metadata", "name"]?.stringValue }
        if got.count != Set(got).count { problems.append("\(id): duplicate \(kind.plural) \(got.sorted())") }
        if kind.plural == "jobs" {
          let allowed = Set(set.map { names.runJob(token: "trigger:\($0)") })
          let extra = Set(got).subtracting(allowed)
          if !extra.isEmpty { problems.append("\(id): Jobs not from a trigger: \(extra.sorted())") }
          if let last = set.last {
            if !got.contains(names.runJob(token: "trigger:\(last)")) {
              problems.append("\(id): no Job for the latest trigger \(last)")
            }
            if p.status?.lastHandledTrigger != "trigger:\(last)" {
              problems.append("\(id): lastHandledTrigger \(p.status?.lastHandledTrigger ?? "nil"), want \(last)")
            }
          }
        } else {
          let want = Set(wanted.filter { !$0.shared && $0.resource.plural == kind.plural }.map(\.name))
          if Set(got) != want {
            problems.append("\(id): \(kind.plural) are \(got.sorted()), want \(want.sorted())")
          }
        }
      }
    }
    let live = Set(policies.map(\.name))
    for name in gone {
      if live.contains(name) {
        problems.append("deleted policy \(name) still exists")
        continue
      }
      let selector = ChildLabels.selector(namespace: ns, name: name)
      for kind in ownedKinds(settings) {
        let left = try await client.list(
          kind, namespace: backupNS, options: ListOptions(labelSelector: selector), as: JSONValue.self
        ).items.compactMap { $0[path: "metadata", "name"]?.stringValue }
        if !left.isEmpty { problems.append("deleted policy \(name) left \(kind.plural) \(left.sorted())") }
      }
    }
    return problems
  }

  /// Polls `divergence` until it is empty; returns the seconds it took, or throws with the last differences.
  func converge(
    _ what: String, timeout: Duration = .seconds(90), ns: String, backupNS: String, settings: ControllerSettings,
    triggers: [String: [String]], gone: Set<String>
  ) async throws -> Double {
    let start = ContinuousClock.now
    var last: [String] = []
    while ContinuousClock.now - start < timeout {
      do {
        last = try await divergence(ns: ns, backupNS: backupNS, settings: settings, triggers: triggers, gone: gone)
      } catch {
        last = ["\(error)"]
      }
      if last.isEmpty {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
      }
      try await Task.sleep(for: .milliseconds(300))
    }
    throw ControllerTestError(
      description: "\(what): not converged after \(timeout): " + last.prefix(20).joined(separator: " | "))
  }

  /// The settings the controller process uses (same discovery, same flags).
  func settings(backupNamespace: String) async throws -> ControllerSettings {
    let cronV1 = try await client.isServed(group: "batch", version: "v1", resource: "cronjobs")
    client.invalidateDiscovery()
    let calico = try await client.isServed(
      group: "crd.projectcalico.org", version: "v1", resource: "globalnetworkpolicies")
    return ControllerSettings(
      backupNamespace: backupNamespace, engineImage: "botrt/botrt-engine:test",
      cronJobAPIVersion: cronV1 ? "batch/v1" : "batch/v1beta1", calicoServed: calico)
  }
}
