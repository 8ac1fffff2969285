import Foundation
import Testing

@testable import BackupEngine

/// Deterministic pseudo-random bytes (xorshift) so the tests do not depend on the OS RNG.
func pseudoRandom(_ n: Int, seed: UInt64) -> [UInt8] {
  var x = seed | 1
  var out = [UInt8](repeating: 0, count: n)
  for i in 0..<n {
    x ^= x << 13
    x ^= x >> 7
    x ^= x << 17
    out[i] = UInt8(truncatingIfNeeded: x)
  }
  return out
}

func chunkAll(_ c: Chunker, _ data: [UInt8]) -> [Int] {
  var sizes: [Int] = []
  data.withUnsafeBytes { all in
    var s = 0
    while s < all.count {
      let n = c.nextBoundary(UnsafeRawBufferPointer(rebasing: all[s...]), isFinal: true)!
      sizes.append(n)
      s += n
    }
  }
  return sizes
}

@Suite struct ChunkerTests {
  let data = pseudoRandom(24 << 20, seed: 42)

  @Test func deterministicForOneSecret() {
    let secret = Array(repeating: UInt8(1), count: 32)
    let a = chunkAll(Chunker(secret: secret), data)
    let b = chunkAll(Chunker(secret: secret), data)
    #expect(a == b)
    #expect(a.reduce(0, +) == data.count)
    #expect(a.count > 5)
  }

  @Test func boundariesDependOnTheSecret() {
    let a = chunkAll(Chunker(secret: Array(repeating: 1, count: 32)), data)
    let b = chunkAll(Chunker(secret: Array(repeating: 2, count: 32)), data)
    #expect(a != b)
  }

  @Test func respectsMinAndMax() {
    let p = ChunkerParameters.default
    let sizes = chunkAll(Chunker(secret: Array(repeating: 3, count: 32)), data)
    for s in sizes.dropLast() {
      #expect(s >= p.min)
      #expect(s <= p.max)
    }
    // Constant data never matches the gear condition by chance: every chunk is exactly max.
    let zeros = [UInt8](repeating: 0, count: 20 << 20)
    let z = chunkAll(Chunker(secret: Array(repeating: 3, count: 32)), zeros)
    #expect(z.dropLast().allSatisfy { $0 == p.max })
  }

  @Test func contentDefinedBoundariesSurviveAnInsertion() {
    let c = Chunker(secret: Array(repeating: 4, count: 32))
    let a = chunkAll(c, data)
    let shifted = Array(repeating: UInt8(9), count: 1000) + data
    let b = chunkAll(c, shifted)
    // After the first chunk the boundaries realign: most chunk sizes are shared.
    let common = Set(a.dropFirst()).intersection(Set(b.dropFirst()))
    #expect(common.count >= a.count - 3)
  }

  @Test func needsMoreDataWhenNotFinal() {
    let c = Chunker(secret: Array(repeating: 5, count: 32))
    let small = Array(data.prefix(600 << 10))
    small.withUnsafeBytes { b in
      #expect(c.nextBoundary(b, isFinal: false) == nil || c.nextBoundary(b, isFinal: false)! <= b.count)
      #expect(c.nextBoundary(b, isFinal: true) != nil)
    }
    [UInt8]().withUnsafeBytes { #expect(c.nextBoundary($0, isFinal: true) == nil) }
  }
}
