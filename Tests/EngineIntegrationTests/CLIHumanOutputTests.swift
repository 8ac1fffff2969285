import Foundation
import Testing

@testable import BackupEngine
@testable import EngineCLI

/// restic's output conventions (issue 16 section 2): without `--json` people get a summary on stdout and the result
/// line is a log line on stderr; `--quiet` prints no summary; with `--json` stdout holds only JSON lines; errors go to
/// stderr; a status line updates in place only when stdout is a terminal.
@Suite struct CLIHumanOutputTests {
  /// Runs the binary without the harness's `--quiet`.
  func human(_ h: CLIHarness, _ args: [String]) throws -> CLIHarness.Output {
    try h.run(args + ["--repo", h.repoURL, "--kms", h.kmsURL], withRepo: false)
  }

  func out(_ r: CLIHarness.Output) -> String { String(decoding: r.stdout, as: UTF8.self) }

  /// Fails unless every line of stdout parses as JSON.
  func expectOnlyJSON(_ r: CLIHarness.Output, _ what: String) {
    let lines = out(r).split(separator: "\n")
    #expect(!lines.isEmpty, "\(what): nothing on stdout")
    for l in lines {
      #expect((try? JSONSerialization.jsonObject(with: Data(l.utf8))) != nil, "\(what): not JSON on stdout: \(l)")
    }
  }

