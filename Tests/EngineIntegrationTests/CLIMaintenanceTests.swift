import Foundation
import Testing

@testable import BackupEngine

@Suite(.serialized) struct CLIMaintenanceTests {
  @Test func forgetAndPruneRemoveUnreferencedData() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    for i in 0..<3 {
      try h.write("src/f\(i).bin", sampleData(2 << 20))
      #expect(try h.run(["backup", h.dir + "/src"]).code == 0)
      if i == 1 { try FileManager.default.removeItem(atPath: h.dir + "/src/f0.bin") }
    }
    try FileManager.default.removeItem(atPath: h.dir + "/src/f1.bin")
    #expect(try h.run(["backup", h.dir + "/src"]).code == 0)
    let packsBefore = try h.objects("data").count
    let f = try h.run(["forget", "--keep-last", "1", "--prune"])
    #expect(f.code == 0, "\(f.stderr)")
    #expect((f.result["removed"] as? [String])?.count == 3)
    #expect((f.result["packsDeleted"] as? Int ?? 0) >= 1)
    #expect(try h.objects("data").count < packsBefore)
    #expect(try h.objects("snapshots").count == 1)
    #expect(try h.objects("index").count == 1)
    let v = try h.run(["verify", "--read-data"])
    #expect(v.code == 0, "\(v.stderr)")
    let r = try h.run(["restore", "latest", "--target", h.dir + "/out"])
    #expect(r.code == 0)
    #expect(
      FileManager.default.contents(atPath: h.dir + "/out/src/f2.bin")
        == FileManager.default.contents(atPath: h.dir + "/src/f2.bin"))
    #expect(try h.run(["forget"]).code == 2)
    #expect(try h.run(["forget", "--max-age", "1h"]).code == 0)
    #expect(try h.objects("snapshots").count == 1)
  }

  @Test func rotateKeysThenRestoreWithOnlyTheNewKey() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/data.bin", sampleData(1 << 20))
    #expect(try h.run(["init"]).code == 0)
    #expect(try h.run(["backup", h.dir + "/src"]).code == 0)
    let packs = try h.objects("data").map { ($0, try Data(contentsOf: URL(fileURLWithPath: h.repo + "/" + $0))) }
    let newKey = h.dir + "/new-kek"
    try makeFile(atPath: newKey, contents: Data((Hex.encode(Crypto.randomBytes(32)) + "\n").utf8))
    let rot = try h.run(["rotate-keys", "--new-kms", "file://\(newKey)"])
    #expect(rot.code == 0, "\(rot.stderr)")
    #expect(rot.result["keyWraps"] as? Int == 7)
    // Data untouched.
    for (k, d) in packs { #expect(try Data(contentsOf: URL(fileURLWithPath: h.repo + "/" + k)) == d) }
    #expect(try h.objects("keys").count == 1)
    // The old KEK is useless now; remove it entirely.
    try FileManager.default.removeItem(atPath: h.keyPath)
    let r = try h.run(
      ["restore", "latest", "--target", h.dir + "/out", "--repo", h.repoURL, "--kms", "file://\(newKey)"],
      withRepo: false)
    #expect(r.code == 0, "\(r.stderr)")
    #expect(
      FileManager.default.contents(atPath: h.dir + "/out/src/data.bin")
        == FileManager.default.contents(atPath: h.dir + "/src/data.bin"))
    try makeFile(atPath: h.keyPath, contents: Data(Crypto.randomBytes(32)))
    #expect(try h.run(["snapshots"]).code == 12)
  }

  @Test func killedBackupLeavesAConsistentRepositoryAndItsPacksAreReused() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    #expect(try h.run(["init"]).code == 0)
    // A stream that stalls after its payload keeps the backup running until it is killed. Each of the engine's
    // workers (one per core, at least 2) fills its own pack, and a pack is stored when it reaches 8 MiB; the reader
    // holds up to 16 MiB unchunked while it waits. So the payload is random (incompressible) and large enough that
    // whichever way the chunks fall across the workers, at least one pack is stored before the stream stalls.
    let workers = max(2, ProcessInfo.processInfo.activeProcessorCount)
    let payload = Data(Crypto.randomBytes(max(40, workers * 8 + 24) << 20))
    let fifo = h.dir + "/fifo"
    #expect(mkfifo(fifo, 0o600) == 0)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try CLIHarness.binary())
    p.arguments = ["backup", "--stdin", "--stdin-name", "stream", "--repo", h.repoURL, "--kms", h.kmsURL, "--quiet"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    let writerDone = DispatchSemaphore(value: 0)
    let killed = DispatchSemaphore(value: 0)
    // Opening a FIFO blocks until both ends are open: start the writer first. It keeps its end open (the stream
    // stalls, it does not end) until the backup has been killed, so the backup can never finish on its own.
    let writer = Thread {
      if let w = FileHandle(forWritingAtPath: fifo) {
        w.write(payload)
        writerDone.signal()
        _ = killed.wait(timeout: .now() + 300)
        try? w.close()
      }
    }
    writer.start()
    p.standardInput = FileHandle(forReadingAtPath: fifo) ?? FileHandle.nullDevice
    try p.run()
    writerDone.wait()
    // Wait until a pack is on disk, then kill -9.
    let deadline = Date().addingTimeInterval(120)
    while try h.objects("data").isEmpty && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
    Thread.sleep(forTimeInterval: 0.5)
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    killed.signal()
    let orphanPacks = try h.objects("data")
    try #require(!orphanPacks.isEmpty, "no pack was stored in 120 s before the kill")
    let orphanBytes = try orphanPacks.reduce(0) {
      $0 + ((try FileManager.default.attributesOfItem(atPath: h.repo + "/" + $1)[.size] as? Int) ?? 0)
    }
    #expect(try h.objects("snapshots").isEmpty)
    #expect(try h.objects("locks").count == 1)  // the killed process's lock
    // The repository is consistent; the stale lock of the dead pid is removed by the next command.
    let v = try h.run(["verify"])
    #expect(v.code == 0, "\(v.stderr)")
    let b = try h.run(["backup", "--stdin", "--stdin-name", "stream"], stdin: payload)
    #expect(b.code == 0, "\(b.stderr)")
    #expect(b.text.contains("adopted"))
    let stored = try #require(b.result["bytesStored"] as? Int)
    // The orphaned packs are adopted, not uploaded again.
    #expect(stored < payload.count - orphanBytes / 2, "re-uploaded \(stored) of \(payload.count) bytes")
    #expect(try h.objects("locks").isEmpty)
    let r = try h.run(["restore", "latest", "--stdout"])
    #expect(r.stdout == payload)
  }
}
