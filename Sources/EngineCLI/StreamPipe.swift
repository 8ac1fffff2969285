import BackupEngine
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A stream that a producer in another container writes into a named pipe on a shared volume (the dump command of
/// a backup Job runs in the application's image; the engine, with the credentials, in its own): `backup --stdin
/// --stdin-from PIPE --stdin-status FILE`.
///
/// The engine creates the pipe, waits for the producer to open it, reads it to its end, and then waits for the
/// producer's exit status, which the producer writes into the status file after it closed the pipe. A producer that
/// never starts, or that fails, fails the backup before any snapshot refers to what was read.
enum StreamPipe {
  /// Creates a FIFO (mode 0600) at `path` unless one is there, and opens it for reading as soon as a writer has
  /// opened it. Throws after `timeout` seconds without a writer.
  static func openForReading(_ path: String, timeout: Double) throws -> Int32 {
    var st = stat()
    if lstat(path, &st) == 0 {
      guard (st.st_mode & S_IFMT) == S_IFIFO else {
        throw EngineError.usage("--stdin-from \(path): exists and is not a named pipe")
      }
    } else if mkfifo(path, 0o600) != 0 {
      throw EngineError.io(path: path, message: "cannot create the named pipe: \(String(cString: strerror(errno)))")
    }
    // Non-blocking, so that a producer that never comes cannot hang the engine: Linux reports a FIFO readable (data)
    // or hung up only once a writer has opened it, so poll waits for exactly that.
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else {
      throw EngineError.io(path: path, message: "cannot open the named pipe: \(String(cString: strerror(errno)))")
    }
    let deadline = Date().addingTimeInterval(timeout)
    while true {
      var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      let left = deadline.timeIntervalSinceNow
      if left <= 0 {
        close(fd)
        throw EngineError.failed(
          "no producer opened \(path) within \(Int(timeout)) s: the dump command's container did not start or did "
            + "not write its output there; no snapshot was written")
      }
      let r = poll(&p, 1, Int32(min(left, 1) * 1000))
      if r < 0 && errno == EINTR { continue }
      if r < 0 {
        let e = errno
        close(fd)
        throw EngineError.io(path: path, message: "poll: \(String(cString: strerror(e)))")
      }
      if r > 0 { break }
    }
    // From here on a plain blocking descriptor: reads wait for data, and end when the producer closes the pipe.
    let flags = fcntl(fd, F_GETFL)
    _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
    return fd
  }

  /// Waits up to `timeout` seconds for the producer's exit status (a decimal number) in `path`, and throws unless it
  /// is 0.
  static func checkStatus(_ path: String, timeout: Double, producer: String) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
      if let data = FileManager.default.contents(atPath: path),
        let text = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
        !text.isEmpty
      {
        guard let code = Int32(text) else {
          throw EngineError.failed("\(path): the \(producer)'s exit status is not a number ('\(text.prefix(40))')")
        }
        guard code == 0 else {
          throw EngineError.failed(
            "the \(producer) exited with status \(code); what it wrote was not recorded as a snapshot")
        }
        return
      }
      if Date() >= deadline {
        throw EngineError.failed(
          "the \(producer) closed its output but wrote no exit status to \(path) within \(Int(timeout)) s; what it "
            + "wrote was not recorded as a snapshot")
      }
      usleep(100_000)
    }
  }
}
