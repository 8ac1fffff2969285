import EngineContract
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Malformed patterns of one list: each pattern and what is wrong with it.
public struct PathFilterError: Error, Sendable, Hashable, CustomStringConvertible {
  public var invalid: [PathPatternError]
  public var description: String {
    "invalid pattern(s): " + invalid.map { "'\($0.pattern)' (\($0.reason))" }.joined(separator: ", ")
  }
}

/// An ordered list of exclude patterns, as restic's `--exclude` (or, case-insensitive, `--iexclude`) applies them:
/// a path is excluded when the last pattern that matches it is not negated. Empty patterns are ignored.
public struct PathFilter: Sendable, Hashable {
  public let patterns: [PathPattern]
  public let caseInsensitive: Bool

  /// Throws naming every malformed pattern.
  public init(_ patterns: [String], caseInsensitive: Bool = false) throws(PathFilterError) {
    var parsed: [PathPattern] = []
    var invalid: [PathPatternError] = []
    for p in patterns where !p.isEmpty {
      do { parsed.append(try PathPattern(caseInsensitive ? p.lowercased() : p)) } catch {
        invalid.append(PathPatternError(pattern: p, reason: error.reason))
      }
    }
    guard invalid.isEmpty else { throw PathFilterError(invalid: invalid) }
    self.patterns = parsed
    self.caseInsensitive = caseInsensitive
  }

  public var isEmpty: Bool { patterns.isEmpty }

  /// Whether the patterns exclude `path` (absolute and cleaned, as the backup walks it).
  public func excludes(_ path: String) -> Bool {
    guard !patterns.isEmpty, !path.isEmpty else { return false }
    let strs = PathPattern.splitPath(caseInsensitive ? path.lowercased() : path)
    var matched = false
    for p in patterns {
      if p.isNegated {
        if matched && p.matches(components: strs) { matched = false }
      } else if !matched {
        matched = p.matches(components: strs)
      }
    }
    return matched
  }

