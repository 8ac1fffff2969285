#if canImport(Glibc)
  import Glibc
#endif

/// File names as the engine holds them: Linux names are bytes, Swift strings are Unicode. A name that is valid
/// UTF-8 is held as that string, unchanged. Each byte of a name that is not part of a valid UTF-8 sequence is held
/// as NUL followed by two uppercase hex digits (`"\u{0}E9"` for the Latin-1 `é`): no real name contains NUL, so the
/// mapping is one to one and `bytes` gives the exact name back. Only bytes 0x80...0xFF are escaped this way, so an
/// escape never stands for `/`, `.` or NUL.
public enum FSName {
  /// The name held for `raw` (a path, a name or a link target).
  public static func decode<C: Collection>(_ raw: C) -> String where C.Element == UInt8 {
    let b = Array(raw)
    guard !b.contains(0) else { return escapeAll(b) }
    if let s = String(validating: b, as: UTF8.self) { return s }
    return escapeAll(b)
  }

  private static func escapeAll(_ b: [UInt8]) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(b.count + 8)
    var i = 0
    while i < b.count {
      let n = validSequenceLength(b, at: i)
      if n > 0 && b[i] != 0 {
        out.append(contentsOf: b[i..<(i + n)])
        i += n
      } else {
        out.append(0)
        out.append(hex(b[i] >> 4))
        out.append(hex(b[i] & 0xF))
        i += 1
      }
    }
    return String(decoding: out, as: UTF8.self)
  }

  private static func hex(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x41 + v - 10 }

  private static func unhex(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: c - 0x30
    case 0x41...0x46: c - 0x41 + 10
    default: nil
    }
  }

  /// The length of the valid UTF-8 sequence starting at `i`, or 0 when there is none (RFC 3629: no overlong
  /// forms, no surrogates, nothing above U+10FFFF).
  static func validSequenceLength(_ b: [UInt8], at i: Int) -> Int {
    let c = b[i]
    if c < 0x80 { return 1 }
    func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
      i + k < b.count && b[i + k] >= lo && b[i + k] <= hi
    }
    switch c {
    case 0xC2...0xDF: return cont(1) ? 2 : 0
    case 0xE0: return cont(1, 0xA0) && cont(2) ? 3 : 0
    case 0xE1...0xEC, 0xEE...0xEF: return cont(1) && cont(2) ? 3 : 0
    case 0xED: return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0
    case 0xF0: return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0
    case 0xF1...0xF3: return cont(1) && cont(2) && cont(3) ? 4 : 0
    case 0xF4: return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0
    default: return 0
    }
  }

  /// Whether `s` holds escaped bytes (is not a plain UTF-8 name).
  public static func isEscaped(_ s: some StringProtocol) -> Bool { s.utf8.contains(0) }

  /// The exact bytes of a held name, or nil when an escape is malformed or stands for a byte below 0x80.
  public static func bytes(_ s: some StringProtocol) -> [UInt8]? {
    let u = Array(s.utf8)
    guard u.contains(0) else { return u }
    var out: [UInt8] = []
    out.reserveCapacity(u.count)
    var i = 0
    while i < u.count {
      if u[i] != 0 {
        out.append(u[i])
        i += 1
        continue
      }
      guard i + 2 < u.count, let h = unhex(u[i + 1]), let l = unhex(u[i + 2]), h >= 8 || (h == 0 && l == 0) else {
        return nil
      }
      out.append(h << 4 | l)
      i += 3
    }
    return out
  }

  /// The name for messages and listings: escaped bytes shown as `\xE9`.
  public static func display(_ s: some StringProtocol) -> String {
    guard isEscaped(s) else { return String(s) }
    var out = ""
    var it = s.unicodeScalars.makeIterator()
    while let c = it.next() {
      if c == "\u{0}", let h = it.next(), let l = it.next() {
        out += "\\x" + String(h) + String(l)
      } else {
        out.unicodeScalars.append(c)
      }
    }
    return out
  }

  /// The name written where a reader expects UTF-8 (the tree's path field, read by engines that know no raw
  /// names): escaped bytes become U+FFFD.
  static func lossy(_ s: String) -> String {
    guard isEscaped(s), let b = bytes(s) else { return s }
    return String(decoding: b, as: UTF8.self)
  }

  /// Calls `body` with the NUL-terminated bytes of a held name, for a system call. A malformed name (which the
  /// tree checks refuse before a restore) is passed as the empty string, which every call rejects.
  public static func withCString<R>(_ s: some StringProtocol, _ body: (UnsafePointer<CChar>) throws -> R) rethrows
    -> R
  {
    guard isEscaped(s) else { return try String(s).withCString(body) }
    var b = (bytes(s) ?? []).map { CChar(bitPattern: $0) }
    if b.contains(0) { b = [] }
    b.append(0)
    return try b.withUnsafeBufferPointer { try body($0.baseAddress!) }
  }
}
