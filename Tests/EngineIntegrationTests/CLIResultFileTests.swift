import Foundation
import Testing

/// The result file is written in place, as the kubelet's /dev/termination-log needs: it is a file in a root-owned
/// /dev, where a non-root container cannot create the temporary file an atomic write renames over it
/// (the node runs the Jobs as uid 65532, and every flow in hack/node reads their results). Tests run as
/// root, so the directory's permissions cannot show it here; a symlink does: an atomic write replaces the link
/// itself, an in-place write goes through it to the file.
@Suite struct CLIResultFileTests {
  @Test func resultIsWrittenIntoTheExistingFile() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.run(["init"])
    let target = h.dir + "/termination-log"
    let link = h.dir + "/result-link"
    #expect(FileManager.default.createFile(atPath: target, contents: Data("old text that is longer\n".utf8)))
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
    let out = try h.run(["snapshots", "--result-file", link])
    #expect(out.code == 0, "\(out.text)")
    #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == target)
    let written = try String(contentsOfFile: target, encoding: .utf8)
    let result = try JSONSerialization.jsonObject(with: Data(written.utf8)) as? [String: Any]
    #expect(result?["command"] as? String == "snapshots")
    #expect(!written.contains("old text"))
  }
}
