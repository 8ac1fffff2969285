import Foundation
import KubeCore
import Testing

/// Every field a doc's `kubectl get bp|rp|drill -o jsonpath=...` or `-o custom-columns=...` reads exists in that
/// kind's schema, and every condition type it filters on is one the controller sets. kubectl prints nothing, and
/// exits 0, for a path that does not exist, so a wrong name in a runbook would go unseen until an admin needs it.
@Suite struct DocJSONPathTests {
  /// The docs that hold commands (docs/*.md and the README).
  static func docs() throws -> [URL] {
    let dir = repoRoot.appendingPathComponent("docs")
    return try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".md") }.sorted()
      .map { dir.appendingPathComponent($0) } + [repoRoot.appendingPathComponent("README.md")]
  }

  /// The kind a `kubectl get` names, by the CRDs' names, short names and plurals.
  static let kinds: [String: String] = [
    "bp": "BackupPolicy", "backuppolicy": "BackupPolicy", "backuppolicies": "BackupPolicy",
    "rp": "RecoveryPlan", "recoveryplan": "RecoveryPlan", "recoveryplans": "RecoveryPlan",
    "drill": "DRDrill", "drdrill": "DRDrill", "drdrills": "DRDrill",
  ]

  /// (kind, template) of every jsonpath or custom-columns template of a `kubectl get` of a BotRT kind in `text`.
  static func templates(_ text: String) -> [(kind: String, template: String, line: String)] {
    var out: [(String, String, String)] = []
    // Joins continued lines first: a command may go on after a trailing backslash.
    let joined = text.replacingOccurrences(of: "\\\n", with: " ")
    for line in joined.split(separator: "\n").map(String.init) where line.contains("kubectl") {
      let words = line.split(separator: " ").map(String.init)
      guard let get = words.firstIndex(of: "get"), get + 1 < words.count,
        let kind = kinds[words[get + 1].split(separator: ",").first.map(String.init) ?? ""]
      else { continue }
      for marker in ["jsonpath='", "custom-columns='"] {
        var rest = Substring(line)
        while let r = rest.range(of: marker) {
          let after = rest[r.upperBound...]
          let template = String(after.prefix { $0 != "'" })
          out.append((kind, marker.hasPrefix("jsonpath") ? template : columnsAsJSONPath(template), line))
          rest = after.dropFirst(template.count)
        }
      }
    }
    return out
  }

  /// `NS:.metadata.namespace,READY:.status...` as the jsonpath `{.metadata.namespace}{.status...}`.
  static func columnsAsJSONPath(_ columns: String) -> String {
    columns.split(separator: ",").map { col in
      "{" + (col.split(separator: ":", maxSplits: 1).last.map(String.init) ?? "") + "}"
    }.joined()
  }

  /// The field paths of a jsonpath template (`{.status.a.b}`, inside `{range .items[*]}` the same per item), each
  /// as its names, and the condition types its filters name.
  static func paths(_ template: String) -> (paths: [[String]], conditionTypes: [String]) {
    var paths: [[String]] = []
    var types: [String] = []
    for m in template.matches(of: #/@\.type=="([A-Za-z]+)"/#) { types.append(String(m.output.1)) }
    let withoutFilters = template.replacing(#/\[\?\(.*?\)\]/#, with: "")
    // Inside `{range X}` ... `{end}` a path is relative to X's items.
    var prefixes: [[String]] = []
    for m in withoutFilters.matches(of: #/\{([^}"]*)\}/#) {
      var token = String(m.output.1)
      if token == "end" {
        _ = prefixes.popLast()
        continue
      }
      let isRange = token.hasPrefix("range ")
      if isRange { token = String(token.dropFirst("range ".count)) }
      guard token.hasPrefix(".") else { continue }
      var names = token.split(separator: ".").map { String($0.split(separator: "[").first ?? "") }
      if prefixes.isEmpty, names.first == "items" { names.removeFirst() }
      let full = (prefixes.last ?? []) + names
      if isRange {
        prefixes.append(full)
      }
      if !full.isEmpty { paths.append(full) }
    }
    return (paths, types)
  }

  /// Whether `names` is a path of `schema` (array items and map values are walked through).
  static func exists(_ names: [String], in schema: JSONValue) -> Bool {
    if names.first == "metadata" { return true }
    var node: JSONValue? = schema
    for name in names {
      if let items = node?["items"], node?["properties"] == nil { node = items }
      node = node?[path: "properties", name]
      if node == nil { return false }
    }
    return true
  }

  /// The condition types the reconcilers and DRAPI name, read from the sources (a `static let` of a condition enum).
  static func conditionTypes() throws -> Set<String> {
    var out: Set<String> = []
    for dir in ["Sources/DRAPI", "Sources/Reconcilers"] {
      let root = repoRoot.appendingPathComponent(dir)
      for f in FileManager.default.enumerator(atPath: root.path)?.compactMap({ $0 as? String }) ?? []
      where f.hasSuffix(".swift") {
        let text = try String(contentsOf: root.appendingPathComponent(f), encoding: .utf8)
        for m in text.matches(of: #/type: "([A-Z][A-Za-z]+)"|static let \w+ = "([A-Z][A-Za-z]+)"/#) {
          if let t = m.output.1 ?? m.output.2 { out.insert(String(t)) }
        }
      }
    }
    return out
  }

  @Test func everyDocumentedFieldExists() throws {
    let known = try Self.conditionTypes()
    #expect(known.contains("Ready") && known.contains("RPOMet") && known.contains("KeyRotationDue"))
    var checked = 0
    for doc in try Self.docs() {
      let text = try String(contentsOf: doc, encoding: .utf8)
      for t in Self.templates(text) {
        let (paths, types) = Self.paths(t.template)
        let root = try schema(t.kind)
        for p in paths {
          checked += 1
          #expect(
            Self.exists(p, in: root),
            "\(doc.lastPathComponent): \(t.kind) has no field .\(p.joined(separator: ".")) (in: \(t.line))")
        }
        for type in types {
          #expect(known.contains(type), "\(doc.lastPathComponent): no condition type \(type) (in: \(t.line))")
        }
      }
    }
    // The runbooks alone read more than twenty fields this way: a parser that finds none is broken.
    #expect(checked > 20, "only \(checked) documented fields found")
  }

  /// The checks themselves: a misspelt field and an unknown condition type are caught.
  @Test func aWrongNameIsCaught() throws {
    let t = Self.templates(
      "kubectl -n shop get bp orders-db -o jsonpath='{.status.lastSnapshto}{.status.conditions[?(@.type==\"Redy\")]}'"
    )
    #expect(t.count == 1)
    let (paths, types) = Self.paths(try #require(t.first).template)
    #expect(paths == [["status", "lastSnapshto"], ["status", "conditions"]])
    #expect(!Self.exists(paths[0], in: try schema("BackupPolicy")))
    #expect(Self.exists(paths[1], in: try schema("BackupPolicy")))
    let known = try Self.conditionTypes()
    #expect(types == ["Redy"] && !known.contains("Redy"))
    let cols = Self.templates(
      "kubectl get bp -A -o custom-columns='NS:.metadata.namespace,X:.status.replicas[*].lagSeconds'")
    #expect(
      Self.paths(try #require(cols.first).template).paths == [
        ["metadata", "namespace"], ["status", "replicas", "lagSeconds"],
      ])
    #expect(Self.exists(["status", "replicas", "lagSeconds"], in: try schema("BackupPolicy")))
  }
}
