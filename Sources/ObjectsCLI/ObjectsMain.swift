import ArgumentParser
import EngineContract
import Foundation
import KubeClient
import Logging

/// The `botrt-objects` root command: `export` and `apply` (see `EngineContract/ObjectsContract.swift`).
public struct BotrtObjects: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "botrt-objects",
    abstract: "Export a namespace's Kubernetes objects to a directory, and re-create them in a namespace.",
    discussion: """
      The cluster: $KUBECONFIG, else the pod's service account (KUBERNETES_SERVICE_HOST and \
      /var/run/secrets/kubernetes.io/serviceaccount), else ~/.kube/config. The result is one JSON line on stdout \
      (and in --result-file). Exit codes: 0 ok, 1 the apiserver refused or could not be reached for the whole \
      command, 2 usage or configuration error, 3 some objects failed (named in the result).
      """,
    subcommands: [ExportCommand.self, ApplyCommand.self])
  public init() {}
}

/// `botrt-objects export`.
public struct ExportCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: ObjectsCommandName.export,
    abstract: "Write the namespace's objects of the kinds (default: the standard kinds) to a directory.")
  @Option(name: .customLong(ObjectsFlag.namespace), help: "The namespace to read.") var namespace: String
  @Option(name: .customLong(ObjectsFlag.directory), help: "The directory to write (created 0700 when missing).")
  var directory: String
  @Option(name: .customLong(ObjectsFlag.kind), help: "A kind, `Kind` or `Kind.group` (repeatable).")
  var kind: [String] = []
  @Option(name: .customLong(ObjectsFlag.selector), help: "A label selector (`app=web,tier in (a,b)`).")
  var selector: String?
  @Option(name: .customLong(ObjectsFlag.resultFile), help: "Also write the result line to this file.")
  var resultFile: String?
  public init() {}

  func arguments() throws -> ObjectsExportArguments {
    ObjectsExportArguments(
      namespace: namespace, directory: directory, kinds: try parseKinds(kind), selector: selector,
      resultFile: resultFile)
  }
}

/// `botrt-objects apply`.
public struct ApplyCommand: ParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: ObjectsCommandName.apply,
    abstract: "Re-create a directory's objects in a namespace, in dependency order; existing ones are left as they are."
  )
  @Option(name: .customLong(ObjectsFlag.directory), help: "The directory `export` wrote.") var directory: String
  @Option(name: .customLong(ObjectsFlag.namespace), help: "The target namespace.") var namespace: String
  @Option(name: .customLong(ObjectsFlag.kind), help: "Only these kinds, `Kind` or `Kind.group` (repeatable).")
  var kind: [String] = []
  @Option(
    name: .customLong(ObjectsFlag.sourceNamespace),
    help: "The namespace the objects came from, for RoleBinding subjects (default: the index's namespace).")
  var sourceNamespace: String?
  @Option(name: .customLong(ObjectsFlag.resultFile), help: "Also write the result line to this file.")
  var resultFile: String?
  public init() {}

  func arguments() throws -> ObjectsApplyArguments {
    ObjectsApplyArguments(
      directory: directory, namespace: namespace, kinds: try parseKinds(kind), resultFile: resultFile)
  }
}

func parseKinds(_ texts: [String]) throws -> [ObjectsKind] {
  var out: [ObjectsKind] = []
  for t in texts {
    guard let k = ObjectsKind(t) else {
      throw ObjectsFailure(
        code: ObjectsExitCode.usage,
        message: "--\(ObjectsFlag.kind) \(t): not a kind; write `Kind` for the core group or `Kind.group`"
          + " (`ConfigMap`, `Deployment.apps`, `Widget.example.io`)")
    }
    if !out.contains(k) { out.append(k) }
  }
  return out
}

/// A failure of the whole command, with its exit code.
struct ObjectsFailure: Error, CustomStringConvertible {
  var code: Int32
  var message: String
  var description: String { message }
}

