import ArgumentParser
import BackupEngine
import EngineContract
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The `botrt-engine` root command.
public struct BotrtEngine: AsyncParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "botrt-engine",
    abstract: "Encrypted, deduplicated, signed backups to S3, GCS, Azure Blob and local storage.",
    discussion: exitCodeHelp + "\n\n" + EngineEnv.help,
    version: EngineVersion.current,
    subcommands: [
      InitCommand.self, BackupCommand.self, RestoreCommand.self, VerifyCommand.self, SnapshotsCommand.self,
      LsCommand.self, FindCommand.self, DiffCommand.self, StatsCommand.self,
      ForgetCommand.self, RotateKeysCommand.self, CopyCommand.self, DeleteRepositoryCommand.self, BenchCommand.self,
      GateCommand.self, VersionCommand.self,
    ])
  public init() {}

  /// The root help's discussion: every exit code (restic's numbers where restic has the same situation).
  static let exitCodeHelp =
    "Exit codes (restic's numbers where restic has the same situation):\n"
    + EngineExitCode.all.map { ($0.code < 10 ? "   " : "  ") + "\($0.code)  \($0.meaning)" }.joined(separator: "\n")
}

/// `botrt-engine version`: prints the engine's version.
public struct VersionCommand: AsyncParsableCommand {
  public static let configuration = CommandConfiguration(
    commandName: "version", abstract: "Print the engine's version.")
  public init() {}
  public func run() async throws { print("botrt-engine \(EngineVersion.current)") }
}

/// Parses arguments, runs the command, writes the result, returns the exit code.
public enum EngineMain {
  /// Runs `botrt-engine` with `arguments` (without the program name).
  public static func run(_ arguments: [String]) async -> Int32 {
    #if os(Linux)
      // Few malloc arenas: the pipeline frees on other threads than it allocates, which otherwise bloats RSS.
      _ = glibcMallopt(-8 /* M_ARENA_MAX */, 2)
      // A fixed mmap threshold: pack-sized buffers go back to the OS when freed instead of growing the heap.
      _ = glibcMallopt(-3 /* M_MMAP_THRESHOLD */, 4 << 20)
    #endif
    // `help NOSUCH` would print the top-level help and exit 0: a script asking for a misspelt command must fail.
    if arguments.first == "help", arguments.count > 1 {
      let names = BotrtEngine.configuration.subcommands.map { $0.configuration.commandName ?? "" }
      if let asked = arguments.dropFirst().first(where: { !$0.hasPrefix("-") }), !names.contains(asked) {
        let shown = BotrtEngine.configuration.subcommands.filter { $0.configuration.shouldDisplay }
        FileHandle.standardError.write(
          Data(
            ("error: 'help \(asked)': there is no command '\(asked)'; the commands are "
              + shown.compactMap { $0.configuration.commandName }.joined(separator: ", ") + "\n").utf8))
        return ExitCode.usage
      }
    }
    let parsed: any ParsableCommand
    do { parsed = try BotrtEngine.parseAsRoot(arguments) } catch { return reportParserOutcome(error) }
    if let gate = parsed as? GateCommand { return await gate.wait() }
    guard let cmd = parsed as? any EngineCommand else {
      if var c = parsed as? any AsyncParsableCommand {
        do { try await c.run() } catch {
          FileHandle.standardError.write(Data("error: \(error)\n".utf8))
          return ExitCode.of(error)
        }
        return 0
      }
      // `--help`, `-h` and `help SUBCOMMAND` parse as the parser's help command, whose run() reports the help of
      // the command it was asked about as an error carrying that command's stack.
      var c = parsed
      do { try c.run() } catch { return reportParserOutcome(error) }
      return 0
    }
    return await execute(cmd)
  }

  /// Prints what the argument parser reports: help and version on stdout (exit 0), a usage error on stderr (exit 2).
  static func reportParserOutcome(_ error: any Error) -> Int32 {
    let msg = BotrtEngine.fullMessage(for: error)
    if BotrtEngine.exitCode(for: error) == .success {
      print(msg)
      return 0
    }
    FileHandle.standardError.write(Data((msg + "\n").utf8))
    return ExitCode.usage
  }

  static func execute(_ cmd: any EngineCommand) async -> Int32 {
    let start = Date()
    var result = CommandResult.starting(cmd.commandName)
    var code: Int32 = 0
    do {
      try await cmd.execute(&result)
    } catch {
      ProgressLine.shared.clear()
      code = ExitCode.of(error)
      result.ok = code == ExitCode.partial
      if !(error is PartialBackupError) { result.addErrors(["\(error)"]) }
      FileHandle.standardError.write(Data("\nerror: \(error)\n".utf8))
    }
    ProgressLine.shared.clear()
    result.exitCode = code
    result.engineVersion = EngineVersion.current
    result.keyUnwraps = []
    result.addUnwraps(KeyUnwrapLedger.byKMS)
    result.storageRequests = StorageRequestLedger.total
    result.storageBytesRead = StorageRequestLedger.bytesRead
    result.durationSeconds = (Date().timeIntervalSince(start) * 1000).rounded() / 1000
    let line: Data
    do { line = try result.encodedLine() } catch {
      FileHandle.standardError.write(Data("error: cannot encode the result: \(error)\n".utf8))
      return code == 0 ? ExitCode.other : code
    }
    switch resultStream(json: cmd.repoOptions.json, dataOnStdout: (cmd as? RestoreCommand)?.stdout ?? false) {
    case .stdout: FileHandle.standardOutput.write(line)
    case .stderr: FileHandle.standardError.write(line)
    case nil: break
    }
    // The file the controller reads (the termination message) holds what the kubelet keeps; stdout has it all.
    let fileLine = (try? result.encodedLine(maxBytes: EngineResult.terminationMessageLimit)) ?? line
    for path in cmd.repoOptions.resultPaths() where !writeResult(fileLine, to: path) {
      FileHandle.standardError.write(Data("warning: could not write the result to \(path)\n".utf8))
    }
    return code
  }
}

/// Where the one-line JSON result goes besides the result file. With `--json` it is machine output on stdout (after the
/// status lines), as restic's summary message. Without it stdout is for people (a summary, a table), so the result is
/// a log line on stderr, where a Job's log and a script's capture keep it whole (the termination message may be cut
/// to 4 KiB), except when stderr is a terminal: a person reads the summary there, and `--result-file` has the result.
/// When stdout carries data (`restore --stdout`) the result goes to stderr in both modes.
enum ResultStream: Equatable { case stdout, stderr }

func resultStream(
  json: Bool, dataOnStdout: Bool, stderrIsTerminal: Bool = isatty(2) == 1
) -> ResultStream? {
  if json { return dataOnStdout ? .stderr : .stdout }
  return stderrIsTerminal ? nil : .stderr
}

#if os(Linux)
  /// glibc's mallopt(3) (malloc.h is not part of the Glibc module).
  @_silgen_name("mallopt")
  func glibcMallopt(_ param: Int32, _ value: Int32) -> Int32
#endif

/// Writes the result into an existing file in place (else creates it). Not atomically: the kubelet's
/// /dev/termination-log is a file in a root-owned /dev, where a container running as non-root (the Jobs run as
/// 65532) cannot create the temporary file that an atomic write renames over it.
func writeResult(_ line: Data, to path: String) -> Bool {
  guard FileManager.default.fileExists(atPath: path) else {
    return FileManager.default.createFile(atPath: path, contents: line)
  }
  do {
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.truncate(atOffset: 0)
    try handle.write(contentsOf: line)
    return true
  } catch {
    return false
  }
}