  @Test func humanSummariesNameTheCounts() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("alpha\n".utf8))
    try h.write("src/b.bin", sampleData(200_000))
    try h.write("src/sub/c.txt", Data("gamma\n".utf8))

    let i = try human(h, ["init"])
    #expect(i.code == 0, "\(i.stderr)")
    #expect(out(i).hasPrefix("created repository "), "\(out(i))")

    let b1 = try human(h, ["backup", h.dir + "/src"])
    #expect(b1.code == 0, "\(b1.stderr)")
    let id1 = try #require(b1.result["snapshotId"] as? String, "no result on stderr: \(b1.stderr)")
    let s1 = out(b1)
    #expect(s1.contains("Files:        3 new or changed, 0 unmodified"), "\(s1)")
    #expect(s1.contains("Dirs:         "), "\(s1)")
    let stored1 = try #require(b1.result["bytesStored"] as? Int)
    #expect(s1.contains("Added to the repository: "), "\(s1)")
    #expect(s1.contains("(\(HumanFormat.bytes(Int64(stored1))) stored)"), "\(s1)")
    #expect(s1.contains("processed 3 files, \(HumanFormat.bytes(200_012)) in 0:"), "\(s1)")
    #expect(s1.contains("snapshot \(id1.prefix(8)) saved"), "\(s1)")
    // stdout is for people: no JSON there; the result is the log's last line.
    #expect(!s1.contains("{"), "\(s1)")
    #expect(b1.stderr.split(separator: "\n").last?.hasPrefix("{\"") == true, "\(b1.stderr)")

    // Nothing changed: every file unmodified, nothing stored.
    let b2 = try human(h, ["backup", h.dir + "/src"])
    #expect(b2.code == 0, "\(b2.stderr)")
    let id2 = try #require(b2.result["snapshotId"] as? String)
    #expect(out(b2).contains("Files:        0 new or changed, 3 unmodified"), "\(out(b2))")
    #expect(out(b2).contains("(0 B stored)"), "\(out(b2))")

    let target = h.dir + "/out"
    let r = try human(h, ["restore", "latest", "--target", target])
    #expect(r.code == 0, "\(r.stderr)")
    #expect(out(r).contains("restoring snapshot \(id2.prefix(8)) of ["), "\(out(r))")
    #expect(out(r).contains(" to \(target)\n"), "\(out(r))")
    #expect(out(r).contains("Summary: Restored 3 files (\(HumanFormat.bytes(200_012))) in 0:"), "\(out(r))")

    let v = try human(h, ["verify", "--all", "--read-data"])
    #expect(v.code == 0, "\(v.stderr)")
    #expect(out(v).contains("checked 2 snapshots, "), "\(out(v))")
    #expect(out(v).contains("; read "), "\(out(v))")
    #expect(out(v).hasSuffix("no errors were found\n"), "\(out(v))")
    let vl = try human(h, ["verify", "latest"])
    #expect(vl.code == 0, "\(vl.stderr)")
    #expect(out(vl).contains("latest is snapshot \(id2.prefix(8))"), "\(out(vl))")

    let c = try human(h, ["copy", "--to", "file://\(h.dir)/repo2", "--to-kms", h.kmsURL, "--init-if-missing"])
    #expect(c.code == 0, "\(c.stderr)")
    let copied = try #require(c.result["copied"] as? [[String: Any]])
    #expect(copied.count == 2)
    for e in copied {
      let (s, t) = (try #require(e["source"] as? String), try #require(e["target"] as? String))
      #expect(out(c).contains("snapshot \(s.prefix(8)) copied: snapshot \(t.prefix(8)) saved"), "\(out(c))")
    }
    #expect(out(c).contains("copied 2 snapshots, 6 files, "), "\(out(c))")
    let again = try human(h, ["copy", "--to", "file://\(h.dir)/repo2", "--to-kms", h.kmsURL])
    #expect(again.code == 0, "\(again.stderr)")
    #expect(out(again).contains("skipped 2 snapshots the target already holds"), "\(out(again))")
    #expect(out(again).contains("copied 0 snapshots"), "\(out(again))")

    let f = try human(h, ["forget", "--keep-last", "1", "--prune"])
    #expect(f.code == 0, "\(f.stderr)")
    let fl = out(f).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    let kept = try #require(fl.firstIndex(of: "keep 1 snapshots:"), "\(out(f))")
    #expect(fl[kept + 3].hasPrefix("\(id2.prefix(8))  ") && fl[kept + 3].contains("last snapshot"), "\(out(f))")
    let removed = try #require(fl.firstIndex(of: "remove 1 snapshots:"), "\(out(f))")
    #expect(fl[removed + 3].hasPrefix("\(id1.prefix(8))  "), "\(out(f))")
    #expect(out(f).contains("deleted "), "\(out(f))")

    try makeFile(atPath: h.dir + "/kek2", contents: Data(Crypto.randomBytes(32)))
    let rot = try human(h, ["rotate-keys", "--new-kms", "file://\(h.dir)/kek2"])
    #expect(rot.code == 0, "\(rot.stderr)")
    #expect(out(rot).hasPrefix("rewrapped the data keys under "), "\(out(rot))")

    let del = try h.run(
      ["delete-repository", "--confirm", "--repo", h.repoURL, "--kms", "file://\(h.dir)/kek2"], withRepo: false)
    #expect(del.code == 0, "\(del.stderr)")
    let deleted = try #require(del.result["objectsDeleted"] as? Int)
    #expect(out(del).hasPrefix("deleted \(deleted) objects ("), "\(out(del))")
  }

  /// `--quiet` prints nothing on stdout for a command that succeeds (the result is still in the log and the result
  /// file); the listing of `snapshots` stays, as in restic.
  @Test func quietPrintsNoSummary() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("alpha\n".utf8))
    let resultFile = h.dir + "/result.json"
    for args in [
      ["init"], ["backup", h.dir + "/src"], ["restore", "latest", "--target", h.dir + "/out"], ["verify", "--all"],
      ["forget", "--keep-last", "1", "--prune"],
      ["copy", "--to", "file://\(h.dir)/repo2", "--to-kms", h.kmsURL, "--init-if-missing"],
    ] {
      let r = try human(h, args + ["--quiet", "--result-file", resultFile])
      #expect(r.code == 0, "\(args): \(r.stderr)")
      #expect(r.stdout.isEmpty, "\(args): \(out(r))")
      #expect(r.result["command"] as? String == args[0], "\(args): \(r.stderr)")
      let written = try String(contentsOfFile: resultFile, encoding: .utf8)
      #expect(written.contains("\"command\":\"\(args[0])\""), "\(args): \(written)")
    }
    let s = try h.run(["snapshots"])  // the harness adds --quiet
    #expect(out(s).contains("ID          SEQ"), "\(out(s))")
  }

  /// `forget` prints restic's tables: the policy, then per retention group the snapshots kept with the rules that keep
  /// each (Reasons, one line per reason) and those removed; `--dry-run` says "would remove".
  @Test func forgetPrintsResticsTablesPerGroup() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("alpha\n".utf8))
    try h.write("other/b.txt", Data("beta\n".utf8))
    #expect(try human(h, ["init"]).code == 0)
    func backup(_ dir: String, host: String, time: String, tags: [String] = []) throws -> String {
      let r = try human(
        h, ["backup", h.dir + "/" + dir, "--host", host, "--time", time] + tags.flatMap { ["--tag", $0] })
      #expect(r.code == 0, "\(r.stderr)")
      return try #require(r.result["snapshotId"] as? String, "\(r.stderr)")
    }
    let id1 = try backup("src", host: "alpha", time: "2026-01-01T10:00:00Z", tags: ["env=prod"])
    let id2 = try backup("src", host: "alpha", time: "2026-01-02T10:00:00Z", tags: ["env=prod"])
    let id3 = try backup("src", host: "alpha", time: "2026-01-02T12:00:00Z")
    let id4 = try backup("other", host: "beta", time: "2026-01-01T08:00:00Z")
    func time(_ s: String) -> String { HumanFormat.time(ISO8601DateFormatter().date(from: s)!) }

    let f = try human(h, ["forget", "--keep-last", "1", "--keep-daily", "2", "--dry-run"])
    #expect(f.code == 0, "\(f.stderr)")
    let text = out(f)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    #expect(lines.first == "Applying Policy: keep 1 latest, 2 daily snapshots", "\(text)")
    #expect(!text.contains("{"), "\(text)")
    #expect(!lines.contains { $0.hasSuffix(" ") }, "trailing spaces: \(text.debugDescription)")

    // Host alpha: the newest is kept as the last and as a daily snapshot (two lines), the oldest as a daily one; the
    // middle one (same day as the newest) would go.
    let alpha = try #require(
      lines.firstIndex(of: "snapshots for (host [alpha], type [files], paths [\(h.dir)/src]):"), "\(text)")
    #expect(lines[alpha + 1] == "keep 2 snapshots:", "\(text)")
    let header = lines[alpha + 2]
    #expect(header.hasPrefix("ID        Time                 Host   Tags      Reasons"), "\(text)")
    #expect(header.hasSuffix("Paths"), "\(text)")
    #expect(lines[alpha + 3].allSatisfy { $0 == "-" } && lines[alpha + 3].count >= header.count, "\(text)")
    let row3 = lines[alpha + 4]
    #expect(row3.hasPrefix("\(id3.prefix(8))  \(time("2026-01-02T12:00:00Z"))  alpha  "), "\(text)")
    #expect(row3.contains("last snapshot") && row3.hasSuffix("\(h.dir)/src"), "\(text)")
    // The second reason on a line of its own, in the Reasons column.
    let reasonColumn = try #require(header.range(of: "Reasons")).lowerBound.utf16Offset(in: header)
    #expect(lines[alpha + 5] == String(repeating: " ", count: reasonColumn) + "daily snapshot", "\(text)")
    let row1 = lines[alpha + 6]
    #expect(row1.hasPrefix("\(id1.prefix(8))  \(time("2026-01-01T10:00:00Z"))  alpha  env=prod  "), "\(text)")
    #expect(row1.contains("daily snapshot") && !row1.contains("last snapshot"), "\(text)")
    #expect(lines[alpha + 7] == lines[alpha + 3] && lines[alpha + 8] == "2 snapshots", "\(text)")
    #expect(lines[alpha + 9] == "", "\(text)")
    #expect(lines[alpha + 10] == "would remove 1 snapshots:", "\(text)")
    #expect(lines[alpha + 11].hasPrefix("ID        Time                 Host   Tags      Paths"), "\(text)")
    #expect(lines[alpha + 13].hasPrefix("\(id2.prefix(8))  \(time("2026-01-02T10:00:00Z"))  alpha  env=prod  "))
    #expect(lines[alpha + 13].hasSuffix("\(h.dir)/src"), "\(text)")
    #expect(lines[alpha + 15] == "1 snapshots", "\(text)")

    // Host beta is a group of its own: its one snapshot is kept, nothing removed.
    let beta = try #require(
      lines.firstIndex(of: "snapshots for (host [beta], type [files], paths [\(h.dir)/other]):"), "\(text)")
    #expect(lines[beta + 1] == "keep 1 snapshots:", "\(text)")
    #expect(lines[beta + 4].hasPrefix("\(id4.prefix(8))  ") && lines[beta + 4].contains("last snapshot"), "\(text)")
    #expect(!lines[beta...].contains { $0.contains("remove") }, "\(text)")
    #expect(f.result["removed"] as? [String] == [id2], "\(f.stderr)")

    // Done for real: "remove", and the snapshot is gone.
    let g = try human(h, ["forget", "--keep-last", "1", "--keep-daily", "2"])
    #expect(g.code == 0, "\(g.stderr)")
    #expect(out(g).contains("\nremove 1 snapshots:\n"), "\(out(g))")
    #expect(g.result["removed"] as? [String] == [id2], "\(g.stderr)")
    let again = try human(h, ["forget", "--keep-last", "1", "--keep-daily", "2"])
    #expect(!out(again).contains("remove"), "\(out(again))")
  }

  /// Through a pipe, `BOTRT_PROGRESS_FPS` asks for plain progress lines (newline-terminated, no `\r`, no escapes)
  /// before the summary; without it, or with `--quiet`, none; with `--json` progress stays JSON.
  @Test func progressLinesThroughAPipeWhenAskedFor() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/big.bin", sampleData(4 << 20))
    #expect(try h.run(["init"]).code == 0)
    let args = ["backup", h.dir + "/src", "--repo", h.repoURL, "--kms", h.kmsURL]
    func progressLines(_ r: CLIHarness.Output) -> [String] {
      out(r).split(separator: "\n").map(String.init).filter { $0.hasPrefix("[0:") }
    }

    let asked = try h.run(args, withRepo: false, env: ["BOTRT_PROGRESS_FPS": "10"])
    #expect(asked.code == 0, "\(asked.stderr)")
    let text = out(asked)
    let shown = progressLines(asked)
    #expect(!shown.isEmpty, "no progress line: \(text.debugDescription)")
    #expect(shown.allSatisfy { $0.contains(" files ") && $0.contains(" errors") }, "\(shown)")
    #expect(!text.contains("\r") && !text.contains("\u{1B}"), "\(text.debugDescription)")
    let firstSummary = try #require(text.range(of: "Files:        "), "\(text)")
    #expect(text.range(of: "[0:")!.lowerBound < firstSummary.lowerBound, "\(text)")
    #expect(text.hasSuffix(" saved\n"), "\(text)")

    for (env, extra) in [
      ([String: String](), [String]()), (["BOTRT_PROGRESS_FPS": "fast"], []), (["BOTRT_PROGRESS_FPS": "0"], []),
      (["BOTRT_PROGRESS_FPS": "10"], ["--quiet"]),
    ] {
      let r = try h.run(args + extra, withRepo: false, env: env)
      #expect(r.code == 0, "\(env) \(extra): \(r.stderr)")
      #expect(progressLines(r).isEmpty, "\(env) \(extra): \(out(r).debugDescription)")
    }
    let json = try h.run(args + ["--json"], withRepo: false, env: ["BOTRT_PROGRESS_FPS": "10"])
    #expect(json.code == 0, "\(json.stderr)")
    expectOnlyJSON(json, "backup --json with BOTRT_PROGRESS_FPS")
    #expect(ProgressLine.progressFPS("0.5") == 0.5 && ProgressLine.progressFPS(" 10 ") == 10)
    #expect(ProgressLine.progressFPS("1000") == 60)
    #expect(ProgressLine.progressFPS("-1") == nil && ProgressLine.progressFPS("") == nil)
    #expect(ProgressLine.progressFPS(nil) == nil && ProgressLine.progressFPS("inf") == nil)
  }

  /// With `--json` every line on stdout is JSON, for every command, and the last is the result.
  @Test func jsonStdoutIsOnlyJSONForEveryCommand() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("alpha\n".utf8))
    try h.write("src/b.bin", sampleData(1 << 20))
    try makeFile(atPath: h.dir + "/kek2", contents: Data(Crypto.randomBytes(32)))
    let runs: [[String]] = [
      ["init"], ["backup", h.dir + "/src"], ["backup", h.dir + "/src"],
      ["restore", "latest", "--target", h.dir + "/out"], ["verify", "--all", "--read-data"], ["verify", "latest"],
      ["snapshots"], ["ls", "latest"], ["find", "*.txt"], ["diff", "latest", "latest"], ["stats"],
      ["copy", "--to", "file://\(h.dir)/repo2", "--to-kms", h.kmsURL, "--init-if-missing"],
      ["forget", "--keep-last", "1", "--prune"],
    ]
    for args in runs {
      let r = try human(h, args + ["--json"])
      #expect(r.code == 0, "\(args): \(r.stderr)")
      expectOnlyJSON(r, "\(args)")
      #expect(r.result["command"] as? String == args[0], "\(args)")
      let last = out(r).split(separator: "\n").last.map(String.init) ?? ""
      #expect(last.contains("\"command\":\"\(args[0])\""), "\(args): the result is not the last line")
      #expect(!r.stderr.contains("\"command\""), "\(args): the result is on stderr too: \(r.stderr)")
    }
    let rot = try human(h, ["rotate-keys", "--new-kms", "file://\(h.dir)/kek2", "--json"])
    #expect(rot.code == 0, "\(rot.stderr)")
    expectOnlyJSON(rot, "rotate-keys")
    let del = try h.run(
      ["delete-repository", "--confirm", "--json", "--repo", h.repoURL, "--kms", "file://\(h.dir)/kek2"],
      withRepo: false)
    #expect(del.code == 0, "\(del.stderr)")
    expectOnlyJSON(del, "delete-repository")
  }

  /// A failing command: a non-zero exit code, the error on stderr, and nothing of it on stdout (no summary).
  @Test func errorsGoToStderrAndStdoutStaysClean() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("alpha\n".utf8))
    let missing = try human(h, ["backup", h.dir + "/src"])
    #expect(missing.code == 10, "\(missing.stderr)")
    #expect(missing.stderr.contains("error:"), "\(missing.stderr)")
    #expect(missing.stdout.isEmpty, "\(out(missing))")
    #expect(missing.result["exitCode"] as? Int == 10)

    #expect(try human(h, ["backup", "--init-if-missing", h.dir + "/src"]).code == 0)
    let pack = try #require(try h.objects("data").first)
    try h.flipByte(pack, at: 40)
    let v = try human(h, ["verify", "--all", "--read-data"])
    #expect(v.code == 5, "\(v.stderr)")
    #expect(v.stderr.contains("error:"), "\(v.stderr)")
    #expect(v.stdout.isEmpty, "\(out(v))")
    let vj = try human(h, ["verify", "--all", "--read-data", "--json"])
    #expect(vj.code == 5)
    expectOnlyJSON(vj, "failed verify --json")
    #expect(!out(vj).contains("error:"), "\(out(vj))")
  }

  /// Under a pseudo-terminal stdout gets restic's status line, written over itself with `\r` and cleared before the
  /// summary; through a pipe it gets none.
  @Test func progressLineOnlyOnATerminal() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/big.bin", sampleData(4 << 20))
    #expect(try h.run(["init"]).code == 0)
    let args = ["backup", h.dir + "/src", "--repo", h.repoURL, "--kms", h.kmsURL]
    let tty = try Self.runInPTY([try CLIHarness.binary()] + args)
    #expect(tty.code == 0, "\(tty.stderr)")
    let text = String(decoding: tty.stdout, as: UTF8.self)
    #expect(text.contains("\r[0:"), "no status line on the terminal: \(text.debugDescription)")
    #expect(text.contains("\r\u{1B}[K"), "the status line is not cleared: \(text.debugDescription)")
    #expect(text.contains("snapshot ") && text.contains(" saved"), "\(text.debugDescription)")
    #expect(!tty.stderr.contains("\r"), "\(tty.stderr.debugDescription)")
    let piped = try human(h, ["backup", h.dir + "/src"])
    #expect(piped.code == 0)
    #expect(!out(piped).contains("\r"), "\(out(piped).debugDescription)")
    #expect(!out(piped).contains("\u{1B}"), "\(out(piped).debugDescription)")
  }

  /// Runs `argv` with stdout on a pseudo-terminal (python's pty module) and stderr on a pipe.
  static func runInPTY(_ argv: [String]) throws -> CLIHarness.Output {
    let script = """
      import os, pty, subprocess, sys
      m, s = pty.openpty()
      p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=s, stderr=subprocess.PIPE)
      os.close(s)
      out = b""
      while True:
          try:
              d = os.read(m, 65536)
          except OSError:
              break
          if not d:
              break
          out += d
      err = p.stderr.read()
      code = p.wait()
      sys.stdout.buffer.write(out)
      sys.stderr.buffer.write(err)
      sys.exit(code)
      """
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", script] + argv
    let o = Pipe()
    let e = Pipe()
    p.standardOutput = o
    p.standardError = e
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let box = DataBox()
    let g = DispatchGroup()
    g.enter()
    DispatchQueue.global().async {
      box.data = e.fileHandleForReading.readDataToEndOfFile()
      g.leave()
    }
    let out = o.fileHandleForReading.readDataToEndOfFile()
    g.wait()
    p.waitUntilExit()
    return CLIHarness.Output(
      code: p.terminationStatus, stdout: out, stderr: String(decoding: box.data, as: UTF8.self))
  }
}

