import EngineContract
import Foundation
import Testing

/// `botrt-engine gate` (the init container of a hooked backup Pod), run as the real binary against a real file that
/// changes while it waits, as the kubelet rewrites a downward API volume.
@Suite struct CLIGateTests {
  func gate(_ h: CLIHarness, timeout: String, messageFile: String? = nil) -> [String] {
    var a =
      EngineGateArguments(
        file: h.dir + "/annotations", key: "dr.botrt.io/pre-hooks", messageKey: "dr.botrt.io/pre-hooks-message",
        timeoutSeconds: 1
      ).argv.dropLast(2) + ["--timeout", timeout, "--poll-milliseconds", "50"]
    if let messageFile { a += ["--message-file", messageFile] }
    return Array(a)
  }

  func write(_ h: CLIHarness, _ text: String) throws {
    // As the kubelet does: a new file put in place (atomic), not an edit in place.
    try Data(text.utf8).write(to: URL(fileURLWithPath: h.dir + "/annotations"), options: .atomic)
  }

  @Test func doneWhileWaitingExitsZero() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try write(h, "kubernetes.io/config.seen=\"x\"\n")
    let args = gate(h, timeout: "30s")
    let started = Date()
    // The file changes on a thread of its own, as the kubelet's writes do: not on a task, which waited behind the
    // other tests' blocking engine runs on the cooperative pool (two threads on two cores) until the gate had timed
    // out (a loaded full run: "running" seen, "done" written after 120 s).
    let writer = Thread {
      usleep(700_000)
      try? self.write(h, "dr.botrt.io/pre-hooks=\"running\"\nkubernetes.io/config.seen=\"x\"\n")
      usleep(300_000)
      try? self.write(h, "dr.botrt.io/pre-hooks=\"done\"\nkubernetes.io/config.seen=\"x\"\n")
    }
    writer.start()
    let out = try h.run(args, withRepo: false)
    #expect(out.code == 0, "\(out.stderr)")
    #expect(Date().timeIntervalSince(started) < 10)
    #expect(out.stderr.contains("dr.botrt.io/pre-hooks=running") && out.stderr.contains("dr.botrt.io/pre-hooks=done"))
  }

  @Test func failedExitsWithItsCodeAndTheMessage() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    let messageFile = h.dir + "/termination-log"
    #expect(FileManager.default.createFile(atPath: messageFile, contents: Data()))
    try write(
      h,
      "dr.botrt.io/pre-hooks=\"failed\"\n"
        + "dr.botrt.io/pre-hooks-message=\"hook freeze failed in pod db-0 (exited with 1: \\\"busy\\\")\"\n")
    let out = try h.run(gate(h, timeout: "30s", messageFile: messageFile), withRepo: false)
    #expect(out.code == EngineExitCode.gateFailed, "\(out.stderr)")
    let want = "hook freeze failed in pod db-0 (exited with 1: \"busy\")"
    #expect(out.stderr.contains(want))
    let written = try String(contentsOfFile: messageFile, encoding: .utf8)
    #expect(written.contains(want) && written.hasPrefix("gate: dr.botrt.io/pre-hooks is failed"))
  }

  @Test func nothingInTimeExitsWithTheTimeoutCode() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    // No file at all (the volume not there yet) and then never the key: waited for, then timed out.
    let started = Date()
    let out = try h.run(gate(h, timeout: "2s"), withRepo: false)
    #expect(out.code == EngineExitCode.gateTimeout, "\(out.stderr)")
    let took = Date().timeIntervalSince(started)
    #expect(took >= 2 && took < 15)
    #expect(out.stderr.contains("was not marked done or failed within 2s"))
    // A bad timeout is a usage error.
    #expect(try h.run(gate(h, timeout: "forever"), withRepo: false).code == EngineExitCode.usage)
  }
}
