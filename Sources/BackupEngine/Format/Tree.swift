import Foundation

/// One entry of a snapshot's file tree.
public struct TreeNode: Sendable, Hashable {
  /// Node kinds.
  public enum Kind: UInt8, Sendable { case directory = 0, file = 1, symlink = 2, hardlink = 3 }
  public var kind: Kind
  /// Relative, "/"-separated path.
  public var path: String
  public var mode: UInt32
  public var uid: UInt32
  public var gid: UInt32
  public var user: String
  public var group: String
  public var mtimeSec: Int64
  public var mtimeNsec: UInt32
  public var size: UInt64
  public var inode: UInt64
  public var device: UInt64
  /// Symlink target, or the path of the first file of a hard-link group.
  public var linkTarget: String
  /// Data blob ids, in order.
  public var content: [ID]

  public init(
    kind: Kind, path: String, mode: UInt32 = 0o644, uid: UInt32 = 0, gid: UInt32 = 0, user: String = "",
    group: String = "", mtimeSec: Int64 = 0, mtimeNsec: UInt32 = 0, size: UInt64 = 0, inode: UInt64 = 0,
    device: UInt64 = 0, linkTarget: String = "", content: [ID] = []
  ) {
    self.kind = kind
    self.path = path
    self.mode = mode
    self.uid = uid
    self.gid = gid
    self.user = user
    self.group = group
    self.mtimeSec = mtimeSec
    self.mtimeNsec = mtimeNsec
    self.size = size
    self.inode = inode
    self.device = device
    self.linkTarget = linkTarget
    self.content = content
  }
}

/// Tree serialization and path safety checks.
public enum TreeFormat {
  static let magic = Array("BRTTREE1".utf8)

  /// Serializes nodes (sorted by path by the caller).
  public static func encode(_ nodes: [TreeNode]) -> [UInt8] {
    var w = ByteWriter(capacity: nodes.count * 128)
    w.bytes(magic)
    w.u32(UInt32(nodes.count))
    for n in nodes {
      w.u8(n.kind.rawValue)
      w.string(n.path)
      w.u32(n.mode)
      w.u32(n.uid)
      w.u32(n.gid)
      w.string(n.user)
      w.string(n.group)
      w.i64(n.mtimeSec)
      w.u32(n.mtimeNsec)
      w.u64(n.size)
      w.u64(n.inode)
      w.u64(n.device)
      w.string(n.linkTarget)
      w.u32(UInt32(n.content.count))
      for c in n.content { w.bytes(c.bytes) }
    }
    return w.data
  }

  /// The encoded size of a node with empty strings and no content: kind, path, mode, uid, gid, user, group,
  /// mtime (8 + 4), size, inode, device, link target, content count.
  static let minNodeSize = 1 + 4 + 4 + 4 + 4 + 4 + 4 + 12 + 8 + 8 + 8 + 4 + 4

  /// Parses serialized nodes.
  public static func decode(_ data: [UInt8]) throws -> [TreeNode] {
    var r = ByteReader(data)
    guard try r.bytes(8) == magic else { throw FormatError("tree magic missing") }
    let count = Int(try r.u32())
    // Checked against the bytes there are before anything is reserved: a node takes at least `minNodeSize`.
    guard count <= r.remaining / minNodeSize else { throw FormatError("tree node count \(count) too large") }
    var out: [TreeNode] = []
    out.reserveCapacity(count)
    for _ in 0..<count {
      guard let kind = TreeNode.Kind(rawValue: try r.u8()) else { throw FormatError("unknown tree node kind") }
      var n = TreeNode(kind: kind, path: try r.string())
      n.mode = try r.u32()
      n.uid = try r.u32()
      n.gid = try r.u32()
      n.user = try r.string()
      n.group = try r.string()
      n.mtimeSec = try r.i64()
      n.mtimeNsec = try r.u32()
      n.size = try r.u64()
      n.inode = try r.u64()
      n.device = try r.u64()
      n.linkTarget = try r.string()
      let cc = Int(try r.u32())
      guard cc <= r.remaining / 32 else { throw FormatError("tree node content count \(cc) too large") }
      n.content.reserveCapacity(cc)
      for _ in 0..<cc { n.content.append(ID(try r.bytes(32))) }
      out.append(n)
    }
    return out
  }

  /// Whether `path` is a safe relative path: not empty, not absolute, no "."/".."/empty components, no NUL.
  public static func isSafeRelativePath(_ path: String) -> Bool {
    // One pass over the UTF-8 bytes: reject NUL and empty, "." and ".." components.
    var componentLength = 0
    var dots = 0
    for b in path.utf8 {
      if b == 0 { return false }
      if b == UInt8(ascii: "/") {
        if componentLength == 0 || dots == componentLength && dots <= 2 { return false }
        componentLength = 0
        dots = 0
      } else {
        componentLength += 1
        if b == UInt8(ascii: ".") { dots += 1 }
      }
    }
    return componentLength > 0 && !(dots == componentLength && dots <= 2)
  }

