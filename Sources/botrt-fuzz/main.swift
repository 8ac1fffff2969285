// Fuzz targets for the parsers of untrusted bytes, the engine's and the controller's (hack/fuzz.sh).
//
// Built normally (`swift build`), this replays inputs: `botrt-fuzz TARGET FILE_OR_DIR...` runs each file through the
// target once, so the committed corpus (Fuzz/corpus/TARGET) is a regression check. Built by hack/fuzz.sh with
// `-sanitize=fuzzer -D BOTRT_FUZZ`, it hands the target to libFuzzer's driver: `BOTRT_FUZZ_TARGET=TARGET
// botrt-fuzz [libFuzzer flags] CORPUS_DIR`. A target may throw (a refused input) but must not trap, hang or
// allocate without bound.
import BackupEngine
import DRAPI
import EngineContract
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Reconcilers

enum Fuzz {
  /// The fixed key the harness seals fuzzer input with, so that the parsers behind authentication are reached.
  static let harnessKey = [UInt8](repeating: 7, count: 32)
  static let harnessRepo = [UInt8](repeating: 1, count: 32)

  /// Target name → the function that parses one input.
  static let targets: [String: @Sendable ([UInt8]) -> Void] = [
    // The plaintext body of an index file.
    "index": { _ = try? IndexFormat.decodeBody($0) },
    // The plaintext of a tree blob.
    "tree": { _ = try? TreeFormat.decode($0) },
    // A size-prefixed zstd frame (index and manifest bodies).
    "framed": { _ = try? ZstdContext().decompressFramed($0) },
    // A pack's tail: the first byte chooses raw bytes (trailer and length checks) or a header whose plaintext is the
    // rest, sealed with the harness key (entry decoding and bounds); the next four bytes are the pack size.
    "packheader": { input in
      guard input.count >= 5, let meta = try? AESGCM(key: Fuzz.harnessKey) else { return }
      let packSize = Int(UInt32(input[1]) | UInt32(input[2]) << 8 | UInt32(input[3]) << 16 | UInt32(input[4]) << 24)
      let rest = Array(input[5...])
      var tail = rest
      if input[0] & 1 == 1 {
        var body: [UInt8] = []
        guard let sealed = try? meta.seal(rest, aad: Array("botrt-pack-header-v1".utf8) + Fuzz.harnessRepo) else {
          return
        }
        body = sealed
        var t = ByteWriter()
        t.u32(UInt32(sealed.count))
        body += t.data + PackFormat.magic
        tail = body
      }
      _ = try? PackFormat.parseHeader(tail: tail, packSize: max(packSize, 0), meta: meta, repo: Fuzz.harnessRepo)
    },
    "manifest": manifest,
    "config": config,
    "keyfile": keyfile,
    "result": result,
    "watchframe": watchframe,
    "wsframe": wsframe,
    "kubeconfig": kubeconfig,
    "cron": cron,
    "duration": duration,
  ]

