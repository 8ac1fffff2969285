import Foundation

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

  /// `pattern` with a leading `/` (after any `!`) anchored at directory `root` instead of the file system's root:
  /// a claim's patterns are anchored at the claim's mount (the policy's `exclude`, the claim's exclude files).
  public static func anchored(_ pattern: String, at root: String) -> String {
    let negated = pattern.hasPrefix("!")
    let body = negated ? String(pattern.dropFirst()) : pattern
    let base = root.hasSuffix("/") ? String(root.dropLast()) : root
    return (negated ? "!" : "") + (body.hasPrefix("/") ? base + body : body)
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

  /// Whether the pattern matches a path already split by `splitPath` (a filter splits once for all its patterns).
  public func matches(components strs: [Substring]) -> Bool { Self.match(parts[...], strs) }

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
  public static func splitPath(_ p: String) -> [Substring] {
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
