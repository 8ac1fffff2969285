import ArgumentParser
import BackupEngine
import EngineContract
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// `backup`'s file selection: restic's exclude options and `--files-from` lists, with restic's semantics.
struct FileSelectionOptions: ParsableArguments {
  @Option(
    name: [.customShort("e"), .customLong(EngineFlag.exclude)],
    help: ArgumentHelp(
      "Exclude what matches PATTERN (repeatable): restic's patterns, matched against the absolute path; * ? [...] "
        + "within a component, ** across directories, a leading / anchors at the root, a leading ! re-includes.",
      valueName: "PATTERN"))
  var exclude: [String] = []
  @Option(
    name: .customLong(EngineFlag.iexclude), help: ArgumentHelp("As --exclude, ignoring case.", valueName: "PATTERN"))
  var iexclude: [String] = []
  @Option(
    name: .customLong(EngineFlag.excludeFile),
    help: ArgumentHelp(
      "Read --exclude patterns from FILE, one a line (repeatable; blank lines and lines starting with # are "
        + "ignored, $VAR and ${VAR} expanded, $$ is a $).", valueName: "FILE"))
  var excludeFile: [String] = []
  @Option(
    name: .customLong(EngineFlag.iexcludeFile),
    help: ArgumentHelp("As --exclude-file, for --iexclude patterns.", valueName: "FILE"))
  var iexcludeFile: [String] = []
  @Option(
    name: .customLong(EngineFlag.excludeFileRoot),
    help: ArgumentHelp(
      "Read each --exclude-file and --iexclude-file as a path below DIR, as data someone else wrote (a claim's own "
        + "file): no symlink is followed, it must be a regular file of at most 1 MiB, $VAR is not expanded, and a "
        + "pattern's leading / anchors at DIR.", valueName: "DIR"))
  var excludeFileRoot: String?
  @Option(
    name: .customLong(EngineFlag.excludeIfPresent),
    help: ArgumentHelp(
      "Leave out the content of directories holding a file NAME (that starts with HEADER, when given), except that "
        + "file (repeatable).", valueName: "NAME[:HEADER]"))
  var excludeIfPresent: [String] = []
  @Flag(
    name: .customLong(EngineFlag.excludeCaches),
    help: "Leave out the content of directories tagged with a CACHEDIR.TAG file (https://bford.info/cachedir/).")
  var excludeCaches = false
  @Flag(
    name: [.customShort("x"), .customLong(EngineFlag.oneFileSystem)],
    help: "Do not cross file system boundaries below each PATH (mount points are kept, empty).")
  var oneFileSystem = false
  @Option(
    name: .customLong(EngineFlag.filesFrom),
    help: ArgumentHelp(
      "Back up the paths listed in FILE ('-' for standard input), one glob pattern a line, expanded (repeatable; "
        + "blank lines and lines starting with # are ignored).", valueName: "FILE"))
  var filesFrom: [String] = []
  @Option(
    name: .customLong(EngineFlag.filesFromVerbatim),
    help: ArgumentHelp(
      "Back up the paths listed in FILE, one a line, taken as they are (only empty lines are ignored).",
      valueName: "FILE"))
  var filesFromVerbatim: [String] = []
  @Option(
    name: .customLong(EngineFlag.filesFromRaw),
    help: ArgumentHelp("Back up the paths listed in FILE, each ended by a NUL byte (find -print0).", valueName: "FILE"))
  var filesFromRaw: [String] = []

  func validate() throws {
    for (flag, list, ci) in [(EngineFlag.exclude, exclude, false), (EngineFlag.iexclude, iexclude, true)] {
      do { _ = try PathFilter(list, caseInsensitive: ci) } catch { throw ValidationError("--\(flag): \(error)") }
    }
    for t in excludeIfPresent {
      do { _ = try ExcludeTag(parsing: t) } catch {
        throw ValidationError("--\(EngineFlag.excludeIfPresent) '\(t)': \(error.reason)")
      }
    }
    if excludeFileRoot != nil {
      if excludeFile.isEmpty && iexcludeFile.isEmpty {
        throw ValidationError("--\(EngineFlag.excludeFileRoot) applies to --exclude-file and --iexclude-file; give one")
      }
      for f in excludeFile + iexcludeFile {
        do { _ = try Self.components(below: f) } catch { throw ValidationError("\(error)") }
      }
    }
    let stdinLists = (filesFrom + filesFromVerbatim + filesFromRaw).filter { $0 == "-" }.count
    if stdinLists > 1 { throw ValidationError("only one --files-from list can be read from standard input ('-')") }
  }

