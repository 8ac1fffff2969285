import Foundation
import Testing

/// `backup`'s file selection through the built engine, on a local repository (issue 16 section 2): restic's
/// `--exclude`, `--iexclude`, `--exclude-file`, `--exclude-if-present`, `--exclude-caches`, `--files-from` and
/// `--one-file-system`; the snapshot is read back with `ls` and a restore.
@Suite struct CLIExcludeTests {
  /// The paths `ls --json` lists for the latest snapshot.
  func listed(_ h: CLIHarness) throws -> [String] {
    let ls = try h.run(["ls", "latest", "--json"])
    #expect(ls.code == 0, "\(ls.stderr)")
    return String(decoding: ls.stdout, as: UTF8.self).split(separator: "\n").compactMap {
      guard let o = try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any], o["command"] == nil
      else { return nil }
      return o["path"] as? String
    }.sorted()
  }

  @Test func excludesLeaveOutExactlyWhatTheyMatch() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let files = [
      "src/keep.txt", "src/skip.log", "src/logs/app.log", "src/logs/keep.log", "src/node_modules/pkg/index.js",
      "src/Photos/IMG.JPG", "src/Photos/notes.txt", "src/docs/readme.md", "src/build/out.o", "src/docs/build/x",
      "src/tagged/.nobackup", "src/tagged/data", "src/cache/blob", "src/notcache/CACHEDIR.TAG", "src/notcache/blob",
    ]
    for f in files { try h.write(f, Data("\(f)\n".utf8)) }
    try h.write("src/cache/CACHEDIR.TAG", Data("Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n".utf8))
    // An exclude file as restic reads it: comments, blank lines, surrounding spaces, an environment variable.
    try h.write("excludes.txt", Data("# built files\n\n   $BOTRT_TEST_SRC/build  \n".utf8))
    #expect(try h.run(["init"]).code == 0)
    let b = try h.run(
      [
        "backup", h.dir + "/src", "--json", "--exclude", "*.log", "--exclude=!keep.log", "-e", "node_modules",
        "--iexclude", "*.jpg", "--exclude-file", h.dir + "/excludes.txt", "--exclude-caches",
        "--exclude-if-present", ".nobackup",
      ], env: ["BOTRT_TEST_SRC": h.dir + "/src"])
    #expect(b.code == 0, "\(b.stderr)")
    // skip.log, logs/app.log, node_modules, Photos/IMG.JPG, build (anchored: docs/build stays), cache/blob,
    // tagged/data: each counted once, node_modules without its content.
    #expect(b.result["excluded"] as? Int == 7, "\(b.result)")
    #expect(b.result["errors"] as? [String] == [])
    let want = [
      "/src", "/src/Photos", "/src/Photos/notes.txt", "/src/cache", "/src/cache/CACHEDIR.TAG", "/src/docs",
      "/src/docs/build", "/src/docs/build/x", "/src/docs/readme.md", "/src/keep.txt", "/src/logs",
      "/src/logs/keep.log", "/src/notcache", "/src/notcache/CACHEDIR.TAG", "/src/notcache/blob", "/src/tagged",
      "/src/tagged/.nobackup",
    ]
    #expect(try listed(h) == want)
    // A restore holds exactly those files, with their content.
    let r = try h.run(["restore", "latest", "--target", h.dir + "/out"])
    #expect(r.code == 0, "\(r.stderr)")
    var restored: [String] = []
    let e = FileManager.default.enumerator(atPath: h.dir + "/out")
    while let p = e?.nextObject() as? String { restored.append("/" + p) }
    #expect(restored.sorted() == want)
    #expect(try String(contentsOfFile: h.dir + "/out/src/logs/keep.log", encoding: .utf8) == "src/logs/keep.log\n")

    // Without options nothing is left out, and the result has no excluded count.
    let all = try h.run(["backup", h.dir + "/src", "--json"])
    #expect(all.code == 0 && all.result["excluded"] == nil, "\(all.stderr)")
    #expect(try listed(h).count == want.count + 10)
  }

  @Test func filesFromListsThePathsToBackUp() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    for f in ["src/docs/a.md", "src/docs/b.md", "src/docs/c.txt", "src/keep.txt", "src/odd #name"] {
      try h.write(f, Data("x\n".utf8))
    }
    let list = "# markdown files\n\(h.dir)/src/docs/*.md\n  \n\(h.dir)/src/nothing-*\n"
    try h.write("list.txt", Data(list.utf8))
    // Verbatim: the line is the path, '#' and all.
    try h.write("verbatim.txt", Data("\(h.dir)/src/odd #name\n\n".utf8))
    try h.write("raw.bin", Data("\(h.dir)/src/keep.txt\0".utf8))
    #expect(try h.run(["init"]).code == 0)
    let b = try h.run([
      "backup", "--json", "--files-from", h.dir + "/list.txt", "--files-from-verbatim", h.dir + "/verbatim.txt",
      "--files-from-raw", h.dir + "/raw.bin",
    ])
    #expect(b.code == 0, "\(b.stderr)")
    #expect(try listed(h) == ["/a.md", "/b.md", "/keep.txt", "/odd #name"])
    let warnings = b.result["warnings"] as? [String] ?? []
    #expect(warnings.contains { $0.contains("nothing-*") && $0.contains("does not match") }, "\(warnings)")
    #expect(b.stderr.contains("warning: --files-from"))
  }

  @Test func badSelectionsAreRefusedNamingTheOptionOrFile() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a", Data("a\n".utf8))
    try h.write("other/a", Data("b\n".utf8))
    try h.write("bad-excludes.txt", Data("ok\n*.[ch\n".utf8))
    #expect(try h.run(["init"]).code == 0)
    let src = h.dir + "/src"
    let cases: [([String], [String])] = [
      (["--exclude", "[abc"], ["--exclude", "'[abc'"]),
      (["--iexclude", "x\\"], ["--iexclude", "'x\\'"]),
      (["--exclude-file", h.dir + "/missing.txt"], ["--exclude-file", "missing.txt", "cannot read"]),
      (["--exclude-file", h.dir + "/bad-excludes.txt"], ["--exclude-file", "bad-excludes.txt", "'*.[ch'"]),
      (["--files-from", h.dir + "/missing.txt"], ["--files-from", "missing.txt"]),
      (["--exclude-if-present", "a/b"], ["--exclude-if-present"]),
      ([h.dir + "/other/a"], ["would both be stored as 'a'"]),
    ]
    for (extra, words) in cases {
      let o = try h.run(["backup", src + "/a"] + extra)
      #expect(o.code == 2, "\(extra): \(o.code) \(o.stderr)")
      for w in words { #expect(o.stderr.contains(w), "\(extra): \(o.stderr)") }
    }
    let stdin = try h.run(["backup", "--stdin", "--stdin-name", "x", "--exclude", "*.o"], stdin: Data("x".utf8))
    #expect(stdin.code == 2 && stdin.stderr.contains("does not apply to --stdin"), "\(stdin.stderr)")
    let snaps = try h.run(["snapshots", "--json"])
    #expect((snaps.result["snapshots"] as? [Any])?.isEmpty ?? true, "no refused run stored a snapshot")
  }

  /// `--one-file-system` keeps a mount point as an empty directory. It needs a mount below a small directory: /dev/shm
  /// (a tmpfs under /dev); where it is not a separate file system the test has nothing to check.
  @Test func oneFileSystemStopsAtMountPoints() throws {
    var dev = stat()
    var shm = stat()
    guard stat("/dev", &dev) == 0, stat("/dev/shm", &shm) == 0, dev.st_dev != shm.st_dev,
      access("/dev/shm", W_OK) == 0
    else { return }
    let h = try CLIHarness()
    defer { h.cleanup() }
    let name = "botrt-onefs-\(UUID().uuidString)"
    #expect(FileManager.default.createFile(atPath: "/dev/shm/" + name, contents: Data("x".utf8)))
    defer { try? FileManager.default.removeItem(atPath: "/dev/shm/" + name) }
    #expect(try h.run(["init"]).code == 0)
    // Only /dev/shm below /dev: everything else there is excluded, /dev/shm re-included.
    let only = [
      "--exclude", "/dev/*", "--exclude", "!/dev/shm", "--exclude", "/dev/shm/*", "--exclude=!/dev/shm/" + name,
    ]
    let across = try h.run(["backup", "/dev", "--json"] + only)
    #expect([0, 3].contains(across.code), "\(across.stderr)")
    #expect(try listed(h).contains("/dev/shm/" + name))
    let x = try h.run(["backup", "/dev", "--json", "--one-file-system"] + only)
    #expect([0, 3].contains(x.code), "\(x.stderr)")
    let l = try listed(h)
    #expect(l.contains("/dev/shm") && !l.contains("/dev/shm/" + name), "\(l)")
  }
}
