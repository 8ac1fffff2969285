import Foundation
import Testing

/// The never-arrows of docs/architecture.md, read from Package.swift and the sources: the engine's targets use no
/// Kubernetes or controller module, and the objects CLI (Kubernetes code in the job image) uses no engine module.
@Suite struct ModuleDependencyTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

  /// Each non-test target of Package.swift with the quoted names in its `dependencies:`.
  static func targets() throws -> [String: [String]] {
    let text = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
    var out: [String: [String]] = [:]
    let decl = try Regex(#"\.(?:target|executableTarget)\(\s*name:\s*"([^"]+)"\s*,\s*dependencies:\s*\[([^\]]*)\]"#)
    for m in text.matches(of: decl) {
      guard let name = m.output[1].substring, let deps = m.output[2].substring else { continue }
      out[String(name)] = deps.matches(of: #/"([^"]+)"/#).map { String($0.output.1) }
    }
    return out
  }

  /// The modules a target's sources import.
  static func imports(_ target: String) throws -> Set<String> {
    let dir = root.appendingPathComponent("Sources").appendingPathComponent(target)
    var out = Set<String>()
    for f in FileManager.default.enumerator(atPath: dir.path)?.compactMap({ $0 as? String }) ?? []
    where f.hasSuffix(".swift") {
      let text = try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8)
      for m in text.matches(
        of: #/(?m)^\s*(?:@testable\s+|@preconcurrency\s+)?import\s+(?:struct\s+|enum\s+|class\s+)?(\w+)/#)
      {
        out.insert(String(m.output.1))
      }
    }
    return out
  }

  static let kubernetes: Set<String> = ["KubeCore", "KubeClient", "KubeRuntime", "CYAML"]
  static let controller: Set<String> = ["DRAPI", "Reconcilers", "ControllerApp", "botrt-controller"]
  static let objects: Set<String> = ["ObjectsCLI", "botrt-objects"]
  static let engine: Set<String> = ["BackupEngine", "EngineCLI", "botrt-engine"]

  @Test func neverArrowsHold() throws {
    let t = try Self.targets()
    for name in ["ObjectsCLI", "botrt-objects", "BackupEngine", "EngineCLI", "botrt-engine"] {
      #expect(t[name] != nil, "Package.swift declares no target \(name) with dependencies")
    }
    let forbidden: [(targets: [String], modules: Set<String>)] = [
      (["BackupEngine", "EngineCLI", "botrt-engine"], Self.kubernetes.union(Self.controller).union(Self.objects)),
      (["ObjectsCLI", "botrt-objects"], Self.engine.union(Self.controller)),
      (["KubeCore", "KubeClient", "KubeRuntime"], Self.engine.union(Self.objects).union(Self.controller)),
    ]
    for (targets, modules) in forbidden {
      for target in targets {
        let deps = Set(t[target] ?? [])
        #expect(deps.isDisjoint(with: modules), "\(target) depends on \(deps.intersection(modules).sorted())")
        let imported = try Self.imports(target)
        #expect(
          imported.isDisjoint(with: modules), "Sources/\(target) imports \(imported.intersection(modules).sorted())")
      }
    }
    #expect(Set(t["EngineContract"] ?? []).isEmpty, "EngineContract depends on \(t["EngineContract"] ?? [])")
    #expect(try Self.imports("EngineContract").isSubset(of: ["Foundation"]))
    #expect(Set(t["ObjectsCLI"] ?? []).isSuperset(of: ["KubeCore", "KubeClient", "EngineContract"]))
  }
}
