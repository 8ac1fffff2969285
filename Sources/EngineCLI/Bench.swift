import ArgumentParser
import BackupEngine
import Foundation

/// Hidden `bench` subcommand: per-stage throughput and the encryption overhead of the pipeline.
struct BenchCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench", abstract: "Measure chunk, hash, compress and encrypt throughput on files (in memory).",
    shouldDisplay: false)
  @Argument(help: "A directory or file to sample.")
  var path: String
  @Option(name: .customLong("max-mb"), help: "Read at most this many MiB.")
  var maxMB = 400
  @Option(help: "Repetitions (best run counts).")
  var runs = 5
  @Option(help: "The zstd level to measure (default: the level of --compression auto).")
  var level: Int32 = Compression.auto.zstdLevel ?? 1

  func run() async throws {
    // Load sample data (whole files concatenated per file into memory buffers).
    var buffers: [[UInt8]] = []
    var total = 0
    let fm = FileManager.default
    let en = fm.enumerator(atPath: path)
    var isDir: ObjCBool = false
    let files: [String]
    if fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
      files = [path]
    } else {
      var fs: [String] = []
      while let f = en?.nextObject() as? String { fs.append(path + "/" + f) }
      files = fs
    }
    for f in files {
      guard total < maxMB << 20 else { break }
      var st = stat()
      guard lstat(f, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, let d = fm.contents(atPath: f) else { continue }
      buffers.append([UInt8](d))
      total += d.count
    }
    let secret = Crypto.randomBytes(32)
    let chunker = Chunker(secret: secret)
    // Chunk once to get the chunks.
    var chunks: [[UInt8]] = []
    func best(_ body: () throws -> Void) rethrows -> Double {
      var b = Double.infinity
      for _ in 0..<runs {
        let t = Date()
        try body()
        b = min(b, Date().timeIntervalSince(t))
      }
      return b
    }
    let tChunk = best {
      chunks.removeAll(keepingCapacity: true)
      for buf in buffers {
        buf.withUnsafeBytes { all in
          var s = 0
          while s < all.count {
            let n = chunker.nextBoundary(UnsafeRawBufferPointer(rebasing: all[s...]), isFinal: true)!
            chunks.append(Array(all[s..<(s + n)]))
            s += n
          }
        }
      }
    }
    let mac = Crypto.randomBytes(32)
    let hk = Crypto.HMACKey(mac)
    let tHash = best { for c in chunks { _ = hk.mac(c) } }
    let z = ZstdContext(level: level)
    var compressed: [[UInt8]] = []
    let tComp = best {
      compressed = chunks.map { c in c.withUnsafeBytes { z.compress($0) } ?? c }
    }
    let gcm = try AESGCM(key: Crypto.randomBytes(32))
    let aad = [UInt8](repeating: 1, count: 64)
    let tEnc = try best { for c in compressed { _ = try gcm.seal(c, aad: aad) } }
    let mb = Double(total) / 1_048_576
    let chunksC = chunks
    // Whole pipeline on 2 threads, with and without AES-GCM: wall time and process CPU time of one run.
    func cpuSeconds() -> Double {
      var ts = timespec()
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
      return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
    func pipeline(encrypt: Bool) -> (wall: Double, cpu: Double) {
      let c0 = cpuSeconds()
      let t0 = Date()
      do {
        let next = NSLock()
        nonisolated(unsafe) var i = 0
        let group = DispatchGroup()
        for _ in 0..<2 {
          group.enter()
          Thread {
            let z = ZstdContext(level: level)
            let g: AESGCM
            do { g = try AESGCM(key: Crypto.randomBytes(32)) } catch { fatalError("AES init: \(error)") }
            var pack = [UInt8]()
            pack.reserveCapacity(10 << 20)
            while true {
              next.lock()
              let k = i
              i += 1
              next.unlock()
              if k >= chunksC.count { break }
              let c = chunksC[k]
              _ = hk.mac(c)
              let p = c.withUnsafeBytes { z.compress($0) } ?? c
              if pack.count > 8 << 20 { pack.removeAll(keepingCapacity: true) }
              if encrypt {
                do { _ = try p.withUnsafeBytes { try g.seal($0, aad: aad, appendingTo: &pack) } } catch {
                  fatalError("seal: \(error)")
                }
              } else {
                // The same pack append without AES-GCM: copy plus the nonce and tag bytes.
                pack.append(contentsOf: repeatElement(0, count: 12))
                pack.append(contentsOf: p)
                pack.append(contentsOf: repeatElement(0, count: 16))
              }
            }
            group.leave()
          }.start()
        }
        group.wait()
      }
      return (Date().timeIntervalSince(t0), cpuSeconds() - c0)
    }
    // Interleaved, best of `runs` each, so a change in the machine's load hits both alike. CPU time is the
    // measure that holds on a shared machine: it does not count time spent waiting for a core.
    var tWith = Double.infinity
    var tWithout = Double.infinity
    var cWith = Double.infinity
    var cWithout = Double.infinity
    for _ in 0..<runs {
      let a = pipeline(encrypt: true)
      let b = pipeline(encrypt: false)
      tWith = min(tWith, a.wall)
      cWith = min(cWith, a.cpu)
      tWithout = min(tWithout, b.wall)
      cWithout = min(cWithout, b.cpu)
    }
    struct Out: Codable {
      var sampleMiB: Double
      var zstdLevel: Int32
      var compressedPercent: Double
      var chunks: Int
      var chunkMBps: Double
      var hashMBps: Double
      var compressMBps: Double
      var encryptMBps: Double
      var pipelineMBps: Double
      var pipelineNoEncryptMBps: Double
      var encryptionOverheadPercent: Double
      var encryptionOverheadWallPercent: Double
      var pipelineCPUSeconds: Double
      var pipelineNoEncryptCPUSeconds: Double
    }
    let o = Out(
      sampleMiB: mb, zstdLevel: level,
      compressedPercent: Double(compressed.reduce(0) { $0 + $1.count }) / Double(total) * 100, chunks: chunks.count,
      chunkMBps: mb / tChunk, hashMBps: mb / tHash, compressMBps: mb / tComp,
      encryptMBps: mb / tEnc, pipelineMBps: mb / tWith, pipelineNoEncryptMBps: mb / tWithout,
      encryptionOverheadPercent: (cWith - cWithout) / cWithout * 100,
      encryptionOverheadWallPercent: (tWith - tWithout) / tWithout * 100, pipelineCPUSeconds: cWith,
      pipelineNoEncryptCPUSeconds: cWithout)
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    print(String(decoding: try e.encode(o), as: UTF8.self))
  }
}
