import EngineContract
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

  /// A config's chunker sizes and pack size are checked when it is read (botrt-fuzz `config`): avg from 2^62 made
  /// the chunker's set-up loop forever, a negative min read before the buffer, a max of 0 cut empty chunks forever.
  /// The config is self-signed, so whoever replaces it can sign any numbers.
  @Test func aConfigWithChunkSizesOutOfBoundsIsRefused() throws {
    let key = [UInt8](repeating: 4, count: 32)
    let pub = Hex.encode(try Ed25519.publicKey(privateKey: key))
    func config(_ min: Int, _ avg: Int, _ max: Int, packSize: Int = 8 << 20) throws -> Data {
      let json =
        #"{"chunker":{"algorithm":"fastcdc-gear-keyed","avg":\#(avg),"max":\#(max),"min":\#(min)},"#
        + #""compression":"zstd-3","created":"2026-01-01T00:00:00Z","id":"0123456789abcdef0123456789abcdef","#
        + #""kms":"file:///k","packSize":\#(packSize),"publicKey":"\#(pub)","version":1,"#
        + #""keyFiles":"ed25519-signed-v1"}"#
      return try Repository.encodeConfig(JSONDecoder().decode(RepoConfig.self, from: Data(json.utf8)), signingKey: key)
    }
    _ = try Repository.readConfig(try config(512 << 10, 1 << 20, 8 << 20), location: "t")
    _ = try Repository.readConfig(try config(64, 64, 64 << 20, packSize: 4 << 10), location: "t")
    let bad: [(Int, Int, Int)] = [
      (512 << 10, 1 << 62, 8 << 20), (-5, 1 << 20, 8 << 20), (0, 0, 0), (1 << 20, 1 << 19, 8 << 20),
      (512 << 10, 1 << 20, 1 << 40), (63, 1 << 20, 8 << 20),
    ]
    for (min, avg, max) in bad {
      #expect(throws: EngineError.self) { _ = try Repository.readConfig(try config(min, avg, max), location: "t") }
    }
    for packSize in [0, -1, 1 << 40] {
      #expect(throws: EngineError.self) {
        _ = try Repository.readConfig(try config(512 << 10, 1 << 20, 8 << 20, packSize: packSize), location: "t")
      }
    }
  }

  /// A time with a long fractional second does not kill the process (botrt-fuzz `result`): Foundation's
  /// ISO8601DateFormatter traps with a division by zero from about 35 digits on, and these times come from the
  /// storage (manifests, unsigned lock files, key files) and from Pods' termination messages (a result's
  /// snapshotTime). The fraction is cut to nanoseconds.
  @Test func aTimeWithALongFractionDoesNotTrap() throws {
    let long = "2026-01-02T03:04:05." + String(repeating: "5", count: 60) + "Z"
    let d = try #require(Manifest.parseTime(long))
    #expect(abs(d.timeIntervalSince1970 - 1_767_323_045.555) < 0.001)
    #expect(EngineTime.parse(long) == d)
    var r = EngineResult.starting("backup")
    r.snapshotTime = long
    #expect(r.snapshotDate == d)
    #expect(Manifest.parseTime("2026-01-02T03:04:05Z") == Date(timeIntervalSince1970: 1_767_323_045))
    #expect(Manifest.parseTime("2026-01-02T03:04:05.123456789+02:00") != nil)
    #expect(Manifest.parseTime("2026-01-02T03:04:05." + String(repeating: "5", count: 60)) == nil)
    // botrt-fuzz `manifest`: digits after a letter in the fraction trapped in ICU too; only RFC 3339's exact shape
    // reaches the formatter now (Fuzz/corpus/manifest/edge-fraction-exponent is the input).
    let exponent = "2026-01-02T03:04:05.5555555555555555555555555e" + String(repeating: "5", count: 34) + "Z"
    #expect(Manifest.parseTime(exponent) == nil)
    #expect(EngineTime.parse(exponent) == nil)
    for bad in [
      "2026-01-02 03:04:05Z", "2026-01-02T03:04:05", "2026-01-02T03:04:05.Z", "2026-01-02T03:04:05+0200",
      "2026-01-02T03:04:05Z ", "x2026-01-02T03:04:05Z", "2026-01-02T03:04:05.5+02:00x",
    ] {
      #expect(EngineTime.parse(bad) == nil, "\(bad)")
    }
    #expect(EngineTime.parse("2026-01-02T03:04:05-07:30") != nil)
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

    // The seeds of the repository's signed objects reach past the checks they are meant to pass (the harness keys of
    // Sources/botrt-fuzz: meta 7s, repository 1s, signing 3s, KEK 5s).
    let config = try seeds("config")
    let (real, realKey) = try Repository.readConfig(Data(config[0].dropFirst()), location: "seed")
    #expect(real.keyFiles == KeyFile.signedScheme)
    let keyfile = try seeds("keyfile")[0]
    let nul = try #require(keyfile.firstIndex(of: 0))
    #expect(throws: Never.self) {
      try Repository.checkKeyFile(Data(keyfile[(nul + 1)...]), config: real, configPublicKey: realKey).get()
    }
    let manifests = try seeds("manifest")
    let meta = try AESGCM(key: [UInt8](repeating: 7, count: 32))
    let repo = [UInt8](repeating: 1, count: 32)
    let pub = try Ed25519.publicKey(privateKey: [UInt8](repeating: 3, count: 32))
    let m = try SnapshotFormat.decodeManifest(
      Array(manifests[0].dropFirst()), name: "seed", publicKey: pub, meta: meta, zstd: ZstdContext(), repo: repo,
      repositoryID: Hex.encode(repo))
    #expect(m.seq == 3 && m.paths == ["/data"])
  }
}
