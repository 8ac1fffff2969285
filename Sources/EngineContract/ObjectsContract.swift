import Foundation

/// `botrt-objects`, the job image's second executable: it reads a namespace's Kubernetes objects into a directory
/// (`export`, an init container of a backup pod, whose directory the engine then backs up in the same snapshot as the
/// claim) and re-creates them from such a directory in a target namespace (`apply`, a RecoveryPlan restore step's
/// container, after the engine restored the directory). The engine itself still reads nothing of Kubernetes.
///
/// The directory (`ObjectsLayout`):
/// - `index.json`: an `ObjectsIndex`, the objects in the order they were listed, with their files;
/// - one file per object, `<group or "core">/<Kind>/<name>.json`, the object as the apiserver returned it without
///   `metadata.managedFields`.
///
/// In a snapshot the directory is the top-level entry `_kubernetes` (`ObjectsLayout.snapshotEntry`), beside the
/// claim's own entry (the claim's name); `_` cannot begin a claim's name, so the two never collide.
public enum ObjectsCommandName {
  public static let export = "export"
  public static let apply = "apply"
}

/// The flags of `botrt-objects`.
public enum ObjectsFlag {
  public static let namespace = "namespace"
  public static let directory = "dir"
  public static let kind = "kind"
  public static let selector = "selector"
  public static let sourceNamespace = "source-namespace"
  public static let resultFile = "result-file"
  public static func long(_ f: String) -> String { "--" + f }
}

/// A kind, written `Kind` for the core group and `Kind.group` otherwise (as `kubectl get deployments.apps` names a
/// resource, but with the Kind): `ConfigMap`, `Deployment.apps`, `Widget.example.io`.
public struct ObjectsKind: Sendable, Hashable, Comparable, CustomStringConvertible {
  public var kind: String
  /// "" for the core group.
  public var group: String

  public init(kind: String, group: String = "") {
    self.kind = kind
    self.group = group
  }

  /// Parses `Kind` or `Kind.group`; nil when the kind is empty or not a Kind (an upper-case first letter, letters and
  /// digits).
  public init?(_ text: String) {
    let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
    let k = String(parts[0])
    guard let first = k.unicodeScalars.first, ("A"..."Z").contains(first),
      k.unicodeScalars.allSatisfy({ ("A"..."Z").contains($0) || ("a"..."z").contains($0) || ("0"..."9").contains($0) })
    else { return nil }
    let g = parts.count > 1 ? String(parts[1]) : ""
    if parts.count > 1 && g.isEmpty { return nil }
    self.kind = k
    self.group = g
  }

  public var description: String { group.isEmpty ? kind : "\(kind).\(group)" }

  public static func < (a: ObjectsKind, b: ObjectsKind) -> Bool { a.description < b.description }

  /// What a policy backs up when it names no kinds: the namespaced objects an application is made of.
  public static let standard: [ObjectsKind] = [
    ObjectsKind(kind: "ServiceAccount"), ObjectsKind(kind: "Secret"), ObjectsKind(kind: "ConfigMap"),
    ObjectsKind(kind: "Role", group: "rbac.authorization.k8s.io"),
    ObjectsKind(kind: "RoleBinding", group: "rbac.authorization.k8s.io"),
    ObjectsKind(kind: "PersistentVolumeClaim"), ObjectsKind(kind: "Service"),
    ObjectsKind(kind: "Deployment", group: "apps"), ObjectsKind(kind: "StatefulSet", group: "apps"),
    ObjectsKind(kind: "DaemonSet", group: "apps"), ObjectsKind(kind: "Ingress", group: "networking.k8s.io"),
  ]

  /// The order `apply` creates kinds in: identities, Secrets and config, namespaced RBAC, claims, Services, then
  /// custom resources (which workloads may consume), then workloads, then Ingresses. A kind not listed (a custom
  /// resource) comes at `customRank`.
  public static let applyOrder: [ObjectsKind] = [
    ObjectsKind(kind: "ServiceAccount"), ObjectsKind(kind: "Secret"), ObjectsKind(kind: "ConfigMap"),
    ObjectsKind(kind: "Role", group: "rbac.authorization.k8s.io"),
    ObjectsKind(kind: "RoleBinding", group: "rbac.authorization.k8s.io"),
    ObjectsKind(kind: "PersistentVolumeClaim"), ObjectsKind(kind: "Service"),
  ]
  public static let workloadOrder: [ObjectsKind] = [
    ObjectsKind(kind: "Deployment", group: "apps"), ObjectsKind(kind: "StatefulSet", group: "apps"),
    ObjectsKind(kind: "DaemonSet", group: "apps"), ObjectsKind(kind: "Ingress", group: "networking.k8s.io"),
  ]