/// The pure parts: restic's formatting, the status line, its throttle, and where the result line goes.
@Suite struct HumanFormatTests {
  @Test func bytesInBinaryUnitsAsRestic() {
    #expect(HumanFormat.bytes(0) == "0 B")
    #expect(HumanFormat.bytes(1023) == "1023 B")
    #expect(HumanFormat.bytes(1024) == "1.000 KiB")
    #expect(HumanFormat.bytes(1_262_485) == "1.204 MiB")
    #expect(HumanFormat.bytes(3 << 30) == "3.000 GiB")
    #expect(HumanFormat.bytes(5 << 40) == "5.000 TiB")
    #expect(HumanFormat.bytes(-2048) == "-2.000 KiB")
  }

  @Test func durationsAsRestic() {
    #expect(HumanFormat.duration(0) == "0:00")
    #expect(HumanFormat.duration(14.7) == "0:14")
    #expect(HumanFormat.duration(754) == "12:34")
    #expect(HumanFormat.duration(3723) == "1:02:03")
    #expect(HumanFormat.duration(-1) == "0:00")
    #expect(HumanFormat.duration(.infinity) == "0:00")
  }

  @Test func statusLineShowsWhatTheEventCarries() {
    let backup = ProgressEvent(
      phase: "backup", files: 120, bytesDone: 1_262_485, bytesTotal: nil, bytesStored: 4096, errors: 0)
    #expect(
      HumanFormat.progressLine(backup, elapsed: 5)
        == "[0:05] 120 files 1.204 MiB, 4.000 KiB stored, 0 errors")
    let restore = ProgressEvent(
      phase: "restore", files: 0, bytesDone: 1 << 30, bytesTotal: 4 << 30, bytesStored: 0, errors: 0)
    // A quarter in 10 s: 30 s to go.
    #expect(
      HumanFormat.progressLine(restore, elapsed: 10) == "[0:10] 25.00%  1.000 GiB, total 4.000 GiB ETA 0:30")
    let done = ProgressEvent(
      phase: "backup", files: 3, bytesDone: 2048, bytesTotal: 2048, bytesStored: 0, errors: 1)
    #expect(
      HumanFormat.progressLine(done, elapsed: 1) == "[0:01] 100.00%  3 files 2.000 KiB, total 2.000 KiB, 1 errors")
    let verify = ProgressEvent(phase: "verify", files: 7, bytesDone: 0, bytesTotal: nil, bytesStored: 0, errors: 2)
    #expect(HumanFormat.progressLine(verify, elapsed: 65) == "[1:05] 7 packs read, 2 errors")
    // Cut to the terminal's width, one column spare.
    #expect(HumanFormat.progressLine(backup, elapsed: 5, width: 20) == "[0:05] 120 files 1.")
  }

  @Test func tableAsRestic() {
    let t = HumanFormat.table(header: ["ID", "Host", "Paths"], rows: [["1a2b3c4d", "h", "/a"], ["", "", "/bb"]])
    #expect(
      t == [
        "ID        Host  Paths", "---------------------", "1a2b3c4d  h     /a", "                /bb",
        "---------------------",
      ])
  }

  @Test func keepReasonsNameEveryRule() {
    var p = RetentionPolicy()
    p.keepLast = 1
    p.keepDaily = 2
    p.maxAge = 3600
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let snaps: [(id: String, time: Date)] = [
      ("future", now.addingTimeInterval(60)), ("new", now.addingTimeInterval(-60)),
      ("hourAgo", now.addingTimeInterval(-1800)), ("old", now.addingTimeInterval(-3 * 86400)),
      ("older", now.addingTimeInterval(-4 * 86400)),
    ]
    let r = p.keepReasons(snaps, now: now)
    #expect(r["future"] == [.last, .daily, .future])
    #expect(r["new"] == [.within(3600)])
    #expect(r["hourAgo"] == [.within(3600)])
    #expect(r["old"] == [.daily])
    #expect(r["older"] == nil)
    #expect(ForgetCommand.describe(.within(3600)) == "within 1h")
    #expect(ForgetCommand.describe(p) == "keep 1 latest, 2 daily snapshots, keep all snapshots within 1h of the newest")
  }

  @Test func throttleLetsOneUpdateThroughPerInterval() {
    var t = ProgressThrottle(interval: 0.25)
    let times = [0, 0.1, 0.249, 0.25, 0.3, 10, 10.6]
    let shown = times.map { t.shouldEmit(at: $0) }
    #expect(shown == [true, false, false, true, false, true, true])
  }

  @Test func resultLineGoesToStdoutOnlyWithJSON() {
    #expect(resultStream(json: true, dataOnStdout: false, stderrIsTerminal: true) == .stdout)
    #expect(resultStream(json: true, dataOnStdout: true, stderrIsTerminal: false) == .stderr)
    #expect(resultStream(json: false, dataOnStdout: false, stderrIsTerminal: false) == .stderr)
    #expect(resultStream(json: false, dataOnStdout: true, stderrIsTerminal: false) == .stderr)
    #expect(resultStream(json: false, dataOnStdout: false, stderrIsTerminal: true) == nil)
  }
}
