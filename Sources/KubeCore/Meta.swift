import Foundation

/// Standard object metadata (metav1.ObjectMeta).
public struct ObjectMeta: Codable, Sendable, Hashable {
  public var name: String?
  public var generateName: String?
  public var namespace: String?
  public var uid: String?
  public var resourceVersion: String?
  public var generation: Int64?
  public var labels: [String: String]?
  public var annotations: [String: String]?
  public var ownerReferences: [OwnerReference]?
  public var finalizers: [String]?
  /// Server-side apply bookkeeping, kept opaque.
  public var managedFields: JSONValue?
  public var creationTimestamp: Date?
  public var deletionTimestamp: Date?
  public var deletionGracePeriodSeconds: Int64?

  public init(
    name: String? = nil, generateName: String? = nil, namespace: String? = nil, uid: String? = nil,
    resourceVersion: String? = nil, generation: Int64? = nil, labels: [String: String]? = nil,
    annotations: [String: String]? = nil, ownerReferences: [OwnerReference]? = nil, finalizers: [String]? = nil,
    managedFields: JSONValue? = nil, creationTimestamp: Date? = nil, deletionTimestamp: Date? = nil,
    deletionGracePeriodSeconds: Int64? = nil
  ) {
    self.name = name
    self.generateName = generateName
    self.namespace = namespace
    self.uid = uid
    self.resourceVersion = resourceVersion
    self.generation = generation
    self.labels = labels
    self.annotations = annotations
    self.ownerReferences = ownerReferences
    self.finalizers = finalizers
    self.managedFields = managedFields
    self.creationTimestamp = creationTimestamp
    self.deletionTimestamp = deletionTimestamp
    self.deletionGracePeriodSeconds = deletionGracePeriodSeconds
  }

  enum CodingKeys: String, CodingKey {
    case name, generateName, namespace, uid, resourceVersion, generation, labels, annotations, ownerReferences
    case finalizers, managedFields, creationTimestamp, deletionTimestamp, deletionGracePeriodSeconds
  }

  // managedFields is skipped when the decoder's userInfo asks for it (see `KubeJSON.decoder(stripManagedFields:)`):
  // it is most of the decoding cost of small objects and controllers rarely read it.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    name = try c.decodeIfPresent(String.self, forKey: .name)
    generateName = try c.decodeIfPresent(String.self, forKey: .generateName)
    namespace = try c.decodeIfPresent(String.self, forKey: .namespace)
    uid = try c.decodeIfPresent(String.self, forKey: .uid)
    resourceVersion = try c.decodeIfPresent(String.self, forKey: .resourceVersion)
    generation = try c.decodeIfPresent(Int64.self, forKey: .generation)
    labels = try c.decodeIfPresent([String: String].self, forKey: .labels)
    annotations = try c.decodeIfPresent([String: String].self, forKey: .annotations)
    ownerReferences = try c.decodeIfPresent([OwnerReference].self, forKey: .ownerReferences)
    finalizers = try c.decodeIfPresent([String].self, forKey: .finalizers)
    if decoder.userInfo[KubeJSON.stripManagedFieldsKey] as? Bool == true {
      managedFields = nil
    } else {
      managedFields = try c.decodeIfPresent(JSONValue.self, forKey: .managedFields)
    }
    creationTimestamp = try c.decodeIfPresent(Date.self, forKey: .creationTimestamp)
    deletionTimestamp = try c.decodeIfPresent(Date.self, forKey: .deletionTimestamp)
    deletionGracePeriodSeconds = try c.decodeIfPresent(Int64.self, forKey: .deletionGracePeriodSeconds)
  }

  /// Whether the object is being deleted (deletionTimestamp set).
  public var isDeleting: Bool { deletionTimestamp != nil }

  /// Whether `finalizer` is present.
  public func hasFinalizer(_ finalizer: String) -> Bool { finalizers?.contains(finalizer) ?? false }
}

/// A reference from a dependent to its owner (metav1.OwnerReference); same namespace or cluster-scoped owner only.
public struct OwnerReference: Codable, Sendable, Hashable {
  public var apiVersion: String
  public var kind: String
  public var name: String
  public var uid: String
  public var controller: Bool?
  public var blockOwnerDeletion: Bool?

  public init(
    apiVersion: String, kind: String, name: String, uid: String, controller: Bool? = nil,
    blockOwnerDeletion: Bool? = nil
  ) {
    self.apiVersion = apiVersion
    self.kind = kind
    self.name = name
    self.uid = uid
    self.controller = controller
    self.blockOwnerDeletion = blockOwnerDeletion
  }
}

