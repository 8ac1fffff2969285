import Foundation
import KubeCore
import Testing

@testable import DRAPI

// Tests/CEL/cases.yaml through the Swift validation: the same table hack/crd136-test.sh sends to a Kubernetes 1.36
// apiserver, where the CEL rules of crds/cel/ judge it. Both must accept and reject the same specs.

/// One row of Tests/CEL/cases.yaml.
struct CELCase: Sendable, CustomTestStringConvertible {
  var name: String
  var kind: String
  var valid: Bool
  var field: String?
  var spec: JSONValue

  var testDescription: String { name }

  static func all() throws -> [CELCase] {
    let url = repoRoot.appendingPathComponent("Tests/CEL/cases.yaml")
    let table = try #require(try documents(url).first)
    return try #require(table["cases"]?.arrayValue).map { row in
      CELCase(
        name: row["name"]?.stringValue ?? "?", kind: row["kind"]?.stringValue ?? "?", valid: row["valid"] == true,
        field: row["field"]?.stringValue, spec: row["spec"] ?? .null)
    }
  }

  /// The Swift validation's errors for this spec.
  func errors() throws -> [SpecError] {
    switch kind {
    case "BackupPolicy": return SpecValidation.validate(try spec.decode() as BackupPolicySpec)
    case "RecoveryPlan": return SpecValidation.validate(try spec.decode() as RecoveryPlanSpec)
    case "DRDrill": return SpecValidation.validate(try spec.decode() as DRDrillSpec)
    default: throw SpecError(field: "kind", message: "unknown kind \(kind) in Tests/CEL/cases.yaml")
    }
  }
}

@Suite struct CELTableTests {
  @Test(arguments: try CELCase.all())
  func swiftValidationAgreesWithTheTable(_ c: CELCase) throws {
    let errors = try c.errors()
    if c.valid {
      #expect(errors.isEmpty, "\(c.name): the table says valid; Swift rejects it: \(errors)")
    } else {
      let field = try #require(c.field, "\(c.name): an invalid case needs `field`")
      #expect(!errors.isEmpty, "\(c.name): the table says invalid; Swift accepts it")
      #expect(
        errors.contains { $0.field.contains(field) }, "\(c.name): no Swift error names \(field): \(errors)")
    }
  }

  @Test func tableCoversEveryKindBothWays() throws {
    let cases = try CELCase.all()
    #expect(Set(cases.map(\.name)).count == cases.count, "case names must be unique")
    for kind in ["BackupPolicy", "RecoveryPlan", "DRDrill"] {
      #expect(cases.contains { $0.kind == kind && $0.valid }, "\(kind): no valid case")
      #expect(cases.contains { $0.kind == kind && !$0.valid }, "\(kind): no invalid case")
    }
  }

  /// crds/cel/ is crds/ plus `x-kubernetes-validations` and a header line: nothing else differs.
  @Test func celRenderingIsTheBaseRenderingPlusRules() throws {
    func stripped(_ v: JSONValue) -> JSONValue {
      switch v {
      case .object(let o):
        return .object(o.filter { $0.key != "x-kubernetes-validations" }.mapValues(stripped))
      case .array(let a): return .array(a.map(stripped))
      default: return v
      }
    }
    let base = try yamlFiles("crds").map(\.lastPathComponent)
    let cel = try yamlFiles("crds/cel").map(\.lastPathComponent)
    #expect(base == cel, "run python3 crds/generate.py")
    var rules = 0
    for name in base {
      let b = try documents(repoRoot.appendingPathComponent("crds/\(name)"))
      let c = try documents(repoRoot.appendingPathComponent("crds/cel/\(name)"))
      #expect(b == c.map(stripped), "\(name): crds/ and crds/cel/ differ beyond the CEL rules")
      func count(_ v: JSONValue) -> Int {
        switch v {
        case .object(let o):
          return (o["x-kubernetes-validations"]?.arrayValue?.count ?? 0) + o.values.map(count).reduce(0, +)
        case .array(let a): return a.map(count).reduce(0, +)
        default: return 0
        }
      }
      rules += c.map(count).reduce(0, +)
    }
    #expect(rules >= 15, "crds/cel/ holds only \(rules) CEL rules")
  }
}
