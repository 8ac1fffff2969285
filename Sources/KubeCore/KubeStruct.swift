import Foundation

/// A value that converts to and from `JSONValue` without loss.
public protocol JSONConvertible: Sendable {
  /// The value of `json`; nil when the JSON does not have this type's shape.
  init?(json: JSONValue)
  /// The value as JSON.
  var json: JSONValue { get }
}

extension JSONValue: JSONConvertible {
  public init?(json: JSONValue) { self = json }
  public var json: JSONValue { self }
}

extension String: JSONConvertible {
  public init?(json: JSONValue) {
    guard case .string(let s) = json else { return nil }
    self = s
  }
  public var json: JSONValue { .string(self) }
}

extension Bool: JSONConvertible {
  public init?(json: JSONValue) {
    guard case .bool(let b) = json else { return nil }
    self = b
  }
  public var json: JSONValue { .bool(self) }
}

extension Int64: JSONConvertible {
  /// Only a JSON integer: `2.0` stays unknown (kept as written) rather than coming back as `2`.
  public init?(json: JSONValue) {
    guard case .int(let i) = json else { return nil }
    self = i
  }
  public var json: JSONValue { .int(self) }
}

extension Array: JSONConvertible where Element: JSONConvertible {
  public init?(json: JSONValue) {
    guard case .array(let a) = json else { return nil }
    var out: [Element] = []
    out.reserveCapacity(a.count)
    for e in a {
      guard let v = Element(json: e) else { return nil }
      out.append(v)
    }
    self = out
  }
  public var json: JSONValue { .array(map(\.json)) }
}

extension Dictionary: JSONConvertible where Key == String, Value: JSONConvertible {
  public init?(json: JSONValue) {
    guard case .object(let o) = json else { return nil }
    var out: [String: Value] = [:]
    out.reserveCapacity(o.count)
    for (k, e) in o {
      guard let v = Value(json: e) else { return nil }
      out[k] = v
    }
    self = out
  }
  public var json: JSONValue { .object(mapValues(\.json)) }
}

/// The members of a JSON object that a `KubeStruct` does not model (or that did not have the modeled type), kept so
/// that a decoded object encodes back without losing them.
public struct UnknownFields: Sendable, Hashable {
  /// Unmodeled members, written back as they were.
  public var members: [String: JSONValue] = [:]
  /// The JSON of fields bridged through `Codable` (ObjectMeta) as decoded: written back as it was while the field
  /// is unchanged, since re-encoding may spell it differently (timestamps). Not part of equality.
  var originals: [String: JSONValue] = [:]

  public init(_ members: [String: JSONValue] = [:]) { self.members = members }

  public static func == (a: UnknownFields, b: UnknownFields) -> Bool { a.members == b.members }
  public func hash(into h: inout Hasher) { h.combine(members) }
}

/// One modeled member of a `KubeStruct`: its JSON key, how to read it into the value and how to write it out.
public struct KubeField<Root> {
  public let key: String
  /// Sets the field from JSON; false when the JSON does not have the field's type (the member is then kept unknown).
  let read: (inout Root, JSONValue) -> Bool
  /// The field as JSON; nil leaves the member out (an unset optional).
  let write: (Root) -> JSONValue?
}

/// How a member's value is read from JSON and written back: the one encode path of every `KubeField`, whether the
/// value is `JSONConvertible` or bridged through `Codable`.
struct MemberCoding<V> {
  /// The value of the member's JSON; nil when the JSON does not have the value's type.
  let decode: (JSONValue) -> V?
  /// The value as JSON, given the member's JSON as decoded (`original`, kept only when `keepsOriginal`).
  let encode: (V, _ original: JSONValue?) -> JSONValue?
  /// Whether the decoded JSON is kept (in `UnknownFields.originals`) to be written back while the value is unchanged.
  let keepsOriginal: Bool
}

extension MemberCoding where V: JSONConvertible {
  /// A `JSONConvertible` value: converted directly, losslessly.
  static var convertible: MemberCoding {
    MemberCoding(decode: { V(json: $0) }, encode: { v, _ in v.json }, keepsOriginal: false)
  }
}

extension MemberCoding where V: Codable & Equatable {
  /// A `Codable` value that is not a `KubeStruct` (ObjectMeta), coded with `KubeJSON`; as decoded it is written back
  /// byte for byte while unchanged, since re-encoding may spell it differently (timestamps).
  static var codable: MemberCoding {
    MemberCoding(
      decode: { try? $0.decode(as: V.self) },
      encode: { v, original in
        if let original, (try? original.decode(as: V.self)) == v { return original }
        return try? JSONValue(encoding: v)
      }, keepsOriginal: true)
  }
}

