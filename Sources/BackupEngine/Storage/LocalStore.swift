import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// An `ObjectStore` in a local directory: atomic writes (temp file, fsync, rename, directory fsync).
public struct LocalStore: ObjectStore {
  /// The absolute root directory.
  public let root: String
  public var location: String { "file://\(root)" }
  public var supportsRetention: Bool { false }

  /// Opens (and creates if needed) a store rooted at `root`.
  public init(root: String) throws {
    var r = root
    while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
    self.root = r
  }

  private func path(_ key: String) throws -> String {
    guard !key.isEmpty, !key.hasPrefix("/"), !key.split(separator: "/").contains("..") else {
      throw StorageError.failed(key: key, message: "invalid object key")
    }
    return root + "/" + key
  }

  private static func mapErrno(_ e: Int32, key: String, location: String) -> StorageError {
    switch e {
    case ENOENT: return .notFound(key: key)
    case EEXIST: return .alreadyExists(key: key)
    case EACCES, EPERM, EROFS: return .accessDenied(key: key, message: errnoMessage(e))
    case ENOSPC, EDQUOT: return .noSpace(location: location, message: "\(key): \(errnoMessage(e))")
    default: return .failed(key: key, message: errnoMessage(e))
    }
  }

  private func mkdirs(_ dir: String) throws {
    if mkdir(dir, 0o755) == 0 || errno == EEXIST { return }
    if errno == ENOENT {
      let parent = (dir as NSString).deletingLastPathComponent
      if parent != dir && !parent.isEmpty {
        try mkdirs(parent)
        if mkdir(dir, 0o755) == 0 || errno == EEXIST { return }
      }
    }
    throw Self.mapErrno(errno, key: dir, location: location)
  }

  public func put(_ key: String, data: Data, options: PutOptions) async throws {
    StorageRequestLedger.add()
    let p = try path(key)
    try await BlockingIO.run { try self.putSync(key: key, path: p, data: data, options: options) }
  }

  /// Writes an object from raw bytes on the calling thread, with the same atomicity as `put` (backup uploader
  /// threads write packs this way, without copying them into a `Data`).
  public func putBytes(_ key: String, _ bytes: UnsafeRawBufferPointer, options: PutOptions) throws {
    StorageRequestLedger.add()
    try putSync(key: key, path: try path(key), bytes: bytes, options: options)
  }

  private func putSync(key: String, path p: String, data: Data, options: PutOptions) throws {
    try data.withUnsafeBytes { try putSync(key: key, path: p, bytes: $0, options: options) }
  }

