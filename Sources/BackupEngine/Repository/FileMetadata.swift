import CXattr

#if canImport(Glibc)
  import Glibc
#endif

/// Extended attributes and sparse writes: the file metadata beyond stat(2) that backup records and restore puts
/// back.
enum FileMetadata {
  /// `O_PATH` and `AT_EMPTY_PATH`, which Swift's Glibc module leaves out (they need _GNU_SOURCE); the values are
  /// Linux's on x86-64 and arm64.
  static let openPath: Int32 = 0o10000000
  static let atEmptyPath: Int32 = 0x1000

  /// The extended attributes of `path` (held as `FSName` holds names), without following a symlink. An empty list
  /// when the file system has none or does not support them; an error message when they cannot be read.
  static func readXattrs(_ path: String) -> (attrs: [TreeNode.ExtendedAttribute], error: String?) {
    FSName.withCString(path) { p -> ([TreeNode.ExtendedAttribute], String?) in
      var names: [CChar] = []
      while true {
        let size = llistxattr(p, nil, 0)
        if size < 0 {
          if errno == ENOTSUP || errno == ENOENT { return ([], nil) }
          return ([], "cannot list extended attributes: \(errnoMessage(errno))")
        }
        if size == 0 { return ([], nil) }
        names = [CChar](repeating: 0, count: size)
        let n = llistxattr(p, &names, size)
        if n >= 0 {
          names.removeSubrange(n...)
          break
        }
        if errno != ERANGE { return ([], "cannot list extended attributes: \(errnoMessage(errno))") }
      }
      var out: [TreeNode.ExtendedAttribute] = []
      for raw in names.split(separator: 0) {
        let nameC = Array(raw) + [0]
        var value: [UInt8] = []
        var gone = false
        while true {
          let size = lgetxattr(p, nameC, nil, 0)
          if size < 0 {
            if errno == ENODATA {
              gone = true  // removed since it was listed
              break
            }
            let name = FSName.display(FSName.decode(raw.map { UInt8(bitPattern: $0) }))
            return (out, "cannot read extended attribute \(name): \(errnoMessage(errno))")
          }
          value = [UInt8](repeating: 0, count: size)
          let n = size == 0 ? 0 : lgetxattr(p, nameC, &value, size)
          if n >= 0 {
            value.removeSubrange(n...)
            break
          }
          if errno != ERANGE {
            let name = FSName.display(FSName.decode(raw.map { UInt8(bitPattern: $0) }))
            return (out, "cannot read extended attribute \(name): \(errnoMessage(errno))")
          }
        }
        if !gone { out.append(.init(name: FSName.decode(raw.map { UInt8(bitPattern: $0) }), value: value)) }
      }
      return (out, nil)
    }
  }

  /// Sets extended attributes with `set` (which returns 0 or -1 with errno); returns one message per attribute
  /// that could not be set (the file system does not support it, or the restore lacks the privilege).
  static func writeXattrs(
    _ attrs: [TreeNode.ExtendedAttribute], _ set: (UnsafePointer<CChar>, UnsafeRawPointer?, Int) -> Int32
  ) -> [String] {
    var failed: [String] = []
    for x in attrs {
      let r = FSName.withCString(x.name) { name in
        x.value.withUnsafeBytes { set(name, $0.baseAddress, $0.count) }
      }
      if r != 0 {
        let e = errno
        let why = e == ENOTSUP ? "not supported by the target file system" : errnoMessage(e)
        failed.append("\(FSName.display(x.name)) (\(why))")
      }
    }
    return failed
  }

  /// Sets `attrs` on the open file `fd`.
  static func writeXattrs(fd: Int32, _ attrs: [TreeNode.ExtendedAttribute]) -> [String] {
    guard !attrs.isEmpty else { return [] }
    return writeXattrs(attrs) { fsetxattr(fd, $0, $1, $2, 0) }
  }

  /// Sets `attrs` on the entry `name` of directory `dir` without following it (for symlinks and special files,
  /// which are not opened): through the directory's descriptor in /proc, so no path is resolved again.
  static func writeXattrs(dir: Int32, name: String, _ attrs: [TreeNode.ExtendedAttribute]) -> [String] {
    guard !attrs.isEmpty else { return [] }
    return writeXattrs(attrs) { key, value, size in
      FSName.withCString("/proc/self/fd/\(dir)/" + name) { lsetxattr($0, key, value, size, 0) }
    }
  }

  /// File-system block size that sparse writes skip by: a run of zeros this long, aligned in the file, is left as a
  /// hole.
  static let holeBlock = 4096

  /// Writes `bytes` at `offset` of a new file (which reads as zeros where nothing was written), skipping aligned
  /// blocks of zeros so that they stay holes; returns whether zeros at the end were skipped, in which case the caller
  /// sets the file's size (ftruncate).
  @discardableResult
  static func writeSparse(fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int64, what: String) throws -> Bool {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return false }
    let block = holeBlock
    var pos = 0
    var runStart = -1
    func flush(_ end: Int) throws {
      if runStart >= 0 {
        try Repository.writeAll(
          fd: fd, UnsafeRawBufferPointer(start: base + runStart, count: end - runStart), what: what,
          offset: offset + Int64(runStart))
        runStart = -1
      }
    }
    while pos < bytes.count {
      // The end of the file block that `pos` is in.
      let fileOff = offset + Int64(pos)
      let blockEnd = min(bytes.count, pos + block - Int(fileOff % Int64(block)))
      if isZero(base + pos, blockEnd - pos) {
        try flush(pos)
      } else if runStart < 0 {
        runStart = pos
      }
      pos = blockEnd
    }
    let tailSkipped = runStart < 0
    try flush(bytes.count)
    return tailSkipped
  }

  /// Whether `count` bytes at `p` are all zero (the first byte is usually not, which ends it at once).
  static func isZero(_ p: UnsafeRawPointer, _ count: Int) -> Bool {
    guard count > 0 else { return true }
    guard p.load(as: UInt8.self) == 0 else { return false }
    return count == 1 || memcmp(p, p + 1, count - 1) == 0
  }
}