/// Parses arguments, runs the command, prints the result, returns the exit code.
public enum ObjectsMain {
  /// Runs `botrt-objects` with `arguments` (without the program name).
  public static func run(_ arguments: [String]) async -> Int32 {
    let parsed: any ParsableCommand
    do {
      parsed = try BotrtObjects.parseAsRoot(arguments)
    } catch {
      return reportParserOutcome(error)
    }
    let logger = Logger(label: "botrt-objects") { StreamLogHandler.standardError(label: $0) }
    var resultFile: String?
    do {
      let outcome: (ObjectsResult, Int32)
      switch parsed {
      case let c as ExportCommand:
        let a = try c.arguments()
        resultFile = a.resultFile
        outcome = try await Exporter(arguments: a, client: try makeClient(logger), logger: logger).run()
      case let c as ApplyCommand:
        let a = try c.arguments()
        resultFile = a.resultFile
        let index = try Applier.readIndex(directory: a.directory)
        outcome = try await Applier(
          arguments: a, sourceNamespace: c.sourceNamespace ?? index.namespace, index: index,
          client: try makeClient(logger), logger: logger
        ).run()
      default:
        // `help` and the like.
        var c = parsed
        do { try c.run() } catch { return reportParserOutcome(error) }
        return 0
      }
      try emit(outcome.0, resultFile: resultFile)
      return outcome.1
    } catch let f as ObjectsFailure {
      FileHandle.standardError.write(Data("botrt-objects: error: \(f.message)\n".utf8))
      let command = parsed is ExportCommand ? ObjectsCommandName.export : ObjectsCommandName.apply
      let r = ObjectsResult(
        command: command, objects: 0, failures: [ObjectsResult.Failure(object: "", message: f.message)])
      try? emit(r, resultFile: resultFile)
      return f.code
    } catch {
      FileHandle.standardError.write(Data("botrt-objects: error: \(error)\n".utf8))
      return ObjectsExitCode.failed
    }
  }

  static func makeClient(_ logger: Logger) throws -> KubeClient {
    do {
      return try KubeClient.fromEnvironment(logger: logger)
    } catch {
      throw ObjectsFailure(code: ObjectsExitCode.usage, message: "no usable cluster configuration: \(error)")
    }
  }

  /// The result as one JSON line (sorted keys), on stdout and, cut to fit a termination message, in the result file.
  static func emit(_ result: ObjectsResult, resultFile: String?) throws {
    let line = resultLine(result)
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
    if let f = resultFile {
      do {
        try Data(fittedLine(result).utf8).write(to: URL(fileURLWithPath: f))
      } catch {
        throw ObjectsFailure(code: ObjectsExitCode.usage, message: "--\(ObjectsFlag.resultFile) \(f): \(error)")
      }
    }
  }

  public static func resultLine(_ result: ObjectsResult) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let d = try? enc.encode(result) else { return "{}" }
    return String(decoding: d, as: UTF8.self)
  }

  /// The result line cut to at most `maxBytes` (the kubelet keeps 4096 bytes of a termination message): each failure's
  /// message shortened, then the last skipped names and failures replaced by a count ("and N more"), so that what
  /// the controller reads is still JSON with the counts and the first names.
  public static func fittedLine(_ result: ObjectsResult, maxBytes: Int = EngineResult.terminationMessageLimit) -> String
  {
    var line = resultLine(result)
    if line.utf8.count <= maxBytes { return line }
    var r = result
    r.failures = r.failures.map { f in
      var f = f
      if f.message.count > 200 { f.message = String(f.message.prefix(200)) + "..." }
      return f
    }
    var droppedSkipped = 0
    var droppedFailures = 0
    func render() -> String {
      var x = r
      if droppedSkipped > 0 { x.skipped.append("and \(droppedSkipped) more") }
      if droppedFailures > 0 {
        x.failures.append(ObjectsResult.Failure(object: "", message: "and \(droppedFailures) more failures"))
      }
      return resultLine(x)
    }
    line = render()
    while line.utf8.count > maxBytes && !r.skipped.isEmpty {
      r.skipped.removeLast()
      droppedSkipped += 1
      line = render()
    }
    while line.utf8.count > maxBytes && !r.failures.isEmpty {
      r.failures.removeLast()
      droppedFailures += 1
      line = render()
    }
    return line
  }

  static func reportParserOutcome(_ error: Error) -> Int32 {
    let code = BotrtObjects.exitCode(for: error)
    let message = BotrtObjects.fullMessage(for: error)
    if code == .success {
      print(message)
      return 0
    }
    FileHandle.standardError.write(Data((message + "\n").utf8))
    return ObjectsExitCode.usage
  }
}
