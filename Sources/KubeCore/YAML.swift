import CYAML
import Foundation

/// A YAML document that could not be parsed; names the file, line and column (1-based).
public struct YAMLError: Error, Sendable, Hashable, CustomStringConvertible {
  public var file: String
  public var line: Int
  public var column: Int
  public var message: String

  public init(file: String, line: Int, column: Int, message: String) {
    self.file = file
    self.line = line
    self.column = column
    self.message = message
  }

  public var description: String { "\(file):\(line):\(column): invalid YAML: \(message)" }
}

/// YAML parsing with libyaml into `JSONValue`, resolving plain scalars with the YAML 1.2 core schema.
///
/// `yes`/`no`/`on`/`off` stay strings (YAML 1.2); quoted scalars are always strings; anchors, aliases and
/// `<<` merge keys work; empty documents are dropped.
public enum YAML {
  /// Parses every document of a (multi-document) YAML stream. `file` is only used in errors.
  public static func parseDocuments(_ text: String, file: String) throws -> [JSONValue] {
    var bytes = Array(text.utf8)
    if bytes.isEmpty { return [] }
    var parser = yaml_parser_t()
    guard yaml_parser_initialize(&parser) == 1 else {
      throw YAMLError(file: file, line: 0, column: 0, message: "libyaml could not allocate a parser")
    }
    defer { yaml_parser_delete(&parser) }
    return try bytes.withUnsafeMutableBufferPointer { buf -> [JSONValue] in
      yaml_parser_set_input_string(&parser, buf.baseAddress, buf.count)
      var builder = Builder(file: file)
      while true {
        var event = yaml_event_t()
        guard yaml_parser_parse(&parser, &event) == 1 else {
          let mark = parser.problem_mark
          var message = parser.problem.map { String(cString: $0) } ?? "unknown error"
          if let ctx = parser.context {
            message += " (\(String(cString: ctx)) at line \(parser.context_mark.line + 1))"
          }
          throw YAMLError(file: file, line: Int(mark.line) + 1, column: Int(mark.column) + 1, message: message)
        }
        defer { yaml_event_delete(&event) }
        if event.type == YAML_STREAM_END_EVENT { break }
        try builder.handle(&event)
      }
      return builder.documents
    }
  }

  /// Parses a stream that must hold exactly one document.
  public static func parse(_ text: String, file: String) throws -> JSONValue {
    let docs = try parseDocuments(text, file: file)
    guard docs.count <= 1 else {
      throw YAMLError(file: file, line: 1, column: 1, message: "expected one document, found \(docs.count)")
    }
    return docs.first ?? .null
  }

  /// Resolves a plain (unquoted, untagged) scalar as the YAML 1.2 core schema does.
  public static func resolvePlain(_ s: String) -> JSONValue {
    switch s {
    case "", "~", "null", "Null", "NULL": return .null
    case "true", "True", "TRUE": return .bool(true)
    case "false", "False", "FALSE": return .bool(false)
    case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .double(.infinity)
    case "-.inf", "-.Inf", "-.INF": return .double(-.infinity)
    case ".nan", ".NaN", ".NAN": return .double(.nan)
    default: break
    }
    guard let first = s.utf8.first, first == 43 || first == 45 || first == 46 || (first >= 48 && first <= 57) else {
      return .string(s)
    }
    if s.hasPrefix("0x"), s.count > 2, let v = Int64(s.dropFirst(2), radix: 16) { return .int(v) }
    if s.hasPrefix("0o"), s.count > 2, let v = Int64(s.dropFirst(2), radix: 8) { return .int(v) }
    if isDecimalInt(s) {
      if let v = Int64(s.hasPrefix("+") ? String(s.dropFirst()) : s) { return .int(v) }
      if let d = Double(s) { return .double(d) }
    }
    if isFloat(s), let d = Double(s) { return .double(d) }
    return .string(s)
  }

  private static func isDecimalInt(_ s: String) -> Bool {
    var u = Substring(s).utf8[...]
    if let f = u.first, f == 43 || f == 45 { u = u.dropFirst() }
    return !u.isEmpty && u.allSatisfy { $0 >= 48 && $0 <= 57 }
  }

  // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
  private static func isFloat(_ s: String) -> Bool {
    let u = Array(s.utf8)
    var i = 0
    func digits() -> Int {
      let st = i
      while i < u.count, u[i] >= 48 && u[i] <= 57 { i += 1 }
      return i - st
    }
    if i < u.count, u[i] == 43 || u[i] == 45 { i += 1 }
    if i < u.count, u[i] == 46 {
      i += 1
      if digits() == 0 { return false }
    } else {
      if digits() == 0 { return false }
      if i < u.count, u[i] == 46 {
        i += 1
        _ = digits()
      }
    }
    if i < u.count, u[i] == 101 || u[i] == 69 {
      i += 1
      if i < u.count, u[i] == 43 || u[i] == 45 { i += 1 }
      if digits() == 0 { return false }
    }
    return i == u.count
  }

  private enum Frame {
    case sequence([JSONValue], anchor: String?)
    case mapping([String: JSONValue], merged: [String: JSONValue], key: String?, keyIsMerge: Bool, anchor: String?)
  }

