import ArgumentParser
import BackupEngine
import EngineContract
import Foundation

/// What `ls`, `find` and `diff` print per entry: restic's `ls -l` columns for people, one JSON object per line
/// with `--json` (then the command's result line last).
struct NodeListing {
  let json: Bool
  var out = ""

  static func kind(_ k: TreeNode.Kind) -> String {
    switch k {
    case .directory: "dir"
    case .file: "file"
    case .symlink: "symlink"
    case .hardlink: "hardlink"
    case .fifo: "fifo"
    case .charDevice: "chardev"
    case .blockDevice: "dev"
    }
  }

  static func modeString(_ n: TreeNode) -> String {
    let type: Character =
      switch n.kind {
      case .directory: "d"
      case .symlink: "l"
      case .fifo: "p"
      case .charDevice: "c"
      case .blockDevice: "b"
      default: "-"
      }
    var s = String(type)
    let m = n.mode
    let bits: [(UInt32, Character)] = [
      (0o400, "r"), (0o200, "w"), (0o100, "x"), (0o040, "r"), (0o020, "w"), (0o010, "x"), (0o004, "r"),
      (0o002, "w"), (0o001, "x"),
    ]
    for (i, (bit, c)) in bits.enumerated() {
      var ch: Character = m & bit != 0 ? c : "-"
      if i == 2, m & 0o4000 != 0 { ch = m & bit != 0 ? "s" : "S" }
      if i == 5, m & 0o2000 != 0 { ch = m & bit != 0 ? "s" : "S" }
      if i == 8, m & 0o1000 != 0 { ch = m & bit != 0 ? "t" : "T" }
      s.append(ch)
    }
    return s
  }

  static func time(_ n: TreeNode) -> String {
    let f = ISO8601DateFormatter()
    return f.string(from: Date(timeIntervalSince1970: TimeInterval(n.mtimeSec)))
  }

  /// The entry as restic's `ls --json` node: name, type, path (absolute), uid, gid, size, mode, mtime.
  static func object(_ n: TreeNode, extra: [String: Any] = [:]) -> [String: Any] {
    var o: [String: Any] = [
      "struct_type": "node", "name": (n.displayPath as NSString).lastPathComponent, "type": kind(n.kind),
      "path": "/" + n.displayPath, "uid": n.uid, "gid": n.gid, "mode": n.mode, "permissions": modeString(n),
      "mtime": time(n),
    ]
    if n.kind == .file || n.kind == .hardlink { o["size"] = n.size }
    if n.kind == .symlink || n.kind == .hardlink { o["link_target"] = FSName.display(n.linkTarget) }
    if !n.user.isEmpty { o["user"] = n.user }
    if !n.group.isEmpty { o["group"] = n.group }
    for (k, v) in extra { o[k] = v }
    return o
  }

  mutating func add(_ n: TreeNode, long: Bool, prefix: String = "", extra: [String: Any] = [:]) {
    if json {
      if let d = try? JSONSerialization.data(withJSONObject: Self.object(n, extra: extra), options: [.sortedKeys]) {
        out += String(decoding: d, as: UTF8.self) + "\n"
      }
      return
    }
    var line = prefix
    if long {
      let owner = n.user.isEmpty ? String(n.uid) : n.user
      let group = n.group.isEmpty ? String(n.gid) : n.group
      line += "\(Self.modeString(n)) \(owner.padding(toLength: 8, withPad: " ", startingAt: 0)) "
      line += "\(group.padding(toLength: 8, withPad: " ", startingAt: 0)) "
      let size = String(n.size)
      line += String(repeating: " ", count: max(0, 12 - size.count)) + size + " \(Self.time(n)) "
    }
    line += "/" + n.displayPath
    if long, n.kind == .symlink { line += " -> \(FSName.display(n.linkTarget))" }
    out += line + "\n"
  }

  func flush() { FileHandle.standardOutput.write(Data(out.utf8)) }
}

