/// 128 bits of two keyed hashes (SipHash, seeded per process) of a path's bytes: how the parent snapshot's files are
/// found without holding their paths. A file is taken from the parent only when its size, mtime and inode match
/// too, so two paths would have to collide in 128 keyed bits and agree in those for a changed file to be missed.
struct PathHash: Hashable {
  var a: UInt64
  var b: UInt64

  init(_ path: String) {
    func hash(_ bytes: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
      var h1 = Hasher()
      h1.combine(UInt8(1))
      h1.combine(bytes: bytes)
      var h2 = Hasher()
      h2.combine(UInt8(2))
      h2.combine(bytes: bytes)
      return (UInt64(bitPattern: Int64(h1.finalize())), UInt64(bitPattern: Int64(h2.finalize())))
    }
    let utf8 = path.utf8
    (a, b) =
      utf8.withContiguousStorageIfAvailable { hash(UnsafeRawBufferPointer($0)) }
      ?? Array(utf8).withUnsafeBytes { hash($0) }
  }
}

/// What a backup compares a file of the parent snapshot with (a fraction of its `TreeNode`).
struct ParentFile: Equatable {
  var size: UInt64
  var mtimeSec: Int64
  var mtimeNsec: UInt32
  var inode: UInt64
  var content: [ID]
}

/// One parent file in a `FlatTable` (56 bytes; its content ids in `ParentFiles.contents`).
struct ParentRecord: FlatRecord {
  var key: PathHash
  var size: UInt64
  var mtimeSec: Int64
  var mtimeNsec: UInt32
  var contentCount: UInt32
  var inode: UInt64
  var contentStart: Int
}

/// The parent snapshot's files by path, for a backup's scan: about 90 bytes a file and 32 a chunk, where a
/// `Dictionary` of whole `TreeNode`s by path took about 450 (its path, node and content arrays each allocated). Loaded
/// from the serialized tree node by node (the tree is never decoded into nodes all at once), emptied when the scan
/// is done. Written before the scan starts and after it ends, read by the scan's thread only.
final class ParentFiles: @unchecked Sendable {
  private var table = FlatTable<ParentRecord>()
  private var contents: [ID] = []

  init() {}

  var count: Int { table.count }

  /// Adds a file (the first of a path that is there twice stays).
  func add(path: String, _ f: ParentFile) {
    let key = PathHash(path)
    guard table.find(key) == nil, f.content.count <= Int(UInt32.max) else { return }
    table.insert(
      ParentRecord(
        key: key, size: f.size, mtimeSec: f.mtimeSec, mtimeNsec: f.mtimeNsec, contentCount: UInt32(f.content.count),
        inode: f.inode, contentStart: contents.count))
    contents += f.content
  }

  func add(_ n: TreeNode) {
    add(
      path: n.path,
      ParentFile(size: n.size, mtimeSec: n.mtimeSec, mtimeNsec: n.mtimeNsec, inode: n.inode, content: n.content))
  }

  /// The file at `path` (as `TreeNode.path` holds it), or nil.
  func lookup(_ path: String) -> ParentFile? {
    guard let r = table.lookup(PathHash(path)) else { return nil }
    return ParentFile(
      size: r.size, mtimeSec: r.mtimeSec, mtimeNsec: r.mtimeNsec, inode: r.inode,
      content: Array(contents[r.contentStart..<(r.contentStart + Int(r.contentCount))]))
  }

  /// Adds the files of a serialized tree. A name that is not UTF-8 is exact only in the tree's extension section,
  /// after the nodes: a file whose name has U+FFFD in the main section waits for it.
  func load(_ bytes: [UInt8]) throws {
    var waiting: [Int: TreeNode] = [:]
    try TreeFormat.decode(
      bytes,
      visit: { i, n in
        guard n.kind == .file else { return }
        // 0xEF starts U+FFFD's UTF-8 (and that of the other code points from U+F000): those wait, the rest go in now.
        if n.path.utf8.contains(0xEF) { waiting[i] = n } else { add(n) }
      },
      amend: { i, apply in
        guard var n = waiting.removeValue(forKey: i) else { return }
        apply(&n)
        add(n)
      })
    for i in waiting.keys.sorted() { add(waiting[i]!) }
  }

  /// Drops every file.
  func removeAll() {
    table = FlatTable()
    contents = []
  }
}
