import Foundation

/// A 32-byte id (blob, pack, index or snapshot), hashable without allocation.
public struct ID: Hashable, Sendable, Comparable, CustomStringConvertible {
  public var a: UInt64, b: UInt64, c: UInt64, d: UInt64
  /// From 32 bytes.
  public init(_ bytes: [UInt8]) {
    precondition(bytes.count == 32, "an ID has 32 bytes")
    func w(_ o: Int) -> UInt64 {
      var v: UInt64 = 0
      for i in 0..<8 { v = v << 8 | UInt64(bytes[o + i]) }
      return v
    }
    a = w(0)
    b = w(8)
    c = w(16)
    d = w(24)
  }
  /// From 64 hex characters, or nil.
  public init?(hex: String) {
    guard hex.utf8.count == 64, let b = Hex.decode(hex) else { return nil }
    self.init(b)
  }
  /// The 32 bytes.
  public var bytes: [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(32)
    for w in [a, b, c, d] {
      for i in (0..<8).reversed() { out.append(UInt8(truncatingIfNeeded: w >> (8 * UInt64(i)))) }
    }
    return out
  }
  public var hex: String { Hex.encode(bytes) }
  public var description: String { hex }
  public var short: String { String(hex.prefix(10)) }
  public static func < (l: ID, r: ID) -> Bool { (l.a, l.b, l.c, l.d) < (r.a, r.b, r.c, r.d) }
}

/// What a blob holds.
public enum BlobType: UInt8, Sendable, Codable { case data = 0, tree = 1 }

/// Which key encrypts a blob; also the data types a backup can declare.
public enum KeyType: UInt8, Sendable, Codable, CaseIterable {
  case meta = 0, files = 1, database = 2, logs = 3
  /// The key's name in the key file.
  public var name: String {
    switch self {
    case .meta: return "meta"
    case .files: return "files"
    case .database: return "database"
    case .logs: return "logs"
    }
  }
  /// Parses a data type name (files, database, logs).
  public init?(dataType: String) {
    switch dataType {
    case "files": self = .files
    case "database": self = .database
    case "logs": self = .logs
    default: return nil
    }
  }
}

/// One blob's entry in a pack header and in the index (48 bytes on storage).
public struct BlobEntry: Sendable, Hashable {
  public var id: ID
  public var type: BlobType
  public var keyType: KeyType
  public var compressed: Bool
  public var offset: UInt32
  public var sealedLength: UInt32
  public var rawLength: UInt32

  public static let encodedSize = 48

  public init(
    id: ID, type: BlobType, keyType: KeyType, compressed: Bool, offset: UInt32, sealedLength: UInt32, rawLength: UInt32
  ) {
    self.id = id
    self.type = type
    self.keyType = keyType
    self.compressed = compressed
    self.offset = offset
    self.sealedLength = sealedLength
    self.rawLength = rawLength
  }

  func encode(into w: inout ByteWriter) {
    w.bytes(id.bytes)
    w.u8(type.rawValue)
    w.u8(keyType.rawValue)
    w.u8(compressed ? 1 : 0)
    w.u8(0)
    w.u32(offset)
    w.u32(sealedLength)
    w.u32(rawLength)
  }

  static func decode(_ r: inout ByteReader) throws -> BlobEntry {
    let id = ID(try r.bytes(32))
    guard let t = BlobType(rawValue: try r.u8()) else { throw FormatError("unknown blob type") }
    guard let k = KeyType(rawValue: try r.u8()) else { throw FormatError("unknown key type") }
    let c = try r.u8()
    _ = try r.u8()
    return BlobEntry(
      id: id, type: t, keyType: k, compressed: c == 1, offset: try r.u32(), sealedLength: try r.u32(),
      rawLength: try r.u32())
  }

  /// The AES-GCM associated data binding a sealed blob to its id, type, key and repository.
  public static func aad(repo: [UInt8], type: BlobType, keyType: KeyType, id: ID) -> [UInt8] {
    Array("botrt-blob-v1".utf8) + repo + [type.rawValue, keyType.rawValue] + id.bytes
  }
}

/// Pack encoding: sealed blobs, then the sealed header, its length and a magic trailer.
public enum PackFormat {
  public static let magic = Array("BRTPACK1".utf8)
  static func headerAAD(repo: [UInt8]) -> [UInt8] { Array("botrt-pack-header-v1".utf8) + repo }

  /// Appends the sealed header and trailer to `body` (the concatenated sealed blobs).
  public static func finish(body: inout [UInt8], entries: [BlobEntry], meta: AESGCM, repo: [UInt8]) throws {
    var w = ByteWriter(capacity: entries.count * BlobEntry.encodedSize)
    for e in entries { e.encode(into: &w) }
    let sealed = try meta.seal(w.data, aad: headerAAD(repo: repo))
    body.append(contentsOf: sealed)
    var t = ByteWriter()
    t.u32(UInt32(sealed.count))
    body.append(contentsOf: t.data)
    body.append(contentsOf: magic)
  }