/// Matches a path against a shell pattern (`*`, `?`, `[...]`) the way `find -name`/`-path` do: fnmatch(3).
func shellMatch(_ pattern: String, _ s: String, caseInsensitive: Bool) -> Bool {
  // FNM_CASEFOLD is a GNU extension that Glibc's module does not export: fold both sides instead.
  caseInsensitive ? fnmatch(pattern.lowercased(), s.lowercased(), 0) == 0 : fnmatch(pattern, s, 0) == 0
}

/// Opens the repository, picks a snapshot (id, prefix, or `latest`), and loads its tree.
func loadSnapshotTree(
  _ repoOptions: RepoOptions, _ ref: String
) async throws -> (Repository, Snapshot, MasterIndex, [TreeNode]) {
  let repo = try await repoOptions.open()
  let (snaps, _) = try await repo.loadSnapshotsChecked()
  let s = try selectSnapshot(ref, before: nil, in: snaps, repo: repo)
  let index = try await repo.loadIndexForRestore()
  let nodes = try await repo.loadTree(s, index: index)
  return (repo, s, index, nodes)
}

/// `botrt-engine ls`.
struct LsCommand: EngineCommand {
  static let configuration = CommandConfiguration(
    commandName: "ls", abstract: "List the files of a snapshot (optionally below some directories).")
  @OptionGroup var repoOptions: RepoOptions
  @Argument(help: "Snapshot id (or a unique prefix) or 'latest'.")
  var snapshot: String
  @Argument(help: "Only these directories (and what is below them), as paths in the snapshot.")
  var dirs: [String] = []
  @Flag(name: [.short, .customLong("long")], help: "Mode, owner, group, size and modification time, as ls -l.")
  var long = false
  @Flag(help: "Descend into subdirectories of the directories given (the default without directories).")
  var recursive = false
  var commandName: String { "ls" }

  func execute(_ result: inout CommandResult) async throws {
    let (repo, s, _, nodes) = try await loadSnapshotTree(repoOptions, snapshot)
    let roots = dirs.map { s.manifest.treePath($0) }
    var listing = NodeListing(json: repoOptions.json)
    var count = 0
    for n in nodes {
      let shown: Bool
      if roots.isEmpty {
        shown = true
      } else {
        // Directories are named as listed: bytes that are not UTF-8 as \xE9.
        let p = n.displayPath
        shown = roots.contains { r in
          if r.isEmpty { return recursive || !p.contains("/") }
          guard p == r || p.hasPrefix(r + "/") else { return false }
          return recursive || p == r || !p.dropFirst(r.count + 1).contains("/")
        }
      }
      if shown {
        listing.add(n, long: long)
        count += 1
      }
    }
    if !roots.isEmpty, count == 0 {
      throw EngineError.usage("\(dirs.joined(separator: ", ")) matches nothing in snapshot \(s.id.short)")
    }
    listing.flush()
    fill(&result, repo)
    result.snapshotId = s.id.hex
    result.snapshotTime = s.manifest.time
    result.files = count
  }
}

/// `botrt-engine find`.
struct FindCommand: EngineCommand {
  static let configuration = CommandConfiguration(
    commandName: "find", abstract: "Find files by name or path pattern in snapshots.")
  @OptionGroup var repoOptions: RepoOptions
  @Argument(help: "Shell patterns (*, ?, [...]) matched against each entry's name, or its whole path with --path.")
  var patterns: [String]
  @Option(name: [.short, .customLong("snapshot")], help: "Search only this snapshot (repeatable; default: all).")
  var snapshots: [String] = []
  @Flag(name: [.short, .customLong("ignore-case")], help: "Match without regard to case.")
  var ignoreCase = false
  @Flag(name: .customLong("path"), help: "Match the pattern against the whole path (from /), not the name.")
  var matchPath = false
  @Flag(name: [.short, .customLong("long")], help: "Mode, owner, group, size and modification time, as ls -l.")
  var long = false
  var commandName: String { "find" }

  func validate() throws {
    if patterns.isEmpty { throw ValidationError("give at least one pattern, e.g. '*.sql'") }
  }

