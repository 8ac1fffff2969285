import Foundation

/// Engine-level failures with the exit code class each maps to.
public enum EngineError: Error, Sendable, CustomStringConvertible {
  /// Bad arguments or a malformed URL.
  case usage(String)
  /// Damaged, forged or missing repository data; names the object.
  case integrity(object: String, message: String)
  /// The repository uses a format this build does not know.
  case unsupportedFormat(String)
  /// The repository is locked by another live process.
  case locked(String)
  /// A local file-system failure outside the store (restore target, source files).
  case io(path: String, message: String)
  /// The restore target ran out of space.
  case noSpace(path: String, message: String)
  /// No such snapshot.
  case snapshotNotFound(String)
  /// There is no repository at the location (its config is missing).
  case repositoryNotFound(String)
  /// Something else.
  case failed(String)

  public var description: String {
    switch self {
    case .usage(let m): return m
    case .integrity(let o, let m): return "integrity failure in \(o): \(m)"
    case .unsupportedFormat(let m): return m
    case .locked(let m): return m
    case .io(let p, let m): return "\(p): \(m)"
    case .noSpace(let p, let m):
      return "no space left on device writing \(p): \(m); free space or choose another target"
    case .snapshotNotFound(let s): return "snapshot \(s) not found; list them with `botrt-engine snapshots`"
    case .repositoryNotFound(let location):
      return "no repository at \(location) (config missing); create one with `botrt-engine init`"
    case .failed(let m): return m
    }
  }
}

/// Builds a message for a POSIX errno.
func errnoMessage(_ e: Int32) -> String { String(cString: strerror(e)) }
