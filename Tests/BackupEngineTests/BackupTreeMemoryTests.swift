import Foundation
import Logging
import Testing

@testable import BackupEngine

@Suite struct ParentFilesTests {
  static func file(_ path: String, _ n: UInt64, chunks: Int = 1) -> TreeNode {
    var f = TreeNode(
      kind: .file, path: path, mtimeSec: Int64(n), mtimeNsec: UInt32(n % 1000), size: n * 10, inode: n + 7,
      content: (0..<UInt64(chunks)).map { BlobTableTests.id(n * 100 + $0) })
    f.xattrs = n % 3 == 0 ? [.init(name: "user.n", value: [UInt8(n % 256)])] : []
    return f
  }

  /// The parent's files as a Dictionary of whole nodes (what a backup held before) and as `ParentFiles` agree, for
  /// names that are not UTF-8 (held exactly only in the tree's extension section), names with U+FFFD in them, and
  /// files without content.
  @Test func agreesWithWholeNodes() throws {
    var nodes: [TreeNode] = [TreeNode(kind: .directory, path: "d")]
    for i in 0..<3000 as Range<UInt64> { nodes.append(Self.file("d/f\(i)", i, chunks: Int(i % 4))) }
    nodes.append(Self.file(FSName.decode(Array("d/".utf8) + [0x65, 0xE9]), 5000))
    nodes.append(Self.file(FSName.decode(Array("d/".utf8) + [0x65, 0xEA]), 5001))
    nodes.append(Self.file("d/e\u{FFFD}", 5002))
    nodes.append(TreeNode(kind: .symlink, path: "d/l", linkTarget: "f1"))
    nodes.sort { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
    let bytes = TreeFormat.encode(nodes)

    let p = ParentFiles()
    try p.load(bytes)
    var whole: [[UInt8]: TreeNode] = [:]
    for n in try TreeFormat.decode(bytes) where n.kind == .file { whole[n.pathKey] = n }
    #expect(p.count == whole.count)
    #expect(p.count == 3003)
    for n in whole.values {
      #expect(
        p.lookup(n.path)
          == ParentFile(size: n.size, mtimeSec: n.mtimeSec, mtimeNsec: n.mtimeNsec, inode: n.inode, content: n.content))
    }
    #expect(p.lookup(FSName.decode(Array("d/".utf8) + [0x65, 0xE9]))?.size == 50000)
    #expect(p.lookup(FSName.decode(Array("d/".utf8) + [0x65, 0xEA]))?.size == 50010)
    #expect(p.lookup("d/e\u{FFFD}")?.size == 50020)
    #expect(p.lookup("d/l") == nil)
    #expect(p.lookup("d") == nil)
    #expect(p.lookup("d/f3000") == nil)
    p.removeAll()
    #expect(p.lookup("d/f1") == nil)
    #expect(p.count == 0)
  }

  /// The node-by-node decoder gives what the whole decoder gives, and refuses what it refuses.
  @Test func streamingDecodeMatches() throws {
    var nodes = (0..<50 as Range<UInt64>).map { Self.file("f\($0)", $0) }
    nodes[7].rdev = 9
    nodes.sort { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
    let bytes = TreeFormat.encode(nodes)
    var seen: [TreeNode] = []
    var amended: [Int] = []
    try TreeFormat.decode(
      bytes, visit: { seen.append($1) },
      amend: { i, apply in
        amended.append(i)
        apply(&seen[i])
      })
    #expect(seen == nodes)
    #expect(amended == nodes.indices.filter { !nodes[$0].xattrs.isEmpty || nodes[$0].rdev != 0 })
    // Bytes after the extension section are refused.
    let bad = bytes + [1, 2, 3]
    #expect(throws: FormatError.self) { try TreeFormat.decode(bad, visit: { _, _ in }, amend: { _, _ in }) }
  }
}

@Suite struct ScannedNodesTests {
  /// Nodes of every kind, some with names that are not UTF-8, extended attributes or device numbers, in scan order
  /// (not path order: "a-b" sorts before "a/x"); files from 0 to 3 chunks.
  static func nodes(_ n: Int) -> [TreeNode] {
    var out: [TreeNode] = [TreeNode(kind: .directory, path: "a"), TreeNode(kind: .file, path: "a-b", size: 1)]
    for i in 0..<n {
      var f = ParentFilesTests.file(i % 7 == 0 ? FSName.decode(Array("a/\(i)".utf8) + [0xE9]) : "a/f\(i)", UInt64(i))
      f.content = (0..<(i % 4)).map { BlobTableTests.id(UInt64(i * 10 + $0)) }
      if i % 11 == 0 { f.rdev = UInt64(i) }
      out.append(f)
      if i % 50 == 0 { out.append(TreeNode(kind: .symlink, path: "a/s\(i)", linkTarget: "f\(i)")) }
    }
    return out
  }

  /// The tree written node by node from the scanned nodes (files being read given through their slots) is what
  /// `TreeFormat.encode` makes of the nodes sorted by path, whatever the flush size.
  @Test(arguments: [1, 100, 1 << 20]) func encodesAsTheWholeTree(flushAt: Int) throws {
    let all = Self.nodes(3000)
    let scanned = ScannedNodes()
    var slots: [[ID]] = []
    for n in all {
      if n.kind == .file && n.size % 3 == 1 {
        slots.append(n.content)
        scanned.append(n, slot: slots.count - 1)
      } else {
        scanned.append(n)
      }
    }
    let sorted = all.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
    #expect(sorted != all)
    var out: [UInt8] = []
    var finals = 0
    try scanned.encode(
      flushAt: flushAt, slotContent: { slots[$0] },
      emit: { buffer, final in
        out += buffer
        buffer.removeAll()
        if final { finals += 1 }
      })
    #expect(finals == 1)
    #expect(out == TreeFormat.encode(sorted))
    #expect(scanned.count == all.count)
    #expect(scanned.dirs == 1)
    #expect(scanned.files == all.count - 1)
    #expect(scanned.bytes == all.filter { $0.kind == .file }.reduce(Int64(0)) { $0 + Int64($1.size) })
  }

  /// A tree of several blobs stored from the scanned nodes, a piece at a time, has the blob ids the whole tree cut
  /// at once has (so unchanged trees still deduplicate), and its blobs read back as the tree.
  @Test func storesTheBlobsOfTheWholeTree() async throws {
    let t = try ScratchRepositorySetup(prefix: "botrt-scanned")
    defer { t.cleanup() }
    let repo = try await Repository.initialize(
      store: try LocalStore(root: t.dir + "/repo"), keyService: t.kek, objectLock: nil, logger: Logger(label: "t"))
    let all = Self.nodes(30000)
    let scanned = ScannedNodes()
    for n in all { scanned.append(n) }
    let bytes = TreeFormat.encode(all.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) })
    let (index, _) = try await repo.loadIndex()
    let whole = repo.treePieces(bytes, index: index).ids
    #expect(whole.count > 1)
    let ids = try repo.storeTree(scanned, run: BackupRun(), index: index)
    #expect(ids == whole)
    var read: [UInt8] = []
    for id in ids {
      read += try await repo.readBlob(
        id, index: index, ciphers: [.meta: try AESGCM(key: repo.metaKey)], zstd: ZstdContext())
    }
    #expect(read == bytes)
  }
}
