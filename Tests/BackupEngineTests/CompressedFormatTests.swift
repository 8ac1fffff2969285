import Foundation
import Logging
import Testing

@testable import BackupEngine

/// Issue 18: a file that starts as an already-compressed format (gzip, zstd, png, zip, ...) is stored without zstd,
/// every chunk of it, while other files are compressed as before; both restore byte for byte.
@Suite struct CompressedFormatTests {
  @Test func signaturesAreRecognisedAndPlainTextIsNot() {
    let compressed: [[UInt8]] = [
      [0x1F, 0x8B, 0x08, 0x00], [0x28, 0xB5, 0x2F, 0xFD, 0x00], [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 0x00],
      Array("BZh91AY".utf8), [0x04, 0x22, 0x4D, 0x18], [0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C], [0x50, 0x4B, 0x03, 0x04],
      [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], [0xFF, 0xD8, 0xFF, 0xE0], Array("GIF89a".utf8),
      Array("RIFF\0\0\0\0WEBPVP8 ".utf8), Array("wOFF".utf8), Array("wOF2".utf8), Array("\0\0\0\u{18}ftypmp42".utf8),
    ]
    for c in compressed {
      #expect(c.withUnsafeBytes { CompressedFormat.starts($0) }, "\(c)")
    }
    let plain: [[UInt8]] = [
      Array("hello world\n".utf8), Array("BZh".utf8), Array("BZhx".utf8), [0x1F], [], Array("{\"a\":1}".utf8),
      Array("PK\u{05}\u{06}".utf8), [0x89, 0x50, 0x4E, 0x47],
    ]
    for p in plain {
      #expect(!p.withUnsafeBytes { CompressedFormat.starts($0) }, "\(p)")
    }
  }

  @Test func aFileInACompressedFormatIsStoredAsItIs() async throws {
    let t = try ScratchRepositorySetup(prefix: "compressed-format")
    defer { t.cleanup() }
    let repo = try await Repository.initialize(
      store: try LocalStore(root: t.dir + "/repo"), keyService: t.kek, objectLock: nil, logger: Logger(label: "t"))
    // The same very compressible 3 MiB after two different first bytes: only the gzip magic differs.
    let body = [UInt8](String(repeating: "botrt line of text\n", count: (3 << 20) / 19).utf8)
    let gz = Data([0x1F, 0x8B] + body)
    let text = Data(Array("xx".utf8) + body)
    try makeFile(atPath: t.dir + "/src/a.gz", contents: gz)
    try makeFile(atPath: t.dir + "/src/b.txt", contents: text)
    let r = try await repo.backup(BackupOptions(paths: [t.dir + "/src"]))
    let index = try await repo.loadIndexSkippingDamaged()
    let snapshot = try #require(try await repo.loadSnapshotsSkippingDamaged().first { $0.id == r.snapshotID })
    let nodes = try await repo.loadTree(snapshot, index: index)
    func stored(_ name: String) throws -> (compressed: [Bool], sealed: Int) {
      let node = try #require(nodes.first { $0.path.hasSuffix(name) })
      let entries = try node.content.map { try #require(index.lookup($0)).entry }
      return (entries.map(\.compressed), entries.reduce(0) { $0 + Int($1.sealedLength) })
    }
    let a = try stored("a.gz")
    let b = try stored("b.txt")
    #expect(!a.compressed.isEmpty && a.compressed.allSatisfy { !$0 }, "\(a)")
    #expect(a.sealed >= gz.count)
    #expect(!b.compressed.isEmpty && b.compressed.allSatisfy { $0 }, "\(b)")
    #expect(b.sealed < text.count / 10)
    _ = try await repo.restore(snapshot, index: index, options: RestoreOptions(target: t.dir + "/out"))
    #expect(FileManager.default.contents(atPath: t.dir + "/out/src/a.gz") == gz)
    #expect(FileManager.default.contents(atPath: t.dir + "/out/src/b.txt") == text)
  }
}
