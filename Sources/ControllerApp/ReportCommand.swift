import ArgumentParser
import DRAPI
import Foundation
import KubeClient
import KubeCore
import Logging
import Reconcilers

/// `botrt-controller report`: the compliance report of the cluster or one namespace, read from the cluster.
public struct ReportCommand: AsyncParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "report",
    abstract: "Print each policy's RPO, each plan's RTO and each drill's last result against the SOX, GDPR, PCI-DSS "
      + "and HIPAA targets.")

  @Option(help: "Path of a kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).")
  var kubeconfig: String?
  @Option(help: "The kubeconfig context to use (default: the current context).")
  var context: String?
  @Option(name: .shortAndLong, help: "Only this namespace (default: all namespaces).")
  var namespace: String?
  @Option(name: .shortAndLong, help: "text, json or markdown.")
  var output = "text"

  public init() {}

  public func run() async throws {
    guard ["text", "json", "markdown"].contains(output) else {
      throw ValidationError("--output must be text, json or markdown, got '\(output)'")
    }
    var env = ProcessInfo.processInfo.environment
    if let kubeconfig { env["KUBECONFIG"] = kubeconfig }
    let logger = Logger(label: "botrt.kube") { LineLogHandler(label: $0, format: .text) }
    let client: KubeClient
    do {
      client = KubeClient(config: try ClientConfig.fromEnvironment(context: context, environment: env), logger: logger)
    } catch {
      FileHandle.standardError.write(Data("cannot load the cluster configuration: \(error)\n".utf8))
      throw ExitCode(2)
    }
    let policies = try await client.listAll(BackupPolicy.self, namespace: namespace).items
    let plans = try await client.listAll(RecoveryPlan.self, namespace: namespace).items
    let drills = try await client.listAll(DRDrill.self, namespace: namespace).items
    let report = ComplianceReport.build(
      policies: policies, plans: plans, drills: drills,
      scope: namespace.map { "namespace \($0)" } ?? "all namespaces", now: Date())
    let text: String
    switch output {
    case "json": text = try report.json() + "\n"
    case "markdown": text = report.markdown()
    default: text = report.text()
    }
    FileHandle.standardOutput.write(Data(text.utf8))
  }
}
