import Foundation
import KubeCore
import Testing

@testable import DRAPI

/// The repository root, found from this file's path.
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()

/// Every `.yaml` file in `dir` (relative to the repository root), sorted.
func yamlFiles(_ dir: String) throws -> [URL] {
  let url = repoRoot.appendingPathComponent(dir)
  return try FileManager.default.contentsOfDirectory(atPath: url.path).filter { $0.hasSuffix(".yaml") }.sorted()
    .map { url.appendingPathComponent($0) }
}

/// Parses every document of a YAML file with KubeCore's parser.
func documents(_ url: URL) throws -> [JSONValue] {
  try YAML.parseDocuments(String(contentsOf: url, encoding: .utf8), file: url.lastPathComponent)
}

/// The CRDs in crds/, by kind.
func crdsByKind() throws -> [String: JSONValue] {
  var out: [String: JSONValue] = [:]
  for file in try yamlFiles("crds") {
    for doc in try documents(file) {
      let kind = try #require(doc[path: "spec", "names", "kind"]?.stringValue, "\(file.lastPathComponent)")
      out[kind] = doc
    }
  }
  return out
}

/// The openAPIV3Schema of a kind's first version.
func schema(_ kind: String) throws -> JSONValue {
  let crd = try #require(try crdsByKind()[kind])
  return try #require(crd[path: "spec", "versions"]?[0]?[path: "schema", "openAPIV3Schema"])
}

/// Walks a schema, calling `visit(path, node)` for every property, array item and map value.
func walk(_ node: JSONValue, path: String, _ visit: (String, JSONValue) -> Void) {
  visit(path, node)
  for (name, child) in node["properties"]?.objectValue ?? [:] { walk(child, path: "\(path).\(name)", visit) }
  if let items = node["items"] { walk(items, path: "\(path)[]", visit) }
  if let values = node["additionalProperties"], values.objectValue != nil { walk(values, path: "\(path){}", visit) }
}

/// A JSON instance that sets every property the schema declares, for checking the Swift types against it.
func maximalInstance(_ s: JSONValue) -> JSONValue {
  if s["x-kubernetes-int-or-string"]?.boolValue == true { return "1" }
  if let first = s["enum"]?[0] { return first }
  switch s["type"]?.stringValue {
  case "object":
    if let props = s["properties"]?.objectValue, !props.isEmpty {
      return .object(props.mapValues(maximalInstance))
    }
    if let values = s["additionalProperties"], values.objectValue != nil {
      return .object(["cpu": maximalInstance(values)])
    }
    return .object([:])
  case "array": return .array([maximalInstance(s["items"] ?? .null)])
  case "integer": return 1
  case "number": return 1.5
  case "boolean": return true
  case "string":
    return s["format"]?.stringValue == "date-time" ? "2024-01-02T03:04:05.000000Z" : "x"
  default: return .null
  }
}

/// Paths of optional properties that are nil in `value` (fields the Swift type has but the instance lacked).
func nilOptionals(_ value: Any, path: String = "") -> [String] {
  var out: [String] = []
  let mirror = Mirror(reflecting: value)
  if mirror.displayStyle == .optional {
    guard let wrapped = mirror.children.first else { return [path] }
    return nilOptionals(wrapped.value, path: path)
  }
  if value is Date || value is String { return [] }
  for (i, child) in mirror.children.enumerated() {
    out += nilOptionals(child.value, path: path + "." + (child.label ?? "\(i)"))
  }
  return out
}

