import Foundation
import Testing

@testable import BackupEngine

/// `backup --stdin --stdin-from PIPE --stdin-status FILE`: the dump command of a backup Job runs in another container
/// and writes into a named pipe; the engine stores what it wrote only when the producer's exit status is 0.
@Suite(.serialized) struct CLIStreamPipeTests {
  /// Runs `sh -c SCRIPT` (the producer) beside the engine, as the two containers of a backup pod do.
  func producer(_ script: String) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", script]
    p.standardInput = FileHandle.nullDevice
    try p.run()
    return p
  }

  func args(_ dir: String, timeout: Int = 30) -> [String] {
    [
      "backup", "--stdin", "--stdin-name", "db.dump", "--stdin-from", dir + "/dump", "--stdin-status",
      dir + "/dump.status", "--stdin-timeout", String(timeout), "--data-type", "database",
    ]
  }

  /// The producer waits for the engine's pipe, writes, then reports its status; the snapshot holds the bytes.
  @Test func aProducerInAnotherProcessIsBackedUp() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    let pipeDir = h.dir + "/pipe"
    try FileManager.default.createDirectory(atPath: pipeDir, withIntermediateDirectories: true)
    let p = try producer(
      """
      while [ ! -p \(pipeDir)/dump ]; do sleep 0.05; done
      seq 1 200000 > \(pipeDir)/dump; rc=$?; echo "$rc" > \(pipeDir)/dump.status; exit "$rc"
      """)
    let r = try h.run(args(pipeDir))
    p.waitUntilExit()
    #expect(r.code == 0, "\(r.stderr)")
    #expect(p.terminationStatus == 0)
    let out = h.dir + "/out"
    #expect(try h.run(["restore", "latest", "--target", out, "--path", "db.dump"]).code == 0)
    let want = (1...200_000).map(String.init).joined(separator: "\n") + "\n"
    #expect(FileManager.default.contents(atPath: out + "/db.dump") == Data(want.utf8))
  }

  /// A producer that fails after writing part of its output leaves no snapshot: a truncated dump is never
  /// recorded as a backup. The error names the producer's status.
  @Test func aFailedProducerWritesNoSnapshot() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    let pipeDir = h.dir + "/pipe"
    try FileManager.default.createDirectory(atPath: pipeDir, withIntermediateDirectories: true)
    let p = try producer(
      """
      while [ ! -p \(pipeDir)/dump ]; do sleep 0.05; done
      (seq 1 1000; exit 3) > \(pipeDir)/dump; rc=$?; echo "$rc" > \(pipeDir)/dump.status; exit "$rc"
      """)
    let r = try h.run(args(pipeDir))
    p.waitUntilExit()
    #expect(r.code != 0)
    #expect(r.stderr.contains("exited with status 3"), "\(r.stderr)")
    #expect(try h.objects("snapshots").isEmpty)
  }

  /// No producer ever opens the pipe (its container did not start): the engine gives up after its timeout with an
  /// error saying so, instead of hanging until the Job's deadline.
  @Test func aProducerThatNeverComesTimesOut() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    let pipeDir = h.dir + "/pipe"
    try FileManager.default.createDirectory(atPath: pipeDir, withIntermediateDirectories: true)
    let started = Date()
    let r = try h.run(args(pipeDir, timeout: 1))
    #expect(r.code != 0)
    #expect(r.stderr.contains("no producer opened"), "\(r.stderr)")
    #expect(Date().timeIntervalSince(started) < 20)
    #expect(try h.objects("snapshots").isEmpty)
    // A regular file where the pipe should be is refused, not read.
    try h.write("pipe2/dump", Data("x".utf8))
    let bad = try h.run(args(h.dir + "/pipe2", timeout: 1))
    #expect(bad.code == 2 && bad.stderr.contains("is not a named pipe"), "\(bad.stderr)")
    // The flags belong together.
    let lone = try h.run(["backup", "--stdin-from", pipeDir + "/dump", h.dir])
    #expect(lone.code == 2 && lone.stderr.contains("--stdin-from and --stdin-status need --stdin"), "\(lone.stderr)")
  }
}
