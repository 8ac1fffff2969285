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
    _ nodes: [TreeNode], target: String, index: MasterIndex, keyType: KeyType
  ) throws -> RestoreVerification {
    let root = try RestoreRoot.open(target)
    defer { root.close() }
    let cache = RestoreDirCache(root: root)
    let mac = macKey(keyType)
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    var problems: [String] = []
    var differing = 0
    var result = RestoreVerification(files: 0, bytes: 0)
    for n in nodes where n.kind == .file {
      let (parent, name) = RestoreRoot.split(n.path)
      let shown = root.display(FSName.display(n.path))
      let dir = try cache.dir(parent)
      let fd = FSName.withCString(name) { openat(dir, $0, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY) }
      var problem: String?
      var offset: Int64 = 0
      if fd < 0 { problem = "cannot be opened: \(String(cString: strerror(errno)))" }
      for (i, id) in n.content.enumerated() where fd >= 0 {
        guard let l = index.lookup(id) else {
          problem = "chunk \(i) (\(id.short)) is in no index"
          break
        }
        let length = Int(l.entry.rawLength)
        if buf.count < length { buf = [UInt8](repeating: 0, count: length) }
        let got = Self.readFully(fd, &buf, length, at: offset)
        guard got >= 0 else {
          problem = "cannot be read at byte \(offset): \(String(cString: strerror(errno)))"
          break
        }
        guard got == length else {
          problem = "ends at byte \(offset + Int64(got)); the snapshot's file is \(n.size) bytes"
          break
        }
        let h = buf.withUnsafeBytes { mac.mac(UnsafeRawBufferPointer(rebasing: $0[..<length])) }
        guard ID(h) == id else {
          problem = "bytes \(offset) to \(offset + Int64(length)) differ from the snapshot's chunk \(i) (\(id.short))"
          break
        }
        offset += Int64(length)
      }
      if problem == nil {
        var one: UInt8 = 0
        if pread(fd, &one, 1, off_t(offset)) > 0 {
          problem = "is longer than the snapshot's file (\(offset) bytes)"
        }
      }
      if fd >= 0 { close(fd) }
      if let problem {
        differing += 1
        if problems.count < Self.maxVerifyProblems { problems.append("\(shown) \(problem)") }
        continue
      }
      result.files += 1
      result.bytes += offset
    }
    guard problems.isEmpty else {
      throw EngineError.integrity(
        object: "restored files in \(root.path)",
        message: "\(differing) file(s) differ from the snapshot after the restore: "
          + problems.joined(separator: "; "))
    }
    return result
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
