import Foundation
import KubeCore

/// Applies a JSON patch (RFC 6902) to one object; implemented over KubeClient by `KubeObjectPatcher`.
public protocol JSONPatcher: Sendable {
  func jsonPatch(namespace: String?, name: String, _ operations: [JSONPatchOperation]) async throws
}

/// What the finalizer helper asks the reconciler to do.
public enum FinalizerEvent<Object: Sendable>: Sendable {
  /// The object lives (and carries our finalizer): converge its children.
  case apply(Object)
  /// The object is being deleted and still carries our finalizer: remove what it owns outside Kubernetes'
  /// garbage collection. Must be idempotent; throwing keeps the finalizer, so the cleanup runs again.
  case cleanup(Object)
}

/// The finalizer helper, after kube-rs's `finalizer`.
///
/// Flow, one step per reconcile:
/// 1. Alive without our finalizer: add it with a JSON patch that first `test`s the current finalizer list (or its
///    absence), then go on to step 2 in the same reconcile with the object as patched (one reconcile for a new
///    object, not two: the patch's own watch event need not bring another, see `addsOnly(_:_:finalizer:)`).
/// 2. Alive with our finalizer: call the handler with `.apply`.
/// 3. Deleting (deletionTimestamp set) with our finalizer: call the handler with `.cleanup`; when it succeeds,
///    remove our finalizer with a JSON patch that `test`s that index `i` still holds our name, then `remove`s
///    index `i`.
/// 4. Deleting without our finalizer: nothing to do (another party's finalizer holds the object).
///
/// Guarantees: only our own finalizer is ever removed (the `test` op makes the patch fail with 422/409 if the list
/// changed since we read it, instead of removing someone else's entry); cleanup runs at least once before the
/// object disappears, as long as the finalizer was added; a failed patch surfaces as an error, so the controller
/// requeues with backoff and the next attempt reads the fresh object.
///
/// Caveats: cleanup can run more than once (after a crash, or when the removal patch conflicts), so it must be
/// idempotent; objects created and deleted before the first reconcile never get the finalizer and skip cleanup
/// (children carrying owner references are still garbage-collected); a finalizer whose controller is
/// uninstalled blocks deletion until someone removes it by hand.
public enum Finalizer {
  /// Runs one step of the flow above for `object`.
  public static func reconcile<Object: KubeObject>(
    _ object: Object, finalizer: String, patcher: some JSONPatcher,
    handler: (FinalizerEvent<Object>) async throws -> ReconcileResult
  ) async throws -> ReconcileResult {
    let meta = object.metadata
    let has = meta.hasFinalizer(finalizer)
    switch (meta.isDeleting, has) {
    case (false, false):
      try await patcher.jsonPatch(namespace: meta.namespace, name: object.name, addPatch(meta, finalizer))
      var added = object
      added.metadata.finalizers = (meta.finalizers ?? []) + [finalizer]
      return try await handler(.apply(added))
    case (false, true):
      return try await handler(.apply(object))
    case (true, true):
      let result = try await handler(.cleanup(object))
      if let ops = removePatch(meta, finalizer) {
        try await patcher.jsonPatch(namespace: meta.namespace, name: object.name, ops)
      }
      return result
    case (true, false):
      return .awaitChange
    }
  }

  /// Whether the change from `old` to `new` of a live object's finalizers is only `finalizer` appended: the watch
  /// echo of step 1's patch, which needs no reconcile of its own (the reconcile that added it went on to apply).
  public static func addsOnly(_ old: ObjectMeta, _ new: ObjectMeta, finalizer: String) -> Bool {
    !new.isDeleting && (old.finalizers ?? []) + [finalizer] == (new.finalizers ?? [])
  }

  /// The patch adding `finalizer`: tests the list as read (null when absent), then appends.
  public static func addPatch(_ meta: ObjectMeta, _ finalizer: String) -> [JSONPatchOperation] {
    let list = meta.finalizers ?? []
    if list.isEmpty {
      return [
        .test(path: "/metadata/finalizers", value: meta.finalizers == nil ? .null : .array([])),
        .add(path: "/metadata/finalizers", value: [.string(finalizer)]),
      ]
    }
    return [
      .test(path: "/metadata/finalizers", value: .array(list.map(JSONValue.string))),
      .add(path: "/metadata/finalizers/-", value: .string(finalizer)),
    ]
  }

