import Foundation
import Testing

@testable import BackupEngine

/// Length fields of parsed structures are checked against the bytes there are before anything is allocated (what
/// hack/fuzz.sh found), and the committed fuzz corpus parses without trapping.
@Suite struct ParserBoundsTests {
  /// A tree claiming 2^32-1 nodes in 12 bytes is refused before its node array is reserved (it reserved up to
  /// 2^20 nodes, over 100 MiB, first).
  @Test func aTreeNodeCountBeyondTheBytesIsRefused() throws {
    var w = ByteWriter()
    w.bytes(TreeFormat.magic)
    w.u32(.max)
    #expect(throws: FormatError.self) { _ = try TreeFormat.decode(w.data) }
    // A real one-node tree still parses: the bound is the smallest encoded node.
    let one = TreeFormat.encode([TreeNode(kind: .directory, path: "d")])
    #expect(try TreeFormat.decode(one).count == 1)
    #expect(one.count - 12 >= TreeFormat.minNodeSize)
  }

  /// A framed object whose size prefix claims more than its compressed bytes can expand to is refused before the
  /// output is allocated (it allocated the claimed size, up to 4 GiB, first); a stored frame must match its prefix.
  @Test func aFramedSizePrefixBeyondTheBytesIsRefused() throws {
    let z = ZstdContext()
    var w = ByteWriter()
    w.u32(.max)
    w.u8(1)
    w.bytes([0x28, 0xB5, 0x2F, 0xFD, 0, 0, 0, 0])
    #expect(throws: FormatError.self) { _ = try z.decompressFramed(w.data) }
    var s = ByteWriter()
    s.u32(10)
    s.u8(0)
    s.bytes([1, 2, 3])
    #expect(throws: FormatError.self) { _ = try z.decompressFramed(s.data) }
    let big = [UInt8](repeating: 0, count: 1 << 20)
    #expect(try z.decompressFramed(z.compressFramed(big)) == big)
  }

  /// The seed corpus of hack/fuzz.sh (Fuzz/corpus) is valid: every seed parses.
  @Test func theFuzzSeedCorpusParses() throws {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus").path
    func seeds(_ t: String) throws -> [[UInt8]] {
      try FileManager.default.contentsOfDirectory(atPath: root + "/" + t).filter { $0.hasPrefix("seed-") }.sorted()
        .map { [UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/" + t + "/" + $0))) }
    }
    #expect(try seeds("index").map { try IndexFormat.decodeBody($0).count } == [2, 0])
    #expect(try seeds("tree").map { try TreeFormat.decode($0).count } == [4, 0, 4])
    #expect(try seeds("framed").count == 4)
    for s in try seeds("framed") { _ = try ZstdContext().decompressFramed(s) }
  }
}