  /// Refuses trees with traversal: unsafe paths, hard links to unsafe or unknown paths, and entries
  /// below a symlink entry (which would write through the symlink, outside the target).
  public static func checkSafe(_ nodes: [TreeNode]) throws {
    var symlinks = Set<String>()
    var files = Set<String>()
    for n in nodes {
      guard isSafeRelativePath(n.path) else {
        throw EngineError.integrity(
          object: "tree entry '\(n.path)'", message: "path traversal refused (absolute or '..' path)")
      }
      if n.kind == .symlink { symlinks.insert(n.path) }
      if n.kind == .file { files.insert(n.path) }
    }
    for n in nodes {
      var p = Substring(n.path)
      while !symlinks.isEmpty, let slash = p.lastIndex(of: "/") {
        p = p[..<slash]
        if symlinks.contains(String(p)) {
          throw EngineError.integrity(
            object: "tree entry '\(n.path)'",
            message: "path traversal refused: its parent '\(p)' is a symlink (symlink escape)")
        }
      }
      if n.kind == .hardlink && (!isSafeRelativePath(n.linkTarget) || !files.contains(n.linkTarget)) {
        throw EngineError.integrity(
          object: "tree entry '\(n.path)'",
          message: "hard link to '\(n.linkTarget)' refused: not a file of this snapshot")
      }
    }
  }
}

/// A snapshot manifest: the signed, canonical JSON part of a snapshot.
public struct Manifest: Codable, Sendable, Hashable {
  public var version: Int
  public var repo: String
  public var seq: Int
  public var parent: String?
  public var time: String
  public var hostname: String
  public var dataType: String
  public var paths: [String]
  public var stdinName: String?
  public var tags: [String: String]
  public var tree: [String]
  public var summary: Summary
  /// Set by `copy`: the repository and snapshot this one was copied from (absent otherwise).
  public var origin: SnapshotOrigin? = nil

  /// Counts recorded in the manifest.
  public struct Summary: Codable, Sendable, Hashable {
    public var files: Int
    public var dirs: Int
    public var bytes: Int64
    public var errors: Int
    public init(files: Int, dirs: Int, bytes: Int64, errors: Int) {
      self.files = files
      self.dirs = dirs
      self.bytes = bytes
      self.errors = errors
    }
  }

  /// The manifest time as a Date.
  public var date: Date { Manifest.parseTime(time) ?? Date(timeIntervalSince1970: 0) }

  static func formatTime(_ d: Date) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: d)
  }

  static func parseTime(_ s: String) -> Date? {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    if let d = f.date(from: s) { return d }
    f.formatOptions = [.withInternetDateTime]
    return f.date(from: s)
  }
}

/// A manifest with its id (the object name).
public struct Snapshot: Sendable {
  public var id: ID
  public var manifest: Manifest
}

/// Snapshot object encoding and signature checks.
public enum SnapshotFormat {
  static let objectMagic = Array("BRTS".utf8) + [1]
  static let signPrefix = Array("botrt-manifest-v1".utf8)
  static func aad(repo: [UInt8]) -> [UInt8] { Array("botrt-snapshot-v1".utf8) + repo }

  /// Canonical JSON bytes of a manifest.
  public static func canonical(_ m: Manifest) throws -> [UInt8] {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return [UInt8](try e.encode(m))
  }

  /// Signs and seals a manifest into a stored object.
  public static func encodeObject(
    _ m: Manifest, signingKey: [UInt8], meta: AESGCM, zstd: ZstdContext, repo: [UInt8]
  ) throws -> [UInt8] {
    let body = try canonical(m)
    let sig = try Ed25519.sign(signPrefix + body, privateKey: signingKey)
    var w = ByteWriter()
    w.u32(UInt32(body.count))
    w.bytes(body)
    w.bytes(sig)
    return objectMagic + (try meta.seal(zstd.compressFramed(w.data), aad: aad(repo: repo)))
  }

  /// Opens a stored object, checking the signature; throws `EngineError.integrity` naming `name`.
  public static func decodeObject(
    _ obj: [UInt8], name: String, publicKey: [UInt8], meta: AESGCM, zstd: ZstdContext, repo: [UInt8]
  ) throws -> Manifest {
    let what = "snapshots/\(name)"
    guard obj.count > 5, Array(obj.prefix(5)) == objectMagic else {
      throw EngineError.integrity(object: what, message: "not a snapshot manifest (magic missing)")
    }
    let plain: [UInt8]
    do { plain = try zstd.decompressFramed(try meta.open(Array(obj[5...]), aad: aad(repo: repo))) } catch {
      throw EngineError.integrity(object: what, message: "manifest does not authenticate (damaged or foreign)")
    }
    var r = ByteReader(plain)
    let n = Int(try r.u32())
    guard n <= r.remaining else { throw EngineError.integrity(object: what, message: "manifest truncated") }
    let body = try r.bytes(n)
    guard r.remaining == 64 else {
      throw EngineError.integrity(object: what, message: "manifest is unsigned (no Ed25519 signature)")
    }
    let sig = try r.bytes(64)
    guard Ed25519.verify(signPrefix + body, signature: sig, publicKey: publicKey) else {
      throw EngineError.integrity(object: what, message: "manifest signature is invalid (forged or wrongly signed)")
    }
    do { return try JSONDecoder().decode(Manifest.self, from: Data(body)) } catch {
      throw EngineError.integrity(object: what, message: "manifest JSON is malformed: \(error)")
    }
  }
}
