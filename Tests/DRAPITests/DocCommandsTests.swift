import Foundation
import Testing

/// Every shell block of every doc says which test runs it, and that test does:
/// - `<!-- install-test: ... -->`: docs/quickstart.md's blocks, run in order by hack/install-test.sh (step 5);
/// - `<!-- doc-test: install-test -->`: run by hack/install-test.sh step 7 against the install the quickstart made;
/// - `<!-- doc-test: install-test uninstall -->`: the quickstart's uninstall, hack/install-test.sh step 8;
/// - `<!-- doc-test: ci -->`: the block runs scripts that hack/test.sh runs (itself, or from a script it runs);
/// - `<!-- doc-test: ci hack/doc-blocks.sh NAME -->`: hack/doc-blocks.sh reads the block from the doc and runs it (with
///   small counts where it is long), in a group that hack/test.sh runs;
/// - `<!-- doc-test: not-run: REASON -->`: not run, with the reason (for a command that cannot run here; none is now).
/// A new block without a marker fails here, so a command cannot be added to the docs untested by oversight.
@Suite struct DocCommandsTests {
  struct Block {
    var file: String
    var marker: String?
    var body: String
  }

  /// Every ```sh or ```bash block of docs/*.md and README.md, with the marker on the line before it.
  static func blocks() throws -> [Block] {
    var out: [Block] = []
    for url in try DocJSONPathTests.docs() {
      let lines = try String(contentsOf: url, encoding: .utf8).components(separatedBy: "\n")
      var i = 0
      while i < lines.count {
        let fence = lines[i].trimmingCharacters(in: .whitespaces)
        guard fence == "```sh" || fence == "```bash" else {
          i += 1
          continue
        }
        let previous = i > 0 ? lines[i - 1].trimmingCharacters(in: .whitespaces) : ""
        let marker = previous.hasPrefix("<!--") && previous.hasSuffix("-->") ? previous : nil
        var body: [String] = []
        i += 1
        while i < lines.count, lines[i].trimmingCharacters(in: .whitespaces) != "```" {
          body.append(lines[i])
          i += 1
        }
        out.append(Block(file: url.lastPathComponent, marker: marker, body: body.joined(separator: "\n")))
        i += 1
      }
    }
    return out
  }

