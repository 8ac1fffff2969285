import EngineContract
import KubeCore

/// What `apply` does with one exported object: pure functions, no I/O (unit tested without an apiserver).
public enum ApplyTransform {
  /// The outcome for one object.
  public enum Outcome: Sendable, Hashable {
    /// Create this object (already stripped and moved to the target namespace).
    case create(JSONValue)
    /// Not re-created, for this reason (names only).
    case skip(reason: String)
  }

  /// Annotations the apiserver or a controller sets, which a re-created object must not carry.
  public static let strippedAnnotations: Set<String> = ["kubectl.kubernetes.io/last-applied-configuration"]
  /// A claim's binding annotations (the PV controller sets them when it binds; a re-created claim binds anew).
  public static let strippedClaimAnnotations: Set<String> = [
    "pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner", "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
  ]
  /// Server-set metadata fields.
  public static let strippedMetadata = [
    "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink", "ownerReferences",
    "deletionTimestamp", "deletionGracePeriodSeconds",
  ]

  static let configMap = ObjectsKind(kind: "ConfigMap")
  static let secret = ObjectsKind(kind: "Secret")
  static let service = ObjectsKind(kind: "Service")
  static let claim = ObjectsKind(kind: "PersistentVolumeClaim")
  static let serviceAccount = ObjectsKind(kind: "ServiceAccount")
  static let pod = ObjectsKind(kind: "Pod")
  static let roleBinding = ObjectsKind(kind: "RoleBinding", group: "rbac.authorization.k8s.io")
  static let cronJob = ObjectsKind(kind: "CronJob", group: "batch")

  /// Prepares `object` (of `kind`, exported from `sourceNamespace`) for creation in `targetNamespace`, or says why
  /// it is not re-created.
  public static func prepare(
    _ object: JSONValue, kind: ObjectsKind, sourceNamespace: String, targetNamespace: String
  ) -> Outcome {
    let name = object[path: "metadata", "name"]?.stringValue ?? ""
    // Objects a controller owns: their owner re-creates them.
    if let owners = object[path: "metadata", "ownerReferences"]?.arrayValue,
      let owner = owners.first(where: { $0["controller"]?.boolValue == true })
    {
      let ownerKind = owner["kind"]?.stringValue ?? "?"
      let ownerName = owner["name"]?.stringValue ?? "?"
      return .skip(reason: "owned by its controller \(ownerKind)/\(ownerName)")
    }
    if kind == secret, object["type"]?.stringValue == "kubernetes.io/service-account-token" {
      return .skip(reason: "a ServiceAccount token Secret (the token controller makes a new one)")
    }
    if kind == configMap, name == "kube-root-ca.crt" {
      return .skip(reason: "the cluster's CA ConfigMap (published in every namespace)")
    }

    var o = object
    var meta = o["metadata"]?.objectValue ?? [:]
    for f in strippedMetadata { meta[f] = nil }
    meta["namespace"] = .string(targetNamespace)
    if var ann = meta["annotations"]?.objectValue {
      for a in strippedAnnotations { ann[a] = nil }
      if kind == claim { for a in strippedClaimAnnotations { ann[a] = nil } }
      meta["annotations"] = ann.isEmpty ? nil : .object(ann)
    }
    o["metadata"] = .object(meta)
    if var obj = o.objectValue {
      obj["status"] = nil
      o = .object(obj)
    }

    switch kind {
    case service:
      if var spec = o["spec"]?.objectValue {
        // A headless Service keeps `clusterIP: None`; any other address is the server's to assign.
        let headless = spec["clusterIP"]?.stringValue == "None"
        spec["clusterIP"] = headless ? .string("None") : nil
        spec["clusterIPs"] = headless ? spec["clusterIPs"] : nil
        spec["healthCheckNodePort"] = nil
        if let ports = spec["ports"]?.arrayValue {
          spec["ports"] = .array(ports.map { removing("nodePort", from: $0) })
        }
        o["spec"] = .object(spec)
      }
    case claim:
      o["spec"] = o["spec"].map { removing("volumeName", from: $0) }
    case serviceAccount:
      // The token Secrets listed here are the source namespace's (not re-created); the token controller adds new.
      if let secrets = o["secrets"]?.arrayValue {
        let kept = secrets.filter { !($0["name"]?.stringValue ?? "").hasPrefix("\(name)-token-") }
        if var obj = o.objectValue {
          obj["secrets"] = kept.isEmpty ? nil : .array(kept)
          o = .object(obj)
        }
      }
    case roleBinding:
      if let subjects = o["subjects"]?.arrayValue {
        o["subjects"] = .array(
          subjects.map { s in
            guard s["kind"]?.stringValue == "ServiceAccount", s["namespace"]?.stringValue == sourceNamespace else {
              return s
            }
            var m = s
            m["namespace"] = .string(targetNamespace)
            return m
          })
      }
    case pod:
      o["spec"] = o["spec"].map { removing("nodeName", from: $0) }
    default:
      break
    }
    // A pod template's nodeName (workloads; a CronJob's job template).
    if var spec = o["spec"], var template = spec["template"], let podSpec = template["spec"] {
      template["spec"] = removing("nodeName", from: podSpec)
      spec["template"] = template
      o["spec"] = spec
    }
    if kind == cronJob, var spec = o["spec"], var jt = spec["jobTemplate"], var jspec = jt["spec"],
      var template = jspec["template"], let podSpec = template["spec"]
    {
      template["spec"] = removing("nodeName", from: podSpec)
      jspec["template"] = template
      jt["spec"] = jspec
      spec["jobTemplate"] = jt
      o["spec"] = spec
    }
    return .create(o)
  }

  static func removing(_ key: String, from value: JSONValue) -> JSONValue {
    guard var obj = value.objectValue else { return value }
    obj[key] = nil
    return .object(obj)
  }

  /// One object of the index to apply, with its parsed kind.
  public struct Planned: Sendable, Hashable {
    public var entry: ObjectsIndex.Entry
    public var kind: ObjectsKind
  }

  /// The index's entries to apply, in `applyRank` order then index order, keeping only `kinds` when it is not empty;
  /// entries whose kind does not parse are returned in `unparsable`.
  public static func plan(_ index: ObjectsIndex, kinds: [ObjectsKind]) -> (
    planned: [Planned], unparsable: [ObjectsIndex.Entry]
  ) {
    var planned: [(Int, Planned)] = []
    var bad: [ObjectsIndex.Entry] = []
    let wanted = Set(kinds)
    for (i, e) in index.objects.enumerated() {
      guard let k = ObjectsKind(e.kind) else {
        bad.append(e)
        continue
      }
      if !wanted.isEmpty && !wanted.contains(k) { continue }
      planned.append((i, Planned(entry: e, kind: k)))
    }
    planned.sort { a, b in
      a.1.kind.applyRank != b.1.kind.applyRank ? a.1.kind.applyRank < b.1.kind.applyRank : a.0 < b.0
    }
    return (planned.map(\.1), bad)
  }

  /// Whether `file` (an index entry's) is a safe relative path inside the directory: not absolute, no `..`, not
  /// empty.
  public static func isSafeRelativePath(_ file: String) -> Bool {
    guard !file.isEmpty, !file.hasPrefix("/") else { return false }
    return !file.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == ".." || $0.isEmpty }
  }
}
