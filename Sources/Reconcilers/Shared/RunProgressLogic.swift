import DRAPI
import EngineContract
import Foundation

/// Progress of a running backup or restore in status (`RunProgress`), from the engine's progress lines
/// (`EngineProgress`) in the tail of the run's Pod log. Pure: when to read the log again, and what the status says.
public enum RunProgressLogic {
  /// The least time between two reads of a run's log, and so between two progress writes of one object's status.
  public static let updateIntervalSeconds: TimeInterval = 10
  /// The log lines read: the engine writes a progress line every 5 s (`EngineProgress.jobIntervalSeconds`), and
  /// warnings on stderr come between them.
  public static let tailLines = 20
  /// The most bytes of log read at once (20 lines of about 150 bytes; a longer line is no progress line anyway).
  public static let limitBytes = 16 * 1024
  /// `RunProgress.totalBytesSource` values.
  public static let totalFromEngine = "Engine"
  public static let totalFromPreviousBackup = "PreviousBackup"

  /// Whether to read the log of `job`'s Pod now: always for a run that status does not show yet, else once
  /// `updateIntervalSeconds` have passed since the last read.
  public static func due(previous: RunProgress?, job: String, now: Date) -> Bool {
    guard let p = previous, p.job == job else { return true }
    return now.timeIntervalSince(p.updateTime) >= updateIntervalSeconds || now < p.updateTime
  }

  /// When to reconcile again for the next progress update of a running run.
  public static func nextUpdate(after progress: RunProgress) -> Date {
    progress.updateTime.addingTimeInterval(updateIntervalSeconds)
  }

  /// The progress status of `job` from the newest progress line of its log (`line`; nil when the log holds none
  /// yet, e.g. while the engine opens the repository: then the previous values of the same run stay, with the new
  /// time). `previousBackupBytes`: what the last successful backup read, the estimate of a backup's total.
  public static func progress(
    job: String, startTime: Date?, line: EngineProgress?, previous: RunProgress?, previousBackupBytes: Int64?,
    now: Date
  ) -> RunProgress {
    guard let line else {
      var p = previous?.job == job ? previous! : RunProgress(job: job, startTime: startTime, updateTime: now)
      p.updateTime = now
      return p
    }
    var p = RunProgress(job: job, startTime: startTime, updateTime: now, bytesDone: line.bytesDone)
    p.phase = line.phase
    if line.phase != "restore" { p.filesDone = line.files }
    if let total = line.bytesTotal {
      p.totalBytes = total
      p.totalBytesSource = totalFromEngine
    } else if line.phase == "backup", let prior = previousBackupBytes, prior > 0, prior >= line.bytesDone {
      p.totalBytes = prior
      p.totalBytesSource = totalFromPreviousBackup
    }
    guard let total = p.totalBytes, total > 0 else { return p }
    let fraction = min(1, Double(line.bytesDone) / Double(total))
    // 100 only once the run ended (then progress is cleared): a finished count is not a finished run.
    p.percent = Int32(min(99, (fraction * 100).rounded(.down)))
    // The rate so far: over the engine's own elapsed time when the line has it, else since the Job started.
    let elapsed = line.secondsElapsed ?? startTime.map { now.timeIntervalSince($0) } ?? 0
    if fraction > 0, fraction < 1, elapsed > 0 {
      let remaining = elapsed * (1 - fraction) / fraction
      if remaining.isFinite, remaining < 366 * 86400 {
        p.estimatedCompletion = now.addingTimeInterval(remaining.rounded())
      }
    }
    return p
  }
}
