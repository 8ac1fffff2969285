import Foundation
import Testing

@testable import BackupEngine
@testable import EngineContract

/// The exclude matcher against restic's `filter` package: the pattern/path/expected cases below are restic's own
/// (internal/filter/filter_test.go: matchTests and filterListTests), plus negation and the engine's edge cases.
@Suite struct PathFilterTests {
  /// restic's `filter.Match` cases (without the empty pattern, which both ignore in a list).
  static let matchCases: [(String, String, Bool)] = [
    ("*.go", "/foo/bar/test.go", true),
    ("*.c", "/foo/bar/test.go", false),
    ("*", "/foo/bar/test.go", true),
    ("**", "/foo/bar/test.go", true),
    ("foo*", "/foo/bar/test.go", true),
    ("bar*", "/foo/bar/test.go", true),
    ("/bar*", "/foo/bar/test.go", false),
    ("bar/*", "/foo/bar/test.go", true),
    ("baz/*", "/foo/bar/test.go", false),
    ("bar/test.go", "/foo/bar/test.go", true),
    ("bar/*.go", "/foo/bar/test.go", true),
    ("ba*/*.go", "/foo/bar/test.go", true),
    ("bb*/*.go", "/foo/bar/test.go", false),
    ("test.*", "/foo/bar/test.go", true),
    ("tesT.*", "/foo/bar/test.go", false),
    ("bar/*", "/foo/bar/baz", true),
    ("bar", "/foo/bar", true),
    ("/foo/bar", "/foo/bar", true),
    ("/foo/bar/", "/foo/bar", true),
    ("/foo/bar", "/foo/baz", false),
    ("/foo/bar", "/foo/baz/", false),
    ("/foo///bar", "/foo/bar", true),
    ("/foo/../bar", "/foo/bar", false),
    ("/foo/../bar", "/bar", true),
    ("/foo", "/foo/baz", true),
    ("/foo/", "/foo/baz", true),
    ("/foo/*", "/foo", false),
    ("/foo/*", "/foo/baz", true),
    ("bar", "/foo/bar/baz", true),
    ("bar", "/foo/bar/test.go", true),
    ("/foo/*test.*", "/foo/bar/test.go", false),
    ("/foo/*/test.*", "/foo/bar/test.go", true),
    ("/foo/*/bar/test.*", "/foo/bar/test.go", false),
    ("/*/*/bar/test.*", "/foo/bar/test.go", false),
    ("/*/*/bar/test.*", "/foo/bar/baz/test.go", false),
    ("/*/*/baz/test.*", "/foo/bar/baz/test.go", true),
    ("/*/foo/bar/test.*", "/foo/bar/baz/test.go", false),
    ("/foo/bar/test.*", "bar/baz/test.go", false),
    ("/x/y/bar/baz/test.*", "bar/baz/test.go", false),
    ("/x/y/bar/baz/test.c", "bar/baz/test.go", false),
    ("baz/test.*", "bar/baz/test.go", true),
    ("baz/tesT.*", "bar/baz/test.go", false),
    ("test.go", "bar/baz/test.go", true),
    ("*.go", "bar/baz/test.go", true),
    ("*.c", "bar/baz/test.go", false),
    ("sdk", "/foo/bar/sdk", true),
    ("sdk", "/foo/bar/sdk/test/sdk_foo.go", true),
    ("sdk/*/cpp/*/*vars*.html", "/usr/share/doc/libreoffice/sdk/docs/cpp/ref/a00517.html", false),
    ("foo/**/bar/*.go", "/home/user/foo/work/special/project/bar/test.go", true),
    ("foo/**/bar/*.go", "/home/user/foo/bar/test.go", true),
    ("foo/**/bar/*.go", "x/foo/bar/test.go", true),
    ("foo/**/bar/*.go", "foo/bar/test.go", true),
    ("foo/**/bar/*.go", "foo/bar/baz/bar/test.go", true),
    ("foo/**/bar/*.go", "/home/user/foo/test.c", false),
    ("foo/**/bar/*.go", "bar/foo/main.go", false),
    ("foo/**/bar/*.go", "/foo/bar/main.go", true),
    ("foo/**/bar/*.go", "bar/main.go", false),
    ("foo/**/bar", "/home/user/foo/x/y/bar", true),
    ("foo/**/bar", "/home/user/foo/x/y/bar/main.go", true),
    ("foo/**/bar/**/x", "/home/user/foo/bar/x", true),
    ("foo/**/bar/**/x", "/home/user/foo/blaaa/blaz/bar/shared/work/x", true),
    ("user/**/important*", "/home/user/work/x/y/hidden/x", false),
    ("user/**/hidden*/**/c", "/home/user/work/x/y/hidden/z/a/b/c", true),
    ("c:/foo/*test.*", "c:/foo/bar/test.go", false),
    ("c:/foo", "c:/foo/bar", true),
    ("c:/foo/", "c:/foo/bar", true),
    ("c:/foo/*/test.*", "c:/foo/bar/test.go", true),
    ("c:/foo/*/bar/test.*", "c:/foo/bar/test.go", false),
    // restic's examples (ExampleMatch, the manual's "Excluding Files").
    ("*.go", "/home/user/file.go", true),
    ("/home/[uU]ser/?.go", "/home/user/F.go", true),
    ("foo", "/dir1/foo/dir2/file", true),
    ("foo", "/dir/foo", true),
    ("foo", "/dir/foobar", false),
    ("foo", "/barfoo", false),
    ("/bin", "/bin/bash", true),
    ("/bin", "/usr/bin/restic", false),
    ("b*ash", "/bin/bash", true),
    ("b*ash", "/bin/ash", false),
    ("foo/**/bar", "/dir1/foo/dir2/bar/file", true),
    ("foo/**/bar", "/foo/bar/file", true),
    ("foo/**/bar", "/tmp/foo/bar", true),
    // Go's filepath.Match syntax within a component.
    ("[a-c]x", "/bx", true),
    ("[a-c]x", "/dx", false),
    ("[^a-c]x", "/dx", true),
    ("[^a-c]x", "/ax", false),
    ("[!]x", "/!x", true),
    ("\\*x", "/*x", true),
    ("\\*x", "/ax", false),
    ("a\\?", "/a?", true),
    ("[\\]]", "/]", true),
    ("[z-a]", "/m", false),
    ("?", "/é", true),
    ("*.tar.*", "/x/a.tar.gz", true),
    ("a*b*c", "/abxbc", true),
    ("a*b*c", "/abxbcd", false),
    ("**/x", "/x", true),
    ("/**", "/a/b", true),
    ("/", "/a", true),
    ("/a/**/b", "/a/b", true),
    ("/a/**/b", "/a/x/y/b/z", true),
    ("/a/**/b", "/x/a/b", false),
    ("a]", "/a]", true),
  ]