/// List metadata (metav1.ListMeta): the list's resourceVersion and the continue token of the next page.
public struct ListMeta: Codable, Sendable, Hashable {
  public var resourceVersion: String?
  /// Named `continue` on the wire.
  public var continueToken: String?
  public var remainingItemCount: Int64?

  enum CodingKeys: String, CodingKey {
    case resourceVersion
    case continueToken = "continue"
    case remainingItemCount
  }

  public init(resourceVersion: String? = nil, continueToken: String? = nil, remainingItemCount: Int64? = nil) {
    self.resourceVersion = resourceVersion
    self.continueToken = continueToken
    self.remainingItemCount = remainingItemCount
  }
}

/// The status of a condition: "True", "False" or "Unknown".
public enum ConditionStatus: String, Codable, Sendable, Hashable {
  case `true` = "True"
  case `false` = "False"
  case unknown = "Unknown"
}

/// A status condition as the API conventions define it (metav1.Condition).
public struct Condition: Codable, Sendable, Hashable {
  public var type: String
  public var status: ConditionStatus
  public var reason: String
  public var message: String
  public var lastTransitionTime: Date
  public var observedGeneration: Int64?

  public init(
    type: String, status: ConditionStatus, reason: String, message: String = "", lastTransitionTime: Date,
    observedGeneration: Int64? = nil
  ) {
    self.type = type
    self.status = status
    self.reason = reason
    self.message = message
    self.lastTransitionTime = lastTransitionTime
    self.observedGeneration = observedGeneration
  }

  // Decode leniently: older objects may miss message or reason.
  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    type = try c.decode(String.self, forKey: .type)
    status = try c.decode(ConditionStatus.self, forKey: .status)
    reason = try c.decodeIfPresent(String.self, forKey: .reason) ?? ""
    message = try c.decodeIfPresent(String.self, forKey: .message) ?? ""
    lastTransitionTime = try c.decodeIfPresent(Date.self, forKey: .lastTransitionTime) ?? Date(timeIntervalSince1970: 0)
    observedGeneration = try c.decodeIfPresent(Int64.self, forKey: .observedGeneration)
  }
}

extension Array where Element == Condition {
  /// The condition of `type`, if present.
  public func condition(_ type: String) -> Condition? { first { $0.type == type } }

  /// Whether the condition of `type` is present with status True.
  public func isTrue(_ type: String) -> Bool { condition(type)?.status == .true }

  /// Sets a condition; `lastTransitionTime` changes only when the status changes (or the condition is new).
  ///
  /// The time is truncated to whole seconds, as the apiserver stores it. Returns whether anything changed.
  @discardableResult
  public mutating func setCondition(
    type: String, status: ConditionStatus, reason: String, message: String, observedGeneration: Int64? = nil,
    now: Date
  ) -> Bool {
    let truncated = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
    if let i = firstIndex(where: { $0.type == type }) {
      var c = self[i]
      let old = c
      if c.status != status { c.lastTransitionTime = truncated }
      c.status = status
      c.reason = reason
      c.message = message
      c.observedGeneration = observedGeneration
      self[i] = c
      return c != old
    }
    append(
      Condition(
        type: type, status: status, reason: reason, message: message, lastTransitionTime: truncated,
        observedGeneration: observedGeneration))
    return true
  }

  /// Removes the condition of `type`; returns whether it was present.
  @discardableResult
  public mutating func removeCondition(_ type: String) -> Bool {
    let before = count
    removeAll { $0.type == type }
    return count != before
  }
}

/// A reference to an object (core/v1 ObjectReference), used by Events.
public struct ObjectReference: Codable, Sendable, Hashable {
  public var apiVersion: String?
  public var kind: String?
  public var namespace: String?
  public var name: String?
  public var uid: String?
  public var resourceVersion: String?
  public var fieldPath: String?

  public init(
    apiVersion: String? = nil, kind: String? = nil, namespace: String? = nil, name: String? = nil, uid: String? = nil,
    resourceVersion: String? = nil, fieldPath: String? = nil
  ) {
    self.apiVersion = apiVersion
    self.kind = kind
    self.namespace = namespace
    self.name = name
    self.uid = uid
    self.resourceVersion = resourceVersion
    self.fieldPath = fieldPath
  }
}
