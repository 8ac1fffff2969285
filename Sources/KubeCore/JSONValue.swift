import Foundation

/// An arbitrary JSON value; integers stay exact (`.int`), other numbers are `.double`.
public enum JSONValue: Sendable, Hashable {
  case null
  case bool(Bool)
  case int(Int64)
  case double(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  /// The member `key` of an object; `nil` for a missing key or a non-object. Setting on a non-object makes it one.
  public subscript(key: String) -> JSONValue? {
    get {
      if case .object(let o) = self { return o[key] }
      return nil
    }
    set {
      var o: [String: JSONValue]
      if case .object(let existing) = self { o = existing } else { o = [:] }
      o[key] = newValue
      self = .object(o)
    }
  }

  /// The element at `index` of an array; `nil` when out of range or not an array.
  public subscript(index: Int) -> JSONValue? {
    if case .array(let a) = self, a.indices.contains(index) { return a[index] }
    return nil
  }

  /// The value at a path of object keys, e.g. `value[path: "metadata", "name"]`.
  public subscript(path keys: String...) -> JSONValue? {
    var current: JSONValue? = self
    for k in keys { current = current?[k] }
    return current
  }

  public var stringValue: String? {
    if case .string(let s) = self { return s }
    return nil
  }

  public var boolValue: Bool? {
    if case .bool(let b) = self { return b }
    return nil
  }

  /// The value as an integer (a `.double` only when it is integral).
  public var intValue: Int64? {
    switch self {
    case .int(let i): return i
    case .double(let d) where d.rounded() == d && abs(d) < 9.2e18: return Int64(d)
    default: return nil
    }
  }

  public var doubleValue: Double? {
    switch self {
    case .int(let i): return Double(i)
    case .double(let d): return d
    default: return nil
    }
  }

  public var arrayValue: [JSONValue]? {
    if case .array(let a) = self { return a }
    return nil
  }

  public var objectValue: [String: JSONValue]? {
    if case .object(let o) = self { return o }
    return nil
  }

  public var isNull: Bool { self == .null }

  /// Converts any `Encodable` value to a `JSONValue` with the Kubernetes JSON conventions.
  public init<T: Encodable>(encoding value: T) throws {
    let data = try KubeJSON.encoder().encode(value)
    self = try KubeJSON.decoder().decode(JSONValue.self, from: data)
  }

  /// Decodes this value into a `Decodable` type with the Kubernetes JSON conventions.
  public func decode<T: Decodable>(as type: T.Type = T.self) throws -> T {
    try KubeJSON.decoder().decode(T.self, from: try jsonData())
  }

  /// Parses JSON bytes.
  public init(jsonData: Data) throws {
    self = try KubeJSON.decoder().decode(JSONValue.self, from: jsonData)
  }

  /// Compact JSON bytes; keys sorted so equal values give equal bytes.
  public func jsonData(sortedKeys: Bool = true) throws -> Data {
    let enc = KubeJSON.encoder()
    if sortedKeys { enc.outputFormatting.insert(.sortedKeys) }
    return try enc.encode(self)
  }

  /// Compact JSON text with sorted keys.
  public var jsonString: String {
    do {
      return String(decoding: try jsonData(), as: UTF8.self)
    } catch {
      return "<unencodable JSON: \(error)>"
    }
  }

  /// Merges `patch` into this value as RFC 7386 JSON merge patch does (null deletes a key).
  public func mergePatched(with patch: JSONValue) -> JSONValue {
    guard case .object(let p) = patch else { return patch }
    var base: [String: JSONValue]
    if case .object(let o) = self { base = o } else { base = [:] }
    for (k, v) in p {
      if v == .null {
        base.removeValue(forKey: k)
      } else {
        base[k] = (base[k] ?? .null).mergePatched(with: v)
      }
    }
    return .object(base)
  }
}

extension JSONValue: Codable {
  // Objects first (they dominate Kubernetes JSON, e.g. managedFields), then strings: every failed attempt costs
  // a thrown DecodingError, so the common cases are tried before the rare ones.
  public init(from decoder: Decoder) throws {
    if let o = try? decoder.container(keyedBy: AnyKey.self) {
      var out: [String: JSONValue] = [:]
      out.reserveCapacity(o.allKeys.count)
      for k in o.allKeys { out[k.stringValue] = try o.decode(JSONValue.self, forKey: k) }
      self = .object(out)
      return
    }
    let c = try decoder.singleValueContainer()
    if c.decodeNil() {
      self = .null
    } else if let s = try? c.decode(String.self) {
      self = .string(s)
    } else if let b = try? c.decode(Bool.self) {
      self = .bool(b)
    } else if let i = try? c.decode(Int64.self) {
      self = .int(i)
    } else if let d = try? c.decode(Double.self) {
      self = .double(d)
    } else if let a = try? c.decode([JSONValue].self) {
      self = .array(a)
    } else {
      throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a JSON value")
    }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .null: try c.encodeNil()
    case .bool(let b): try c.encode(b)
    case .int(let i): try c.encode(i)
    case .double(let d): try c.encode(d)
    case .string(let s): try c.encode(s)
    case .array(let a): try c.encode(a)
    case .object(let o): try c.encode(o)
    }
  }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
  ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
  public init(nilLiteral: ()) { self = .null }
  public init(booleanLiteral value: Bool) { self = .bool(value) }
  public init(integerLiteral value: Int64) { self = .int(value) }
  public init(floatLiteral value: Double) { self = .double(value) }
  public init(stringLiteral value: String) { self = .string(value) }
  public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
  public init(dictionaryLiteral elements: (String, JSONValue)...) {
    self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
  }
}

extension JSONValue: CustomStringConvertible {
  public var description: String { jsonString }
}

/// A coding key for arbitrary object members.
struct AnyKey: CodingKey {
  var stringValue: String
  var intValue: Int?
  init(stringValue: String) { self.stringValue = stringValue }
  init(intValue: Int) {
    self.stringValue = String(intValue)
    self.intValue = intValue
  }
}

/// A JSON merge patch (RFC 7386) that turns `old` into `new`: changed members set, removed members null, nested
/// objects diffed member by member, arrays replaced. Used for status writes (KubeRuntime's `ReconcileEntry`), because
/// a server-side apply that drops a field of a custom resource leaves a null behind on Kubernetes 1.20, which the
/// schema then rejects.
public func mergePatch(from old: JSONValue?, to new: JSONValue) -> JSONValue {
  guard case .object(let n) = new, case .object(let o)? = old else { return new }
  var out: [String: JSONValue] = [:]
  for (k, v) in n where o[k] != v { out[k] = mergePatch(from: o[k], to: v) }
  for k in o.keys where n[k] == nil { out[k] = .null }
  return .object(out)
}
