import Foundation
import Testing

@testable import BackupEngine

@Suite struct FormatTests {
  let repo = Crypto.randomBytes(16)

  func entry(_ i: UInt8, offset: UInt32) -> BlobEntry {
    BlobEntry(
      id: ID(Array(repeating: i, count: 32)), type: .data, keyType: .files, compressed: i % 2 == 0, offset: offset,
      sealedLength: 100, rawLength: 150)
  }

  @Test func packHeaderRoundTripAndTamper() throws {
    let meta = try AESGCM(key: Crypto.randomBytes(32))
    var body = [UInt8](repeating: 0xAB, count: 300)
    let es = [entry(1, offset: 0), entry(2, offset: 100), entry(3, offset: 200)]
    try PackFormat.finish(body: &body, entries: es, meta: meta, repo: repo)
    let (parsed, _) = try PackFormat.parseHeader(tail: body, packSize: body.count, meta: meta, repo: repo)
    #expect(parsed == es)
    // A short tail asks for more.
    let (none, needed) = try PackFormat.parseHeader(
      tail: Array(body.suffix(20)), packSize: body.count, meta: meta, repo: repo)
    #expect(none == nil)
    #expect(needed == body.count - 300)
    var bad = body
    bad[body.count - 30] ^= 1
    #expect(throws: FormatError.self) {
      try PackFormat.parseHeader(tail: bad, packSize: bad.count, meta: meta, repo: repo)
    }
    #expect(throws: FormatError.self) {
      try PackFormat.parseHeader(tail: Array(body.dropLast()), packSize: body.count - 1, meta: meta, repo: repo)
    }
    // Another repository's id does not authenticate.
    #expect(throws: FormatError.self) {
      try PackFormat.parseHeader(tail: body, packSize: body.count, meta: meta, repo: Crypto.randomBytes(16))
    }
  }

  @Test func indexRoundTripAndTamper() throws {
    let meta = try AESGCM(key: Crypto.randomBytes(32))
    let z = ZstdContext()
    let packs = [
      IndexPack(
        packID: ID(Crypto.randomBytes(32)), packSize: 1234, entries: [entry(1, offset: 0), entry(2, offset: 100)]),
      IndexPack(packID: ID(Crypto.randomBytes(32)), packSize: 99, entries: []),
    ]
    let obj = try IndexFormat.encodeObject(packs, meta: meta, zstd: z, repo: repo)
    let back = try IndexFormat.decodeObject(obj, meta: meta, zstd: z, repo: repo)
    #expect(back.map { $0.packID } == packs.map { $0.packID })
    #expect(back[0].entries == packs[0].entries)
    #expect(back[0].packSize == 1234)
    var bad = obj
    bad[bad.count / 2] ^= 0x10
    #expect(throws: FormatError.self) { try IndexFormat.decodeObject(bad, meta: meta, zstd: z, repo: repo) }
  }

  @Test func treeRoundTrip() throws {
    let nodes = [
      TreeNode(
        kind: .directory, path: "d", mode: 0o750, uid: 1, gid: 2, user: "u", group: "g", mtimeSec: 5, mtimeNsec: 6),
      TreeNode(
        kind: .file, path: "d/f", mode: 0o600, size: 10, inode: 77, device: 3,
        content: [ID(Crypto.randomBytes(32)), ID(Crypto.randomBytes(32))]),
      TreeNode(kind: .symlink, path: "d/l", linkTarget: "../x"),
      TreeNode(kind: .hardlink, path: "d/h", linkTarget: "d/f"),
    ]
    #expect(try TreeFormat.decode(TreeFormat.encode(nodes)) == nodes)
    #expect(throws: FormatError.self) { try TreeFormat.decode(Array(TreeFormat.encode(nodes).dropLast(5))) }
  }

  @Test func pathTraversalIsRefused() throws {
    for bad in ["../evil", "/etc/passwd", "a/../../b", "a//b", "./a", ""] {
      #expect(!TreeFormat.isSafeRelativePath(bad), "\(bad)")
      #expect(throws: EngineError.self) { try TreeFormat.checkSafe([TreeNode(kind: .file, path: bad)]) }
    }
    #expect(TreeFormat.isSafeRelativePath("a/b..c/d"))
    // A file below a symlink entry would be written through the link.
    #expect(throws: EngineError.self) {
      try TreeFormat.checkSafe([
        TreeNode(kind: .symlink, path: "a", linkTarget: "/etc"), TreeNode(kind: .file, path: "a/passwd"),
      ])
    }
    #expect(throws: EngineError.self) {
      try TreeFormat.checkSafe([TreeNode(kind: .hardlink, path: "h", linkTarget: "../../etc/shadow")])
    }
    try TreeFormat.checkSafe([
      TreeNode(kind: .symlink, path: "a", linkTarget: "/etc"), TreeNode(kind: .file, path: "b"),
      TreeNode(kind: .hardlink, path: "c", linkTarget: "b"),
    ])
  }

  @Test func manifestSignatureAndForgery() throws {
    let meta = try AESGCM(key: Crypto.randomBytes(32))
    let z = ZstdContext()
    let sk = Ed25519.generatePrivateKey()
    let pk = try Ed25519.publicKey(privateKey: sk)
    let m = Manifest(
      version: 1, repo: Hex.encode(repo), seq: 3, parent: nil, time: "2026-01-01T00:00:00.000Z", hostname: "h",
      dataType: "files", paths: ["p"], stdinName: nil, tags: ["k": "v"], tree: [],
      summary: .init(files: 1, dirs: 0, bytes: 5, errors: 0))
    let obj = try SnapshotFormat.encodeObject(m, signingKey: sk, meta: meta, zstd: z, repo: repo)
    #expect(try SnapshotFormat.decodeObject(obj, name: "x", publicKey: pk, meta: meta, zstd: z, repo: repo) == m)
    // Signed by another key: refused even though it decrypts.
    let forged = try SnapshotFormat.encodeObject(
      m, signingKey: Ed25519.generatePrivateKey(), meta: meta, zstd: z, repo: repo)
    #expect(throws: EngineError.self) {
      try SnapshotFormat.decodeObject(forged, name: "x", publicKey: pk, meta: meta, zstd: z, repo: repo)
    }
    var flipped = obj
    flipped[40] ^= 4
    #expect(throws: EngineError.self) {
      try SnapshotFormat.decodeObject(flipped, name: "x", publicKey: pk, meta: meta, zstd: z, repo: repo)
    }
    #expect(try SnapshotFormat.canonical(m) == SnapshotFormat.canonical(m))
  }

  @Test func idHexRoundTrip() {
    let b = Crypto.randomBytes(32)
    let id = ID(b)
    #expect(id.bytes == b)
    #expect(ID(hex: id.hex) == id)
    #expect(ID(hex: "zz") == nil)
  }
}