  /// The rank of a kind in the apply order (lower first): the listed kinds, custom resources between config and
  /// workloads.
  public var applyRank: Int {
    if let i = Self.applyOrder.firstIndex(of: self) { return i }
    if let i = Self.workloadOrder.firstIndex(of: self) { return Self.applyOrder.count + 1 + i }
    return Self.applyOrder.count
  }
}

/// The label that leaves an object out of every object backup, whatever the policy selects (Velero's
/// `velero.io/exclude-from-backup`).
public enum ObjectsLabels {
  public static let excludeFromBackup = "dr.botrt.io/exclude-from-backup"
}

/// The directory's layout.
public enum ObjectsLayout {
  /// The top-level entry of a snapshot that holds the objects.
  public static let snapshotEntry = "_kubernetes"
  /// Where a backup pod mounts the directory (its last component is `snapshotEntry`).
  public static let backupMount = "/objects/" + snapshotEntry
  /// Where a restore pod restores the snapshot's entry to (the engine restores `snapshotEntry` below it).
  public static let restoreRoot = "/objects"
  /// The index file in the directory.
  public static let indexFile = "index.json"

  /// The file of an object, relative to the directory.
  public static func file(kind: ObjectsKind, name: String) -> String {
    "\(kind.group.isEmpty ? "core" : kind.group)/\(kind.kind)/\(name).json"
  }
}

/// `index.json`.
public struct ObjectsIndex: Codable, Sendable, Hashable {
  public struct Entry: Codable, Sendable, Hashable {
    /// `Kind` or `Kind.group` (`ObjectsKind.description`).
    public var kind: String
    public var apiVersion: String
    public var name: String
    /// Relative to the directory.
    public var file: String
    public init(kind: String, apiVersion: String, name: String, file: String) {
      self.kind = kind
      self.apiVersion = apiVersion
      self.name = name
      self.file = file
    }
  }
  /// The format's version (1).
  public var version: Int
  /// The namespace the objects were read from.
  public var namespace: String
  public var objects: [Entry]
  /// Kinds asked for that the apiserver does not serve (a custom resource without its CRD), as `Kind.group`.
  public var unservedKinds: [String]
  public init(version: Int = 1, namespace: String, objects: [Entry], unservedKinds: [String] = []) {
    self.version = version
    self.namespace = namespace
    self.objects = objects
    self.unservedKinds = unservedKinds
  }
}

/// `botrt-objects export --namespace NS --dir DIR [--kind K]... [--selector SEL] [--result-file F]`: every object of
/// the kinds (default `ObjectsKind.standard`) in the namespace that matches the label selector (Kubernetes syntax,
/// `app=web,tier in (a,b)`) and does not carry `ObjectsLabels.excludeFromBackup: "true"`.
public struct ObjectsExportArguments: Sendable, Hashable {
  public var namespace: String
  public var directory: String
  public var kinds: [ObjectsKind]
  public var selector: String?
  public var resultFile: String?

  public init(
    namespace: String, directory: String, kinds: [ObjectsKind] = [], selector: String? = nil,
    resultFile: String? = nil
  ) {
    self.namespace = namespace
    self.directory = directory
    self.kinds = kinds
    self.selector = selector
    self.resultFile = resultFile
  }

  public var argv: [String] {
    let l = ObjectsFlag.long
    var a = [ObjectsCommandName.export, l(ObjectsFlag.namespace), namespace, l(ObjectsFlag.directory), directory]
    for k in kinds { a += [l(ObjectsFlag.kind), k.description] }
    if let s = selector, !s.isEmpty { a += [l(ObjectsFlag.selector), s] }
    if let r = resultFile { a += [l(ObjectsFlag.resultFile), r] }
    return a
  }
}

