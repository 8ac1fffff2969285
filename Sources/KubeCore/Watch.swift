import Foundation

/// The type of a watch event.
public enum WatchEventType: String, Codable, Sendable, Hashable {
  case added = "ADDED"
  case modified = "MODIFIED"
  case deleted = "DELETED"
  case bookmark = "BOOKMARK"
  case error = "ERROR"
}

/// One event of a watch stream.
public enum WatchEvent<T: Sendable>: Sendable {
  case added(T)
  case modified(T)
  case deleted(T)
  /// A progress marker: everything up to `resourceVersion` has been sent.
  case bookmark(resourceVersion: String)
  /// The server ended the watch with an error, e.g. code 410 (Expired) when the resourceVersion is too old.
  case error(Status)

  public var type: WatchEventType {
    switch self {
    case .added: return .added
    case .modified: return .modified
    case .deleted: return .deleted
    case .bookmark: return .bookmark
    case .error: return .error
    }
  }

  /// The object of ADDED, MODIFIED and DELETED events.
  public var object: T? {
    switch self {
    case .added(let o), .modified(let o), .deleted(let o): return o
    case .bookmark, .error: return nil
    }
  }
}

extension WatchEvent: Equatable where T: Equatable {}

extension WatchEvent: Decodable where T: Decodable {
  enum CodingKeys: String, CodingKey { case type, object }

  private struct BookmarkObject: Decodable {
    struct Meta: Decodable { var resourceVersion: String? }
    var metadata: Meta?
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let raw = try c.decode(String.self, forKey: .type)
    guard let type = WatchEventType(rawValue: raw) else {
      throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "unknown watch event type \(raw)")
    }
    switch type {
    case .added: self = .added(try c.decode(T.self, forKey: .object))
    case .modified: self = .modified(try c.decode(T.self, forKey: .object))
    case .deleted: self = .deleted(try c.decode(T.self, forKey: .object))
    case .bookmark:
      let b = try c.decode(BookmarkObject.self, forKey: .object)
      self = .bookmark(resourceVersion: b.metadata?.resourceVersion ?? "")
    case .error:
      self = .error(try c.decode(Status.self, forKey: .object))
    }
  }
}

/// A watch line longer than the decoder's limit.
public struct WatchLineTooLong: Error, Sendable, Hashable, CustomStringConvertible {
  public var limit: Int
  public var description: String {
    "a watch event exceeded \(limit) bytes without a newline; the stream is corrupt or the object is larger"
      + " than the limit (raise maxLineBytes)"
  }
}

/// Splits a byte stream into newline-delimited lines, whatever the chunk boundaries; bounded by `maxLineBytes`.
public struct LineDecoder: Sendable {
  public let maxLineBytes: Int
  private var buffer: [UInt8] = []
  private var start = 0
  private var scanned = 0

  public init(maxLineBytes: Int = 16 << 20) { self.maxLineBytes = maxLineBytes }

  /// Adds a chunk; returns the lines it completed (without the newline, blank lines dropped).
  public mutating func feed<C: Collection>(_ chunk: C) throws -> [Data] where C.Element == UInt8 {
    buffer.append(contentsOf: chunk)
    var lines: [Data] = []
    while let nl = buffer[scanned...].firstIndex(of: 10) {
      let line = buffer[start..<nl]
      if !line.allSatisfy({ $0 == 32 || $0 == 13 || $0 == 9 }) { lines.append(Data(line)) }
      start = nl + 1
      scanned = start
    }
    scanned = buffer.count
    if buffer.count - start > maxLineBytes { throw WatchLineTooLong(limit: maxLineBytes) }
    // Compact once the consumed prefix dominates, so memory stays bounded by the longest line.
    if start > 0 && start >= buffer.count / 2 {
      buffer.removeSubrange(0..<start)
      scanned -= start
      start = 0
    }
    return lines
  }

  /// The unterminated remainder at the end of the stream, if it holds anything but whitespace.
  public mutating func finish() -> Data? {
    let rest = buffer[start...]
    buffer = []
    start = 0
    scanned = 0
    if rest.allSatisfy({ $0 == 32 || $0 == 13 || $0 == 9 || $0 == 10 }) { return nil }
    return Data(rest)
  }

  /// Bytes held while waiting for a newline.
  public var pendingBytes: Int { buffer.count - start }
}

/// A watch event line that did not decode.
public struct WatchDecodeError: Error, Sendable, CustomStringConvertible {
  public var typeName: String
  public var underlying: String
  /// The start of the offending line (at most 200 characters).
  public var snippet: String
  public var description: String {
    "cannot decode a watch event of \(typeName): \(underlying); line starts: \(snippet)"
  }
}

/// Decodes newline-delimited watch events from arbitrary byte chunks.
public struct WatchEventDecoder<T: Decodable & Sendable>: Sendable {
  private var lines: LineDecoder
  private let json: JSONDecoder

  public init(maxLineBytes: Int = 16 << 20, stripManagedFields: Bool = false) {
    lines = LineDecoder(maxLineBytes: maxLineBytes)
    json = KubeJSON.decoder(stripManagedFields: stripManagedFields)
  }

  /// Adds a chunk and returns the events it completed.
  public mutating func feed<C: Collection>(_ chunk: C) throws -> [WatchEvent<T>] where C.Element == UInt8 {
    try lines.feed(chunk).map { try Self.decode($0, with: json) }
  }

  /// Decodes a final line without a trailing newline, if any.
  public mutating func finish() throws -> [WatchEvent<T>] {
    guard let rest = lines.finish() else { return [] }
    return [try Self.decode(rest, with: json)]
  }

  /// Decodes one event line.
  public static func decode(_ line: Data, with json: JSONDecoder = KubeJSON.decoder()) throws -> WatchEvent<T> {
    do {
      return try json.decode(WatchEvent<T>.self, from: line)
    } catch let e as DecodingError {
      throw WatchDecodeError(
        typeName: String(describing: T.self), underlying: describe(e),
        snippet: String(decoding: line.prefix(200), as: UTF8.self))
    }
  }
}

/// A readable summary of a DecodingError naming the coding path.
public func describe(_ error: DecodingError) -> String {
  func path(_ p: [CodingKey]) -> String {
    let s = p.map { k in k.intValue.map { "[\($0)]" } ?? ".\(k.stringValue)" }.joined()
    return s.isEmpty ? "<root>" : s
  }
  switch error {
  case .typeMismatch(let t, let c):
    return "type mismatch at \(path(c.codingPath)): expected \(t); \(c.debugDescription)"
  case .valueNotFound(let t, let c): return "missing value at \(path(c.codingPath)): expected \(t)"
  case .keyNotFound(let k, let c): return "missing key \(path(c.codingPath + [k]))"
  case .dataCorrupted(let c): return "invalid data at \(path(c.codingPath)): \(c.debugDescription)"
  @unknown default: return String(describing: error)
  }
}