/// Names as bytes, and the tree's extension section (issue 15: every kind of file, restored exactly).
@Suite struct TreeExtensionTests {
  @Test func namesThatAreNotUTF8RoundTripExactly() throws {
    let cases: [[UInt8]] = [
      Array("plain".utf8), Array("été".utf8), [0x65, 0xE9, 0x74, 0xE9], [0xFF], [0xC3], [0xED, 0xA0, 0x80],
      [0xF4, 0x90, 0x80, 0x80], [0xC0, 0xAF], Array("a\u{301}".utf8) + [0x80], [0xE2, 0x82],
    ]
    var held = Set<String>()
    for raw in cases {
      let s = FSName.decode(raw)
      #expect(FSName.bytes(s) == raw, "\(raw)")
      // A valid UTF-8 name is held unchanged; any other has an escape (NUL), so the two never collide.
      #expect(FSName.isEscaped(s) == (String(validating: raw, as: UTF8.self) == nil), "\(raw)")
      held.insert(s)
    }
    #expect(held.count == cases.count)
    #expect(FSName.display(FSName.decode([0x65, 0xE9, 0x74, 0xE9])) == "e\\xE9t\\xE9")
    // An escape never stands for an ASCII byte (it could spell "/" or ".."), and must be well formed.
    for bad in ["\u{0}2F", "\u{0}2E\u{0}2E", "a\u{0}", "\u{0}E", "\u{0}zz", "\u{0}e9"] {
      #expect(FSName.bytes(bad) == nil, "\(bad.debugDescription)")
      #expect(!TreeFormat.isSafeRelativePath("d/" + bad), "\(bad.debugDescription)")
    }
    #expect(TreeFormat.isSafeRelativePath("d/" + FSName.decode([0x65, 0xE9])))
    // "/" followed by a combining mark is one Swift character but still a separator: the check sees the "..".
    #expect(!TreeFormat.isSafeRelativePath("a/../\u{301}x"))
    #expect(RestoreRoot.components("a/\u{301}b/c").map(String.init) == ["a", "\u{301}b", "c"])
  }

