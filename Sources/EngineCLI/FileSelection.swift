import ArgumentParser
import BackupEngine
import EngineContract
import Foundation

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

  /// The exclude filters and options: command-line patterns first, then each file's, in order (as restic appends
  /// them); a bad pattern is a usage error naming the option and, for a file, the file.
  func selection(environment: [String: String]) throws -> BackupSelection {
    func patterns(_ inline: [String], files: [String], flag: String, fileFlag: String, ci: Bool) throws -> PathFilter {
      var all = inline
      for f in files {
        let list = PathFilter.patterns(fileText: try Self.readText(f, flag: fileFlag), environment: environment)
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
