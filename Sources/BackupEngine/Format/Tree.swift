import EngineContract
import Foundation

/// One entry of a snapshot's file tree.
public struct TreeNode: Sendable, Hashable {
  /// Node kinds.
  public enum Kind: UInt8, Sendable {
    case directory = 0, file = 1, symlink = 2, hardlink = 3, fifo = 4, charDevice = 5, blockDevice = 6
  }
  /// One extended attribute: its name (held as `FSName` holds names) and its value.
  public struct ExtendedAttribute: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]
    public init(name: String, value: [UInt8]) {
      self.name = name
      self.value = value
    }
  }
  public var kind: Kind
  /// Relative, "/"-separated path, held as `FSName` holds names (a name that is not UTF-8 has escaped bytes).
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
  /// The device number of a character or block device (`st_rdev`).
  public var rdev: UInt64 = 0
  /// Extended attributes (`user.*`, ACLs as `system.posix_acl_access`/`_default`, ...), in the order listed.
  public var xattrs: [ExtendedAttribute] = []

  /// The path for messages and listings (bytes that are not UTF-8 shown as `\xE9`).
  public var displayPath: String { FSName.display(path) }

  /// The path as a key that compares bytes. (Swift strings compare canonically equivalent text as equal, and
  /// "café" as one code point and as "e" with a combining accent are two different names to Linux.)
  public var pathKey: [UInt8] { Array(path.utf8) }

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
  static let extensionMagic = Array("BRTTEXT1".utf8)

  /// Tags of the optional node fields in the extension section.
  enum Field: UInt8 {
    /// The exact bytes of a path that is not UTF-8.
    case rawPath = 1
    /// The exact bytes of a link target that is not UTF-8.
    case rawLinkTarget = 2
    /// `u64` device number of a character or block device.
    case rdev = 3
    /// One extended attribute: `u32 name length || name || value`.
    case xattr = 4
  }

  /// The optional fields of a node, encoded (empty when it has none).
  static func extensionFields(_ n: TreeNode) -> [UInt8] {
    var w = ByteWriter()
    func field(_ tag: Field, _ value: [UInt8]) {
      w.u8(tag.rawValue)
      w.u32(UInt32(value.count))
      w.bytes(value)
    }
    if FSName.isEscaped(n.path), let b = FSName.bytes(n.path) { field(.rawPath, b) }
    if FSName.isEscaped(n.linkTarget), let b = FSName.bytes(n.linkTarget) { field(.rawLinkTarget, b) }
    if n.rdev != 0 {
      var v = ByteWriter()
      v.u64(n.rdev)
      field(.rdev, v.data)
    }
    for x in n.xattrs {
      var v = ByteWriter()
      let name = FSName.bytes(x.name) ?? Array(x.name.utf8)
      v.u32(UInt32(name.count))
      v.bytes(name)
      v.bytes(x.value)
      field(.xattr, v.data)
    }
    return w.data
  }

  /// Serializes nodes (sorted by path by the caller). Fields older readers do not know (raw names, device
  /// numbers, extended attributes) go into an extension section after the nodes, written only when a node has
  /// one: a tree without them is byte for byte what earlier versions wrote.
  public static func encode(_ nodes: [TreeNode]) -> [UInt8] {
    var w = ByteWriter(capacity: nodes.count * 128)
    encodeHeader(count: nodes.count, into: &w)
    var extensions: [(Int, [UInt8])] = []
    for (i, n) in nodes.enumerated() {
      let ext = extensionFields(n)
      if !ext.isEmpty { extensions.append((i, ext)) }
      encodeMainSection(n, into: &w)
      w.u32(UInt32(n.content.count))
      for c in n.content { w.bytes(c.bytes) }
    }
    if !extensions.isEmpty { encodeExtensions(extensions, into: &w) }
    return w.data
  }

  /// The tree's start: magic and node count.
  static func encodeHeader(count: Int, into w: inout ByteWriter) {
    w.bytes(magic)
    w.u32(UInt32(count))
  }

  /// A node's fields up to its content list (`u32 count || ids`, which follows).
  static func encodeMainSection(_ n: TreeNode, into w: inout ByteWriter) {
    w.u8(n.kind.rawValue)
    // A name that is not UTF-8 is written here with U+FFFD for its odd bytes (what older readers show); its
    // exact bytes are in the extension.
    w.string(FSName.lossy(n.path))
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
    w.string(FSName.lossy(n.linkTarget))
  }

  /// The extension section: `(node number, extensionFields)` in node order.
  static func encodeExtensions(_ extensions: [(Int, [UInt8])], into w: inout ByteWriter) {
    w.bytes(extensionMagic)
    w.u32(UInt32(extensions.count))
    for (i, ext) in extensions {
      w.u32(UInt32(i))
      w.u32(UInt32(ext.count))
      w.bytes(ext)
    }
  }

  /// The encoded size of a node with empty strings and no content: kind, path, mode, uid, gid, user, group,
  /// mtime (8 + 4), size, inode, device, link target, content count.
  static let minNodeSize = 1 + 4 + 4 + 4 + 4 + 4 + 4 + 12 + 8 + 8 + 8 + 4 + 4

  /// Parses serialized nodes.
  public static func decode(_ data: [UInt8]) throws -> [TreeNode] {
    var out: [TreeNode] = []
    try decode(
      data, count: { out.reserveCapacity($0) }, visit: { out.append($1) }, amend: { i, apply in apply(&out[i]) })
    return out
  }

  /// Parses serialized nodes one at a time, without holding them all: `count` gets the node count (checked against
  /// the bytes there are), `visit` each node as the main section has it, with its number; then `amend` gets the
  /// number of each node the extension section adds fields to (raw names, device numbers, extended attributes),
  /// checked, with a function that adds them to that node.
  public static func decode(
    _ data: [UInt8], count: (Int) -> Void = { _ in }, visit: (Int, TreeNode) throws -> Void,
    amend: (Int, (inout TreeNode) -> Void) throws -> Void
  ) throws {
    var r = ByteReader(data)
    guard try r.bytes(8) == magic else { throw FormatError("tree magic missing") }
    let nodeCount = Int(try r.u32())
    // Checked against the bytes there are before anything is reserved: a node takes at least `minNodeSize`.
    guard nodeCount <= r.remaining / minNodeSize else { throw FormatError("tree node count \(nodeCount) too large") }
    count(nodeCount)
    for i in 0..<nodeCount {
      guard let kind = TreeNode.Kind(rawValue: try r.u8()) else { throw FormatError("unknown tree node kind") }
      var n = TreeNode(kind: kind, path: try r.string())
      // NUL never is in a name: in a held path it marks an escaped byte, which only the extension may give.
      guard !FSName.isEscaped(n.path) else { throw FormatError("tree entry path contains NUL") }
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
      guard !FSName.isEscaped(n.linkTarget) else { throw FormatError("tree entry link target contains NUL") }
      let cc = Int(try r.u32())
      guard cc <= r.remaining / 32 else { throw FormatError("tree node content count \(cc) too large") }
      n.content.reserveCapacity(cc)
      for _ in 0..<cc { n.content.append(ID(try r.bytes(32))) }
      try visit(i, n)
    }
    if r.remaining > 0 { try decodeExtensions(&r, nodeCount: nodeCount, amend: amend) }
    guard r.remaining == 0 else { throw FormatError("\(r.remaining) bytes after the tree") }
  }

  /// Reads the extension section: per node with optional fields, `u32 node index || u32 length || fields`,
  /// each field `u8 tag || u32 length || value`. Unknown tags are skipped (fields a later version adds). Every field
  /// is checked before `amend` is called.
  static func decodeExtensions(
    _ r: inout ByteReader, nodeCount: Int, amend: (Int, (inout TreeNode) -> Void) throws -> Void
  ) throws {
    guard try r.bytes(8) == extensionMagic else { throw FormatError("unknown data after the tree's nodes") }
    let count = Int(try r.u32())
    guard count <= nodeCount, count <= r.remaining / 8 else {
      throw FormatError("tree extension count \(count) too large")
    }
    var last = -1
    for _ in 0..<count {
      let i = Int(try r.u32())
      guard i > last, i < nodeCount else { throw FormatError("tree extension for node \(i) out of order") }
      last = i
      let length = Int(try r.u32())
      var f = ByteReader(try r.bytes(length))
      var edits: [(inout TreeNode) -> Void] = []
      while f.remaining > 0 {
        let tag = try f.u8()
        let value = try f.bytes(Int(try f.u32()))
        switch Field(rawValue: tag) {
        case .rawPath:
          guard !value.contains(0) else { throw FormatError("tree entry raw path contains NUL") }
          edits.append { $0.path = FSName.decode(value) }
        case .rawLinkTarget:
          guard !value.contains(0) else { throw FormatError("tree entry raw link target contains NUL") }
          edits.append { $0.linkTarget = FSName.decode(value) }
        case .rdev:
          var v = ByteReader(value)
          let rdev = try v.u64()
          edits.append { $0.rdev = rdev }
        case .xattr:
          var v = ByteReader(value)
          let nameLength = Int(try v.u32())
          let name = try v.bytes(nameLength)
          guard !name.isEmpty, !name.contains(0) else { throw FormatError("tree entry xattr name is empty or has NUL") }
          let attr = TreeNode.ExtendedAttribute(name: FSName.decode(name), value: try v.bytes(v.remaining))
          edits.append { $0.xattrs.append(attr) }
        case nil:
          continue
        }
      }
      try amend(i) { n in for e in edits { e(&n) } }
    }
  }

  /// Whether `path` is a safe relative path: not empty, not absolute, no "."/".."/empty components, no NUL.
  public static func isSafeRelativePath(_ path: String) -> Bool {
    // One pass over the name's exact bytes (escaped bytes decoded): reject NUL and empty, "." and ".." components.
    guard let raw = FSName.bytes(path) else { return false }
    var componentLength = 0
    var dots = 0
    for b in raw {
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
    // Keys of bytes, not strings: see `TreeNode.pathKey`.
    var symlinks = Set<[UInt8]>()
    var files = Set<[UInt8]>()
    for n in nodes {
      guard isSafeRelativePath(n.path) else {
        throw EngineError.integrity(
          object: "tree entry '\(n.displayPath)'", message: "path traversal refused (absolute or '..' path)")
      }
      if n.kind == .symlink { symlinks.insert(n.pathKey) }
      if n.kind == .file { files.insert(n.pathKey) }
    }
    for n in nodes {
      var p = Substring(n.path)
      // Split on the byte "/" (not on characters: a "/" followed by a combining mark is one character).
      while !symlinks.isEmpty, let slash = p.utf8.lastIndex(of: UInt8(ascii: "/")) {
        p = p[..<slash]
        if symlinks.contains(Array(p.utf8)) {
          throw EngineError.integrity(
            object: "tree entry '\(n.displayPath)'",
            message: "path traversal refused: its parent '\(FSName.display(p))' is a symlink (symlink escape)")
        }
      }
      if n.kind == .hardlink && (!isSafeRelativePath(n.linkTarget) || !files.contains(Array(n.linkTarget.utf8))) {
        throw EngineError.integrity(
          object: "tree entry '\(n.displayPath)'",
          message: "hard link to '\(FSName.display(n.linkTarget))' refused: not a file of this snapshot")
      }
    }
  }
}