  @Test func extensionFieldsRoundTripAndPlainTreesAreUnchanged() throws {
    let plain = [
      TreeNode(kind: .directory, path: "d", mode: 0o755),
      TreeNode(kind: .file, path: "d/f", size: 3, content: [ID(Crypto.randomBytes(32))]),
    ]
    let plainBytes = TreeFormat.encode(plain)
    // Without new fields the encoding is what earlier versions wrote: no extension section.
    #expect(!plainBytes.containsSequence(Array("BRTTEXT1".utf8)))
    let odd = FSName.decode(Array("d/".utf8) + [0x65, 0xE9, 0x74, 0xE9])
    var f = TreeNode(kind: .file, path: odd, size: 3, content: plain[1].content)
    f.xattrs = [
      .init(name: "user.botrt", value: Array("value".utf8)),
      .init(name: "system.posix_acl_access", value: [2, 0, 0, 0, 1, 0, 6, 0]),
      .init(name: "user.empty", value: []),
    ]
    var dev = TreeNode(kind: .charDevice, path: "d/null", mode: 0o666)
    dev.rdev = 0x103
    let nodes = [
      plain[0], f, TreeNode(kind: .hardlink, path: "d/h", linkTarget: odd), TreeNode(kind: .fifo, path: "d/p"),
      dev, TreeNode(kind: .blockDevice, path: "d/b"),
      TreeNode(kind: .symlink, path: "d/l", linkTarget: FSName.decode([0x2E, 0x2E, 0x2F, 0xFF])),
    ]
    let bytes = TreeFormat.encode(nodes)
    #expect(try TreeFormat.decode(bytes) == nodes)
    try TreeFormat.checkSafe(try TreeFormat.decode(bytes))
    // An engine that knows no extension reads the path field: U+FFFD where the bytes are not UTF-8.
    #expect(bytes.containsSequence(Array("d/e\u{FFFD}t\u{FFFD}".utf8)))
    // Damage is refused: cut short, garbage after the nodes, NUL in a plain path field.
    #expect(throws: FormatError.self) { try TreeFormat.decode(Array(bytes.dropLast(3))) }
    #expect(throws: FormatError.self) { try TreeFormat.decode(plainBytes + [1, 2, 3]) }
    #expect(throws: FormatError.self) {
      try TreeFormat.decode(TreeFormat.encode([TreeNode(kind: .file, path: "x")]).replacing(Array("x".utf8), with: [0]))
    }
    // Unknown fields (a later version's) are skipped.
    var w = ByteWriter()
    w.bytes(plainBytes)
    w.bytes(Array("BRTTEXT1".utf8))
    w.u32(1)
    w.u32(1)
    w.u32(8)
    w.u8(200)
    w.u32(3)
    w.bytes([1, 2, 3])
    #expect(try TreeFormat.decode(w.data) == plain)
  }

  /// A tree laid out by hand as versions before the extension section wrote it (docs/repository-format.md section
  /// 7) decodes to the same nodes and encodes back to the same bytes: old snapshots read as before.
  @Test func aTreeAsEarlierVersionsWroteItIsReadAndWrittenUnchanged() throws {
    let blob = ID(Crypto.randomBytes(32))
    var w = ByteWriter()
    w.bytes(Array("BRTTREE1".utf8))
    w.u32(3)
    func node(
      _ kind: UInt8, _ path: String, mode: UInt32, size: UInt64 = 0, link: String = "", content: [ID] = []
    ) {
      w.u8(kind)
      w.string(path)
      for v in [mode, 1000, 1001] { w.u32(v) }
      w.string("app")
      w.string("app")
      w.i64(-86_400)
      w.u32(999_999_999)
      for v in [size, 42, 2049] { w.u64(v) }
      w.string(link)
      w.u32(UInt32(content.count))
      for c in content { w.bytes(c.bytes) }
    }
    node(0, "data", mode: 0o2775)
    node(1, "data/f", mode: 0o600, size: 5, content: [blob])
    node(2, "data/l", mode: 0o777, link: "f")
    let nodes = try TreeFormat.decode(w.data)
    #expect(nodes.map(\.kind) == [.directory, .file, .symlink])
    #expect(nodes[1].content == [blob] && nodes[1].mtimeSec == -86_400 && nodes[2].linkTarget == "f")
    #expect(nodes.allSatisfy { $0.xattrs.isEmpty && $0.rdev == 0 && !FSName.isEscaped($0.path) })
    #expect(TreeFormat.encode(nodes) == w.data)
  }

  @Test func sparseWritesLeaveAlignedZeroBlocksUnwritten() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-sparse-\(UUID().uuidString)").path
    defer { unlink(path) }
    let fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0o600)
    #expect(fd >= 0)
    defer { close(fd) }
    var data = [UInt8](repeating: 0, count: 8 << 20)
    for i in 0..<100 { data[(3 << 20) + 17 + i] = UInt8(i + 1) }
    let tail = try data.withUnsafeBytes { try FileMetadata.writeSparse(fd: fd, $0, offset: 1000, what: path) }
    #expect(tail)
    #expect(ftruncate(fd, off_t(1000 + data.count)) == 0)
    var st = stat()
    #expect(fstat(fd, &st) == 0)
    #expect(Int(st.st_blocks) * 512 <= 64 << 10, "\(st.st_blocks) blocks")
    var back = [UInt8](repeating: 0xAA, count: data.count)
    #expect(pread(fd, &back, back.count, 1000) == back.count)
    #expect(back == data)
    #expect(FileMetadata.isZero([UInt8]([0, 0, 0]), 3) && !FileMetadata.isZero([UInt8]([0, 0, 1]), 3))
  }
}

extension Array where Element == UInt8 {
  fileprivate func containsSequence(_ s: [UInt8]) -> Bool {
    guard s.count <= count else { return false }
    return (0...(count - s.count)).contains { Array(self[$0..<($0 + s.count)]) == s }
  }
}
