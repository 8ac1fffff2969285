import Foundation

/// One progress line of a running engine command with `--json` (restic's `"message_type": "status"`): what the engine
/// writes on stdout while a backup or restore runs, and what the controller reads back from the running Pod's log
/// into status. One type for both sides: the engine encodes it, the controller parses it (`parse`).
///
/// The controller runs backups and restores with `--json` and `BOTRT_PROGRESS_FPS` at `jobFramesPerSecond`, so a Job's
/// log holds one such line every `jobIntervalSeconds` (about 150 bytes each: 17 KiB an hour), then the result line.
public struct EngineProgress: Codable, Sendable, Hashable {
  /// Always `status` (restic's value), which tells a progress line from the result line.
  public var messageType: String
  /// `backup`, `restore`, `verify` or `copy`.
  public var phase: String
  /// Files read so far (backup); packs read (verify); 0 for a restore, which counts bytes only.
  public var files: Int64
  /// Bytes read (backup) or written (restore) so far.
  public var bytesDone: Int64
  /// The bytes the command will process, when it knows them (a restore does; a backup learns it at the end).
  public var bytesTotal: Int64?
  /// Bytes of pack files written so far (after deduplication, compression and encryption).
  public var bytesStored: Int64
  /// Sources that could not be read so far.
  public var errors: Int64
  /// Seconds since the command started. Absent from older engines.
  public var secondsElapsed: Double?

  public static let statusType = "status"
  /// How often a Job's engine writes a progress line: one every 5 s (`BOTRT_PROGRESS_FPS=0.2`), twice per status
  /// update of the controller (at most every 10 s), so the newest line is never more than 5 s older than the status.
  public static let jobIntervalSeconds: Double = 5
  /// `BOTRT_PROGRESS_FPS` as the controller sets it on a backup or restore container.
  public static let jobFramesPerSecond = "0.2"
  /// The longest line the controller reads as progress: a real one is about 150 bytes.
  public static let maxLineBytes = 1024

  enum CodingKeys: String, CodingKey {
    case messageType = "message_type"
    case phase, files, bytesDone, bytesTotal, bytesStored, errors, secondsElapsed
  }

  public init(
    phase: String, files: Int64, bytesDone: Int64, bytesTotal: Int64?, bytesStored: Int64, errors: Int64,
    secondsElapsed: Double? = nil
  ) {
    self.messageType = Self.statusType
    self.phase = phase
    self.files = files
    self.bytesDone = bytesDone
    self.bytesTotal = bytesTotal
    self.bytesStored = bytesStored
    self.errors = errors
    self.secondsElapsed = secondsElapsed
  }

  /// The line the engine writes: sorted keys, no newline.
  public func encodedLine() throws -> Data {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    return try e.encode(self)
  }

  /// A progress line read back, or nil for anything else: the result line, a log line of another kind, a line longer
  /// than `maxLineBytes`, JSON of another shape. Counters are clamped to be non-negative, a phase longer than 16
  /// characters or with other than letters is dropped, and a total below the bytes done is dropped, so that a
  /// malformed line cannot put nonsense into status.
  public static func parse(_ line: Substring) -> EngineProgress? {
    let t = line.trimmingCharacters(in: .whitespaces)
    guard t.utf8.count <= maxLineBytes, t.hasPrefix("{"), t.hasSuffix("}") else { return nil }
    guard var p = try? JSONDecoder().decode(EngineProgress.self, from: Data(t.utf8)),
      p.messageType == statusType
    else { return nil }
    guard p.phase.count <= 16, p.phase.allSatisfy({ $0.isASCII && $0.isLetter }) else { return nil }
    p.files = max(0, p.files)
    p.bytesDone = max(0, p.bytesDone)
    p.bytesStored = max(0, p.bytesStored)
    p.errors = max(0, p.errors)
    if let total = p.bytesTotal, total < p.bytesDone || total <= 0 { p.bytesTotal = nil }
    if let s = p.secondsElapsed, !(s.isFinite && s >= 0) { p.secondsElapsed = nil }
    return p
  }

  /// The newest progress line of a log (the tail of a Job's Pod log), or nil when it holds none.
  public static func latest(inLog log: String) -> EngineProgress? {
    for line in log.split(whereSeparator: \.isNewline).reversed() {
      if let p = parse(line) { return p }
    }
    return nil
  }
}
