import ControllerApp
import Foundation
import KubeClient
import Testing

/// `botrt-controller --help` names every environment variable the controller's client configuration reads.
@Suite struct ControllerHelpTests {
  @Test func helpListsEveryEnvironmentVariable() throws {
    let help = ControllerCommand.helpMessage(columns: 80)
    for line in help.split(separator: "\n") {
      #expect(line.count <= 78, "a help line the parser would rewrap: \(line)")
    }
    for (name, meaning) in ClientConfig.environmentVariables {
      #expect(help.contains("  \(name)\n      \(meaning)"), "--help misses \(name): \(help)")
    }
    // Every name KubeClient reads from the environment is one of them (a literal read elsewhere would be missed).
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Sources/KubeClient")
    let documented = Set(ClientConfig.environmentVariables.map(\.name))
    for f in try FileManager.default.contentsOfDirectory(atPath: root.path) where f.hasSuffix(".swift") {
      let text = try String(contentsOf: root.appendingPathComponent(f), encoding: .utf8)
      var rest = Substring(text)
      while let r = rest.range(of: "environment[\"") {
        let after = rest[r.upperBound...]
        let name = String(after.prefix { $0 != "\"" })
        #expect(documented.contains(name), "Sources/KubeClient/\(f) reads \(name), which --help does not list")
        rest = after
      }
    }
  }
}