  private struct Builder {
    let file: String
    var documents: [JSONValue] = []
    var stack: [Frame] = []
    var anchors: [String: JSONValue] = [:]
    var root: JSONValue?

    init(file: String) { self.file = file }

    mutating func handle(_ event: inout yaml_event_t) throws {
      let line = Int(event.start_mark.line) + 1
      let column = Int(event.start_mark.column) + 1
      switch event.type {
      case YAML_DOCUMENT_START_EVENT:
        root = nil
        anchors = [:]
      case YAML_DOCUMENT_END_EVENT:
        if let r = root, r != .null { documents.append(r) }
        root = nil
      case YAML_SCALAR_EVENT:
        let s = event.data.scalar
        let text =
          s.value.map { String(decoding: UnsafeBufferPointer(start: $0, count: s.length), as: UTF8.self) } ?? ""
        let tag = s.tag.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
        let value = try resolve(text, plain: s.style == YAML_PLAIN_SCALAR_STYLE, tag: tag, line: line, column: column)
        let isMergeKey = text == "<<" && s.style == YAML_PLAIN_SCALAR_STYLE
        if let a = anchorName(s.anchor) { anchors[a] = value }
        try add(value, rawKey: text, isMergeKey: isMergeKey, line: line, column: column)
      case YAML_ALIAS_EVENT:
        guard let name = anchorName(event.data.alias.anchor), let v = anchors[name] else {
          throw YAMLError(file: file, line: line, column: column, message: "unknown alias")
        }
        try add(v, rawKey: nil, isMergeKey: false, line: line, column: column)
      case YAML_SEQUENCE_START_EVENT:
        stack.append(.sequence([], anchor: anchorName(event.data.sequence_start.anchor)))
      case YAML_SEQUENCE_END_EVENT:
        guard case .sequence(let items, let anchor)? = stack.popLast() else { return }
        let v = JSONValue.array(items)
        if let a = anchor { anchors[a] = v }
        try add(v, rawKey: nil, isMergeKey: false, line: line, column: column)
      case YAML_MAPPING_START_EVENT:
        stack.append(
          .mapping([:], merged: [:], key: nil, keyIsMerge: false, anchor: anchorName(event.data.mapping_start.anchor)))
      case YAML_MAPPING_END_EVENT:
        guard case .mapping(var o, let merged, _, _, let anchor)? = stack.popLast() else { return }
        // Keys given explicitly win over keys merged in with <<.
        for (k, mv) in merged where o[k] == nil { o[k] = mv }
        let v = JSONValue.object(o)
        if let a = anchor { anchors[a] = v }
        try add(v, rawKey: nil, isMergeKey: false, line: line, column: column)
      default:
        break
      }
    }

    func anchorName(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
      p.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
    }

    func resolve(_ text: String, plain: Bool, tag: String?, line: Int, column: Int) throws -> JSONValue {
      guard let tag, tag != "!" else { return plain ? YAML.resolvePlain(text) : .string(text) }
      let short = tag.hasPrefix("tag:yaml.org,2002:") ? String(tag.dropFirst("tag:yaml.org,2002:".count)) : tag
      switch short {
      case "str": return .string(text)
      case "null": return .null
      case "bool", "int", "float":
        let v = YAML.resolvePlain(text)
        let ok: Bool
        switch (short, v) {
        case ("bool", .bool), ("int", .int), ("float", .double), ("float", .int): ok = true
        default: ok = false
        }
        guard ok else {
          throw YAMLError(file: file, line: line, column: column, message: "\"\(text)\" is not a valid !!\(short)")
        }
        if short == "float", case .int(let i) = v { return .double(Double(i)) }
        return v
      default:
        // Unknown local tags (e.g. !Ref): keep the text.
        return plain ? YAML.resolvePlain(text) : .string(text)
      }
    }

    mutating func add(_ value: JSONValue, rawKey: String?, isMergeKey: Bool, line: Int, column: Int) throws {
      guard let top = stack.popLast() else {
        root = value
        return
      }
      switch top {
      case .sequence(var items, let anchor):
        items.append(value)
        stack.append(.sequence(items, anchor: anchor))
      case .mapping(var o, var merged, let key, let keyIsMerge, let anchor):
        if let key {
          if keyIsMerge {
            let sources: [JSONValue]
            if case .array(let a) = value { sources = a } else { sources = [value] }
            for src in sources {
              guard case .object(let so) = src else {
                throw YAMLError(file: file, line: line, column: column, message: "a merge key (<<) needs a mapping")
              }
              for (k, v) in so where merged[k] == nil { merged[k] = v }
            }
          } else {
            o[key] = value
          }
          stack.append(.mapping(o, merged: merged, key: nil, keyIsMerge: false, anchor: anchor))
        } else {
          let k: String
          switch value {
          case .string(let s): k = s
          case .null: k = rawKey ?? ""
          case .bool, .int, .double: k = rawKey ?? value.jsonString
          case .array, .object:
            throw YAMLError(file: file, line: line, column: column, message: "a mapping key must be a scalar")
          }
          if o[k] != nil && !isMergeKey {
            throw YAMLError(file: file, line: line, column: column, message: "duplicate key \"\(k)\"")
          }
          stack.append(.mapping(o, merged: merged, key: k, keyIsMerge: isMergeKey, anchor: anchor))
        }
      }
    }
  }
}