  private func putSync(key: String, path p: String, bytes: UnsafeRawBufferPointer, options: PutOptions) throws {
    let dir = (p as NSString).deletingLastPathComponent
    try mkdirs(dir)
    let tmp = "\(dir)/.tmp-\(Hex.encode(Crypto.randomBytes(8)))"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw Self.mapErrno(errno, key: key, location: location) }
    var ok = false
    defer {
      if !ok { unlink(tmp) }
    }
    do {
      defer { close(fd) }
      do {
        let b = bytes
        var off = 0
        while off < b.count {
          let n = write(fd, b.baseAddress! + off, b.count - off)
          if n < 0 {
            if errno == EINTR { continue }
            throw Self.mapErrno(errno, key: key, location: location)
          }
          off += n
        }
      }
      guard fsync(fd) == 0 else { throw Self.mapErrno(errno, key: key, location: location) }
    }
    if options.ifNoneMatch {
      // link() fails with EEXIST atomically when the target exists.
      guard link(tmp, p) == 0 else { throw Self.mapErrno(errno, key: key, location: location) }
      unlink(tmp)
    } else {
      guard rename(tmp, p) == 0 else { throw Self.mapErrno(errno, key: key, location: location) }
    }
    ok = true
    let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dfd >= 0 {
      defer { close(dfd) }
      guard fsync(dfd) == 0 else { throw Self.mapErrno(errno, key: dir, location: location) }
    }
  }

  public func get(_ key: String) async throws -> Data {
    StorageRequestLedger.add()
    let p = try path(key)
    return try await BlockingIO.run { try self.readSync(key: key, path: p, offset: 0, length: nil) }
  }

  public func getRange(_ key: String, offset: Int64, length: Int64) async throws -> Data {
    StorageRequestLedger.add()
    let p = try path(key)
    return try await BlockingIO.run { try self.readSync(key: key, path: p, offset: offset, length: length) }
  }

  private func readSync(key: String, path p: String, offset: Int64, length: Int64?) throws -> Data {
    let fd = open(p, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Self.mapErrno(errno, key: key, location: location) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw Self.mapErrno(errno, key: key, location: location) }
    let size = Int64(st.st_size)
    let want = length ?? max(0, size - offset)
    guard offset >= 0, offset + want <= size else {
      throw StorageError.failed(key: key, message: "range \(offset)+\(want) beyond object size \(size) (truncated?)")
    }
    var d = Data(count: Int(want))
    try d.withUnsafeMutableBytes { b in
      guard let base = b.baseAddress else { return }
      try preadAll(fd: fd, key: key, offset: offset, length: b.count, into: base)
    }
    return d
  }

  private func preadAll(fd: Int32, key: String, offset: Int64, length: Int, into out: UnsafeMutableRawPointer) throws {
    var off = 0
    while off < length {
      let n = pread(fd, out + off, length - off, off_t(offset) + off_t(off))
      if n < 0 {
        if errno == EINTR { continue }
        throw Self.mapErrno(errno, key: key, location: location)
      }
      if n == 0 { throw StorageError.failed(key: key, message: "unexpected end of file (truncated?)") }
      off += n
    }
    StorageRequestLedger.addRead(length)
  }

  /// Reads `length` bytes at `offset` into `out`, on the calling thread and without an intermediate buffer
  /// (restore workers read whole pack ranges this way). Fails like `getRange` when the object is shorter.
  public func readRange(_ key: String, offset: Int64, length: Int, into out: UnsafeMutableRawPointer) throws {
    let p = try path(key)
    let fd = open(p, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Self.mapErrno(errno, key: key, location: location) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw Self.mapErrno(errno, key: key, location: location) }
    guard offset >= 0, length >= 0, offset + Int64(length) <= Int64(st.st_size) else {
      throw StorageError.failed(
        key: key, message: "range \(offset)+\(length) beyond object size \(st.st_size) (truncated?)")
    }
    try preadAll(fd: fd, key: key, offset: offset, length: length, into: out)
  }

  public func head(_ key: String) async throws -> ObjectInfo? {
    StorageRequestLedger.add()
    let p = try path(key)
    var st = stat()
    if stat(p, &st) != 0 {
      if errno == ENOENT { return nil }
      throw Self.mapErrno(errno, key: key, location: location)
    }
    return ObjectInfo(
      key: key, size: Int64(st.st_size), lastModified: Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec)))
  }

  public func list(prefix: String) async throws -> [ObjectInfo] {
    StorageRequestLedger.add()
    return try await BlockingIO.run { try self.listSync(prefix: prefix) }
  }

  private func listSync(prefix: String) throws -> [ObjectInfo] {
    // Walk the directory holding the prefix.
    var base = prefix
    if let slash = base.lastIndex(of: "/") { base = String(base[..<slash]) } else { base = "" }
    var out: [ObjectInfo] = []
    func walk(_ rel: String) throws {
      let dirPath = rel.isEmpty ? root : root + "/" + rel
      guard let d = opendir(dirPath) else {
        if errno == ENOENT || errno == ENOTDIR { return }
        throw Self.mapErrno(errno, key: rel, location: location)
      }
      defer { closedir(d) }
      while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { b in
          String(decoding: b.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name == "." || name == ".." || name.hasPrefix(".tmp-") { continue }
        let key = rel.isEmpty ? name : rel + "/" + name
        var st = stat()
        guard lstat(root + "/" + key, &st) == 0 else { continue }
        if (st.st_mode & S_IFMT) == S_IFDIR {
          if prefix.hasPrefix(key + "/") || (key + "/").hasPrefix(prefix) || prefix.isEmpty { try walk(key) }
        } else if key.hasPrefix(prefix) {
          out.append(
            ObjectInfo(
              key: key, size: Int64(st.st_size),
              lastModified: Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec))))
        }
      }
    }
    try walk(base)
    return out
  }

  public func delete(_ key: String) async throws {
    StorageRequestLedger.add()
    let p = try path(key)
    if unlink(p) != 0 && errno != ENOENT { throw Self.mapErrno(errno, key: key, location: location) }
  }

  public func extendRetention(_ key: String, to retention: ObjectRetention) async throws {}
}

/// Runs blocking system calls on a dedicated thread pool, away from Swift's cooperative pool.
enum BlockingIO {
  private static let queue = DispatchQueue(label: "botrt.blocking-io", attributes: .concurrent)

  /// Runs `body` on the blocking-I/O queue and resumes with its result.
  static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { cont in
      queue.async {
        do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
      }
    }
  }
}