  @Test func matchesAsResticsFilterPackage() throws {
    for (pattern, path, want) in Self.matchCases {
      let p = try PathPattern(pattern)
      #expect(p.matches(path) == want, "Match(\(pattern), \(path)) should be \(want)")
    }
  }

  /// restic's `filter.List` cases, and negation: the last pattern that matches decides.
  @Test func listsAndNegation() throws {
    let cases: [([String], String, Bool)] = [
      ([], "/foo/bar/test.go", false),
      (["*.go"], "/foo/bar/test.go", true),
      (["*.c"], "/foo/bar/test.go", false),
      (["*.go", "*.c"], "/foo/bar/test.go", true),
      (["*"], "/foo/bar/test.go", true),
      (["x"], "/foo/bar/test.go", false),
      (["?"], "/foo/bar/test.go", false),
      (["?", "x"], "/foo/bar/x", true),
      (["/*/*/bar/test.*"], "/foo/bar/test.go", false),
      (["/*/*/bar/test.*", "*.go"], "/foo/bar/test.go", true),
      (["", "*.c"], "/foo/bar/test.go", false),
      // Negation (restic's manual: exclude everything in $HOME but some directories).
      (["/home/u/*", "!/home/u/Documents"], "/home/u/Documents", false),
      (["/home/u/*", "!/home/u/Documents"], "/home/u/Documents/a.txt", false),
      (["/home/u/*", "!/home/u/Documents"], "/home/u/Music", true),
      (["/home/u/*", "!/home/u/Documents", "*.o"], "/home/u/Documents/x.o", true),
      (["*.log", "!keep.log"], "/var/keep.log", false),
      (["*.log", "!keep.log"], "/var/other.log", true),
      // A negation only cancels an earlier match: order matters.
      (["!keep.log", "*.log"], "/var/keep.log", true),
      (["!*.log"], "/var/keep.log", false),
    ]
    for (patterns, path, want) in cases {
      let f = try PathFilter(patterns)
      #expect(f.excludes(path) == want, "List(\(patterns), \(path)) should be \(want)")
    }
  }

  @Test func caseInsensitive() throws {
    let f = try PathFilter(["*.JPG", "/Data/Cache"], caseInsensitive: true)
    #expect(f.excludes("/x/photo.jpg") && f.excludes("/x/PHOTO.Jpg"))
    #expect(f.excludes("/data/cache/x") && f.excludes("/DATA/CACHE"))
    #expect(!f.excludes("/x/photo.png"))
    #expect(!(try PathFilter(["*.JPG"])).excludes("/x/photo.jpg"))
  }

