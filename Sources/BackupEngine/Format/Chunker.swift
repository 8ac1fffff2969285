/// Parameters of the keyed FastCDC chunker.
public struct ChunkerParameters: Sendable, Hashable, Codable {
  public var min: Int
  public var avg: Int
  public var max: Int
  public static let `default` = ChunkerParameters(min: 512 << 10, avg: 1 << 20, max: 8 << 20)
  public init(min: Int, avg: Int, max: Int) {
    self.min = min
    self.avg = avg
    self.max = max
  }
}

/// A keyed FastCDC chunker (gear hash, normalized chunking level 2). The gear table is derived from a
/// repository secret so boundaries differ between repositories. Stateless apart from the table.
public struct Chunker: Sendable {
  public let parameters: ChunkerParameters
  let gear: [UInt64]
  let shiftSmall: UInt64
  let shiftLarge: UInt64

  /// Derives the gear table from `secret` (32 bytes).
  public init(secret: [UInt8], parameters: ChunkerParameters = .default) {
    self.parameters = parameters
    var g = [UInt64](repeating: 0, count: 256)
    for i in 0..<256 {
      var msg = Array("botrt-gear".utf8)
      msg += [UInt8(i & 0xff), UInt8((i >> 8) & 0xff), 0, 0]
      let h = Crypto.hmacSHA256(key: secret, msg)
      var v: UInt64 = 0
      for j in 0..<8 { v |= UInt64(h[j]) << (8 * UInt64(j)) }
      g[i] = v
    }
    gear = g
    var bits = 0
    while (1 << (bits + 1)) <= parameters.avg { bits += 1 }
    // Cut when the top `bits±2` bits of the hash are zero.
    shiftSmall = UInt64(64 - (bits + 2))
    shiftLarge = UInt64(64 - (bits - 2))
  }

  /// Returns the length of the next chunk at the start of `buf`. When `isFinal` is false and no
  /// boundary is found before the end of `buf` (and `buf` is shorter than `max`), returns nil: the
  /// caller must supply more data.
  public func nextBoundary(_ buf: UnsafeRawBufferPointer, isFinal: Bool) -> Int? {
    let n = buf.count
    let p = parameters
    if n == 0 { return nil }
    if n <= p.min { return isFinal ? n : nil }
    let limit = Swift.min(n, p.max)
    let normal = Swift.min(limit, p.avg)
    let bytes = buf.baseAddress!.assumingMemoryBound(to: UInt8.self)
    var h: UInt64 = 0
    var i = p.min
    let sS = shiftSmall
    let sL = shiftLarge
    return gear.withUnsafeBufferPointer { gp -> Int? in
      let g = gp.baseAddress!
      while i < normal {
        h = (h &<< 1) &+ g[Int(bytes[i])]
        if h >> sS == 0 { return i + 1 }
        i += 1
      }
      while i < limit {
        h = (h &<< 1) &+ g[Int(bytes[i])]
        if h >> sL == 0 { return i + 1 }
        i += 1
      }
      if limit == p.max || isFinal { return limit }
      return nil
    }
  }
}
