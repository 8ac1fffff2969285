import Foundation
import Testing

@testable import BackupEngine

/// A reproducible generator (SplitMix64), so a failing property run can be replayed.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

@Suite struct BlobTableTests {
  /// An id that differs from its neighbours' in one word only (test ids, not MACs: the table must not cluster them).
  static func id(_ n: UInt64) -> ID {
    var i = ID(Array(repeating: 0, count: 32))
    i.d = n
    return i
  }

  static func entry(_ n: UInt64, type: BlobType = .data, keyType: KeyType = .files, compressed: Bool = true)
    -> BlobEntry
  {
    BlobEntry(
      id: id(n), type: type, keyType: keyType, compressed: compressed, offset: UInt32(truncatingIfNeeded: n &* 7),
      sealedLength: UInt32(truncatingIfNeeded: n &+ 100), rawLength: UInt32.max - UInt32(truncatingIfNeeded: n))
  }

  @Test func recordIs48BytesAndKeepsEveryField() {
    #expect(MemoryLayout<PackedBlob>.stride == 48)
    for type in [BlobType.data, .tree] {
      for keyType in KeyType.allCases {
        for compressed in [false, true] {
          for pack in [0, 1, 12345, PackedBlob.packLimit - 1] {
            let e = Self.entry(UInt64(pack), type: type, keyType: keyType, compressed: compressed)
            let b = PackedBlob(pack: pack, entry: e)
            #expect(b.pack == pack)
            #expect(b.entry == e)
          }
        }
      }
    }
  }

  @Test func lookupsAndDuplicates() {
    var t = BlobTable()
    #expect(t.lookup(Self.id(1)) == nil)
    let added = [
      t.insert(PackedBlob(pack: 3, entry: Self.entry(1))), t.insert(PackedBlob(pack: 4, entry: Self.entry(2))),
      // The same id again is refused and the first record stays.
      t.insert(PackedBlob(pack: 9, entry: Self.entry(1, compressed: false))),
    ]
    #expect(added == [true, true, false])
    #expect(t.count == 2)
    #expect(t.lookup(Self.id(1)) == PackedBlob(pack: 3, entry: Self.entry(1)))
    #expect(t.lookup(Self.id(2))?.pack == 4)
    #expect(t.lookup(Self.id(3)) == nil)
    // A record changes in place.
    let r = t.find(Self.id(2))!
    t[r] = PackedBlob(pack: 7, entry: Self.entry(2, type: .tree))
    #expect(t.lookup(Self.id(2)) == PackedBlob(pack: 7, entry: Self.entry(2, type: .tree)))
    #expect(t.count == 2)
  }

