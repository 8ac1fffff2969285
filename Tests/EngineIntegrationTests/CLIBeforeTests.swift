import Foundation
import Testing

/// `restore latest --before TIME` and `snapshots --before TIME`: the newest snapshot taken at or before a point in time.
@Suite(.serialized) struct CLIBeforeTests {
  func stamp(_ d: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: d)
  }

  func parse(_ s: String) throws -> Date {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return try #require(f.date(from: s) ?? ISO8601DateFormatter().date(from: s), "time \(s)")
  }

  @Test func restoreBeforePicksTheNewestSnapshotAtOrBeforeTheTime() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    var ids: [String] = []
    for v in ["one", "two", "three"] {
      try h.write("src/v.txt", Data("\(v)\n".utf8))
      let b = try h.run(["backup", h.dir + "/src"])
      #expect(b.code == 0, "\(b.stderr)")
      ids.append(try #require(b.result["snapshotId"] as? String))
      Thread.sleep(forTimeInterval: 1.1)
    }
    let list = try #require(try h.run(["snapshots", "--json"]).result["snapshots"] as? [[String: Any]])
    let times = try ids.map { id in
      try parse(try #require(list.first { $0["id"] as? String == id }?["time"] as? String))
    }

    // Just after the second snapshot: the second, not the third (newer) nor the first (older).
    let r = try h.run([
      "restore", "latest", "--before", stamp(times[1].addingTimeInterval(0.5)), "--stdout", "--path", "src/v.txt",
    ])
    #expect(r.code == 0, "\(r.stderr)")
    #expect(String(decoding: r.stdout, as: UTF8.self).hasPrefix("two\n"), "\(r.text)")
    let t = try h.run([
      "restore", "latest", "--before", stamp(times[1].addingTimeInterval(0.5)), "--target", h.dir + "/out",
    ])
    #expect(t.code == 0, "\(t.stderr)")
    #expect(t.result["snapshotId"] as? String == ids[1])
    #expect(try String(contentsOfFile: h.dir + "/out/src/v.txt", encoding: .utf8) == "two\n")

    // Exactly at a snapshot's time counts ("at or before"); an offset zone is the same instant.
    let exact = try h.run(["restore", "latest", "--before", stamp(times[0]), "--target", h.dir + "/out0"])
    #expect(exact.result["snapshotId"] as? String == ids[0], "\(exact.stderr)")
    let f = ISO8601DateFormatter()
    f.timeZone = TimeZone(secondsFromGMT: 2 * 3600)
    f.formatOptions = [.withInternetDateTime]
    let late = try h.run([
      "restore", "latest", "--before", f.string(from: Date().addingTimeInterval(60)), "--target", h.dir + "/out3",
    ])
    #expect(late.result["snapshotId"] as? String == ids[2], "\(late.stderr)")

    // The listing filtered the same way.
    let some = try #require(
      try h.run(["snapshots", "--json", "--before", stamp(times[1].addingTimeInterval(0.5))]).result["snapshots"]
        as? [[String: Any]])
    #expect(some.compactMap { $0["id"] as? String } == [ids[0], ids[1]])
  }

  @Test func beforeWithNoQualifyingSnapshotOrBadInputIsAClearUsageError() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    try h.write("src/v.txt", Data("one\n".utf8))
    let b = try h.run(["backup", h.dir + "/src"])
    let id = try #require(b.result["snapshotId"] as? String)

    let none = try h.run(["restore", "latest", "--before", "2001-01-01T00:00:00Z", "--target", h.dir + "/out"])
    #expect(none.code == 2)
    #expect(none.stderr.contains("--before 2001-01-01T00:00:00Z"), "\(none.stderr)")
    #expect(none.stderr.contains("no snapshot was taken at or before"), "\(none.stderr)")
    #expect(!FileManager.default.fileExists(atPath: h.dir + "/out/src/v.txt"))

    let bad = try h.run(["restore", "latest", "--before", "yesterday", "--target", h.dir + "/out"])
    #expect(bad.code == 2)
    #expect(bad.stderr.contains("--before 'yesterday' is not an RFC 3339 time"), "\(bad.stderr)")
    let noZone = try h.run(["snapshots", "--before", "2026-01-01T00:00:00"])
    #expect(noZone.code == 2)
    #expect(noZone.stderr.contains("--before"), "\(noZone.stderr)")

    let named = try h.run(["restore", id, "--before", "2030-01-01T00:00:00Z", "--target", h.dir + "/out"])
    #expect(named.code == 2)
    #expect(named.stderr.contains("the snapshot must be 'latest'"), "\(named.stderr)")

    let empty = try #require(
      try h.run(["snapshots", "--json", "--before", "2001-01-01T00:00:00Z"]).result["snapshots"] as? [Any])
    #expect(empty.isEmpty)
  }
}
