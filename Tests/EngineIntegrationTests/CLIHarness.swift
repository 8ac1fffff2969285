import Foundation
import Testing

@testable import BackupEngine

/// Runs the real botrt-engine binary (BOTRT_ENGINE_BIN) against a local repository and a local key.
struct CLIHarness {
  let dir: String
  let repo: String
  let keyPath: String
  var repoURL: String { "file://\(repo)" }
  var kmsURL: String { "file://\(keyPath)" }

  /// The binary under test; a missing variable is a failure, not a skip.
  static func binary() throws -> String {
    guard let b = ProcessInfo.processInfo.environment["BOTRT_ENGINE_BIN"], !b.isEmpty else {
      throw HarnessError("BOTRT_ENGINE_BIN is not set: export the path of the built botrt-engine (hack/test.sh does)")
    }
    guard FileManager.default.isExecutableFile(atPath: b) else {
      throw HarnessError("BOTRT_ENGINE_BIN=\(b) is not executable")
    }
    return b
  }

  init() throws {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-cli-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    repo = dir + "/repo"
    keyPath = dir + "/kek"
    try makeFile(atPath: keyPath, contents: Data(Crypto.randomBytes(32)))
  }

  func cleanup() { try? FileManager.default.removeItem(atPath: dir) }

  struct Output {
    var code: Int32
    var stdout: Data
    var stderr: String
    /// The result line: on stdout with `--json`, else the log's (stderr's) last line that is one.
    var resultLine: String? {
      for text in [String(decoding: stdout, as: UTF8.self), stderr] {
        for l in text.split(separator: "\n").reversed() {
          if let o = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any], o["command"] != nil {
            return String(l)
          }
        }
      }
      return nil
    }
    var result: [String: Any] {
      guard let l = resultLine else { return [:] }
      return (try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any]) ?? [:]
    }
    var resultFromStderr: [String: Any] {
      for l in stderr.split(separator: "\n").reversed() {
        if let o = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any], o["command"] != nil {
          return o
        }
      }
      return [:]
    }
    var text: String { String(decoding: stdout, as: UTF8.self) + stderr }
  }

  /// Writing to the stdin pipe of a command that has exited must fail the write, not kill the test process.
  static let ignoreBrokenPipes: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

  /// Runs the binary with `args`, optional stdin bytes (or a file path for stdin/stdout). With `withRepo`, the
  /// repository (`repo`, default the harness's own), the harness's key and `--quiet` are added.
  @discardableResult
  func run(
    _ args: [String], stdin: Data? = nil, stdinFile: String? = nil, stdoutFile: String? = nil, withRepo: Bool = true,
    repo: String? = nil, env: [String: String] = [:]
  ) throws -> Output {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try Self.binary())
    if !env.isEmpty {
      // The variables given, on top of this process's environment without any repository variable of its own.
      var e = ProcessInfo.processInfo.environment
      for n in ["BOTRT_REPO", "BOTRT_REPOSITORY", "BOTRT_KMS"] { e[n] = nil }
      p.environment = e.merging(env) { $1 }
    }
    var a = args
    if withRepo { a += ["--repo", repo ?? repoURL, "--kms", kmsURL, "--quiet"] }
    p.arguments = a
    let outPipe = Pipe()
    let errPipe = Pipe()
    if let stdoutFile {
      p.standardOutput = FileHandle(forWritingAtPath: stdoutFile)
    } else {
      p.standardOutput = outPipe
    }
    p.standardError = errPipe
    var inPipe: Pipe?
    if let stdinFile {
      p.standardInput = FileHandle(forReadingAtPath: stdinFile)
    } else if stdin != nil {
      inPipe = Pipe()
      p.standardInput = inPipe
    } else {
      p.standardInput = FileHandle.nullDevice
    }
    _ = Self.ignoreBrokenPipes
    try p.run()
    if let inPipe, let stdin {
      let h = inPipe.fileHandleForWriting
      DispatchQueue.global().async {
        // A command that refuses its arguments exits without reading stdin: the write then fails (EPIPE).
        try? h.write(contentsOf: stdin)
        try? h.close()
      }
    }
    let errBox = DataBox()
    let g = DispatchGroup()
    g.enter()
    DispatchQueue.global().async {
      errBox.data = errPipe.fileHandleForReading.readDataToEndOfFile()
      g.leave()
    }
    let out = stdoutFile == nil ? outPipe.fileHandleForReading.readDataToEndOfFile() : Data()
    g.wait()
    p.waitUntilExit()
    return Output(code: p.terminationStatus, stdout: out, stderr: String(decoding: errBox.data, as: UTF8.self))
  }

  /// Writes a file with given bytes and mode.
  func write(_ rel: String, _ data: Data, mode: Int = 0o644) throws {
    let path = dir + "/" + rel
    try FileManager.default.createDirectory(
      atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try makeFile(atPath: path, contents: data)
    try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
  }

  /// Lists the repository's objects under a prefix.
  func objects(_ prefix: String) throws -> [String] {
    let base = repo + "/" + prefix
    guard let e = FileManager.default.enumerator(atPath: base) else { return [] }
    var out: [String] = []
    while let f = e.nextObject() as? String {
      var isDir: ObjCBool = false
      if FileManager.default.fileExists(atPath: base + "/" + f, isDirectory: &isDir), !isDir.boolValue {
        out.append(prefix + "/" + f)
      }
    }
    return out.sorted()
  }

  /// Flips one byte of a repository object in place.
  func flipByte(_ key: String, at offset: Int) throws {
    let path = repo + "/" + key
    var d = try Data(contentsOf: URL(fileURLWithPath: path))
    let i = offset >= 0 ? offset : d.count + offset
    d[i] ^= 0x20
    try d.write(to: URL(fileURLWithPath: path))
  }
}

final class DataBox: @unchecked Sendable { var data = Data() }

struct HarnessError: Error, CustomStringConvertible {
  var description: String
  init(_ d: String) { description = d }
}

/// Random bytes that compress a little (half text, half noise).
func sampleData(_ n: Int) -> Data {
  var d = Data(Crypto.randomBytes(n / 2))
  d.append(Data(String(repeating: "botrt sample line\n", count: (n / 2) / 18 + 1).utf8.prefix(n - d.count)))
  return d
}

/// Creates a file or throws naming it.
func makeFile(atPath path: String, contents: Data?) throws {
  guard FileManager.default.createFile(atPath: path, contents: contents) else {
    throw HarnessError("cannot create \(path)")
  }
}