  /// Malformed patterns are refused up front, each named (restic's ValidatePatterns): `filepath.Match`'s
  /// ErrBadPattern cases.
  @Test func badPatternsAreNamed() {
    for bad in ["test/[", "test/**/[", "[abc", "x\\", "[]", "[]a]", "[^]", "[a-]", "[-a]", "a/[z-", "!*[foo"] {
      #expect(throws: PathFilterError.self, "\(bad) should be refused") { try PathFilter([bad]) }
    }
    do {
      _ = try PathFilter(["ok", "a[", "*.go", "b\\"])
      Issue.record("accepted bad patterns")
    } catch {
      #expect(error.invalid.map(\.pattern) == ["a[", "b\\"])
      #expect(error.description.contains("'a['") && error.description.contains("'b\\'"), "\(error)")
    }
    // Valid, if odd: a reversed range, a literal ']', an escaped '['.
    for ok in ["[z-a]", "a]", "\\[x", "[[]", "!"] { #expect((try? PathFilter([ok])) != nil, "\(ok)") }
  }

  @Test func cleanAndAbsolute() {
    let cases = [
      ("/a//b/", "/a/b"), ("a/./b", "a/b"), ("/a/../../b", "/b"), ("../a", "../a"), ("", "."), ("/", "/"),
      ("a/..", "."), ("/../", "/"), ("a/b/../../..", ".."),
    ]
    for (i, o) in cases { #expect(PathPattern.clean(i) == o, "clean(\(i))") }
    #expect(PathPattern.absolute("x/../y", cwd: "/w") == "/w/y")
    #expect(PathPattern.absolute("/abs/", cwd: "/w") == "/abs")
  }

  /// Exclude files: trimmed lines, blank and # lines ignored, environment variables expanded as Go's os.Expand.
  @Test func patternFilesAndEnvironment() {
    let text = "# comment\n  *.go  \n\n\t# indented comment\n$HOME/cache\r\nfoo bar star.txt\n${USER}_x\n$$HOME\n"
    let env = ["HOME": "/home/bob", "USER": "bob"]
    #expect(
      PathFilter.patterns(fileText: text, environment: env) == [
        "*.go", "/home/bob/cache", "foo bar star.txt", "bob_x", "$HOME",
      ])
    let cases = [
      ("$UNSET/x", "/x"), ("a$", "a$"), ("$/x", "$/x"), ("${}x", "x"), ("${HOME", "HOME"), ("$HOME_x", ""),
      ("${HOME}_x", "/home/bob_x"), ("$1a", "a"), ("x$$y", "x$y"), ("é$USER", "ébob"),
    ]
    for (i, o) in cases { #expect(PathFilter.expandEnvironment(i, env) == o, "expand(\(i))") }
  }

  @Test func componentGlobs() throws {
    let g = try ComponentGlob("*.[ch]")
    #expect(g.matches("a.c") && g.matches(".h") && !g.matches("a.o") && !g.matches("a.cc"))
    #expect(try ComponentGlob("*").matches(""))
    #expect(try ComponentGlob("**x**").matches("ax"))
    #expect(!(try ComponentGlob("?")).matches(""))
  }

  /// `--files-from` expansion: Go's filepath.Glob over a real directory.
  @Test func globExpandsLikeGo() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-glob-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: dir) }
    for f in ["a/x.txt", "a/y.log", "a/.hidden.txt", "b/x.txt", "c/sub/x.txt", "[lit]/f"] {
      let p = dir + "/" + f
      try FileManager.default.createDirectory(
        atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
      #expect(FileManager.default.createFile(atPath: p, contents: Data()))
    }
    #expect(try PathFilter.glob(dir + "/a/*.txt") == [dir + "/a/.hidden.txt", dir + "/a/x.txt"])
    #expect(try PathFilter.glob(dir + "/*/x.txt") == [dir + "/a/x.txt", dir + "/b/x.txt"])
    #expect(try PathFilter.glob(dir + "/c/*/x.txt") == [dir + "/c/sub/x.txt"])
    #expect(try PathFilter.glob(dir + "/a/nothing*").isEmpty)
    #expect(try PathFilter.glob(dir + "/b/x.txt") == [dir + "/b/x.txt"])
    #expect(try PathFilter.glob(dir + "/b/missing").isEmpty)
    #expect(try PathFilter.glob(dir + "/\\[lit]/f") == [dir + "/[lit]/f"])
    #expect(throws: PathPatternError.self) { try PathFilter.glob(dir + "/a/[x") }
  }

  @Test func excludeTags() throws {
    #expect(try ExcludeTag(parsing: ".nobackup") == ExcludeTag(name: ".nobackup"))
    #expect(try ExcludeTag(parsing: "T:Sig: x") == ExcludeTag(name: "T", header: Array("Sig: x".utf8)))
    for bad in ["", "a/b", ":x", "."] { #expect(throws: PathPatternError.self) { try ExcludeTag(parsing: bad) } }
  }
}
