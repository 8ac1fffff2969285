import DRAPI

/// What the kinds of a spec's exactly-one-of choices mean for the policy's children, each an exhaustive `switch`:
/// a new kind is a compile error here until its children are decided.
extension BackupSourceKind {
  /// Whether the backup mounts a claim of the policy's namespace, so that its Jobs run there (a claim can only be
  /// mounted in its own namespace); otherwise they run in the backup namespace.
  var mountsPolicyClaim: Bool {
    switch self {
    case .pvc, .claims: true
    case .command, .objects: false
    }
  }

  /// Whether the backup's pods run a dump command that reaches a database over the network.
  var reachesDatabase: Bool {
    switch self {
    case .pvc, .claims, .objects: false
    case .command: true
    }
  }
}
