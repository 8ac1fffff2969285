/// Appends little-endian integers and length-prefixed strings to a byte array.
public struct ByteWriter {
  public var data: [UInt8] = []
  public init(capacity: Int = 0) { data.reserveCapacity(capacity) }
  public mutating func u8(_ v: UInt8) { data.append(v) }
  public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
  public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
  public mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
  public mutating func bytes<S: Sequence>(_ b: S) where S.Element == UInt8 { data.append(contentsOf: b) }
  public mutating func string(_ s: String) {
    let u = Array(s.utf8)
    u32(UInt32(u.count))
    data.append(contentsOf: u)
  }
}

/// Thrown when a binary structure is shorter or otherwise malformed.
public struct FormatError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ m: String) { message = m }
  public var description: String { message }
}

/// Reads what `ByteWriter` wrote, with bounds checks.
public struct ByteReader {
  let buf: [UInt8]
  public private(set) var pos = 0
  public init(_ b: [UInt8]) { buf = b }
  public var remaining: Int { buf.count - pos }
  mutating func need(_ n: Int) throws {
    guard n >= 0, pos + n <= buf.count else { throw FormatError("truncated structure at byte \(pos) (need \(n) more)") }
  }
  public mutating func u8() throws -> UInt8 {
    try need(1)
    defer { pos += 1 }
    return buf[pos]
  }
  public mutating func u32() throws -> UInt32 {
    try need(4)
    var v: UInt32 = 0
    for i in 0..<4 { v |= UInt32(buf[pos + i]) << (8 * UInt32(i)) }
    pos += 4
    return v
  }
  public mutating func u64() throws -> UInt64 {
    try need(8)
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(buf[pos + i]) << (8 * UInt64(i)) }
    pos += 8
    return v
  }
  public mutating func i64() throws -> Int64 { Int64(bitPattern: try u64()) }
  public mutating func bytes(_ n: Int) throws -> [UInt8] {
    try need(n)
    defer { pos += n }
    return Array(buf[pos..<(pos + n)])
  }
  public mutating func string() throws -> String {
    let n = Int(try u32())
    guard n <= 1 << 20 else { throw FormatError("string of \(n) bytes is implausible") }
    return String(decoding: try bytes(n), as: UTF8.self)
  }
}