  /// Writes a small seed corpus of valid inputs for every target (Fuzz/corpus is made with it).
  static func writeSeeds(to dir: String) async throws {
    func id(_ b: UInt8) -> ID { ID([UInt8](repeating: b, count: 32)) }
    var entries: [BlobEntry] = []
    for i in 0..<3 {
      let e = BlobEntry(
        id: id(UInt8(i)), type: i == 0 ? .tree : .data, keyType: .files, compressed: i % 2 == 0,
        offset: UInt32(i) * 100, sealedLength: 100, rawLength: 180)
      entries.append(e)
    }
    let index = IndexFormat.encodeBody([
      IndexPack(packID: id(9), packSize: 400, entries: entries), IndexPack(packID: id(8), packSize: 12, entries: []),
    ])
    let tree = TreeFormat.encode([
      TreeNode(kind: .directory, path: "d", mode: 0o755),
      TreeNode(kind: .file, path: "d/f", mode: 0o644, user: "u", group: "g", size: 5, content: [id(1), id(2)]),
      TreeNode(kind: .symlink, path: "d/l", linkTarget: "f"),
      TreeNode(kind: .hardlink, path: "d/h", linkTarget: "d/f"),
    ])
    // A tree with the extension section: a name that is not UTF-8, a device number, extended attributes.
    var device = TreeNode(kind: .charDevice, path: "d/null", mode: 0o666)
    device.rdev = 0x103
    var odd = TreeNode(kind: .file, path: FSName.decode(Array("d/".utf8) + [0x65, 0xE9]), size: 5, content: [id(1)])
    odd.xattrs = [.init(name: "user.botrt", value: Array("value".utf8))]
    let treeWithExtensions = TreeFormat.encode([
      TreeNode(kind: .directory, path: "d", mode: 0o755), odd, TreeNode(kind: .fifo, path: "d/p"), device,
    ])
    let z = ZstdContext()
    // The entries of the first pack, as a header's plaintext: the index body after magic, count, id, size, count.
    let start = 56
    let header = Array(index[start..<(start + 3 * BlobEntry.encodedSize)])
    func le32(_ v: UInt32) -> [UInt8] {
      var w = ByteWriter()
      w.u32(v)
      return w.data
    }
    let sealedHeaderPack: [UInt8] = [1] + le32(UInt32(300 + header.count + 28 + 12)) + header
    let rawTail: [UInt8] = [0] + le32(64) + le32(20) + PackFormat.magic
    let seeds: [String: [[UInt8]]] = [
      "index": [index, IndexFormat.encodeBody([])],
      "tree": [tree, TreeFormat.encode([]), treeWithExtensions],
      "framed": [
        z.compressFramed(index), z.compressFramed(tree), z.compressFramed([UInt8](repeating: 0, count: 4096)),
        z.compressFramed([1, 2, 3]),
      ],
      "packheader": [sealedHeaderPack, rawTail],
    ]
    var all = seeds
    for (t, inputs) in try await moreSeeds() { all[t] = inputs }
    for (t, inputs) in all {
      try FileManager.default.createDirectory(atPath: dir + "/" + t, withIntermediateDirectories: true)
      for (i, b) in inputs.enumerated() {
        try Data(b).write(to: URL(fileURLWithPath: "\(dir)/\(t)/seed-\(i)"))
      }
    }
  }

  static func usage() -> Never {
    FileHandle.standardError.write(
      Data("usage: botrt-fuzz {\(targets.keys.sorted().joined(separator: "|"))} FILE_OR_DIR...\n".utf8))
    exit(2)
  }
}

#if BOTRT_FUZZ
  // SwiftPM links this file's code as the program's main, so it hands the target named by BOTRT_FUZZ_TARGET to
  // libFuzzer's driver (with libFuzzer's flags and corpus directories from the command line).
  extension Fuzz {
    static let selected: @Sendable ([UInt8]) -> Void = {
      guard let name = ProcessInfo.processInfo.environment["BOTRT_FUZZ_TARGET"], let t = targets[name] else { usage() }
      return t
    }()
  }

  @_silgen_name("LLVMFuzzerRunDriver")
  func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
  ) -> Int32

  // Defined for the linker: libFuzzer's archive brings its own main, which needs it (ours is the one that runs).
  @_cdecl("LLVMFuzzerTestOneInput")
  public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    Fuzz.selected(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
  }

  _ = Fuzz.selected
  var argc = CommandLine.argc
  var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
  exit(
    LLVMFuzzerRunDriver(&argc, &argv) { data, size in
      Fuzz.selected(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
      return 0
    })
#else
  let args = CommandLine.arguments.dropFirst()
  if args.first == "--write-seeds", args.count == 2 {
    try await Fuzz.writeSeeds(to: args.last!)
    exit(0)
  }
  if args.first == "--list", args.count == 1 {
    for name in Fuzz.targets.keys.sorted() { print(name) }
    exit(0)
  }
  guard let name = args.first, let t = Fuzz.targets[name], args.count >= 2 else { Fuzz.usage() }
  var runs = 0
  for a in args.dropFirst() {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: a, isDirectory: &isDir) else { Fuzz.usage() }
    let files =
      isDir.boolValue
      ? ((try? FileManager.default.contentsOfDirectory(atPath: a)) ?? []).sorted().map { a + "/" + $0 } : [a]
    for f in files {
      guard let d = FileManager.default.contents(atPath: f) else { continue }
      // Named before it runs, so that a trap or hang names the input.
      FileHandle.standardError.write(Data("\(name) \(f)\n".utf8))
      t([UInt8](d))
      runs += 1
    }
  }
  print("\(name): \(runs) inputs replayed")
#endif