@Suite struct CRDFileTests {
  @Test func threeCRDsWithNamesColumnsAndSubresources() throws {
    let crds = try crdsByKind()
    #expect(Set(crds.keys) == ["BackupPolicy", "RecoveryPlan", "DRDrill"])
    let expected: [String: (String, String, [String])] = [
      "BackupPolicy": ("backuppolicies", "bp", ["Tier", "Schedule", "Last Backup", "RPO Met", "Ready", "Age"]),
      "RecoveryPlan": ("recoveryplans", "rp", ["Tier", "Phase", "RTO Target", "RTO Achieved", "Age"]),
      "DRDrill": ("drdrills", "drill", ["Target", "Schedule", "Last Run", "Passed", "Score", "Age"]),
    ]
    for (kind, (plural, short, columns)) in expected {
      let crd = try #require(crds[kind])
      #expect(crd["apiVersion"] == "apiextensions.k8s.io/v1")
      #expect(crd[path: "metadata", "name"]?.stringValue == "\(plural).dr.botrt.io")
      #expect(crd[path: "spec", "group"] == "dr.botrt.io")
      #expect(crd[path: "spec", "scope"] == "Namespaced")
      #expect(crd[path: "spec", "names", "plural"]?.stringValue == plural)
      #expect(crd[path: "spec", "names", "shortNames"] == .array([.string(short)]))
      #expect(crd[path: "spec", "names", "categories"] == ["botrt"])
      let versions = try #require(crd[path: "spec", "versions"]?.arrayValue)
      #expect(versions.count == 1)
      let v = versions[0]
      #expect(v["name"] == "v1alpha1" && v["served"] == true && v["storage"] == true)
      #expect(v[path: "subresources", "status"] == .object([:]))
      let cols = v["additionalPrinterColumns"]?.arrayValue ?? []
      // The default columns (priority 0) are exactly the ones the issue asks for, in order.
      let visible = cols.filter { ($0["priority"]?.intValue ?? 0) == 0 }.compactMap { $0["name"]?.stringValue }
      #expect(visible == columns, "\(kind)")
      #expect(plural == DRGroupTests.plural(kind))
    }
    let bp = try #require(crds["BackupPolicy"]?[path: "spec", "versions"]?[0]?["additionalPrinterColumns"]?.arrayValue)
    #expect(bp.first { $0["name"] == "RPO Met" }?["jsonPath"] == #".status.conditions[?(@.type=="RPOMet")].status"#)
  }

  @Test func everyPropertyHasADescriptionAndNoCEL() throws {
    for kind in ["BackupPolicy", "RecoveryPlan", "DRDrill"] {
      var missing: [String] = []
      var unboundedStrings: [String] = []
      walk(try schema(kind), path: kind) { path, node in
        if node["x-kubernetes-validations"] != nil { missing.append("\(path) uses CEL") }
        if path == "\(kind).metadata" { return }  // The apiserver forbids anything but `type` here.
        if (node["description"]?.stringValue ?? "").count < 8 { missing.append(path) }
        let isRootTypeField = path == "\(kind).apiVersion" || path == "\(kind).kind"
        if node["type"] == "string", node["maxLength"] == nil, node["enum"] == nil, node["format"] != "date-time",
          !isRootTypeField
        {
          unboundedStrings.append(path)
        }
      }
      #expect(missing.isEmpty, "\(kind): \(missing)")
      #expect(unboundedStrings.isEmpty, "\(kind): strings without maxLength: \(unboundedStrings)")
    }
  }

