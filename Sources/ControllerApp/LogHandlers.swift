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

  public init(label: String, format: LogFormat) {
    self.label = label
    self.format = format
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
    let level = event.level
    let message = event.message
    var all = metadata
    for (k, v) in event.metadata ?? [:] { all[k] = v }
    if let error = event.error { all["error"] = "\(error)" }
    let time = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
    let text: String
    switch format {
    case .json:
      var o: [String: String] = ["time": time, "level": level.rawValue, "logger": label, "msg": message.description]
      for (k, v) in all where o[k] == nil { o[k] = Self.flatten(v) }
      let enc = JSONEncoder()
      enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
      do {
        text = String(decoding: try enc.encode(o), as: UTF8.self)
      } catch {
        text = #"{"level":"error","msg":"cannot encode a log line"}"#
      }
    case .text:
      let kv = all.keys.sorted().map { k -> String in
        let v = Self.flatten(all[k]!)
        return v.contains(" ") || v.contains("\"") ? "\(k)=\(String(reflecting: v))" : "\(k)=\(v)"
      }
      text = ([time, level.rawValue.uppercased(), "\(label):", message.description] + kv).joined(separator: " ")
    }
    Self.lock.withLock { _ in FileHandle.standardError.write(Data((text + "\n").utf8)) }
  }
}
