import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `restore` clears set-id bits by default and says so; `--keep-setid` keeps them (root only).
@Suite struct CLIRestoreSetIDTests {
  @Test func setIDBitsAreClearedWithAWarningUnlessKeepSetID() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/tool", Data("#!/bin/sh\n".utf8))
    chmod(h.dir + "/src/tool", 0o4755)
    #expect(try h.run(["init"]).code == 0)
    #expect(try h.run(["backup", h.dir + "/src"]).code == 0)
    func mode(_ p: String) -> mode_t {
      var st = stat()
      return lstat(p, &st) == 0 ? st.st_mode & 0o7777 : 0
    }
    let r = try h.run(["restore", "latest", "--target", h.dir + "/out"])
    #expect(r.code == 0, "\(r.stderr)")
    #expect(mode(h.dir + "/out/src/tool") == 0o755)
    let warnings = r.result["warnings"] as? [String] ?? []
    #expect(warnings.contains { $0.contains("set-user-ID") && $0.contains("src/tool") }, "\(r.result)")
    #expect(r.stderr.contains("warning: cleared the set-user-ID"), "\(r.stderr)")
    let k = try h.run(["restore", "latest", "--target", h.dir + "/keep", "--keep-setid"])
    if geteuid() == 0 {
      #expect(k.code == 0, "\(k.stderr)")
      #expect(mode(h.dir + "/keep/src/tool") == 0o4755)
      #expect((k.result["warnings"] as? [String] ?? []).isEmpty, "\(k.result)")
    } else {
      #expect(k.code == 2, "\(k.stderr)")
    }
  }
}