  @Test func growsOverManyChunksAndTableSizes() {
    var t = BlobTable()
    let n = BlobTable.chunkSize * 3 + 17
    var added = 0
    for i in 0..<n where t.insert(PackedBlob(pack: i % 1000, entry: Self.entry(UInt64(i)))) { added += 1 }
    #expect(added == n)
    #expect(t.count == n)
    for i in 0..<n { #expect(t.lookup(Self.id(UInt64(i)))?.entry == Self.entry(UInt64(i))) }
    for i in n..<(n + 1000) { #expect(t.find(Self.id(UInt64(i))) == nil) }
    var seen = 0
    t.forEach { b in
      #expect(b.id == Self.id(UInt64(seen)))
      seen += 1
    }
    #expect(seen == n)
    // 48 bytes a record (the last chunk part empty) and 4 a slot, with 4/3 to 8/3 slots a record.
    #expect(t.approximateBytes <= n * 64 + BlobTable.chunkSize * 48)
  }

  @Test func compactMapKeepsAndChanges() {
    var t = BlobTable()
    for i in 0..<5000 { t.insert(PackedBlob(pack: i % 10, entry: Self.entry(UInt64(i)))) }
    let u = t.compactMap { b in b.pack == 3 ? nil : b.pack == 4 ? PackedBlob(pack: 40, entry: b.entry) : b }
    #expect(u.count == 4500)
    for i in 0..<5000 {
      let b = u.lookup(Self.id(UInt64(i)))
      switch i % 10 {
      case 3: #expect(b == nil)
      case 4: #expect(b?.pack == 40)
      default: #expect(b?.pack == i % 10)
      }
    }
  }

  /// Random inserts, updates and lookups agree with a Dictionary (ids from a small space, so many collide).
  @Test(arguments: [1, 2, 3, 4] as [UInt64]) func agreesWithDictionary(seed: UInt64) {
    var rng = SeededGenerator(state: seed)
    var t = BlobTable()
    var d: [ID: PackedBlob] = [:]
    for _ in 0..<40000 {
      let n = UInt64.random(in: 0..<20000, using: &rng)
      let b = PackedBlob(
        pack: Int.random(in: 0..<PackedBlob.packLimit, using: &rng),
        entry: Self.entry(
          n, keyType: KeyType.allCases.randomElement(using: &rng)!, compressed: Bool.random(using: &rng)))
      switch Int.random(in: 0..<3, using: &rng) {
      case 0:
        let added = t.insert(b)
        #expect(added == (d[b.id] == nil))
        if d[b.id] == nil { d[b.id] = b }
      case 1:
        if let r = t.find(b.id) {
          t[r] = b
          d[b.id] = b
        } else {
          #expect(d[b.id] == nil)
        }
      default:
        #expect(t.lookup(b.id) == d[b.id])
      }
    }
    #expect(t.count == d.count)
    var all: [ID: PackedBlob] = [:]
    t.forEach { all[$0.id] = $0 }
    #expect(all == d)
  }
}

@Suite struct MasterIndexTests {
  func pack(_ p: UInt64, _ blobs: [UInt64]) -> IndexPack {
    IndexPack(
      packID: BlobTableTests.id(1_000_000 + p), packSize: 100 + p, entries: blobs.map { BlobTableTests.entry($0) })
  }

  @Test func firstLocationWinsOthersAreAlternates() {
    let idx = MasterIndex()
    idx.add(pack(1, [1, 2]))
    idx.add(pack(2, [2, 3]))
    idx.add(pack(2, [2, 3]))  // the same pack again adds no alternate
    #expect(idx.count == 3)
    #expect(idx.lookup(BlobTableTests.id(2))?.pack == pack(1, []).packID)
    #expect(idx.alternates(BlobTableTests.id(2)).map(\.pack) == [pack(2, []).packID])
    #expect(idx.lookup(BlobTableTests.id(3))?.entry == BlobTableTests.entry(3))
    #expect(idx.packs == [pack(1, []).packID: 101, pack(2, []).packID: 102])
    #expect(idx.packContents()[pack(1, []).packID]?.count == 2)
    #expect(idx.packContents()[pack(2, []).packID]?.map(\.id) == [BlobTableTests.id(3)])

    idx.prefer(packs: [pack(2, []).packID])
    #expect(idx.lookup(BlobTableTests.id(2))?.pack == pack(2, []).packID)
    #expect(idx.alternates(BlobTableTests.id(2)).map(\.pack) == [pack(1, []).packID])
  }

  @Test func retainOnlyMovesBlobsToKeptAlternates() {
    let idx = MasterIndex()
    idx.add(pack(1, [1, 2, 4]))
    idx.add(pack(2, [2, 3]))
    idx.add(pack(3, [2, 4]))
    idx.retainOnly(packs: [pack(2, []).packID, pack(3, []).packID])
    #expect(idx.lookup(BlobTableTests.id(1)) == nil)
    #expect(idx.lookup(BlobTableTests.id(2))?.pack == pack(2, []).packID)
    #expect(idx.alternates(BlobTableTests.id(2)).map(\.pack) == [pack(3, []).packID])
    #expect(idx.lookup(BlobTableTests.id(4))?.pack == pack(3, []).packID)
    #expect(idx.alternates(BlobTableTests.id(4)).isEmpty)
    #expect(idx.count == 3)
    #expect(Set(idx.packs.keys) == [pack(2, []).packID, pack(3, []).packID])
  }

  @Test func manyPacks() {
    let idx = MasterIndex()
    for p in 0..<3000 as Range<UInt64> { idx.add(pack(p, [p * 3, p * 3 + 1, p * 3 + 2])) }
    #expect(idx.count == 9000)
    #expect(idx.packs.count == 3000)
    for b in 0..<9000 as Range<UInt64> { #expect(idx.lookup(BlobTableTests.id(b))?.pack == pack(b / 3, []).packID) }
  }
}