  /// The scripts hack/test.sh runs: itself, and every hack/ script named in a script it runs, transitively.
  static func scriptsTheTestRuns() throws -> Set<String> {
    var seen: Set<String> = []
    var todo = ["hack/test.sh"]
    while let s = todo.popLast() {
      guard seen.insert(s).inserted,
        let text = try? String(contentsOf: repoRoot.appendingPathComponent(s), encoding: .utf8)
      else { continue }
      for m in text.matches(of: #/hack/[A-Za-z0-9_./-]+\.sh/#) { todo.append(String(m.output)) }
    }
    return seen
  }

  @Test func everyShellBlockIsRunOrSaysWhyNot() throws {
    let blocks = try Self.blocks()
    #expect(blocks.count >= 40, "found only \(blocks.count) shell blocks")
    let run = try Self.scriptsTheTestRuns()
    let installTest = try String(
      contentsOf: repoRoot.appendingPathComponent("hack/install-test.sh"), encoding: .utf8)
    for b in blocks {
      let where_ = "\(b.file): the block starting \(b.body.prefix(60).debugDescription)"
      guard let marker = b.marker else {
        Issue.record("\(where_) has no <!-- doc-test: ... --> marker: say which test runs it")
        continue
      }
      if marker.hasPrefix("<!-- install-test:") {
        #expect(b.file == "quickstart.md", "\(where_): install-test markers are docs/quickstart.md's")
      } else if marker == "<!-- doc-test: install-test -->" {
        #expect(installTest.contains("/\(b.file)\""), "\(where_): hack/install-test.sh step 7 does not read it")
      } else if marker == "<!-- doc-test: install-test uninstall -->" {
        #expect(b.file == "quickstart.md" && installTest.contains(marker), "\(where_): step 8 runs the uninstall")
      } else if marker == "<!-- doc-test: ci -->" {
        let scripts = b.body.matches(of: #/hack/[A-Za-z0-9_./-]+\.sh/#).map { String($0.output) }
        #expect(!scripts.isEmpty, "\(where_): a ci block names the hack/ scripts it runs")
        for s in scripts { #expect(run.contains(s), "\(where_): hack/test.sh never runs \(s)") }
      } else if let m = marker.wholeMatch(of: #/<!-- doc-test: ci (hack/[a-z0-9-]+\.sh) ([a-z0-9-]+) -->/#) {
        let (script, name) = (String(m.output.1), String(m.output.2))
        #expect(run.contains(script), "\(where_): hack/test.sh never runs \(script)")
        #expect(
          try Self.groupsRunning(name, script: script).count == 1,
          "\(where_): no group of hack/test.sh's runs of \(script) reads the block marked \(name)")
      } else if marker.hasPrefix("<!-- doc-test: not-run: ") {
        #expect(marker.count > "<!-- doc-test: not-run:  -->".count + 20, "\(where_): say why it is not run")
      } else {
        Issue.record("\(where_): unknown marker \(marker)")
      }
    }
  }

  /// The groups of hack/doc-blocks.sh (its functions `group_NAME`, each ended by `}` and a blank line) that read the block marked NAME (`doc_block NAME`)
  /// and that hack/test.sh runs (a line calling the script names the group).
  static func groupsRunning(_ name: String, script: String) throws -> [String] {
    let text = try String(contentsOf: repoRoot.appendingPathComponent(script), encoding: .utf8)
    let testSh = try String(contentsOf: repoRoot.appendingPathComponent("hack/test.sh"), encoding: .utf8)
    let runs = testSh.components(separatedBy: "\n").filter { $0.contains(script) && !$0.hasPrefix("#") }
    var groups: [String] = []
    for f in text.matches(of: #/\ngroup_([a-z_]+)\(\) \{\n(.*?)\n\}\n(?=\n)/#.dotMatchesNewlines()) {
      let group = f.output.1.replacingOccurrences(of: "_", with: "-")
      let body = String(f.output.2)
      guard body.contains("doc_block \(name)\n") || body.contains("doc_block \(name) ") else { continue }
      let called = runs.contains { line in line.split(separator: " ").contains { $0 == group } }
      if called { groups.append(group) }
    }
    return groups
  }

  /// Every block marked for hack/doc-blocks.sh is read by one of its groups, and hack/test.sh runs that group.
  @Test func docBlocksGroupsAreRun() throws {
    let marked = try Self.blocks().compactMap { b -> String? in
      guard let m = b.marker?.wholeMatch(of: #/<!-- doc-test: ci hack/doc-blocks.sh ([a-z0-9-]+) -->/#) else {
        return nil
      }
      return String(m.output.1)
    }
    #expect(
      Set(marked).isSuperset(of: [
        "select", "private-ports", "apiserver-restart", "bench-kube", "fuzz", "reliability", "reliability-engine",
        "registry",
      ]))
    #expect(Set(marked).count == marked.count, "a name marks two blocks: \(marked)")
    for name in marked {
      #expect(
        try Self.groupsRunning(name, script: "hack/doc-blocks.sh").count == 1,
        "no group that hack/test.sh runs reads \(name)")
    }
  }

  /// hack/install-test.sh step 7 runs the blocks marked for it: the extraction it uses finds each file's blocks.
  @Test func installTestRunsTheMarkedBlocks() throws {
    let marked = try Self.blocks().filter { $0.marker == "<!-- doc-test: install-test -->" }
    #expect(Set(marked.map(\.file)).isSuperset(of: ["runbooks.md", "upgrading.md"]))
    let text = try String(contentsOf: repoRoot.appendingPathComponent("hack/install-test.sh"), encoding: .utf8)
    #expect(text.contains("doc-test: install-test"), "hack/install-test.sh does not look for the marker")
  }
}
