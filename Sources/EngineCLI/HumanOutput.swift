import BackupEngine
import EngineContract
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// restic's formatting of sizes and durations for people (its `ui.FormatBytes` and `ui.FormatDuration`), and its
/// one-line progress status.
enum HumanFormat {
  /// Binary units with three decimals, as restic prints them: `512 B`, `1.204 MiB`, `2.100 GiB`.
  static func bytes(_ n: Int64) -> String {
    let sign = n < 0 ? "-" : ""
    let c = n.magnitude
    let b = Double(c)
    let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
    for (size, unit) in units where c >= size {
      return sign + String(format: "%.3f", b / Double(size)) + " " + unit
    }
    return "\(sign)\(c) B"
  }

  /// Whole seconds as restic prints a duration: `0:05`, `12:34`, `1:02:03`.
  static func duration(_ seconds: Double) -> String {
    let s = seconds.isFinite ? Int(max(0, seconds)) : 0
    let h = s / 3600
    let m = (s % 3600) / 60
    let sec = s % 60
    return h > 0 ? String(format: "%d:%02d:%02d", h, m, sec) : String(format: "%d:%02d", m, sec)
  }

  /// A snapshot id as restic shows it: its first 8 hex digits.
  static func shortID(_ hex: String) -> String { String(hex.prefix(8)) }

  /// A time as restic's tables show it, in the local time zone: `2026-12-06 14:30:05`.
  static func time(_ d: Date) -> String {
    let f = DateFormatter()
    f.locale = Locale(identifier: "en_US_POSIX")
    f.timeZone = TimeZone.current
    f.dateFormat = "yyyy-MM-dd HH:mm:ss"
    return f.string(from: d)
  }

  /// restic's text table: columns two spaces apart, as wide as their widest cell, the header and the rows between
  /// lines of dashes; no trailing spaces.
  static func table(header: [String], rows: [[String]]) -> [String] {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
    func line(_ cells: [String]) -> String {
      var out = ""
      for (i, c) in cells.enumerated() {
        out += i == cells.count - 1 ? c : c.padding(toLength: widths[i] + 2, withPad: " ", startingAt: 0)
      }
      while out.hasSuffix(" ") { out.removeLast() }
      return out
    }
    let rule = String(repeating: "-", count: widths.reduce(0, +) + 2 * max(0, widths.count - 1))
    return [line(header), rule] + rows.map(line) + [rule]
  }

  /// The status line a person sees while a command runs, modelled on restic's
  /// `[0:05] 12.34%  120 files 1.204 GiB, total 9.800 GiB, 0 errors ETA 0:30`: what the event carries and nothing
  /// more (restore counts no files, verify counts the packs it read). `width` (the terminal's columns) cuts the line.
  static func progressLine(_ ev: ProgressEvent, elapsed: Double, width: Int? = nil) -> String {
    var line = "[\(duration(elapsed))] "
    var fraction: Double?
    if let total = ev.bytesTotal, total > 0 {
      let f = min(1, max(0, Double(ev.bytesDone) / Double(total)))
      fraction = f
      line += String(format: "%.2f%%  ", f * 100)
    }
    var parts: [String] = []
    if ev.phase == "verify" {
      parts.append("\(ev.files) packs read")
    } else if ev.files > 0 || ev.phase != "restore" {
      parts.append("\(ev.files) files \(bytes(ev.bytesDone))")
    } else {
      parts.append(bytes(ev.bytesDone))
    }
    if let total = ev.bytesTotal, total > 0 { parts.append("total \(bytes(total))") }
    if ev.bytesStored > 0 { parts.append("\(bytes(ev.bytesStored)) stored") }
    if ev.errors > 0 || ev.phase == "backup" { parts.append("\(ev.errors) errors") }
    line += parts.joined(separator: ", ")
    if let f = fraction, f > 0, f < 1, elapsed > 0 {
      line += " ETA \(duration(elapsed * (1 - f) / f))"
    }
    if let width, width > 1, line.count > width - 1 { line = String(line.prefix(width - 1)) }
    return line
  }
}

/// Lets an update through at most once per `interval` seconds (the first at once).
struct ProgressThrottle {
  var interval: Double
  var last: Double?

  init(interval: Double) { self.interval = interval }

  /// Whether to show an update at `now` (seconds on any monotonic clock); records it when so.
  mutating func shouldEmit(at now: Double) -> Bool {
    if let last, now - last < interval { return false }
    last = now
    return true
  }
}

/// The `--json` progress lines (`EngineProgress`, the contract's type), at most one per `interval` seconds (0: every
/// event).
final class JSONProgress: @unchecked Sendable {
  private let lock = NSLock()
  private var throttle: ProgressThrottle
  private let start = Date()

  init(interval: Double) { throttle = ProgressThrottle(interval: interval) }