  /// Length of the trailer (header length + magic).
  public static let trailerSize = 12

  /// Parses the header from the pack's tail bytes (`tail` ends at the pack's end).
  /// Returns nil when `tail` is too short to hold the whole sealed header (`needed` is then the length to fetch).
  public static func parseHeader(tail: [UInt8], packSize: Int, meta: AESGCM, repo: [UInt8]) throws -> (
    entries: [BlobEntry]?, needed: Int
  ) {
    guard tail.count >= trailerSize, Array(tail.suffix(8)) == magic else {
      throw FormatError("pack trailer magic missing (truncated or not a pack)")
    }
    var r = ByteReader(Array(tail[(tail.count - 12)..<(tail.count - 8)]))
    let hl = Int(try r.u32())
    let needed = hl + trailerSize
    guard needed <= packSize else { throw FormatError("pack header length \(hl) exceeds the pack size \(packSize)") }
    if tail.count < needed { return (nil, needed) }
    let sealed = Array(tail[(tail.count - needed)..<(tail.count - trailerSize)])
    let plain: [UInt8]
    do { plain = try meta.open(sealed, aad: headerAAD(repo: repo)) } catch {
      throw FormatError("pack header does not authenticate (damaged or foreign pack)")
    }
    guard plain.count % BlobEntry.encodedSize == 0 else { throw FormatError("pack header has a partial entry") }
    var hr = ByteReader(plain)
    var out: [BlobEntry] = []
    let headerStart = packSize - needed
    for _ in 0..<(plain.count / BlobEntry.encodedSize) {
      let e = try BlobEntry.decode(&hr)
      guard Int(e.offset) + Int(e.sealedLength) <= headerStart else {
        throw FormatError("pack header entry \(e.id.short) points past the blobs")
      }
      out.append(e)
    }
    return (out, needed)
  }
}

/// One pack's entries in an index file.
public struct IndexPack: Sendable {
  public var packID: ID
  public var packSize: UInt64
  public var entries: [BlobEntry]
  public init(packID: ID, packSize: UInt64, entries: [BlobEntry]) {
    self.packID = packID
    self.packSize = packSize
    self.entries = entries
  }
}

/// Index file encoding.
public enum IndexFormat {
  static let magic = Array("BRTIDX1\0".utf8)
  static let objectMagic = Array("BRTI".utf8) + [1]
  static func aad(repo: [UInt8]) -> [UInt8] { Array("botrt-index-v1".utf8) + repo }

  /// The plaintext body.
  public static func encodeBody(_ packs: [IndexPack]) -> [UInt8] {
    var w = ByteWriter()
    w.bytes(magic)
    w.u32(UInt32(packs.count))
    for p in packs {
      w.bytes(p.packID.bytes)
      w.u64(p.packSize)
      w.u32(UInt32(p.entries.count))
      for e in p.entries { e.encode(into: &w) }
    }
    return w.data
  }

  /// Parses a plaintext body.
  public static func decodeBody(_ body: [UInt8]) throws -> [IndexPack] {
    var r = ByteReader(body)
    guard try r.bytes(8) == magic else { throw FormatError("index magic missing") }
    let n = Int(try r.u32())
    var out: [IndexPack] = []
    for _ in 0..<n {
      let id = ID(try r.bytes(32))
      let size = try r.u64()
      let m = Int(try r.u32())
      guard m <= r.remaining / BlobEntry.encodedSize else { throw FormatError("index entry count \(m) too large") }
      var es: [BlobEntry] = []
      es.reserveCapacity(m)
      for _ in 0..<m { es.append(try BlobEntry.decode(&r)) }
      out.append(IndexPack(packID: id, packSize: size, entries: es))
    }
    return out
  }

  /// The stored object: magic, then the sealed, compressed body.
  public static func encodeObject(_ packs: [IndexPack], meta: AESGCM, zstd: ZstdContext, repo: [UInt8]) throws
    -> [UInt8]
  {
    objectMagic + (try meta.seal(zstd.compressFramed(encodeBody(packs)), aad: aad(repo: repo)))
  }

  /// Opens a stored object.
  public static func decodeObject(_ obj: [UInt8], meta: AESGCM, zstd: ZstdContext, repo: [UInt8]) throws -> [IndexPack]
  {
    guard obj.count > 5, Array(obj.prefix(5)) == objectMagic else { throw FormatError("index object magic missing") }
    let plain: [UInt8]
    do { plain = try meta.open(Array(obj[5...]), aad: aad(repo: repo)) } catch {
      throw FormatError("index does not authenticate (damaged, or written for another repository)")
    }
    return try decodeBody(try zstd.decompressFramed(plain))
  }
}
