import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A malformed pattern: the pattern as given and what is wrong with it.
public struct PathPatternError: Error, Sendable, Hashable, CustomStringConvertible {
  public var pattern: String
  public var reason: String
  public init(pattern: String, reason: String) {
    self.pattern = pattern
    self.reason = reason
  }
  public var description: String { "invalid pattern '\(pattern)': \(reason)" }
}

/// One path component of a pattern, as Go's `filepath.Match` reads it: `*` (any run of characters), `?` (one
/// character), `[...]` (a class: `^` negates, `a-z` ranges, `\` escapes) and `\` escaping the next character.
public struct ComponentGlob: Sendable, Hashable {
  enum Token: Sendable, Hashable {
    case char(Unicode.Scalar)
    case any
    case star
    case set(negated: Bool, ranges: [Range<UInt32>])
  }
  let tokens: [Token]

  /// Compiles `text` (no `/`); throws for what `filepath.Match` reports as ErrBadPattern.
  public init(_ text: String) throws(PathPatternError) {
    let s = Array(text.unicodeScalars)
    var tokens: [Token] = []
    var i = 0
    func bad(_ reason: String) -> PathPatternError { PathPatternError(pattern: text, reason: reason) }
    /// One character of a class (`\` escapes); a `-` or `]` here, or the end, is an error.
    func classChar(_ j: inout Int) throws(PathPatternError) -> UInt32 {
      guard j < s.count, s[j] != "-", s[j] != "]" else { throw bad("malformed character class '[...]'") }
      if s[j] == "\\" {
        j += 1
        guard j < s.count else { throw bad("a trailing '\\' escapes nothing") }
      }
      let c = s[j].value
      j += 1
      guard j < s.count else { throw bad("unclosed character class '['") }
      return c
    }
    while i < s.count {
      switch s[i] {
      case "*":
        if tokens.last != .star { tokens.append(.star) }
        i += 1
      case "?":
        tokens.append(.any)
        i += 1
      case "\\":
        guard i + 1 < s.count else { throw bad("a trailing '\\' escapes nothing") }
        tokens.append(.char(s[i + 1]))
        i += 2
      case "[":
        i += 1
        var negated = false
        if i < s.count, s[i] == "^" {
          negated = true
          i += 1
        }
        var ranges: [Range<UInt32>] = []
        while true {
          if i < s.count, s[i] == "]", !ranges.isEmpty {
            i += 1
            break
          }
          let lo = try classChar(&i)
          var hi = lo
          if s[i] == "-" {
            i += 1
            hi = try classChar(&i)
          }
          // A reversed range (z-a) is not an error in Go: it matches nothing.
          ranges.append(lo <= hi ? lo..<(hi + 1) : 0..<0)
        }
        tokens.append(.set(negated: negated, ranges: ranges))
      default:
        tokens.append(.char(s[i]))
        i += 1
      }
    }
    self.tokens = tokens
  }

  /// Whether `name` (one path component) matches.
  public func matches<S: StringProtocol>(_ name: S) -> Bool {
    let n = Array(name.unicodeScalars)
    var t = 0
    var c = 0
    // The last star's position in the pattern and the name position it was tried at (backtracking point).
    var starT = -1
    var starC = 0
    while c < n.count {
      if t < tokens.count {
        switch tokens[t] {
        case .star:
          starT = t
          starC = c
          t += 1
          continue
        case .any:
          if n[c] != "/" {
            t += 1
            c += 1
            continue
          }
        case .char(let ch):
          if ch == n[c] {
            t += 1
            c += 1
            continue
          }
        case .set(let negated, let ranges):
          let v = n[c].value
          if n[c] != "/" && ranges.contains(where: { $0.contains(v) }) != negated {
            t += 1
            c += 1
            continue
          }
        }
      }
      // Mismatch: let the last star take one more character (never a '/'), or fail.
      guard starT >= 0, n[starC] != "/" else { return false }
      starC += 1
      c = starC
      t = starT + 1
    }
    while t < tokens.count, tokens[t] == .star { t += 1 }
    return t == tokens.count
  }
}

/// One exclude pattern, with the semantics of restic's `filter` package: components joined by `/` and matched one
/// path component each; `**` matches any number of components; a pattern with a leading `/` is anchored at the root,
/// one without matches any run of consecutive components (so `foo` matches `/a/foo` and `/a/foo/b`); a leading `!`
/// negates it (see `PathFilter`). The pattern is cleaned as `filepath.Clean` does (a trailing `/` is ignored).
public struct PathPattern: Sendable, Hashable {
  enum Part: Sendable, Hashable {
    case root
    case doubleStar
    case anyComponent
    case literal(String)
    case glob(ComponentGlob)