  /// The line of `ev` with its newline, or nil when the last line was too recent.
  func encode(_ ev: ProgressEvent) -> Data? {
    lock.lock()
    let elapsed = Date().timeIntervalSince(start)
    let due = throttle.shouldEmit(at: elapsed)
    lock.unlock()
    guard due else { return nil }
    var p = ev
    p.secondsElapsed = (elapsed * 1000).rounded() / 1000
    do {
      return try p.encodedLine() + Data("\n".utf8)
    } catch {
      FileHandle.standardError.write(Data("warning: progress not encodable: \(error)\n".utf8))
      return nil
    }
  }
}

/// The status line people see. On a terminal's stdout (`plain` false): written over itself with `\r`, at most every
/// `interval`, and cleared before anything else is printed and when the command ends. Elsewhere (`plain`, when
/// `BOTRT_PROGRESS_FPS` asks for it): one whole line per update, newline-terminated, with no `\r` and no escape.
final class ProgressLine: @unchecked Sendable {
  /// How often the line may change by default (restic redraws up to 60 times a second; the engine reports at most
  /// every 0.5 s, verify once per pack).
  static let interval = 0.25
  /// The terminal's line: at the rate `BOTRT_PROGRESS_FPS` sets, else every `interval`.
  static let shared = ProgressLine(
    interval: progressFPS(ProcessInfo.processInfo.environment[EngineEnv.progressFPS]).map { 1 / $0 } ?? interval)

  /// The frames per second `BOTRT_PROGRESS_FPS` (restic's RESTIC_PROGRESS_FPS) asks for: a positive number, at most
  /// 60 (restic's cap); nil when unset, empty or not a positive number.
  static func progressFPS(_ value: String?) -> Double? {
    guard let v = value?.trimmingCharacters(in: .whitespaces), !v.isEmpty, let fps = Double(v), fps.isFinite, fps > 0
    else { return nil }
    return min(fps, 60)
  }

  private let lock = NSLock()
  private var throttle: ProgressThrottle
  private let plain: Bool
  private var shown = false
  private let start = Date()

  init(interval: Double, plain: Bool = false) {
    throttle = ProgressThrottle(interval: interval)
    self.plain = plain
  }

  /// Shows the event (unless the last update was too recent).
  func update(_ ev: ProgressEvent) {
    lock.lock()
    defer { lock.unlock() }
    let elapsed = Date().timeIntervalSince(start)
    guard throttle.shouldEmit(at: elapsed) else { return }
    if plain {
      FileHandle.standardOutput.write(Data((HumanFormat.progressLine(ev, elapsed: elapsed) + "\n").utf8))
      return
    }
    let line = HumanFormat.progressLine(ev, elapsed: elapsed, width: Self.terminalWidth())
    FileHandle.standardOutput.write(Data(("\r" + line + "\u{1B}[K").utf8))
    shown = true
  }

  /// Erases the line, if one is shown (plain lines stay).
  func clear() {
    lock.lock()
    defer { lock.unlock() }
    guard shown else { return }
    FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8))
    shown = false
  }

  static func terminalWidth() -> Int? {
    var w = winsize()
    guard ioctl(1, UInt(TIOCGWINSZ), &w) == 0, w.ws_col > 0 else { return nil }
    return Int(w.ws_col)
  }
}

extension RepoOptions {
  /// Whether people get a summary on stdout: neither `--json` (stdout is machine output) nor `--quiet`.
  var human: Bool { !json && !quiet }

  /// Prints the command's summary for people on stdout (restic's convention), after clearing the progress line;
  /// nothing with `--json` or `--quiet`.
  func summary(_ lines: [String]) {
    guard human, !lines.isEmpty else { return }
    ProgressLine.shared.clear()
    FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
  }
}

extension BackupCommand {
  /// restic's backup summary, with what the engine counts: it tells unmodified files from the others (not new from
  /// changed), counts directories, and measures the new data before (`bytesNew`) and after compression and
  /// encryption (`bytesStored`).
  static func summary(_ r: BackupResult, seconds: Double) -> [String] {
    [
      "Files:        \(r.files - r.filesUnchanged) new or changed, \(r.filesUnchanged) unmodified",
      "Dirs:         \(r.dirs)",
      "Added to the repository: \(HumanFormat.bytes(r.bytesNew)) (\(HumanFormat.bytes(r.bytesStored)) stored)",
      "",
      "processed \(r.files) files, \(HumanFormat.bytes(r.bytesRead)) in \(HumanFormat.duration(seconds))",
    ] + (r.errors.isEmpty ? [] : ["\(r.errors.count) sources could not be read (see the errors above)"])
      + ["snapshot \(HumanFormat.shortID(r.snapshotID.hex)) saved"]
  }
}

