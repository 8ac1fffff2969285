import Foundation

/// The nodes a backup's scan found, held as the tree holds them: each node's encoded main section in one byte arena
/// (about 110 bytes for a file, no allocation per node), its content ids in one flat list (or, for a file being
/// chunked, its slot in `BackupRun.chunkIDs`), where a `[TreeNode]` took about 300 bytes a file. `encode` writes the
/// tree in path order without building it as one array: `TreeFormat.encode` of the nodes, byte for byte.
/// Used by the scan's thread, then (after it ended) by the backup's.
final class ScannedNodes: @unchecked Sendable {
  private struct Record {
    var start: Int
    var length: UInt32
    /// The file's slot in `BackupRun.chunkIDs`, or -1 when its content is `contents[content..<content+count]`.
    var slot: Int32
    var content: Int
    var contentCount: UInt32
  }
  private var arena: [UInt8] = []
  private var records: [Record] = []
  private var contents: [ID] = []
  /// Paths held with escaped bytes (not UTF-8), by node number: the arena has them lossy, the order is by these.
  private var heldPaths: [Int: [UInt8]] = [:]
  /// The extension fields of the nodes that have them, by node number.
  private var extensions: [(Int, [UInt8])] = []
  private(set) var files = 0
  private(set) var dirs = 0
  private(set) var bytes: Int64 = 0

  init() {}

  var count: Int { records.count }

  /// Adds a node: with its content, or with the slot its content ids are collected in (`slot`'s ids are read by
  /// `encode`).
  func append(_ n: TreeNode, slot: Int? = nil) {
    precondition(slot.map { $0 < Int(Int32.max) } ?? true, "too many files being read")
    let i = records.count
    let start = arena.count
    var w = ByteWriter()
    swap(&w.data, &arena)
    TreeFormat.encodeMainSection(n, into: &w)
    swap(&w.data, &arena)
    records.append(
      Record(
        start: start, length: UInt32(arena.count - start), slot: Int32(slot ?? -1), content: contents.count,
        contentCount: UInt32(n.content.count)))
    if slot == nil { contents += n.content }
    if FSName.isEscaped(n.path) { heldPaths[i] = Array(n.path.utf8) }
    let ext = TreeFormat.extensionFields(n)
    if !ext.isEmpty { extensions.append((i, ext)) }
    switch n.kind {
    case .directory: dirs += 1
    case .file:
      files += 1
      bytes += Int64(n.size)
    default: files += 1
    }
  }

  /// The ids every node but those in slots refers to.
  var knownContent: [ID] { contents }

  /// Node numbers in path order (as `TreeNode.path`'s UTF-8 sorts).
  private func pathOrder() -> [Int] {
    arena.withUnsafeBufferPointer { a in
      func withPath<R>(_ i: Int, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let h = heldPaths[i] { return h.withUnsafeBufferPointer(body) }
        // kind (1), then the path's length (4) and bytes.
        let s = records[i].start
        let n = Int(a[s + 1]) | Int(a[s + 2]) << 8 | Int(a[s + 3]) << 16 | Int(a[s + 4]) << 24
        return body(UnsafeBufferPointer(rebasing: a[(s + 5)..<(s + 5 + n)]))
      }
      return records.indices.sorted { x, y in
        withPath(x) { px in withPath(y) { py in px.lexicographicallyPrecedes(py) } }
      }
    }
  }

  /// Writes the tree into `buffer`, handing it to `emit` whenever it holds at least `flushAt` bytes and once at the
  /// end (`final` true); `emit` takes what it uses from its front. `slotContent` gives a slot's ids.
  func encode(
    flushAt: Int, slotContent: (Int) throws -> [ID], emit: (inout [UInt8], _ final: Bool) throws -> Void
  ) throws {
    let order = pathOrder()
    var buffer = ByteWriter(capacity: flushAt + (1 << 16))
    TreeFormat.encodeHeader(count: records.count, into: &buffer)
    for i in order {
      let r = records[i]
      buffer.bytes(arena[r.start..<(r.start + Int(r.length))])
      if r.slot >= 0 {
        let ids = try slotContent(Int(r.slot))
        buffer.u32(UInt32(ids.count))
        for c in ids { buffer.bytes(c.bytes) }
      } else {
        buffer.u32(r.contentCount)
        for c in contents[r.content..<(r.content + Int(r.contentCount))] { buffer.bytes(c.bytes) }
      }
      if buffer.data.count >= flushAt { try emit(&buffer.data, false) }
    }
    if !extensions.isEmpty {
      var position = [Int32](repeating: 0, count: records.count)
      for (p, i) in order.enumerated() { position[i] = Int32(p) }
      let ext = extensions.map { (Int(position[$0.0]), $0.1) }.sorted { $0.0 < $1.0 }
      TreeFormat.encodeExtensions(ext, into: &buffer)
    }
    try emit(&buffer.data, true)
  }
}
