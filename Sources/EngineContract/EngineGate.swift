/// `botrt-engine gate`: the init container of a hooked backup Pod (spec.hooks). It waits until one key of a file of
/// annotations (a downward API volume exposing the Pod's `metadata.annotations`, which the kubelet rewrites when the
/// Pod's annotations change) says `done` (exit 0) or `failed` (exit `EngineExitCode.gateFailed`, with the message
/// of `messageKey` as the termination message), or until the timeout passes (exit `EngineExitCode.gateTimeout`).
/// The engine reads a file and nothing of Kubernetes.
public struct EngineGateArguments: Sendable, Hashable {
  /// The annotations file.
  public var file: String
  /// The key whose value is waited for.
  public var key: String
  /// The key holding why it failed (shown in the termination message), if any.
  public var messageKey: String?
  /// How long to wait, in seconds (1 to 86400).
  public var timeoutSeconds: Int64

  public init(file: String, key: String, messageKey: String? = nil, timeoutSeconds: Int64) {
    self.file = file
    self.key = key
    self.messageKey = messageKey
    self.timeoutSeconds = timeoutSeconds
  }

  /// What follows the engine executable.
  public var argv: [String] {
    let l = EngineFlag.long
    var a = [EngineCommandName.gate, l(EngineFlag.file), file, l(EngineFlag.key), key]
    if let m = messageKey { a += [l(EngineFlag.messageKey), m] }
    return a + [l(EngineFlag.timeout), EngineDuration.format(seconds: timeoutSeconds)]
  }
}

/// The values and file format of the gate.
public enum EngineGate {
  /// The value that lets the backup start.
  public static let done = "done"
  /// The value that fails the gate.
  public static let failed = "failed"
  /// The value the controller sets while the pre hooks run (the gate keeps waiting).
  public static let running = "running"
  /// The longest timeout the engine accepts.
  public static let maxTimeoutSeconds: Int64 = 86_400

  /// The value of `key` in a downward API annotations file (`key="value"` lines, the value quoted as Go's %q
  /// quotes it), nil when the key is absent. A line that does not parse is skipped.
  public static func value(of key: String, inAnnotations text: String) -> String? {
    for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
      guard let eq = line.firstIndex(of: "=") else { continue }
      guard line[..<eq] == key[...] else { continue }
      return unquote(String(line[line.index(after: eq)...]))
    }
    return nil
  }

  /// A Go-quoted string's value (`"a\"b\n"` -> `a"b` + newline); nil when it is not quoted.
  static func unquote(_ q: String) -> String? {
    let u = Array(q.unicodeScalars)
    guard u.count >= 2, u.first == "\"", u.last == "\"" else { return nil }
    var out = String.UnicodeScalarView()
    var bytes: [UInt8] = []
    func flush() {
      if !bytes.isEmpty {
        out.append(contentsOf: String(decoding: bytes, as: UTF8.self).unicodeScalars)
        bytes = []
      }
    }
    var i = 1
    let end = u.count - 1
    func hex(_ n: Int) -> UInt32? {
      guard i + n <= end else { return nil }
      let s = String(String.UnicodeScalarView(u[i..<(i + n)]))
      i += n
      return UInt32(s, radix: 16)
    }
    while i < end {
      let c = u[i]
      i += 1
      guard c == "\\", i < end else {
        flush()
        out.append(c)
        continue
      }
      let e = u[i]
      i += 1
      switch e {
      case "n": flush(); out.append("\n")
      case "t": flush(); out.append("\t")
      case "r": flush(); out.append("\r")
      case "a": flush(); out.append("\u{07}")
      case "b": flush(); out.append("\u{08}")
      case "f": flush(); out.append("\u{0C}")
      case "v": flush(); out.append("\u{0B}")
      case "x":
        guard let v = hex(2) else { return nil }
        bytes.append(UInt8(v))
      case "u", "U":
        guard let v = hex(e == "u" ? 4 : 8), let s = Unicode.Scalar(v) else { return nil }
        flush()
        out.append(s)
      default:
        flush()
        out.append(e)
      }
    }
    flush()
    return String(out)
  }
}
