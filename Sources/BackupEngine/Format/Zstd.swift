import CZstd
import Foundation

/// How hard a backup compresses data blobs. Every level is read by the same decoder; a repository can mix them.
public enum Compression: String, Sendable, CaseIterable {
  /// Store blobs uncompressed (already-compressed media, encrypted dumps).
  case off
  /// zstd level 1: the default. On a /usr/share sample it stores about 2 % more than level 3 and compresses
  /// about 1.6x faster, which is most of a backup's CPU (docs/benchmarks.md).
  case auto
  /// zstd level 3.
  case better
  /// zstd level 9: slower, a little smaller, for archives written once.
  case max

  /// The zstd level, or nil for no compression.
  public var zstdLevel: Int32? {
    switch self {
    case .off: return nil
    case .auto: return 1
    case .better: return 3
    case .max: return 9
    }
  }
}

/// A reusable zstd compression and decompression context for one worker; not Sendable.
public final class ZstdContext {
  private let cctx: OpaquePointer
  private let dctx: OpaquePointer
  /// The compression level (default 3).
  public let level: Int32

  /// Creates the contexts.
  public init(level: Int32 = 3) {
    cctx = ZSTD_createCCtx()
    dctx = ZSTD_createDCtx()
    self.level = level
  }

  deinit {
    ZSTD_freeCCtx(cctx)
    ZSTD_freeDCtx(dctx)
  }

  /// Compresses `src`; returns nil when the result would not be smaller.
  public func compress(_ src: UnsafeRawBufferPointer) -> [UInt8]? {
    if src.count < 64 { return nil }
    let bound = ZSTD_compressBound(src.count)
    var n = 0
    // Uninitialized output: zstd writes the first n bytes; zero-filling a chunk-sized buffer first costs a memset
    // and its page faults for nothing.
    let out = [UInt8](unsafeUninitializedCapacity: bound) { o, initialized in
      n = ZSTD_compressCCtx(cctx, o.baseAddress, bound, src.baseAddress, src.count, level)
      initialized = ZSTD_isError(n) != 0 ? 0 : n
    }
    if ZSTD_isError(n) != 0 || n >= src.count { return nil }
    return out
  }

  /// Decompresses `src` to exactly `rawLength` bytes.
  public func decompress(_ src: UnsafeRawBufferPointer, rawLength: Int) throws -> [UInt8] {
    var n = 0
    let out = [UInt8](unsafeUninitializedCapacity: rawLength) { b, initialized in
      n = ZSTD_decompressDCtx(dctx, b.baseAddress, rawLength, src.baseAddress, src.count)
      initialized = ZSTD_isError(n) != 0 ? 0 : min(n, rawLength)
    }
    if ZSTD_isError(n) != 0 {
      throw CryptoError.library("zstd: \(String(cString: ZSTD_getErrorName(n)))")
    }
    guard n == rawLength else { throw CryptoError.library("zstd: decompressed \(n) bytes, expected \(rawLength)") }
    return out
  }

  /// Decompresses `src` into `out`, which must hold `rawLength` bytes; the result must be exactly that long.
  public func decompress(_ src: UnsafeRawBufferPointer, rawLength: Int, into out: UnsafeMutableRawPointer) throws {
    let n = ZSTD_decompressDCtx(dctx, out, rawLength, src.baseAddress, src.count)
    if ZSTD_isError(n) != 0 {
      throw CryptoError.library("zstd: \(String(cString: ZSTD_getErrorName(n)))")
    }
    guard n == rawLength else { throw CryptoError.library("zstd: decompressed \(n) bytes, expected \(rawLength)") }
  }

  /// Compresses whole bytes with a size prefix (for index and manifest objects).
  public func compressFramed(_ src: [UInt8]) -> [UInt8] {
    var out = ByteWriter()
    out.u32(UInt32(src.count))
    if let c = src.withUnsafeBytes({ compress($0) }) {
      out.u8(1)
      out.bytes(c)
    } else {
      out.u8(0)
      out.bytes(src)
    }
    return out.data
  }

  /// The most a zstd frame can expand: 128 KiB blocks of at least 4 bytes.
  static let maxExpansion = 32_768

  /// Reverses `compressFramed`.
  public func decompressFramed(_ src: [UInt8]) throws -> [UInt8] {
    var r = ByteReader(src)
    let n = Int(try r.u32())
    let flag = try r.u8()
    let rest = try r.bytes(r.remaining)
    if flag == 0 {
      guard rest.count == n else { throw FormatError("stored frame of \(rest.count) bytes, expected \(n)") }
      return rest
    }
    // The size prefix is checked against what the bytes can hold before it is allocated: a zstd block of at most
    // 128 KiB takes at least 4 bytes (an RLE block), so no frame expands more than 32768 times.
    guard n <= rest.count * Self.maxExpansion else {
      throw FormatError("compressed frame of \(rest.count) bytes cannot hold the \(n) bytes its prefix claims")
    }
    return try rest.withUnsafeBytes { try decompress($0, rawLength: n) }
  }
}

/// Formats whose content is compressed already, recognised by their first bytes (their magic numbers): zstd would
/// spend its time on them for next to nothing (issue 18: compression was 37 % of a backup's CPU). A file or stream
/// that starts as one of them is stored without compression, every chunk of it.
public enum CompressedFormat {
  /// The signatures, each at its offset: gzip, zstd, xz, bzip2, lz4, 7z, zip (also jar, docx, apk), png, jpeg,
  /// gif, webp, woff, woff2, and ISO base media (mp4, mov, heic: "ftyp" at offset 4).
  static let signatures: [(offset: Int, bytes: [UInt8])] = [
    (0, [0x1F, 0x8B]), (0, [0x28, 0xB5, 0x2F, 0xFD]), (0, [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]),
    (0, [0x04, 0x22, 0x4D, 0x18]), (0, [0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]), (0, [0x50, 0x4B, 0x03, 0x04]),
    (0, [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), (0, [0xFF, 0xD8, 0xFF]), (0, Array("GIF8".utf8)),
    (8, Array("WEBP".utf8)), (0, Array("wOFF".utf8)), (0, Array("wOF2".utf8)), (4, Array("ftyp".utf8)),
  ]

  /// Whether `head` (the first bytes of a file or stream) starts as a compressed format.
  public static func starts(_ head: UnsafeRawBufferPointer) -> Bool {
    for (offset, sig) in signatures where head.count >= offset + sig.count {
      var match = true
      for (i, b) in sig.enumerated() where head[offset + i] != b {
        match = false
        break
      }
      if match { return true }
    }
    // bzip2: "BZh" and the block size digit.
    if head.count >= 4, head[0] == 0x42, head[1] == 0x5A, head[2] == 0x68, (0x31...0x39).contains(head[3]) {
      return true
    }
    return false
  }
}