  /// The patterns of an exclude file, as restic reads them: each line trimmed of white space, empty lines and lines
  /// starting with `#` ignored, and environment variables expanded (`$NAME`, `${NAME}`; `$$` is a `$`). With no
  /// environment (nil) the lines are taken literally: a file that is someone's data must not read the engine's
  /// environment into a pattern (and from there into an error message).
  public static func patterns(fileText: String, environment: [String: String]?) -> [String] {
    fileText.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).compactMap {
      let line = $0.trimmingCharacters(in: .whitespacesAndNewlines)
      if line.isEmpty || line.hasPrefix("#") { return nil }
      guard let environment else { return line }
      return expandEnvironment(line, environment)
    }
  }

  /// Go's `os.Expand` with restic's mapping: `$NAME` and `${NAME}` are replaced by the variable (empty when unset),
  /// `$$` by `$`; a `$` followed by no name is kept, and a malformed `${` is dropped.
  public static func expandEnvironment(_ s: String, _ env: [String: String]) -> String {
    let b = Array(s.utf8)
    var out: [UInt8] = []
    var i = 0
    func isSpecial(_ c: UInt8) -> Bool { "*#$@!?-".utf8.contains(c) || (c >= 0x30 && c <= 0x39) }
    func isAlnum(_ c: UInt8) -> Bool {
      c == 0x5F || (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
    }
    func value(_ name: [UInt8]) -> [UInt8] {
      let n = String(decoding: name, as: UTF8.self)
      return n == "$" ? Array("$".utf8) : Array((env[n] ?? "").utf8)
    }
    while i < b.count {
      guard b[i] == 0x24, i + 1 < b.count else {
        out.append(b[i])
        i += 1
        continue
      }
      let rest = b[(i + 1)...]
      var name: [UInt8] = []
      var width = 0
      if rest.first == 0x7B {  // {
        if rest.count > 2, isSpecial(rest[rest.startIndex + 1]), rest[rest.startIndex + 2] == 0x7D {
          name = [rest[rest.startIndex + 1]]
          width = 3
        } else if let close = rest.dropFirst().firstIndex(of: 0x7D) {
          name = Array(rest[(rest.startIndex + 1)..<close])
          width = close - rest.startIndex + 1
        } else {
          width = 1  // "${" without "}": bad syntax, eaten
        }
      } else if isSpecial(rest[rest.startIndex]) {
        name = [rest[rest.startIndex]]
        width = 1
      } else {
        name = Array(rest.prefix(while: isAlnum))
        width = name.count
      }
      if name.isEmpty && width > 0 {
        // Bad syntax ("${}" or "${"): eaten.
      } else if name.isEmpty {
        out.append(0x24)
      } else {
        out += value(name)
      }
      i += 1 + width
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// Go's `filepath.Glob`, as restic's `--files-from` expands each line: the paths matching `pattern` in sorted
  /// order (`*`, `?` and `[...]` per component, matching dot files too); a pattern without them is returned when the
  /// path exists. Nothing when nothing matches; throws for a malformed pattern.
  public static func glob(_ pattern: String) throws(PathPatternError) -> [String] {
    func hasMeta(_ s: String) -> Bool { s.contains { "*?[\\".contains($0) } }
    for c in pattern.split(separator: "/") where hasMeta(String(c)) {
      do { _ = try ComponentGlob(String(c)) } catch { throw PathPatternError(pattern: pattern, reason: error.reason) }
    }
    guard hasMeta(pattern) else {
      var st = stat()
      return lstat(pattern, &st) == 0 ? [pattern] : []
    }
    let slash = pattern.lastIndex(of: "/")
    let file = String(slash.map { pattern[pattern.index(after: $0)...] } ?? Substring(pattern))
    var dir = slash.map { String(pattern[...$0]) } ?? ""
    dir = dir.isEmpty ? "." : (dir == "/" ? "/" : String(dir.dropLast()))
    let fileGlob: ComponentGlob
    do { fileGlob = try ComponentGlob(file) } catch { throw PathPatternError(pattern: pattern, reason: error.reason) }
    var dirs = [dir]
    if hasMeta(dir) {
      guard dir != pattern else { throw PathPatternError(pattern: pattern, reason: "cannot expand") }
      dirs = try glob(dir)
    }
    var out: [String] = []
    for d in dirs {
      var st = stat()
      guard stat(d, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, let h = opendir(d) else { continue }
      var names: [String] = []
      while let e = readdir(h) {
        let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if n != "." && n != ".." { names.append(n) }
      }
      closedir(h)
      names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
      for n in names where fileGlob.matches(n) { out.append(PathPattern.clean(d + "/" + n)) }
    }
    return out
  }
}

/// A tag file that marks a directory whose content is not backed up (restic's `--exclude-if-present NAME[:HEADER]`):
/// the directory and the tag file are kept, everything else in it is left out. With a header, the file must start
/// with it.
public struct ExcludeTag: Sendable, Hashable {
  public var name: String
  public var header: [UInt8]

  public init(name: String, header: [UInt8] = []) {
    self.name = name
    self.header = header
  }

  /// `NAME` or `NAME:HEADER`; throws a reason for an empty name or one with a `/`.
  public init(parsing text: String) throws(PathPatternError) {
    let p = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
    let name = String(p[0])
    guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
      throw PathPatternError(pattern: text, reason: "the tag file must be a file name (NAME or NAME:HEADER)")
    }
    self.init(name: name, header: p.count > 1 ? Array(p[1].utf8) : [])
  }

  /// restic's `--exclude-caches`: CACHEDIR.TAG with the signature of the Cache Directory Tagging Specification.
  public static let cacheDir = ExcludeTag(
    name: "CACHEDIR.TAG", header: Array("Signature: 8a477f597d28d172789f06886806bc55".utf8))

  /// Whether the directory `dir` holds this tag file (and it starts with the header).
  func tags(_ dir: String) -> Bool {
    let path = dir + "/" + name
    var st = stat()
    guard lstat(path, &st) == 0 else { return false }
    if header.isEmpty { return true }
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: header.count)
    var got = 0
    while got < buf.count {
      let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, $0.count - got) }
      if n < 0 && errno == EINTR { continue }
      if n <= 0 { break }
      got += n
    }
    return got == buf.count && buf == header
  }
}

/// What a backup of paths leaves out (restic's exclude options); empty backs up everything below the paths.
public struct BackupSelection: Sendable, Hashable {
  /// An entry is left out when any of these exclude it (`--exclude` patterns are one filter, `--iexclude` another).
  public var excludes: [PathFilter]
  /// Do not descend into directories on another file system than their path's root (a mount point is kept, empty).
  public var oneFileSystem: Bool
  /// Directories holding one of these tag files keep only the tag file.
  public var excludeIfPresent: [ExcludeTag]

  public init(excludes: [PathFilter] = [], oneFileSystem: Bool = false, excludeIfPresent: [ExcludeTag] = []) {
    self.excludes = excludes.filter { !$0.isEmpty }
    self.oneFileSystem = oneFileSystem
    self.excludeIfPresent = excludeIfPresent
  }

  public var isEmpty: Bool { excludes.isEmpty && !oneFileSystem && excludeIfPresent.isEmpty }

  /// Whether the patterns exclude the absolute path `path`.
  public func excludesByName(_ path: String) -> Bool { excludes.contains { $0.excludes(path) } }
}
