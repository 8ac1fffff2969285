/// A policy's `include` list (the paths of a claim that are backed up, everything else left out, as restic's
/// `--files-from` names what a backup reads) as the chain of exclude patterns that selects the same files, anchored at
/// the backed-up directory. Unlike `--files-from`, which makes the listed paths the snapshot's roots, the chain keeps
/// the snapshot's root at the claim, so a restore puts every file back where it was.
///
/// Each include is an anchored path whose components may be globs (`*`, `?`, `[...]`), never `**`. For the includes
/// `/data/db` and `/etc` under root R the chain is:
///
///     R/*            leave out everything at the top
///     !R/data        but descend into data (on the way to data/db)
///     !R/etc         and keep etc, whole
///     R/data/*       leave out what is in data
///     !R/etc         (etc again: R/data/* cannot match below it, but a glob at this depth could)
///     !R/data/db     but keep data/db, whole
///
/// The engine's filter (restic's) excludes a path when the last pattern matching it, or a leading run of its
/// components, is not negated; a directory left out is not read, so every directory on the way to an include is
/// re-included at its depth before its children are left out at the next.
public enum IncludePaths {
  /// Why an include cannot be translated: the include as given and the reason.
  public struct Problem: Error, Sendable, Hashable, CustomStringConvertible {
    public var include: String
    public var reason: String
    public var description: String { "'\(include)' \(reason)" }
  }

  /// The components of an include (`/a/b*/c` → `["a", "b*", "c"]`); throws when it is not an anchored path of
  /// valid component globs without `**`, `.` or `..`. `/` alone is the whole directory: no components.
  public static func components(_ include: String) throws(Problem) -> [String] {
    if include.hasPrefix("!") {
      throw Problem(include: include, reason: "cannot be negated; leave a path out with exclude")
    }
    guard include.hasPrefix("/") else {
      throw Problem(include: include, reason: "must start with '/' (paths are anchored at the backed-up directory)")
    }
    var parts: [String] = []
    for c in include.split(separator: "/", omittingEmptySubsequences: true) {
      if c == "." || c == ".." {
        throw Problem(include: include, reason: "has a '\(c)' component; name the path as it is below the root")
      }
      if c == "**" || c.contains("**") {
        throw Problem(include: include, reason: "uses '**'; name each directory on the way (globs such as * are fine)")
      }
      do {
        _ = try PathPattern("/" + c)
      } catch {
        throw Problem(include: include, reason: "is not a valid pattern: \(error.reason)")
      }
      parts.append(String(c))
    }
    return parts
  }

  /// The exclude chain for `includes` under `root` (absolute, no trailing `/`); empty when nothing is to be left
  /// out (no includes, or `/`). Throws for the first include `components` refuses.
  public static func excludeChain(_ includes: [String], root: String) throws(Problem) -> [String] {
    var paths: [[String]] = []
    for i in includes { paths.append(try components(i)) }
    if paths.isEmpty || paths.contains(where: \.isEmpty) { return [] }
    let root = root.hasSuffix("/") ? String(root.dropLast()) : root
    func text(_ p: ArraySlice<String>) -> String { root + "/" + p.joined(separator: "/") }
    // An include is "whole" below its own path; a prefix of another include that is itself included (or below an
    // include) needs no leaving-out of its children.
    func whole(_ prefix: ArraySlice<String>) -> Bool {
      paths.contains { $0.count <= prefix.count && Array(prefix.prefix($0.count)) == $0 }
    }
    var chain = [root + "/*"]
    var seen = Set<String>()
    func add(_ s: String) {
      if seen.insert(s).inserted { chain.append(s) }
    }
    let depth = paths.map(\.count).max() ?? 0
    for d in 1...depth {
      // Re-include every path of depth d on the way to (or being) an include.
      for p in paths where p.count >= d { add("!" + text(p[0..<d])) }
      // Leave out the children of those that are not whole, then take back the whole includes a glob at this depth
      // may have matched again.
      var leftOut = false
      for p in paths where p.count > d && !whole(p[0..<d]) {
        let s = text(p[0..<d]) + "/*"
        if seen.insert(s).inserted {
          chain.append(s)
          leftOut = true
        }
      }
      if leftOut {
        for p in paths where p.count <= d { chain.append("!" + text(p[...])) }
      }
    }
    return chain
  }
}
