import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Where a restore is, for tests that play an attacker in the target while it runs.
enum RestoreHookPoint: Sendable, Equatable {
  /// Every directory of the tree exists (with mode 0700); no file is written yet.
  case directoriesCreated
  /// A worker is about to write (part of) this file, a path relative to the target.
  case beforeWrite(String)
  /// All file contents are written; hard links and symlinks come next.
  case contentsWritten
  /// The owner, mode and time of this directory are set next.
  case beforeDirectoryMetadata(String)
}

/// File-system operations below a restore target that never follow a symlink and never re-resolve a checked path.
///
/// The target directory itself is opened once (following symlinks in the path the operator gave). Below it, every
/// directory is reached one component at a time with `openat(O_DIRECTORY | O_NOFOLLOW)` from the descriptor of its
/// parent, so a symlink anywhere (in the snapshot, pre-existing in the target, or put there by someone racing the
/// restore) fails the walk with ELOOP or ENOTDIR instead of leading outside. Files are created under a fresh
/// temporary name with `O_CREAT | O_EXCL | O_NOFOLLOW` in their parent's descriptor, completed (content, owner,
/// mode, times) through their own descriptor, and renamed into place: an existing file, hard link or symlink at
/// the final name is replaced, never opened.
struct RestoreRoot: Sendable {
  /// The descriptor of the target directory (closed by `close()`).
  let fd: Int32
  /// The target as given, for messages.
  let path: String

  /// Creates the target (and its missing parents) if needed and opens it.
  static func open(_ target: String) throws -> RestoreRoot {
    var p = target
    while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
    if p.isEmpty { p = "." }
    do {
      try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    } catch {
      // Reported below by open, with its errno.
    }
    let fd = Glibc.open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw restoreFSError(path: p, errno) }
    return RestoreRoot(fd: fd, path: p)
  }

  func close() { _ = Glibc.close(fd) }

  /// The path of `rel` for messages.
  func display(_ rel: some StringProtocol) -> String { rel.isEmpty ? path : path + "/" + rel }

  /// Opens the directory `rel` below the target, walking one component at a time without following symlinks;
  /// with `create`, missing components are made with mode 0700. The caller closes the result.
  func openDir(_ rel: Substring, from base: Int32? = nil, baseRel: Substring = "", create: Bool) throws -> Int32 {
    var cur = base ?? fd
    var owned = false
    defer { if owned { _ = Glibc.close(cur) } }
    var done = rel[..<rel.startIndex]
    let below =
      baseRel.isEmpty
      ? rel : rel[rel.utf8.index(rel.startIndex, offsetBy: min(baseRel.utf8.count + 1, rel.utf8.count))...]
    for comp in Self.components(below) where !comp.isEmpty {
      let name = String(comp)
      done = rel[..<comp.endIndex]
      var next = Self.openDirAt(cur, name)
      if next < 0 && errno == ENOENT && create {
        if FSName.withCString(name, { mkdirat(cur, $0, 0o700) }) != 0 && errno != EEXIST {
          throw restoreFSError(path: display(FSName.display(done)), errno)
        }
        next = Self.openDirAt(cur, name)
      }
      guard next >= 0 else { throw restoreFSError(path: display(FSName.display(done)), errno, directory: true) }
      if owned { _ = Glibc.close(cur) }
      cur = next
      owned = true
    }
    if !owned {
      // `rel` is the base itself: hand out a descriptor the caller may close.
      let d = dup(cur)
      guard d >= 0 else { throw restoreFSError(path: display(FSName.display(rel)), errno) }
      return d
    }
    owned = false
    return cur
  }

  /// `openat` of a directory entry that must be a directory and not a symlink.
  static func openDirAt(_ dir: Int32, _ name: String) -> Int32 {
    FSName.withCString(name) { openat(dir, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY) }
  }

  /// Creates a new file under a fresh temporary name in `dir`: returns its descriptor and the name.
  static func createTemp(in dir: Int32, mode: mode_t, display: String) throws -> (fd: Int32, name: String) {
    for _ in 0..<16 {
      let name = tempName()
      let fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode)
      if fd >= 0 { return (fd, name) }
      if errno != EEXIST { throw restoreFSError(path: display, errno) }
    }
    throw EngineError.io(path: display, message: "cannot create a temporary file next to it (16 names taken)")
  }

  /// A temporary name unlikely to exist (and created with O_EXCL anyway).
  static func tempName() -> String {
    ".botrt-restore-" + String(UInt64.random(in: .min ... .max), radix: 16) + ".tmp"
  }

  /// Moves the temporary `tmp` onto `name` in `dir`, replacing a file, hard link or symlink there (never writing
  /// into it); a directory in the way is an error.
  static func replace(in dir: Int32, tmp: String, name: String, display: String) throws {
    guard FSName.withCString(name, { renameat(dir, tmp, dir, $0) }) == 0 else {
      let e = errno
      unlinkat(dir, tmp, 0)
      if e == EISDIR || e == ENOTEMPTY || e == EEXIST {
        throw EngineError.io(path: display, message: "a directory is in the way of a restored file")
      }
      throw restoreFSError(path: display, e)
    }
  }

  /// The components of a relative path, split on the byte "/" (a "/" followed by a combining mark is one
  /// character, but still a separator).
  static func components<S: StringProtocol>(_ rel: S) -> [S.SubSequence] {
    var out: [S.SubSequence] = []
    var start = rel.startIndex
    var i = rel.utf8.startIndex
    while i != rel.utf8.endIndex {
      if rel.utf8[i] == UInt8(ascii: "/") {
        out.append(rel[start..<i])
        start = rel.utf8.index(after: i)
      }
      i = rel.utf8.index(after: i)
    }
    out.append(rel[start...])
    return out
  }

  /// Splits a relative path into its parent ("" for the target) and its last component.
  static func split(_ rel: String) -> (parent: Substring, name: String) {
    guard let slash = rel.utf8.lastIndex(of: UInt8(ascii: "/")) else { return ("", rel) }
    // utf8.index(after:): the next character may be "/" with a combining mark, which String.index would skip.
    return (rel[..<slash], String(rel[rel.utf8.index(after: slash)...]))
  }
}

