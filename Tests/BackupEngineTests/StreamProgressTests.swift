import Foundation
import Logging
import Synchronization
import Testing

@testable import BackupEngine

#if canImport(Glibc)
  import Glibc
#endif

/// A stream backup (a dump piped in) reports its progress while the stream is still open, not only once it ends: a
/// dump that writes for minutes before the chunker's first boundary would otherwise show nothing until the end
/// (`--json` status lines, and the progress line on a terminal).
@Suite struct StreamProgressTests {
  @Test func aSlowStreamReportsBytesBeforeItEnds() async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stream-progress-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try makeFile(atPath: dir + "/kek", contents: Data(Crypto.randomBytes(32)))
    let repo = try await Repository.initialize(
      store: try LocalStore(root: dir + "/repo"), keyService: try LocalKeyService(path: dir + "/kek"),
      objectLock: nil, logger: Logger(label: "t"))

    var fds: [Int32] = [0, 0]
    #expect(pipe(&fds) == 0)
    let seen = DispatchSemaphore(value: 0)
    let streamOpen = Mutex(true)
    let earlyBytes = Mutex<Int64>(0)
    let handler: ProgressHandler = { ev in
      guard ev.bytesDone > 0, streamOpen.withLock({ $0 }) else { return }
      if earlyBytes.withLock({ b in
        defer { b = max(b, ev.bytesDone) }
        return b == 0
      }) {
        seen.signal()
      }
    }
    // The producer: 64 KiB every 200 ms (a slow dump) until a progress line arrived, for at most 2 MiB (6.4 s), then
    // EOF. 2 MiB is far below the chunker's read buffer (twice its 8 MiB maximum chunk), so no chunk is cut while
    // the stream is open: only progress reported as bytes are read can arrive before the end.
    let writer = fds[1]
    let producer = Thread {
      let piece = [UInt8](repeating: 7, count: 64 << 10)
      var sent = 0
      while sent < 2 << 20 {
        sent += piece.withUnsafeBytes { write(writer, $0.baseAddress, $0.count) }
        if seen.wait(timeout: .now() + .milliseconds(200)) == .success { break }
      }
      streamOpen.withLock { $0 = false }
      close(writer)
    }
    producer.start()
    let result = try await repo.backup(
      BackupOptions(paths: [], stdinName: "dump", stdinFD: fds[0], workers: 1, progress: handler))
    close(fds[0])
    let early = earlyBytes.withLock { $0 }
    #expect(early > 0, "no progress line while the stream was open")
    #expect(result.bytesRead >= early)
  }
}
