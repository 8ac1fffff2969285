import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What `restore --verify` read back.
public struct RestoreVerification: Sendable, Equatable {
  public var files: Int
  public var bytes: Int64
}

extension Repository {
  /// The most differing files a `restore --verify` names (it counts them all).
  static let maxVerifyProblems = 10

  /// Reads every restored regular file back from `target` and checks it against the snapshot, as restic's
  /// `restore --verify` does: each chunk's keyed hash (under the data type's MAC key) must be the id of the blob the
  /// snapshot lists at that offset, and the file must end where the snapshot's does. What the restore authenticated
  /// on the way in is checked again as it landed on the target's storage. Files are reached from the target's
  /// descriptor one component at a time without following a symlink, as the restore wrote them; a hard link is
  /// checked through its first file. Throws an integrity error naming the first differing files.
  func verifyRestored(
    _ nodes: [TreeNode], target: String, index: MasterIndex, keyType: KeyType, workers: Int = 4
  ) throws -> RestoreVerification {
    let root = try RestoreRoot.open(target)
    defer { root.close() }
    let files = nodes.filter { $0.kind == .file }
    let mac = macKey(keyType)
    let tally = VerifyTally()
    // Files are taken in turn by `workers` threads, each with its own directory cache and buffer.
    let n = max(1, min(workers, files.count))
    DispatchQueue.concurrentPerform(iterations: n) { w in
      let cache = RestoreDirCache(root: root)
      var buf = [UInt8](repeating: 0, count: 1 << 20)
      var i = w
      while i < files.count {
        let file = files[i]
        i += n
        let shown = root.display(FSName.display(file.path))
        do {
          let checked = try Self.readBack(file, cache: cache, index: index, mac: mac, buf: &buf)
          tally.passed(bytes: checked)
        } catch let e as ReadBackProblem {
          tally.failed("\(shown) \(e.what)")
        } catch {
          tally.failed("\(shown): \(error)")
        }
      }
    }
    let (result, problems, differing) = tally.outcome
    guard problems.isEmpty else {
      throw EngineError.integrity(
        object: "restored files in \(root.path)",
        message: "\(differing) file(s) differ from the snapshot after the restore: "
          + problems.joined(separator: "; "))
    }
    return result
  }

  /// Reads one restored file back and checks it chunk by chunk; its bytes, or a `ReadBackProblem` saying how it
  /// differs.
  static func readBack(
    _ file: TreeNode, cache: RestoreDirCache, index: MasterIndex, mac: Crypto.HMACKey, buf: inout [UInt8]
  ) throws -> Int64 {
    let (parent, name) = RestoreRoot.split(file.path)
    let dir = try cache.dir(parent)
    let fd = FSName.withCString(name) { openat(dir, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
    guard fd >= 0 else { throw ReadBackProblem("cannot be opened: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var offset: Int64 = 0
    for (i, id) in file.content.enumerated() {
      guard let l = index.lookup(id) else { throw ReadBackProblem("chunk \(i) (\(id.short)) is in no index") }
      let length = Int(l.entry.rawLength)
      if buf.count < length { buf = [UInt8](repeating: 0, count: length) }
      let got = readFully(fd, &buf, length, at: offset)
      guard got >= 0 else {
        throw ReadBackProblem("cannot be read at byte \(offset): \(String(cString: strerror(errno)))")
      }
      guard got == length else {
        throw ReadBackProblem("ends at byte \(offset + Int64(got)); the snapshot's file is \(file.size) bytes")
      }
      let h = buf.withUnsafeBytes { mac.mac(UnsafeRawBufferPointer(rebasing: $0[..<length])) }
      guard ID(h) == id else {
        throw ReadBackProblem(
          "bytes \(offset) to \(offset + Int64(length)) differ from the snapshot's chunk \(i) (\(id.short))")
      }
      offset += Int64(length)
    }
    var one: UInt8 = 0
    if pread(fd, &one, 1, off_t(offset)) > 0 {
      throw ReadBackProblem("is longer than the snapshot's file (\(offset) bytes)")
    }
    return offset
  }

  /// Reads up to `count` bytes at `offset` into `buf` (retrying short reads and EINTR); the bytes read, or -1.
  static func readFully(_ fd: Int32, _ buf: inout [UInt8], _ count: Int, at offset: Int64) -> Int {
    var done = 0
    while done < count {
      let r = buf.withUnsafeMutableBytes {
        pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done))
      }
      if r < 0 && errno == EINTR { continue }
      if r < 0 { return -1 }
      if r == 0 { break }
      done += r
    }
    return done
  }
}

/// How a restored file differs from the snapshot (the message after its path).
struct ReadBackProblem: Error {
  let what: String
  init(_ what: String) { self.what = what }
}

/// The read-back's counts across its worker threads.
final class VerifyTally: @unchecked Sendable {
  private let lock = NSLock()
  private var result = RestoreVerification(files: 0, bytes: 0)
  private var problems: [String] = []
  private var differing = 0

  func passed(bytes: Int64) {
    lock.withLock {
      result.files += 1
      result.bytes += bytes
    }
  }

  func failed(_ problem: String) {
    lock.withLock {
      differing += 1
      if problems.count < Repository.maxVerifyProblems { problems.append(problem) }
    }
  }

  var outcome: (RestoreVerification, [String], Int) { lock.withLock { (result, problems.sorted(), differing) } }
}