/// Maps an error of a restore's file-system call to an engine error: a symlink (or a non-directory where a
/// directory goes) is an integrity error, since the walk refuses to follow it.
func restoreFSError(path: String, _ e: Int32, directory: Bool = false) -> EngineError {
  if e == ENOSPC || e == EDQUOT { return .noSpace(path: path, message: errnoMessage(e)) }
  if e == ELOOP || (directory && e == ENOTDIR) {
    return .integrity(
      object: path, message: "is a symlink or not a directory: refused, not followed (symlink escape)")
  }
  return .io(path: path, message: errnoMessage(e))
}

/// Descriptors of recently used directories below a restore target, for one thread. Each was reached by a walk
/// that followed no symlink, so it stays a directory inside the tree the restore made even if its name is later
/// swapped for a symlink (writes through it go to that directory, wherever it was moved, never through the link).
final class RestoreDirCache {
  private let root: RestoreRoot
  private let capacity: Int
  /// Keyed by the path's bytes (see `TreeNode.pathKey`).
  private var fds: [[UInt8]: Int32] = [:]
  private var order: [[UInt8]] = []
  private var next = 0

  init(root: RestoreRoot, capacity: Int = 64) {
    self.root = root
    self.capacity = capacity
  }

  deinit { closeAll() }

  func closeAll() {
    for fd in fds.values { _ = Glibc.close(fd) }
    fds = [:]
    order = []
    next = 0
  }

  /// The descriptor of directory `rel` ("" for the target). It stays valid until the next call (which may evict
  /// it), so a caller that needs two directories at once opens the other with `RestoreRoot.openDir`.
  func dir(_ rel: Substring, create: Bool = false) throws -> Int32 {
    if rel.isEmpty { return root.fd }
    if let fd = fds[Array(rel.utf8)] { return fd }
    // Start from the nearest cached ancestor.
    var base: (fd: Int32, rel: Substring)?
    var p = rel
    while let slash = p.utf8.lastIndex(of: UInt8(ascii: "/")) {
      p = p[..<slash]
      if let fd = fds[Array(p.utf8)] {
        base = (fd, p)
        break
      }
    }
    let fd = try root.openDir(rel, from: base?.fd, baseRel: base?.rel ?? "", create: create)
    insert(rel, fd)
    return fd
  }

  private func insert(_ rel: Substring, _ fd: Int32) {
    let key = Array(rel.utf8)
    if order.count < capacity {
      order.append(key)
    } else {
      let old = order[next]
      if let ofd = fds.removeValue(forKey: old) { _ = Glibc.close(ofd) }
      order[next] = key
      next = (next + 1) % capacity
    }
    fds[key] = fd
  }
}