  func execute(_ result: inout CommandResult) async throws {
    let repo = try await repoOptions.open()
    var (snaps, _) = try await repo.loadSnapshotsChecked()
    if !snapshots.isEmpty { snaps = try snapshots.map { try selectSnapshot($0, before: nil, in: snaps, repo: repo) } }
    let index = try await repo.loadIndexForRestore()
    var listing = NodeListing(json: repoOptions.json)
    var found = 0
    for s in snaps {
      let nodes = try await repo.loadTree(s, index: index)
      var header = false
      for n in nodes {
        let subject = matchPath ? "/" + n.displayPath : (n.displayPath as NSString).lastPathComponent
        guard patterns.contains(where: { shellMatch($0, subject, caseInsensitive: ignoreCase) }) else { continue }
        if !repoOptions.json && !header {
          listing.out += "Found matching entries in snapshot \(s.id.short) from \(s.manifest.time)\n"
          header = true
        }
        listing.add(n, long: long, extra: ["snapshot": s.id.hex])
        found += 1
      }
    }
    listing.flush()
    fill(&result, repo)
    result.files = found
  }
}

/// `botrt-engine diff`.
struct DiffCommand: EngineCommand {
  static let configuration = CommandConfiguration(
    commandName: "diff",
    abstract: "Show what changed between two snapshots (+ added, - removed, M modified, U metadata).")
  @OptionGroup var repoOptions: RepoOptions
  @Argument(help: "The older snapshot (id, prefix or 'latest').")
  var first: String
  @Argument(help: "The newer snapshot.")
  var second: String
  var commandName: String { "diff" }

  /// What changed about one path: `+` added, `-` removed, `M` content (or type, link target or device number)
  /// changed, `U` only metadata (mode, owner, times, extended attributes) changed.
  static func changes(_ a: [TreeNode], _ b: [TreeNode]) -> [(String, TreeNode)] {
    // Keys of bytes: see `TreeNode.pathKey`.
    let old = Dictionary(a.map { ($0.pathKey, $0) }, uniquingKeysWith: { x, _ in x })
    let new = Dictionary(b.map { ($0.pathKey, $0) }, uniquingKeysWith: { x, _ in x })
    var out: [(String, TreeNode)] = []
    for path in Set(old.keys).union(new.keys).sorted(by: { $0.lexicographicallyPrecedes($1) }) {
      switch (old[path], new[path]) {
      case (nil, let n?): out.append(("+", n))
      case (let o?, nil): out.append(("-", o))
      case (let o?, let n?):
        if o.kind != n.kind || o.content != n.content || o.linkTarget != n.linkTarget || o.size != n.size
          || o.rdev != n.rdev
        {
          out.append(("M", n))
        } else if o.mode != n.mode || o.uid != n.uid || o.gid != n.gid || o.mtimeSec != n.mtimeSec
          || o.mtimeNsec != n.mtimeNsec || o.xattrs != n.xattrs
        {
          out.append(("U", n))
        }
      default: break
      }
    }
    return out
  }

  func execute(_ result: inout CommandResult) async throws {
    let repo = try await repoOptions.open()
    let (snaps, _) = try await repo.loadSnapshotsChecked()
    let a = try selectSnapshot(first, before: nil, in: snaps, repo: repo)
    let b = try selectSnapshot(second, before: nil, in: snaps, repo: repo)
    let index = try await repo.loadIndexForRestore()
    let changes = Self.changes(try await repo.loadTree(a, index: index), try await repo.loadTree(b, index: index))
    var listing = NodeListing(json: repoOptions.json)
    var counts: [String: Int] = [:]
    for (what, n) in changes {
      counts[what, default: 0] += 1
      if repoOptions.json {
        listing.add(n, long: false, extra: ["struct_type": "change", "modifier": what])
      } else {
        listing.out += "\(what)    /\(n.displayPath)\(n.kind == .directory ? "/" : "")\n"
      }
    }
    if !repoOptions.json {
      listing.out +=
        "\nFiles: \(counts["+", default: 0]) new, \(counts["-", default: 0]) removed, "
        + "\(counts["M", default: 0]) changed, \(counts["U", default: 0]) with new metadata\n"
    }
    listing.flush()
    fill(&result, repo)
    result.files = changes.count
  }
}

