/// One blob's location, packed into 48 bytes: its id, the number of its pack in the index's pack list, and the pack
/// header's fields (`BlobEntry` without the id's padding; type, key type and compression in the top bits of `pack`).
struct PackedBlob: Equatable {
  var id: ID
  /// Bits 0-27: the pack's number; bit 28: compressed; bits 29-30: key type; bit 31: tree blob.
  var packAndFlags: UInt32
  var offset: UInt32
  var sealedLength: UInt32
  var rawLength: UInt32

  /// Pack numbers below this fit (268 million packs: far more than an index of this shape could hold in memory).
  static let packLimit = 1 << 28

  init(pack: Int, entry e: BlobEntry) {
    precondition(pack >= 0 && pack < Self.packLimit, "pack number \(pack) out of range")
    id = e.id
    packAndFlags =
      UInt32(pack) | (e.compressed ? 1 << 28 : 0) | UInt32(e.keyType.rawValue) << 29 | UInt32(e.type.rawValue) << 31
    offset = e.offset
    sealedLength = e.sealedLength
    rawLength = e.rawLength
  }

  var pack: Int { Int(packAndFlags & (1 << 28 - 1)) }

  var entry: BlobEntry {
    BlobEntry(
      id: id, type: BlobType(rawValue: UInt8(packAndFlags >> 31))!,
      keyType: KeyType(rawValue: UInt8(packAndFlags >> 29 & 3))!, compressed: packAndFlags >> 28 & 1 == 1,
      offset: offset, sealedLength: sealedLength, rawLength: rawLength)
  }
}

/// A record of a `FlatTable`: found by its key.
protocol FlatRecord {
  associatedtype Key: Hashable
  var key: Key { get }
}

extension PackedBlob: FlatRecord {
  var key: ID { id }
}

/// Blob locations by id, at about 56 bytes a blob (restic's index: 120; a `Dictionary` of `BlobLocation` with its
/// pack id: about 600 with what loading it held).
typealias BlobTable = FlatTable<PackedBlob>

/// A hash table of many small records without an allocation per record: the records sit in fixed-size chunks
/// (appended, never moved, so growing never copies them), and an open-addressing table of 32-bit record numbers
/// (linear probing, at most 3/4 full) finds them. Records are never removed one by one; `compactMap` builds a new
/// table. Not thread-safe: `MasterIndex` holds its table under its lock.
struct FlatTable<Record: FlatRecord> {
  /// Records per chunk.
  static var chunkSize: Int { 1 << 15 }
  private var chunks: [[Record]] = []
  /// Record number + 1 per slot, 0 for an empty one; a power of two long.
  private var slots: [UInt32] = []
  private(set) var count = 0

  init() {}

  /// The record number of `key`, or nil.
  func find(_ key: Record.Key) -> Int? {
    guard !slots.isEmpty else { return nil }
    let mask = slots.count - 1
    var i = Self.hash(key) & mask
    while true {
      let n = slots[i]
      if n == 0 { return nil }
      let r = Int(n - 1)
      if chunks[r / Self.chunkSize][r % Self.chunkSize].key == key { return r }
      i = (i + 1) & mask
    }
  }

  subscript(_ record: Int) -> Record {
    get { chunks[record / Self.chunkSize][record % Self.chunkSize] }
    set {
      precondition(newValue.key == self[record].key, "a record keeps its key")
      chunks[record / Self.chunkSize][record % Self.chunkSize] = newValue
    }
  }

  /// The bytes the records and slots take.
  var approximateBytes: Int { chunks.count * Self.chunkSize * MemoryLayout<Record>.stride + slots.count * 4 }

  func lookup(_ key: Record.Key) -> Record? { find(key).map { self[$0] } }

  /// Adds `r` unless its key is there; returns whether it was added.
  @discardableResult
  mutating func insert(_ r: Record) -> Bool {
    if find(r.key) != nil { return false }
    precondition(count < Int(UInt32.max) - 1, "too many records for one table")
    if (count + 1) * 4 > slots.count * 3 { grow() }
    if count % Self.chunkSize == 0 {
      chunks.append([])
      chunks[chunks.count - 1].reserveCapacity(Self.chunkSize)
    }
    chunks[chunks.count - 1].append(r)
    place(count)
    count += 1
    return true
  }

  /// Every record, in the order added.
  func forEach(_ body: (Record) throws -> Void) rethrows {
    for c in chunks { for r in c { try body(r) } }
  }

  /// A table of the records `keep` returns (possibly changed, its key kept) for; the others dropped.
  func compactMap(_ keep: (Record) -> Record?) -> FlatTable {
    var out = FlatTable()
    forEach { r in
      if let k = keep(r) { out.insert(k) }
    }
    return out
  }

  private static func hash(_ key: Record.Key) -> Int {
    // Blob ids are MACs, but a seeded hash keeps crafted or test keys (all alike but a byte) from clustering.
    var h = Hasher()
    h.combine(key)
    return h.finalize()
  }

  private mutating func place(_ record: Int) {
    let mask = slots.count - 1
    var i = Self.hash(self[record].key) & mask
    while slots[i] != 0 { i = (i + 1) & mask }
    slots[i] = UInt32(record + 1)
  }

  private mutating func grow() {
    slots = [UInt32](repeating: 0, count: max(1024, slots.count * 2))
    for r in 0..<count { place(r) }
  }
}