    func matches(_ s: Substring) -> Bool {
      switch self {
      case .root: s == "/"
      case .doubleStar, .anyComponent: true
      case .literal(let l): s == l
      case .glob(let g): g.matches(s)
      }
    }
  }

  /// The pattern as given (with its `!`).
  public let original: String
  /// A `!` pattern re-includes what earlier patterns excluded.
  public let isNegated: Bool
  let parts: [Part]

  public init(_ pattern: String) throws(PathPatternError) {
    original = pattern
    var p = Substring(pattern)
    isNegated = p.first == "!"
    if isNegated { p = p.dropFirst() }
    var parts: [Part] = []
    for c in Self.splitPath(Self.clean(String(p))) {
      if c == "/" {
        parts.append(.root)
      } else if c == "**" || c.isEmpty {
        // restic reads an empty component (only "/" cleaned) as `**` too.
        parts.append(.doubleStar)
      } else if c.contains(where: { "\\[]*?".contains($0) }) {
        do { parts.append(.glob(try ComponentGlob(String(c)))) } catch {
          throw PathPatternError(pattern: pattern, reason: error.reason)
        }
      } else {
        parts.append(.literal(String(c)))
      }
    }
    self.parts = parts
  }

  /// Whether `path` (absolute, or relative: then only unanchored patterns can match) matches, ignoring `!`.
  public func matches(_ path: String) -> Bool {
    guard !path.isEmpty else { return false }
    return Self.match(parts[...], Self.splitPath(path))
  }

  static func match(_ parts: ArraySlice<Part>, _ strs: [Substring]) -> Bool {
    if let pos = parts.firstIndex(of: .doubleStar) {
      // `**` stands for 0...n whole components: try each count that can still fit.
      let most = strs.count - parts.count + 1
      guard most >= 0 else { return false }
      for k in 0...most {
        let expanded =
          parts[parts.startIndex..<pos] + Array(repeating: Part.anyComponent, count: k) + parts[(pos + 1)...]
        if match(expanded, strs) { return true }
      }
      return false
    }
    if parts.isEmpty { return strs.isEmpty }
    guard parts.count <= strs.count else { return false }
    let anchored = parts.first == .root
    // An unanchored pattern never matches the root marker itself.
    let minOffset = !anchored && strs.first == "/" ? 1 : 0
    let maxOffset = anchored ? 0 : strs.count - parts.count
    guard minOffset <= maxOffset else { return false }
    for offset in stride(from: maxOffset, through: minOffset, by: -1) {
      var ok = true
      for (i, part) in zip(parts.indices, parts) where !part.matches(strs[offset + i - parts.startIndex]) {
        ok = false
        break
      }
      if ok { return true }
    }
    return false
  }

  /// The components of a path; an absolute path's first is "/".
  static func splitPath(_ p: String) -> [Substring] {
    var parts = p.split(separator: "/", omittingEmptySubsequences: false)
    if parts.first == "" { parts[0] = "/" }
    return parts
  }

  /// `filepath.Clean`: one `/` between components, no `.` components, `..` resolved lexically, no trailing `/`.
  public static func clean(_ path: String) -> String {
    let rooted = path.hasPrefix("/")
    var out: [Substring] = []
    for c in path.split(separator: "/") where c != "." {
      if c == ".." {
        if let last = out.last, last != ".." {
          out.removeLast()
        } else if !rooted {
          out.append(c)
        }
      } else {
        out.append(c)
      }
    }
    let joined = out.joined(separator: "/")
    if rooted { return "/" + joined }
    return joined.isEmpty ? "." : joined
  }

  /// The absolute, cleaned form of a path given relative to `cwd` (as restic matches patterns against it).
  public static func absolute(_ path: String, cwd: String = FileManager.default.currentDirectoryPath) -> String {
    clean(path.hasPrefix("/") ? path : cwd + "/" + path)
  }
}

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
        if matched && PathPattern.match(p.parts[...], strs) { matched = false }
      } else if !matched {
        matched = PathPattern.match(p.parts[...], strs)
      }
    }
    return matched
  }

  /// The patterns of an exclude file, as restic reads them: each line trimmed of white space, empty lines and lines
  /// starting with `#` ignored, and environment variables expanded (`$NAME`, `${NAME}`; `$$` is a `$`).
  public static func patterns(fileText: String, environment: [String: String]) -> [String] {
    fileText.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).compactMap {
      let line = $0.trimmingCharacters(in: .whitespacesAndNewlines)
      if line.isEmpty || line.hasPrefix("#") { return nil }
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