/// `botrt-engine stats`.
struct StatsCommand: EngineCommand {
  static let configuration = CommandConfiguration(
    commandName: "stats",
    abstract: "Sizes of snapshots: what a restore writes, what is stored once deduplicated, blob counts by type.")
  @OptionGroup var repoOptions: RepoOptions
  @Argument(help: "Snapshots (ids, prefixes or 'latest'); default: all.")
  var snapshots: [String] = []
  var commandName: String { "stats" }

  struct Figures: Encodable {
    var snapshots = 0
    var files = 0
    var restoreSizeBytes: UInt64 = 0
    var uniqueDataBlobs = 0
    var uniqueTreeBlobs = 0
    /// The deduplicated content: each blob once, uncompressed.
    var rawBytes: UInt64 = 0
    /// The same blobs as stored: compressed and encrypted.
    var storedBytes: UInt64 = 0
    /// The repository's packs in all (what the storage bills), including blobs no chosen snapshot uses.
    var repositoryPackBytes: UInt64 = 0
    var repositoryPacks = 0
    var compressionRatio: Double = 0
    var deduplicationRatio: Double = 0
  }

  func execute(_ result: inout CommandResult) async throws {
    let repo = try await repoOptions.open()
    var (snaps, _) = try await repo.loadSnapshotsChecked()
    if !snapshots.isEmpty { snaps = try snapshots.map { try selectSnapshot($0, before: nil, in: snaps, repo: repo) } }
    let index = try await repo.loadIndexForRestore()
    var f = Figures()
    var data = Set<ID>()
    var trees = Set<ID>()
    for s in snaps {
      f.snapshots += 1
      for h in s.manifest.tree { if let id = ID(hex: h) { trees.insert(id) } }
      for n in try await repo.loadTree(s, index: index) where n.kind == .file {
        f.files += 1
        f.restoreSizeBytes += n.size
        data.formUnion(n.content)
      }
    }
    f.uniqueDataBlobs = data.count
    f.uniqueTreeBlobs = trees.count
    for id in data.union(trees) {
      guard let loc = index.lookup(id) else { continue }
      f.rawBytes += UInt64(loc.entry.rawLength)
      f.storedBytes += UInt64(loc.entry.sealedLength)
    }
    let packs = index.packs
    f.repositoryPacks = packs.count
    f.repositoryPackBytes = packs.values.reduce(0, +)
    f.compressionRatio = f.storedBytes > 0 ? Double(f.rawBytes) / Double(f.storedBytes) : 0
    f.deduplicationRatio = f.rawBytes > 0 ? Double(f.restoreSizeBytes) / Double(f.rawBytes) : 0
    if repoOptions.json {
      let enc = JSONEncoder()
      enc.outputFormatting = [.sortedKeys]
      FileHandle.standardOutput.write(try enc.encode(f) + Data("\n".utf8))
    } else {
      let out = """
        Snapshots processed:      \(f.snapshots)
        Files:                    \(f.files)
        Restore size:             \(f.restoreSizeBytes) bytes
        Unique content (raw):     \(f.rawBytes) bytes in \(f.uniqueDataBlobs) data and \(f.uniqueTreeBlobs) tree blobs
        Stored (compressed):      \(f.storedBytes) bytes
        Repository packs:         \(f.repositoryPackBytes) bytes in \(f.repositoryPacks) packs
        Compression ratio:        \(String(format: "%.2f", f.compressionRatio))x
        Deduplication ratio:      \(String(format: "%.2f", f.deduplicationRatio))x

        """
      FileHandle.standardOutput.write(Data(out.utf8))
    }
    fill(&result, repo)
    result.files = f.files
    result.bytesRead = Int64(f.restoreSizeBytes)
  }
}