extension KubeField where Root: KubeStruct {
  /// An optional member, left out when nil.
  public static func field<V: JSONConvertible>(_ key: String, _ path: WritableKeyPath<Root, V?>) -> KubeField {
    optional(key, path, .convertible)
  }

  /// A required member, always written (e.g. a NetworkPolicy's `podSelector`, empty or not); while it is at its
  /// empty value, a member of another type kept under its key is written instead.
  public static func field<V: JSONConvertible>(_ key: String, _ path: WritableKeyPath<Root, V>) -> KubeField {
    required(key, path, .convertible)
  }

  /// An optional member of a `Codable` type that is not a `KubeStruct` (ObjectMeta), coded with `KubeJSON`. As
  /// decoded it is written back byte for byte while unchanged.
  public static func codable<V: Codable & Equatable>(_ key: String, _ path: WritableKeyPath<Root, V?>) -> KubeField {
    optional(key, path, .codable)
  }

  /// A required `Codable` member, always written.
  public static func codable<V: Codable & Equatable>(_ key: String, _ path: WritableKeyPath<Root, V>) -> KubeField {
    required(key, path, .codable)
  }

  static func optional<V>(_ key: String, _ path: WritableKeyPath<Root, V?>, _ c: MemberCoding<V>) -> KubeField {
    KubeField(
      key: key, read: reader(key, c) { $0[keyPath: path] = $1 },
      write: { root in root[keyPath: path].flatMap { c.encode($0, root.unknownFields.originals[key]) } })
  }

  static func required<V>(_ key: String, _ path: WritableKeyPath<Root, V>, _ c: MemberCoding<V>) -> KubeField {
    KubeField(
      key: key, read: reader(key, c) { $0[keyPath: path] = $1 },
      write: { root in
        let v = c.encode(root[keyPath: path], root.unknownFields.originals[key])
        if root.unknownFields.members[key] != nil && v == c.encode(Root()[keyPath: path], nil) { return nil }
        return v
      })
  }

  /// Reads a member with `c` and sets it with `set`; false when the JSON does not have the member's type.
  static func reader<V>(
    _ key: String, _ c: MemberCoding<V>, _ set: @escaping (inout Root, V) -> Void
  ) -> (inout Root, JSONValue) -> Bool {
    { root, json in
      guard let v = c.decode(json) else { return false }
      set(&root, v)
      if c.keepsOriginal { root.unknownFields.originals[key] = json }
      return true
    }
  }
}

/// A Kubernetes struct (an object kind or a part of one) modeled as the fields the controller sets or reads, coded
/// through `JSONValue`: members it does not model are kept in `unknownFields` and written back, so a live object
/// decoded and encoded again loses nothing; unset optional fields are left out (server-side apply tells an explicit
/// null from an absent field).
///
/// A conforming type lists its fields once (`fields`); `Codable`, `JSONConvertible` and the unknown fields follow.
public protocol KubeStruct: JSONConvertible, Codable, Hashable {
  /// The value with every field unset (required fields at their empty value).
  init()
  /// The modeled members.
  static var fields: [KubeField<Self>] { get }
  /// Members not modeled, kept as they were.
  var unknownFields: UnknownFields { get set }
}

extension KubeStruct {
  /// Reads the members of a JSON object; nil for JSON that is no object.
  public init?(json: JSONValue) {
    guard case .object(let o) = json else { return nil }
    self.init(members: o)
  }

  /// Reads the members of a JSON object: modeled fields of the right type into their properties, the rest into
  /// `unknownFields`.
  public init(members: [String: JSONValue]) {
    self.init()
    var unknown = members
    for f in Self.fields {
      if let v = members[f.key], f.read(&self, v) { unknown.removeValue(forKey: f.key) }
    }
    unknownFields.members = unknown
  }

  /// The value as a JSON object: the unknown members, then the set fields over them.
  public var json: JSONValue {
    var o = unknownFields.members
    for f in Self.fields {
      if let v = f.write(self) { o[f.key] = v }
    }
    return .object(o)
  }

  public init(from decoder: Decoder) throws {
    let json = try JSONValue(from: decoder)
    guard case .object(let o) = json else {
      throw DecodingError.dataCorrupted(
        .init(codingPath: decoder.codingPath, debugDescription: "\(Self.self) must be a JSON object"))
    }
    self.init(members: o)
  }

  public func encode(to encoder: Encoder) throws { try json.encode(to: encoder) }
}