extension Manifest {
  /// A path a user gives to `ls` or `restore --path`, as a path in the tree: slashes at either end are dropped, and a
  /// path as `snapshots` lists it for a stream (`stdin:NAME`, only when this snapshot lists it) is the file NAME at
  /// the tree's root.
  public func treePath(_ given: String) -> String {
    if given.hasPrefix("stdin:"), paths.contains(given) { return String(given.dropFirst("stdin:".count)) }
    var s = Substring(given)
    while s.hasPrefix("/") { s.removeFirst() }
    while s.hasSuffix("/") { s.removeLast() }
    return String(s)
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

  /// Parses a time of the repository's records (manifests, locks, key files): they come from the storage, so through
  /// `EngineTime.parse`, which does not trap on a long fraction.
  static func parseTime(_ s: String) -> Date? { EngineTime.parse(s) }
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

  /// `decodeObject`, then the checks every reader of a manifest makes: it names this repository (`repositoryID`, the
  /// config's id) and a format version this build knows. What a snapshot listing does with each stored manifest
  /// (botrt-fuzz's `manifest` target calls it).
  public static func decodeManifest(
    _ obj: [UInt8], name: String, publicKey: [UInt8], meta: AESGCM, zstd: ZstdContext, repo: [UInt8],
    repositoryID: String
  ) throws -> Manifest {
    let m = try decodeObject(obj, name: name, publicKey: publicKey, meta: meta, zstd: zstd, repo: repo)
    guard m.repo == repositoryID else {
      throw EngineError.integrity(
        object: "snapshots/\(name)",
        message: "manifest belongs to repository \(m.repo) (replayed from another repository)")
    }
    guard m.version == 1 else {
      throw EngineError.unsupportedFormat("snapshots/\(name): manifest version \(m.version) unknown")
    }
    return m
  }
}
