import Foundation
import Testing

/// `ls`, `find`, `diff` and `stats` through the built engine, on a local repository: what people read on stdout,
/// and what machines read with --json (one object per entry, then the result line).
@Suite struct CLIBrowseTests {
  func setUp() throws -> (CLIHarness, first: String, second: String) {
    let h = try CLIHarness()
    try h.write("src/docs/readme.txt", Data("hello\n".utf8))
    try h.write("src/docs/Notes.TXT", Data("notes\n".utf8), mode: 0o600)
    try h.write("src/data/big.bin", sampleData(2 << 20))
    try h.write("src/data/gone.sql", Data("drop\n".utf8))
    try FileManager.default.createSymbolicLink(atPath: h.dir + "/src/link", withDestinationPath: "docs/readme.txt")
    #expect(try h.run(["init"]).code == 0)
    let b1 = try h.run(["backup", h.dir + "/src", "--json"])
    #expect(b1.code == 0, "\(b1.stderr)")
    // The second snapshot: one file changed, one removed, one added, one only chmod-ed; big.bin unchanged.
    try h.write("src/docs/readme.txt", Data("hello again\n".utf8))
    try FileManager.default.removeItem(atPath: h.dir + "/src/data/gone.sql")
    try h.write("src/data/new.sql", Data("create\n".utf8))
    try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: h.dir + "/src/docs/Notes.TXT")
    let b2 = try h.run(["backup", h.dir + "/src", "--json"])
    #expect(b2.code == 0, "\(b2.stderr)")
    return (h, b1.result["snapshotId"] as? String ?? "", b2.result["snapshotId"] as? String ?? "")
  }

  func jsonLines(_ o: CLIHarness.Output) -> [[String: Any]] {
    String(decoding: o.stdout, as: UTF8.self).split(separator: "\n").compactMap {
      try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }.filter { $0["command"] == nil }
  }

  @Test func lsListsASnapshotAndADirectory() throws {
    let (h, first, _) = try setUp()
    defer { h.cleanup() }
    let all = try h.run(["ls", String(first.prefix(10))])
    #expect(all.code == 0, "\(all.stderr)")
    // People's lines, without the result line (JSON) that ends stdout.
    let paths = String(decoding: all.stdout, as: UTF8.self).split(separator: "\n").map(String.init).filter {
      !$0.hasPrefix("{")
    }
    #expect(
      paths == [
        "/src", "/src/data", "/src/data/big.bin", "/src/data/gone.sql", "/src/docs",
        "/src/docs/Notes.TXT", "/src/docs/readme.txt", "/src/link",
      ])
    let long = try h.run(["ls", "-l", "latest", "/src/docs"])
    let text = String(decoding: long.stdout, as: UTF8.self)
    #expect(text.contains("-rw-r----- ") && text.contains(" /src/docs/Notes.TXT"), "\(text)")
    #expect(!text.contains("big.bin"))
    let json = jsonLines(try h.run(["ls", "latest", "/src", "--json"]))
    #expect(json.map { $0["path"] as? String ?? "" } == ["/src", "/src/data", "/src/docs", "/src/link"])
    let link = try #require(json.first { $0["path"] as? String == "/src/link" })
    #expect(link["type"] as? String == "symlink" && link["link_target"] as? String == "docs/readme.txt")
    let missing = try h.run(["ls", "latest", "/nope"])
    #expect(missing.code == 2 && missing.stderr.contains("/nope matches nothing"), "\(missing.stderr)")
  }

  /// A stream snapshot lists its path as `stdin:NAME` (`snapshots`); `ls` and `restore --path` take that path as
  /// listed, and `/NAME` as restic users write it. In a snapshot of files, `stdin:NAME` is only a file name.
  @Test func aStreamSnapshotsListedPathIsAcceptedByLsAndRestore() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    let b = try h.run(["backup", "--stdin", "--stdin-name", "orders.dump", "--json"], stdin: Data("row-1\n".utf8))
    #expect(b.code == 0, "\(b.stderr)")
    let first = try #require((try h.run(["snapshots", "--json"]).result["snapshots"] as? [[String: Any]])?.first)
    #expect(first["paths"] as? [String] == ["stdin:orders.dump"], "\(first)")
    for given in ["stdin:orders.dump", "/orders.dump", "orders.dump"] {
      let ls = try h.run(["ls", "latest", given, "--json"])
      #expect(ls.code == 0, "\(given): \(ls.stderr)")
      #expect(jsonLines(ls).map { $0["path"] as? String ?? "" } == ["/orders.dump"], "\(given)")
    }
    let r = try h.run(["restore", "latest", "--path", "stdin:orders.dump", "--target", h.dir + "/out"])
    #expect(r.code == 0, "\(r.stderr)")
    #expect(FileManager.default.contents(atPath: h.dir + "/out/orders.dump") == Data("row-1\n".utf8))
    // A snapshot of files does not list stdin:NAME: there it names a file called so, which is not there.
    try h.write("src/orders.dump", Data("x".utf8))
    #expect(try h.run(["backup", h.dir + "/src"]).code == 0)
    let files = try h.run(["ls", "latest", "stdin:orders.dump"])
    #expect(files.code == 2 && files.stderr.contains("stdin:orders.dump matches nothing"), "\(files.stderr)")
  }

  @Test func findMatchesNamesAndPathsInEverySnapshot() throws {
    let (h, first, second) = try setUp()
    defer { h.cleanup() }
    let sql = try h.run(["find", "*.sql", "--json"])
    let hits = jsonLines(sql).map { "\(($0["snapshot"] as? String ?? "").prefix(8)) \($0["path"] as? String ?? "")" }
    #expect(Set(hits) == ["\(first.prefix(8)) /src/data/gone.sql", "\(second.prefix(8)) /src/data/new.sql"], "\(hits)")
    #expect(sql.result["files"] as? Int == 2)
    #expect(jsonLines(try h.run(["find", "notes.txt", "--json"])).isEmpty)
    #expect(jsonLines(try h.run(["find", "-i", "notes.txt", "--json", "-s", second])).count == 1)
    let byPath = try h.run(["find", "--path", "/src/docs/*", "-s", "latest"])
    let text = String(decoding: byPath.stdout, as: UTF8.self)
    #expect(
      text.contains("Found matching entries in snapshot \(second.prefix(10))") && text.contains("/src/docs/readme.txt"))
  }

  @Test func diffNamesWhatChanged() throws {
    let (h, first, second) = try setUp()
    defer { h.cleanup() }
    let d = try h.run(["diff", first, second])
    #expect(d.code == 0, "\(d.stderr)")
    let lines = Set(String(decoding: d.stdout, as: UTF8.self).split(separator: "\n").map(String.init))
    for want in [
      "+    /src/data/new.sql", "-    /src/data/gone.sql", "M    /src/docs/readme.txt",
      "U    /src/docs/Notes.TXT", "U    /src/data/", "U    /src/docs/",
      "Files: 1 new, 1 removed, 1 changed, 3 with new metadata",
    ] {
      #expect(lines.contains(want), "missing \(want) in \(lines)")
    }
    #expect(!lines.contains { $0.contains("big.bin") })
    let json = jsonLines(try h.run(["diff", first, second, "--json"]))
    #expect(json.contains { $0["modifier"] as? String == "+" && $0["path"] as? String == "/src/data/new.sql" })
  }

  @Test func statsCountsSizesOnceDeduplicated() throws {
    let (h, first, _) = try setUp()
    defer { h.cleanup() }
    func stats(_ args: [String]) throws -> [String: Any] {
      let r = try h.run(["stats"] + args + ["--json"])
      #expect(r.code == 0, "\(r.stderr)")
      let line = String(decoding: r.stdout, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
      return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }
    let one = try stats([first])
    let both = try stats([])
    let size = { (s: [String: Any]) in s["restoreSizeBytes"] as? Int ?? -1 }
    #expect(size(one) == (2 << 20) + 6 + 6 + 5)
    // Two snapshots restore twice the unchanged 2 MiB, but it is stored once.
    #expect(size(both) > 2 * (2 << 20))
    #expect((both["rawBytes"] as? Int ?? 0) < size(both) - (2 << 20) + 4096)
    #expect((both["deduplicationRatio"] as? Double ?? 0) > 1.9)
    #expect((both["uniqueTreeBlobs"] as? Int ?? 0) >= 2 && (both["storedBytes"] as? Int ?? 0) > 0)
    #expect((both["repositoryPackBytes"] as? Int ?? 0) >= (both["storedBytes"] as? Int ?? 0))
    let text = String(decoding: try h.run(["stats"]).stdout, as: UTF8.self)
    #expect(text.contains("Snapshots processed:      2") && text.contains("Deduplication ratio:"))
  }
}