/// `botrt-objects apply --dir DIR --namespace TARGET [--kind K]... [--result-file F]`: re-creates the directory's
/// objects (only these kinds, when given) in the target namespace, in `ObjectsKind.applyRank` order. Each object loses
/// what the server set (uid, resourceVersion, generation, creationTimestamp, managedFields, selfLink, status,
/// ownerReferences, a Service's clusterIP(s) and nodePorts, a claim's volumeName and binding annotations, a pod
/// template's nodeName, `kubectl.kubernetes.io/last-applied-configuration`); subjects of a RoleBinding in the source
/// namespace are mapped to the target. Not re-created: objects with a controller owner (their owner re-creates
/// them), ServiceAccount token Secrets, the `kube-root-ca.crt` ConfigMap. An object that exists is left unchanged
/// and reported as existing. The result (`ObjectsResult`, one JSON line) goes to stdout and the result file.
public struct ObjectsApplyArguments: Sendable, Hashable {
  public var directory: String
  public var namespace: String
  public var kinds: [ObjectsKind]
  public var resultFile: String?

  public init(directory: String, namespace: String, kinds: [ObjectsKind] = [], resultFile: String? = nil) {
    self.directory = directory
    self.namespace = namespace
    self.kinds = kinds
    self.resultFile = resultFile
  }

  public var argv: [String] {
    let l = ObjectsFlag.long
    var a = [ObjectsCommandName.apply, l(ObjectsFlag.directory), directory, l(ObjectsFlag.namespace), namespace]
    for k in kinds { a += [l(ObjectsFlag.kind), k.description] }
    if let r = resultFile { a += [l(ObjectsFlag.resultFile), r] }
    return a
  }
}

/// The one-line JSON result of `export` and `apply`, which the controller reads from the container's termination
/// message (`--result-file /dev/termination-log`). Object names only: never an object's content.
public struct ObjectsResult: Codable, Sendable, Hashable {
  public struct Failure: Codable, Sendable, Hashable {
    /// `Kind/name` (`Deployment.apps/web`).
    public var object: String
    public var message: String
    public init(object: String, message: String) {
      self.object = object
      self.message = message
    }
  }
  /// "export" or "apply".
  public var command: String
  /// Objects written (export) or created (apply).
  public var objects: Int
  /// apply: objects that existed and were left unchanged.
  public var existing: Int
  /// apply: objects not re-created by rule (owned, token Secrets, kube-root-ca.crt), as `Kind/name`.
  public var skipped: [String]
  /// Kinds the apiserver does not serve.
  public var unservedKinds: [String]
  public var failures: [Failure]

  public init(
    command: String, objects: Int, existing: Int = 0, skipped: [String] = [], unservedKinds: [String] = [],
    failures: [Failure] = []
  ) {
    self.command = command
    self.objects = objects
    self.existing = existing
    self.skipped = skipped
    self.unservedKinds = unservedKinds
    self.failures = failures
  }
}

extension ObjectsResult {
  /// Parses a termination message: its last line that starts with `{`; nil when there is none or it is not a
  /// `botrt-objects` result.
  public static func parse(_ message: String?) -> ObjectsResult? { decodeLastJSONLine(message) }

  /// "N Kubernetes objects", and what failed (names and the first messages), for status and Events.
  public var summary: String {
    var s = "\(objects) Kubernetes object\(objects == 1 ? "" : "s")"
    if existing > 0 { s += ", \(existing) existing" }
    if !failures.isEmpty {
      let shown = failures.prefix(3).map { "\($0.object): \($0.message.prefix(300))" }.joined(separator: "; ")
      s += ", \(failures.count) failed (\(shown)\(failures.count > 3 ? "; …" : ""))"
    }
    return s
  }
}

/// Exit codes of `botrt-objects`.
public enum ObjectsExitCode {
  public static let ok: Int32 = 0
  /// Some objects failed (named in the result); the others were written or created.
  public static let partial: Int32 = 3
  /// Usage or configuration error (bad flag, unreadable directory, no cluster).
  public static let usage: Int32 = 2
  /// The apiserver refused or could not be reached for the whole command.
  public static let failed: Int32 = 1
}