  /// The first selection flag given (without dashes), if any.
  var givenFlag: String? {
    let given: [(String, Bool)] = [
      (EngineFlag.exclude, !exclude.isEmpty), (EngineFlag.iexclude, !iexclude.isEmpty),
      (EngineFlag.excludeFile, !excludeFile.isEmpty), (EngineFlag.iexcludeFile, !iexcludeFile.isEmpty),
      (EngineFlag.excludeIfPresent, !excludeIfPresent.isEmpty), (EngineFlag.excludeCaches, excludeCaches),
      (EngineFlag.oneFileSystem, oneFileSystem), (EngineFlag.filesFrom, !filesFrom.isEmpty),
      (EngineFlag.filesFromVerbatim, !filesFromVerbatim.isEmpty), (EngineFlag.filesFromRaw, !filesFromRaw.isEmpty),
    ]
    return given.first { $0.1 }?.0
  }

  /// Whether paths come from a list (so none need be given as arguments).
  var listsPaths: Bool { !(filesFrom + filesFromVerbatim + filesFromRaw).isEmpty }

  /// The contents of a file named by `flag` ('-' is standard input), as text (UTF-8, or UTF-16 with a byte-order
  /// mark, as restic reads them); a usage error naming the option and the file when it cannot be read.
  static func readText(_ file: String, flag: String) throws -> String {
    let data: Data
    do {
      data =
        file == "-"
        ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: file))
    } catch {
      let reason = (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
      throw EngineError.usage("--\(flag) \(file): cannot read the file: \(reason)")
    }
    let bytes = [UInt8](data)
    if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) {
      guard let s = String(data: data, encoding: .utf16) else {
        throw EngineError.usage("--\(flag) \(file): not valid UTF-16")
      }
      return s
    }
    let body = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(bytes.dropFirst(3)) : bytes
    guard let s = String(validating: body, as: UTF8.self) else {
      throw EngineError.usage("--\(flag) \(file): not UTF-8 text (use --\(EngineFlag.filesFromRaw) for raw names)")
    }
    return s
  }

  /// The largest exclude file read below `--exclude-file-root`.
  static let maxRootedFileBytes = 1 << 20

  /// The components of an exclude file's path below `--exclude-file-root`: absolute (anchored at the root), no `..`.
  static func components(below path: String) throws -> [String] {
    guard path.hasPrefix("/") else {
      throw EngineError.usage(
        "--\(EngineFlag.excludeFile) \(path): with --\(EngineFlag.excludeFileRoot), give the path from the root, "
          + "starting with /")
    }
    let parts = path.split(separator: "/").map(String.init).filter { $0 != "." }
    guard !parts.isEmpty, !parts.contains("..") else {
      throw EngineError.usage(
        "--\(EngineFlag.excludeFile) \(path): name a file below --\(EngineFlag.excludeFileRoot), without '..'")
    }
    return parts
  }

  /// The text of exclude file `path` below `root`, opened one component at a time without following a symlink
  /// (O_NOFOLLOW), so a link in the claim cannot point the engine at its own secrets or another volume; a regular
  /// file of at most `maxRootedFileBytes` (a fifo or device would block or never end). Errors name the file and
  /// never its content.
  static func readBelow(root: String, _ path: String, flag: String) throws -> String {
    let parts = try components(below: path)
    func fail(_ what: String) -> EngineError {
      EngineError.usage("--\(flag) \(path) (below \(root)): \(what)")
    }
    var dir = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard dir >= 0 else { throw fail("cannot open the root: \(String(cString: strerror(errno)))") }
    for (i, name) in parts.enumerated() {
      let last = i == parts.count - 1
      let flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? O_NONBLOCK | O_NOCTTY : O_DIRECTORY)
      let fd = openat(dir, name, flags)
      let err = errno
      close(dir)
      guard fd >= 0 else {
        switch err {
        case ENOENT:
          throw fail("no such file; create it, or remove it from the policy's excludeFile")
        case ELOOP, ENOTDIR:
          throw fail("\(last ? "is" : "passes through") a symbolic link or a non-directory; name the file itself")
        default: throw fail(String(cString: strerror(err)))
        }
      }
      dir = fd
    }
    let fd = dir
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw fail(String(cString: strerror(errno))) }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw fail("not a regular file") }
    guard st.st_size <= maxRootedFileBytes else {
      throw fail("\(st.st_size) bytes; an exclude file may have at most \(maxRootedFileBytes)")
    }
    // Read to the end (the file may change while read), at most one byte past the limit.
    let capacity = maxRootedFileBytes + 1
    var data = [UInt8](repeating: 0, count: capacity)
    var n = 0
    while n < capacity {
      let r = data.withUnsafeMutableBytes { read(fd, $0.baseAddress! + n, capacity - n) }
      if r < 0 && errno == EINTR { continue }
      guard r >= 0 else { throw fail(String(cString: strerror(errno))) }
      if r == 0 { break }
      n += r
    }
    guard n <= maxRootedFileBytes else { throw fail("grew past \(maxRootedFileBytes) bytes while read") }
    let bytes = Array(data[..<n])
    let body = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? Array(bytes.dropFirst(3)) : bytes
    guard let s = String(validating: body, as: UTF8.self) else { throw fail("not UTF-8 text") }
    return s
  }

  /// The exclude filters and options: command-line patterns first, then each file's, in order (as restic appends
  /// them); a bad pattern is a usage error naming the option and, for a file, the file.
  func selection(environment: [String: String]) throws -> BackupSelection {
    func patterns(_ inline: [String], files: [String], flag: String, fileFlag: String, ci: Bool) throws -> PathFilter {
      var all = inline
      for f in files {
        let list: [String]
        if let root = excludeFileRoot {
          let text = try Self.readBelow(root: root, f, flag: fileFlag)
          list = PathFilter.patterns(fileText: text, environment: nil).map { PathPattern.anchored($0, at: root) }
        } else {
          list = PathFilter.patterns(fileText: try Self.readText(f, flag: fileFlag), environment: environment)
        }
        do { _ = try PathFilter(list, caseInsensitive: ci) } catch {
          throw EngineError.usage("--\(fileFlag) \(f): \(error)")
        }
        all += list
      }
      do { return try PathFilter(all, caseInsensitive: ci) } catch { throw EngineError.usage("--\(flag): \(error)") }
    }
    var tags: [ExcludeTag] = []
    for t in excludeIfPresent {
      do { tags.append(try ExcludeTag(parsing: t)) } catch {
        throw EngineError.usage("--\(EngineFlag.excludeIfPresent) '\(t)': \(error.reason)")
      }
    }
    if excludeCaches { tags.append(.cacheDir) }
    return BackupSelection(
      excludes: [
        try patterns(
          exclude, files: excludeFile, flag: EngineFlag.exclude, fileFlag: EngineFlag.excludeFile, ci: false),
        try patterns(
          iexclude, files: iexcludeFile, flag: EngineFlag.iexclude, fileFlag: EngineFlag.iexcludeFile, ci: true),
      ], oneFileSystem: oneFileSystem, excludeIfPresent: tags)
  }

  /// The paths to back up, as restic gathers them: `--files-from` (each line a glob pattern), then
  /// `--files-from-verbatim`, then `--files-from-raw`, then the arguments; a path given twice is backed up once.
  /// A pattern that matches nothing is skipped with a warning. Two paths stored under the same name are an error.
  func targets(paths: [String], warnings result: inout CommandResult) throws -> [String] {
    var targets: [String] = []
    for f in filesFrom {
      let text = try Self.readText(f, flag: EngineFlag.filesFrom)
      for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
        let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if line.isEmpty || line.hasPrefix("#") { continue }
        let expanded: [String]
        do { expanded = try PathFilter.glob(line) } catch {
          throw EngineError.usage("--\(EngineFlag.filesFrom) \(f): \(error)")
        }
        if expanded.isEmpty {
          let w = "--\(EngineFlag.filesFrom) \(f): pattern '\(line)' does not match any file, skipped"
          result.addWarnings([w])
          FileHandle.standardError.write(Data("warning: \(w)\n".utf8))
        }
        targets += expanded
      }
    }
    for f in filesFromVerbatim {
      let text = try Self.readText(f, flag: EngineFlag.filesFromVerbatim)
      for line in text.split(separator: "\n") {
        let l = line.hasSuffix("\r") ? line.dropLast() : line
        if !l.isEmpty { targets.append(String(l)) }
      }
    }
    for f in filesFromRaw {
      let data: Data
      do {
        data =
          f == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: f))
      } catch {
        throw EngineError.usage(
          "--\(EngineFlag.filesFromRaw) \(f): cannot read the file: \(error.localizedDescription)")
      }
      guard !data.isEmpty else { continue }
      guard data.last == 0 else {
        throw EngineError.usage("--\(EngineFlag.filesFromRaw) \(f): the last name is not ended by a NUL byte")
      }
      for name in data.dropLast().split(separator: 0, omittingEmptySubsequences: false) {
        guard !name.isEmpty else {
          throw EngineError.usage("--\(EngineFlag.filesFromRaw) \(f): an empty name (two NUL bytes in a row)")
        }
        targets.append(String(decoding: name, as: UTF8.self))
      }
    }
    targets += paths
    var seen = Set<String>()
    targets = targets.filter { seen.insert(PathPattern.clean($0)).inserted }
    guard !targets.isEmpty else {
      throw EngineError.usage("nothing to back up: the --files-from lists name no existing path")
    }
    // Each path is stored under its base name: two with the same one would collide in the snapshot.
    var byName: [String: String] = [:]
    for t in targets {
      let name = Repository.storedName(of: t)
      if let other = byName[name] {
        throw EngineError.usage(
          "\(other) and \(t) would both be stored as '\(name)' (each path is stored under its base name); back up "
            + "their common parent directory instead, with --exclude for what to leave out")
      }
      byName[name] = t
    }
    return targets
  }
}
