import Foundation
import Testing

@testable import BackupEngine
@testable import EngineContract

/// A policy's `include` list as the exclude chain (`IncludePaths.excludeChain`), applied by the engine's own filter as
/// its backup walks a tree (a directory left out is not descended into): exactly the paths at or below an include
/// are kept, and the directories on the way to one.
@Suite struct IncludePathsTests {
  /// The paths the backup keeps of `tree` under `root` with `excludes`: a walk that does not enter what is left out.
  static func walk(_ tree: [[String]], root: String, excludes: [String]) throws -> Set<[String]> {
    let filter = try PathFilter(excludes)
    var kept = Set<[String]>()
    // Parents before children: a path is reached only when its parent was kept.
    for p in tree.sorted(by: { $0.count < $1.count }) {
      if p.count > 1 && !kept.contains(Array(p.dropLast())) { continue }
      if !filter.excludes(root + "/" + p.joined(separator: "/")) { kept.insert(p) }
    }
    return kept
  }

  /// What the includes select, by definition: a path matched (component by component) at or below an include, or on
  /// the way to one.
  static func expected(_ tree: [[String]], includes: [[String]]) throws -> Set<[String]> {
    func matches(_ globs: ArraySlice<String>, _ path: ArraySlice<String>) throws -> Bool {
      for (g, c) in zip(globs, path) where !(try ComponentGlob(g).matches(c)) { return false }
      return true
    }
    var out = Set<[String]>()
    for p in tree {
      for i in includes {
        let n = min(i.count, p.count)
        if try matches(i[0..<n], p[0..<n]) {
          out.insert(p)
          break
        }
      }
    }
    return out
  }

  @Test func theChainOfTheDocExample() throws {
    let chain = try IncludePaths.excludeChain(["/data/db", "/etc"], root: "/backup/c")
    #expect(
      chain == [
        "/backup/c/*", "!/backup/c/data", "!/backup/c/etc", "/backup/c/data/*", "!/backup/c/etc", "!/backup/c/data/db",
      ])
    let tree = [
      ["data"], ["data", "db"], ["data", "db", "x"], ["data", "logs"], ["data", "logs", "y"], ["etc"], ["etc", "z"],
      ["tmp"], ["tmp", "w"],
    ]
    #expect(
      try Self.walk(tree, root: "/backup/c", excludes: chain)
        == [["data"], ["data", "db"], ["data", "db", "x"], ["etc"], ["etc", "z"]])
  }

  @Test func nothingToLeaveOut() throws {
    #expect(try IncludePaths.excludeChain([], root: "/r").isEmpty)
    #expect(try IncludePaths.excludeChain(["/a", "/"], root: "/r").isEmpty)
  }

  /// Random trees and random includes with globs: the walk keeps exactly what the definition says.
  @Test func randomIncludesKeepExactlyWhatTheyName() throws {
    var rng = SeededGenerator(state: 0x1c1d)
    let names = ["a", "ab", "b", "x", "xy", "a.db"]
    let globs = ["a", "ab", "b", "x", "*", "a*", "?", "x?", "*.db", "[ab]"]
    var tree: [[String]] = []
    func grow(_ p: [String], _ depth: Int) {
      guard depth < 4 else { return }
      for n in names where Int.random(in: 0..<3, using: &rng) > 0 || depth == 0 {
        tree.append(p + [n])
        grow(p + [n], depth + 1)
      }
    }
    grow([], 0)
    for round in 0..<300 {
      let includes = (0..<Int.random(in: 1...4, using: &rng)).map { _ in
        (0..<Int.random(in: 1...3, using: &rng)).map { _ in globs.randomElement(using: &rng)! }
      }
      let text = includes.map { "/" + $0.joined(separator: "/") }
      let chain = try IncludePaths.excludeChain(text, root: "/backup/claim")
      let kept = try Self.walk(tree, root: "/backup/claim", excludes: chain)
      let want = try Self.expected(tree, includes: includes)
      #expect(
        kept == want,
        "round \(round), includes \(text): chain \(chain); kept but not wanted \(kept.subtracting(want).sorted { $0.lexicographicallyPrecedes($1) }.prefix(5)), wanted but left out \(want.subtracting(kept).sorted { $0.lexicographicallyPrecedes($1) }.prefix(5))"
      )
      if kept != want { break }
    }
  }

  @Test func whatCannotBeAnIncludeIsRefusedSayingWhy() {
    for (include, words) in [
      ("data", "must start with '/'"), ("/a/**/b", "'**'"), ("/a/../b", "'..'"), ("/a/[x", "not a valid pattern"),
      ("/./a", "'.'"), ("!/a", "cannot be negated"),
    ] {
      #expect(throws: IncludePaths.Problem.self) { try IncludePaths.components(include) }
      do {
        _ = try IncludePaths.components(include)
      } catch {
        #expect(error.description.contains(words), "\(include): \(error)")
      }
    }
  }
}