extension ForgetCommand {
  /// restic's output of `forget`: the policy, then per retention group a table of the snapshots kept, with the rules
  /// that keep each (its "Reasons" column), and one of those removed; then what prune deleted.
  static func summary(_ r: ForgetResult, policy: RetentionPolicy, prune: Bool, dryRun: Bool) -> [String] {
    var lines = ["Applying Policy: \(describe(policy))"]
    for g in r.groups {
      lines.append(
        "snapshots for (host [\(g.hostname)], type [\(g.dataType)], paths [\(g.paths.joined(separator: ", "))]):")
      if !g.keep.isEmpty {
        lines.append("keep \(g.keep.count) snapshots:")
        lines += table(g.keep, reasons: true)
        lines.append("")
      }
      if !g.remove.isEmpty {
        lines.append("\(dryRun ? "would remove" : "remove") \(g.remove.count) snapshots:")
        lines += table(g.remove, reasons: false)
        lines.append("")
      }
    }
    if r.groups.isEmpty { lines.append("no snapshots") }
    if prune {
      var p =
        "\(dryRun ? "would delete" : "deleted") \(r.packsDeleted) packs (\(HumanFormat.bytes(r.bytesFreed)) "
        + "\(dryRun ? "to free" : "freed"))"
      if !dryRun && r.packsRepacked > 0 { p += ", repacked \(r.packsRepacked) packs into \(r.packsWritten)" }
      lines.append(p)
    }
    if !r.retained.isEmpty { lines.append("\(r.retained.count) objects are retained by Object Lock, not deleted yet") }
    while lines.last == "" { lines.removeLast() }
    return lines
  }

  /// restic's table of snapshots: ID, Time, Host, Tags, (Reasons,) Paths; one row per snapshot, continued on further
  /// lines when it has several reasons, tags or paths; the count below.
  static func table(_ snaps: [ForgetSnapshot], reasons: Bool) -> [String] {
    var rows: [[String]] = []
    for s in snaps {
      let m = s.manifest
      let cells: [[String]] =
        [
          [HumanFormat.shortID(s.id)], [HumanFormat.time(m.date)], [m.hostname],
          m.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" },
        ] + (reasons ? [s.reasons.map(describe)] : []) + [m.paths]
      let height = max(1, cells.map(\.count).max() ?? 1)
      for i in 0..<height { rows.append(cells.map { i < $0.count ? $0[i] : "" }) }
    }
    return HumanFormat.table(
      header: ["ID", "Time", "Host", "Tags"] + (reasons ? ["Reasons"] : []) + ["Paths"], rows: rows)
      + ["\(snaps.count) snapshots"]
  }

  /// A reason as restic words it: `last snapshot`, `daily snapshot`, `within 90d`.
  static func describe(_ r: KeepReason) -> String {
    switch r {
    case .last: return "last snapshot"
    case .hourly: return "hourly snapshot"
    case .daily: return "daily snapshot"
    case .weekly: return "weekly snapshot"
    case .monthly: return "monthly snapshot"
    case .yearly: return "yearly snapshot"
    case .within(let s): return "within \(EngineDuration.format(seconds: Int64(s)))"
    case .future: return "dated in the future"
    case .noRule: return "no keep rule"
    }
  }

  /// The policy as restic states it: `keep 1 latest, 7 daily snapshots, all within 90d of the newest`.
  static func describe(_ p: RetentionPolicy) -> String {
    let counts = [
      (p.keepLast, "latest"), (p.keepHourly, "hourly"), (p.keepDaily, "daily"), (p.keepWeekly, "weekly"),
      (p.keepMonthly, "monthly"), (p.keepYearly, "yearly"),
    ].filter { $0.0 > 0 }.map { "\($0.0) \($0.1)" }
    var parts: [String] = []
    if !counts.isEmpty { parts.append("keep " + counts.joined(separator: ", ") + " snapshots") }
    if let a = p.maxAge {
      parts.append("keep all snapshots within \(EngineDuration.format(seconds: Int64(a))) of the newest")
    }
    return parts.isEmpty ? "keep all snapshots" : parts.joined(separator: ", ")
  }
}

extension CopyCommand {
  /// Each copied snapshot with its new id in the target (restic prints `snapshot ID saved`), the ones skipped, and the
  /// data the target received.
  static func summary(_ r: CopyResult, removedFromTarget: Int?) -> [String] {
    var lines = r.copied.map {
      "snapshot \(HumanFormat.shortID($0.source.hex)) copied: snapshot \(HumanFormat.shortID($0.target.hex)) saved"
    }
    if !r.skipped.isEmpty { lines.append("skipped \(r.skipped.count) snapshots the target already holds") }
    if !r.expired.isEmpty {
      lines.append("did not copy \(r.expired.count) snapshots the target's retention would remove")
    }
    lines.append(
      "copied \(r.copied.count) snapshots, \(r.files) files, \(HumanFormat.bytes(r.bytes)): "
        + "\(HumanFormat.bytes(r.bytesRead)) read, \(HumanFormat.bytes(r.bytesStored)) stored in the target")
    if let removedFromTarget { lines.append("removed \(removedFromTarget) snapshots from the target by its retention") }
    return lines
  }
}