  /// The patch removing only `finalizer`: tests its index, then removes that index; nil when absent.
  public static func removePatch(_ meta: ObjectMeta, _ finalizer: String) -> [JSONPatchOperation]? {
    guard let i = meta.finalizers?.firstIndex(of: finalizer) else { return nil }
    return [
      .test(path: "/metadata/finalizers/\(i)", value: .string(finalizer)),
      .remove(path: "/metadata/finalizers/\(i)"),
    ]
  }

  /// Applies `ops` to a JSON document locally, with the RFC 6902 semantics this helper uses (test, add, remove on
  /// object members and array indexes, `-` to append); used by tests and fakes.
  public static func applyLocally(_ ops: [JSONPatchOperation], to document: JSONValue) throws -> JSONValue {
    var doc = document
    for op in ops {
      switch op {
      case .test(let path, let value):
        let current = try get(doc, pointer(path))
        if (current ?? .null) != value {
          throw LocalPatchError(message: "test failed at \(path): expected \(value), found \(current ?? .null)")
        }
      case .add(let path, let value):
        doc = try set(doc, pointer(path), value, insert: true)
      case .replace(let path, let value):
        doc = try set(doc, pointer(path), value, insert: false)
      case .remove(let path):
        doc = try remove(doc, pointer(path))
      case .move, .copy:
        throw LocalPatchError(message: "move and copy are not supported locally")
      }
    }
    return doc
  }

  private static func pointer(_ path: String) throws -> [String] {
    guard path.hasPrefix("/") else { throw LocalPatchError(message: "bad JSON pointer \(path)") }
    return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
      $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
    }
  }

  private static func get(_ doc: JSONValue, _ p: [String]) throws -> JSONValue? {
    var cur: JSONValue? = doc
    for seg in p {
      switch cur {
      case .object(let o): cur = o[seg]
      case .array(let a):
        guard let i = Int(seg), a.indices.contains(i) else { return nil }
        cur = a[i]
      default: return nil
      }
    }
    return cur
  }

  private static func set(_ doc: JSONValue, _ p: [String], _ value: JSONValue, insert: Bool) throws -> JSONValue {
    guard let first = p.first else { return value }
    let rest = Array(p.dropFirst())
    switch doc {
    case .object(var o):
      if rest.isEmpty {
        if !insert && o[first] == nil { throw LocalPatchError(message: "replace of missing member \(first)") }
        o[first] = value
      } else {
        guard let child = o[first] else { throw LocalPatchError(message: "missing member \(first)") }
        o[first] = try set(child, rest, value, insert: insert)
      }
      return .object(o)
    case .array(var a):
      if rest.isEmpty {
        if first == "-" && insert {
          a.append(value)
        } else if let i = Int(first), i >= 0, i <= a.count {
          if insert {
            a.insert(value, at: i)
          } else if i < a.count {
            a[i] = value
          } else {
            throw LocalPatchError(message: "index \(i) out of range")
          }
        } else {
          throw LocalPatchError(message: "bad array index \(first)")
        }
      } else {
        guard let i = Int(first), a.indices.contains(i) else { throw LocalPatchError(message: "bad index \(first)") }
        a[i] = try set(a[i], rest, value, insert: insert)
      }
      return .array(a)
    default:
      throw LocalPatchError(message: "cannot descend into a scalar at \(first)")
    }
  }

  private static func remove(_ doc: JSONValue, _ p: [String]) throws -> JSONValue {
    guard let first = p.first else { throw LocalPatchError(message: "cannot remove the root") }
    let rest = Array(p.dropFirst())
    switch doc {
    case .object(var o):
      guard let child = o[first] else { throw LocalPatchError(message: "missing member \(first)") }
      if rest.isEmpty { o[first] = nil } else { o[first] = try remove(child, rest) }
      return .object(o)
    case .array(var a):
      guard let i = Int(first), a.indices.contains(i) else { throw LocalPatchError(message: "bad index \(first)") }
      if rest.isEmpty { a.remove(at: i) } else { a[i] = try remove(a[i], rest) }
      return .array(a)
    default:
      throw LocalPatchError(message: "cannot descend into a scalar at \(first)")
    }
  }
}

/// A local JSON patch that could not be applied (e.g. a failed `test`).
public struct LocalPatchError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public var description: String { message }
}