  @Test func descriptionsStatePerTierDefaults() throws {
    let bp = try schema("BackupPolicy")
    let schedule = try #require(bp[path: "properties", "spec", "properties", "schedule", "description"]?.stringValue)
    // The default schedules the code derives (half the RPO as headroom) are the ones the description names.
    for tier in Tier.allCases {
      let e = try EffectivePolicy(spec: policySpec(tier: tier), now: Date(timeIntervalSince1970: 1_790_000_000))
      #expect(schedule.contains("\(tier.rawValue) \(e.schedule.value)"), "\(tier): \(e.schedule.value)")
    }
    #expect(schedule.contains("half of the effective RPO"))
    let rpo = try #require(bp[path: "properties", "spec", "properties", "rpo", "description"]?.stringValue)
    for text in ["critical 5m", "important 30m", "standard 4h", "archive 24h", "sox 1m", "gdpr 5m", "hipaa 5m"] {
      #expect(rpo.contains(text), "\(text)")
    }
    let rp = try schema("RecoveryPlan")
    let tier = try #require(rp[path: "properties", "spec", "properties", "tier", "description"]?.stringValue)
    for text in ["critical 15m", "important 90m", "standard 3h", "archive 24h"] { #expect(tier.contains(text)) }
  }

  @Test func printerColumnsPointAtSchemaFields() throws {
    for (kind, crd) in try crdsByKind() {
      let root = try schema(kind)
      for col in crd[path: "spec", "versions"]?[0]?["additionalPrinterColumns"]?.arrayValue ?? [] {
        let path = try #require(col["jsonPath"]?.stringValue)
        if path == ".metadata.creationTimestamp" { continue }
        var node: JSONValue? = root
        // Drop JSONPath filters such as [?(@.type=="Ready")], which hold dots of their own.
        for segment in path.replacing(#/\[\?\(.*?\)\]/#, with: "").split(separator: ".") {
          let name = segment.split(separator: "[").first.map(String.init) ?? ""
          node = node?[path: "properties", name] ?? node?[path: "items", "properties", name]
        }
        #expect(node != nil, "\(kind) column \(col["name"] ?? .null) points at a missing field \(path)")
      }
    }
  }

  /// Every field of the schema decodes into the Swift types and encodes back unchanged, and the Swift types have
  /// no field the schema lacks.
  func checkTypes<T: Codable>(_ type: T.Type, kind: String, part: String) throws {
    let node = try #require(try schema(kind)[path: "properties", part])
    let instance = maximalInstance(node)
    let decoded: T = try instance.decode()
    let reencoded = try JSONValue(encoding: decoded)
    #expect(reencoded == instance, "\(kind).\(part): the Swift type and the schema differ")
    if reencoded != instance, let a = reencoded.objectValue, let b = instance.objectValue {
      for key in Set(a.keys).union(b.keys) where a[key] != b[key] { Issue.record("\(kind).\(part).\(key) differs") }
    }
    // A custom Job step reuses ContainerSpec, whose fileName only applies to dump and restore streams; a drill's
    // restore reuses RestoreDestination, whose objects only a RecoveryPlan step may set (validation refuses it in a
    // drill, and the DRDrill schema has no such field, so the apiserver prunes it).
    let extra = nilOptionals(decoded).filter {
      !$0.hasSuffix(".job.fileName") && !(kind == "DRDrill" && $0 == ".restore.objects")
    }
    #expect(extra.isEmpty, "\(kind).\(part): Swift fields missing from the schema: \(extra)")
  }

  @Test func swiftTypesMatchTheSchemasExactly() throws {
    try checkTypes(BackupPolicySpec.self, kind: "BackupPolicy", part: "spec")
    try checkTypes(BackupPolicyStatus.self, kind: "BackupPolicy", part: "status")
    try checkTypes(RecoveryPlanSpec.self, kind: "RecoveryPlan", part: "spec")
    try checkTypes(RecoveryPlanStatus.self, kind: "RecoveryPlan", part: "status")
    try checkTypes(DRDrillSpec.self, kind: "DRDrill", part: "spec")
    try checkTypes(DRDrillStatus.self, kind: "DRDrill", part: "status")
  }

  @Test func schemaEnumsMatchSwiftEnums() throws {
    let bp = try schema("BackupPolicy")[path: "properties", "spec", "properties"]
    #expect(bp?[path: "tier", "enum"] == .array(Tier.allCases.map { .string($0.rawValue) }))
    #expect(bp?[path: "compliance", "items", "enum"] == .array(ComplianceProfile.allCases.map { .string($0.rawValue) }))
    #expect(bp?[path: "dataType", "enum"] == .array(DataType.allCases.map { .string($0.rawValue) }))
    let step = try schema("RecoveryPlan")[
      path: "properties", "spec", "properties", "procedures", "items", "properties",
      "steps", "items", "properties", "action", "enum"]
    #expect(step == .array(StepAction.allCases.map { .string($0.rawValue) }))
  }

  @Test func cronPatternAgreesWithTheSwiftParser() throws {
    let bp = try schema("BackupPolicy")
    let pattern = try #require(bp[path: "properties", "spec", "properties", "schedule", "pattern"]?.stringValue)
    let regex = try Regex(pattern)
    let valid = [
      "*/5 * * * *", "0 2 * * *", "30 4 * * MON-FRI", "0 0 1 jan,jul *", "@hourly", "@every 1h30m", "0 0 ? * SUN",
    ]
    let invalid = ["*/5 * * *", "0 0 * * * *", "every 5 minutes", "@fortnightly", "0 every * * *", "? * * * *"]
    for s in valid {
      #expect(s.wholeMatch(of: regex) != nil, "\(s)")
      #expect(CronSchedule.isValid(s), "\(s)")
    }
    for s in invalid {
      #expect(s.wholeMatch(of: regex) == nil, "\(s)")
      #expect(!CronSchedule.isValid(s), "\(s)")
    }
    let drill = try schema("DRDrill")
    let drillPattern = try #require(drill[path: "properties", "spec", "properties", "schedule", "pattern"]?.stringValue)
    let drillRegex = try Regex(drillPattern)
    for p in DrillPreset.allCases { #expect(p.rawValue.wholeMatch(of: drillRegex) != nil) }
    #expect("30 4 * * 1-5".wholeMatch(of: drillRegex) != nil)
    #expect("fortnightly".wholeMatch(of: drillRegex) == nil)
  }
}

/// Helpers shared by the tests.
enum DRGroupTests {
  static func plural(_ kind: String) -> String {
    switch kind {
    case "BackupPolicy": BackupPolicy.resource.plural
    case "RecoveryPlan": RecoveryPlan.resource.plural
    default: DRDrill.resource.plural
    }
  }
}

@Suite struct APIReferenceTests {
  /// docs/api-reference.md is generated from the schemas; a field missing there means it was not regenerated.
  @Test func everySchemaFieldIsDocumented() throws {
    let text = try String(contentsOf: repoRoot.appendingPathComponent("docs/api-reference.md"), encoding: .utf8)
    for kind in ["BackupPolicy", "RecoveryPlan", "DRDrill"] {
      #expect(text.contains("## \(kind)\n"))
      for part in ["spec", "status"] {
        let node = try #require(try schema(kind)[path: "properties", part])
        var undocumented: [String] = []
        walk(node, path: part) { path, _ in
          // The root and array items are documented by their parent row.
          if path == part || path.hasSuffix("[]") || path.hasSuffix("{}") { return }
          if !text.contains("| `\(path)` |") { undocumented.append(path) }
        }
        #expect(undocumented.isEmpty, "\(kind): run python3 crds/generate.py; missing: \(undocumented)")
      }
    }
  }
}

/// `verification.checksums` (DRDrill) and `verify.checksums` (RecoveryPlan) changed nothing: the restore always
/// authenticates and re-hashes every blob it writes, so every restored file is checked against the snapshot's content
/// hashes. The field is gone from the types, the schemas, the docs and the samples, and the docs say what is checked.
@Suite struct NoChecksumSwitchTests {
  @Test func theDeadChecksumsFieldIsGoneAndTheDocsSayWhatIsChecked() throws {
    for file in [
      "crds/dr.botrt.io_drdrills.yaml", "crds/dr.botrt.io_recoveryplans.yaml", "docs/api-reference.md",
      "crds/samples/drdrill-weekly-policy.yaml", "crds/samples/recoveryplan-database.yaml",
      "crds/samples/drdrill-quarterly-suspended.yaml",
    ] {
      let text = try String(contentsOf: repoRoot.appendingPathComponent(file), encoding: .utf8)
      #expect(!text.contains("checksums"), "\(file) still mentions checksums")
    }
    let docs = try String(contentsOf: repoRoot.appendingPathComponent("docs/api-reference.md"), encoding: .utf8)
    #expect(docs.contains("re-hashed every blob it wrote"))
    // An old object that still sets the field decodes; the field is dropped (the apiserver prunes it too).
    let v = try JSONDecoder().decode(DrillVerification.self, from: Data(#"{"readData":false,"checksums":true}"#.utf8))
    #expect(v == DrillVerification(readData: false))
  }
}
