import ControllerApp
import Foundation
import Logging
import Testing

/// The controller's log lines (pure; no cluster): one JSON object per line with --log-format json, one text line
/// otherwise. hack/install-test.sh checks the installed controller's real logs (JSON, a `reconciled` line naming each
/// object, no Secret value).
@Suite struct LogFormatTests {
  let metadata: Logger.Metadata = [
    "kind": "BackupPolicy", "namespace": "shop", "name": "orders-db", "outcome": "success",
    "error": "line one\nline \"two\"", "tags": .array(["a", "b"]),
  ]

  @Test func jsonIsOneObjectPerLineWithTheObjectNamed() throws {
    let line = LineLogHandler.render(
      format: .json, time: "2026-01-02T03:04:05.678Z", level: .info, label: "botrt-controller", message: "reconciled",
      metadata: metadata)
    #expect(!line.contains("\n"))
    let o = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
    #expect(o["msg"] == "reconciled")
    #expect(o["level"] == "info")
    #expect(o["logger"] == "botrt-controller")
    #expect(o["time"] == "2026-01-02T03:04:05.678Z")
    #expect(o["kind"] == "BackupPolicy" && o["namespace"] == "shop" && o["name"] == "orders-db")
    #expect(o["error"] == "line one\nline \"two\"")
    #expect(o["tags"] == "[a,b]")
  }

  @Test func metadataCannotReplaceTheFixedKeys() throws {
    let line = LineLogHandler.render(
      format: .json, time: "t", level: .warning, label: "l", message: "real", metadata: ["msg": "forged", "level": "x"])
    let o = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
    #expect(o["msg"] == "real" && o["level"] == "warning")
  }

  @Test func textIsOneLineWithQuotedValues() {
    let line = LineLogHandler.render(
      format: .text, time: "t", level: .info, label: "botrt-controller", message: "reconciled", metadata: metadata)
    #expect(line.hasPrefix("t INFO botrt-controller: reconciled "))
    #expect(line.contains("kind=BackupPolicy name=orders-db namespace=shop outcome=success"))
    #expect(line.contains(#"error="line one\nline \"two\"""#))
    #expect(!line.contains("\n"))
  }

  /// Rejected as usage errors (exit 64) before any connection is tried (which would exit 1 or 2).
  @Test func badLogFlagsAreUsageErrors() async {
    #expect(await ControllerMain.run(["run", "--log-format", "yaml", "--metrics-address", "off"]) == 64)
    #expect(await ControllerMain.run(["run", "--log-level", "loud", "--metrics-address", "off"]) == 64)
  }
}
