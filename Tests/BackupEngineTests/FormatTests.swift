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
