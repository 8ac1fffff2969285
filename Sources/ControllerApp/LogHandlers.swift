import Foundation
import Logging
import Synchronization

/// Output format of the controller's logs.
public enum LogFormat: String, Sendable, CaseIterable {
  case json, text
}

/// A swift-log handler writing one line per message to standard error, as JSON or as `key=value` text.
///
/// Metadata values are written as given: callers never put secrets into log metadata (the controller logs object
/// names, reasons and errors, and its errors never carry Secret data).
public struct LineLogHandler: LogHandler {
  public var metadata: Logger.Metadata = [:]
  public var logLevel: Logger.Level = .info
  let label: String
  let format: LogFormat
  static let lock = Mutex(())

  public init(label: String, format: LogFormat, level: Logger.Level = .info) {
    self.label = label
    self.format = format
    self.logLevel = level
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  static func flatten(_ v: Logger.Metadata.Value) -> String {
    switch v {
    case .string(let s): s
    case .stringConvertible(let c): c.description
    case .array(let a): "[" + a.map(flatten).joined(separator: ",") + "]"
    case .dictionary(let d): "{" + d.keys.sorted().map { "\($0)=\(flatten(d[$0]!))" }.joined(separator: ",") + "}"
    }
  }

  public func log(event: LogEvent) {
    var all = metadata
    for (k, v) in event.metadata ?? [:] { all[k] = v }
    if let error = event.error { all["error"] = "\(error)" }
    let time = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
    let text = Self.render(
      format: format, time: time, level: event.level, label: label, message: event.message.description, metadata: all)
    Self.lock.withLock { _ in FileHandle.standardError.write(Data((text + "\n").utf8)) }
  }

  /// One log line without its newline: a JSON object with `time`, `level`, `logger`, `msg` and the metadata as
  /// strings (keys sorted), or `TIME LEVEL logger: message key=value ...`.
  public static func render(
    format: LogFormat, time: String, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata
  ) -> String {
    switch format {
    case .json:
      var o: [String: String] = ["time": time, "level": level.rawValue, "logger": label, "msg": message]
      for (k, v) in metadata where o[k] == nil { o[k] = flatten(v) }
      let enc = JSONEncoder()
      enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
      do {
        return String(decoding: try enc.encode(o), as: UTF8.self)
      } catch {
        return #"{"level":"error","msg":"cannot encode a log line"}"#
      }
    case .text:
      let kv = metadata.keys.sorted().map { k -> String in
        let v = flatten(metadata[k]!)
        return v.contains(" ") || v.contains("\"") ? "\(k)=\(String(reflecting: v))" : "\(k)=\(v)"
      }
      return ([time, level.rawValue.uppercased(), "\(label):", message] + kv).joined(separator: " ")
    }
  }
}
