import Foundation
import Testing

@testable import BackupEngine

@Suite struct RetentionTests {
  let now = Date(timeIntervalSince1970: 1_800_000_000)  // 2027-01-15

  /// One snapshot every 6 hours for 60 days, newest first by id "s0".
  var snaps: [(id: String, time: Date)] {
    (0..<240).map { (id: "s\($0)", time: now.addingTimeInterval(-Double($0) * 6 * 3600)) }
  }

  @Test func keepLast() {
    var p = RetentionPolicy()
    p.keepLast = 3
    let r = p.apply(snaps, now: now)
    #expect(r.keep == ["s0", "s1", "s2"])
    #expect(r.remove.count == 237)
  }

  @Test func keepDailyKeepsNewestPerDay() {
    var p = RetentionPolicy()
    p.keepDaily = 5
    let r = p.apply(snaps, now: now)
    #expect(r.keep.count == 5)
    let days = Set(r.keep.map { id in Int(snaps.first { $0.id == id }!.time.timeIntervalSince1970 / 86400) })
    #expect(days.count == 5)
    #expect(r.keep.contains("s0"))
  }

  @Test func keepHourlyWeeklyMonthlyCombine() {
    var p = RetentionPolicy()
    p.keepHourly = 2
    p.keepWeekly = 4
    p.keepMonthly = 3
    let r = p.apply(snaps, now: now)
    #expect(r.keep.contains("s0") && r.keep.contains("s1"))
    #expect(r.keep.count <= 2 + 4 + 3)
    #expect(r.keep.count >= 6)
    // Monthly: the newest snapshot of January (s0), December (s58) and November (s182).
    #expect(r.keep.contains("s58") && r.keep.contains("s182"))
    #expect(!r.keep.contains("s239"))
  }

  @Test func maxAgeKeepsEverySnapshotWithinTheAgeOfTheNewest() throws {
    var p = RetentionPolicy()
    p.maxAge = try RetentionPolicy.parseAge("7d")
    let r = p.apply(snaps, now: now)
    #expect(r.keep.count == 29)  // 7 days * 4 per day, plus s28 which is exactly 7 days old (not older)
    // Measured from the newest snapshot, not from now: backups that stopped a month ago keep their last week.
    let r2 = p.apply(snaps, now: now.addingTimeInterval(30 * 86400))
    #expect(r2.keep == r.keep)
  }

  @Test func maxAgeNeverRemovesWhatAnotherRuleKeeps() throws {
    // The old meaning ("remove everything older than maxAge") turned keepLast 7 + maxAge 90d into one week.
    var p = RetentionPolicy()
    p.maxAge = try RetentionPolicy.parseAge("7d")
    p.keepYearly = 1
    p.keepMonthly = 3
    let r = p.apply(snaps, now: now)
    #expect(r.keep.isSuperset(of: Set((0...28).map { "s\($0)" })))
    #expect(r.keep.contains("s58") && r.keep.contains("s182"))  // the newest of December and of November
    #expect(!r.keep.contains("s200"))
    // A snapshot dated in the future is kept and does not move the window past the real ones.
    var within = RetentionPolicy()
    within.maxAge = p.maxAge
    let future = [(id: "f", time: now.addingTimeInterval(365 * 86400))] + snaps
    let r3 = within.apply(future, now: now)
    #expect(r3.keep == within.apply(snaps, now: now).keep.union(["f"]))
  }

  @Test func parseAgeUnits() throws {
    #expect(try RetentionPolicy.parseAge("24h") == 86400)
    #expect(try RetentionPolicy.parseAge("90d") == 90 * 86400)
    #expect(try RetentionPolicy.parseAge("7y") == 7 * 365 * 86400)
    #expect(throws: EngineError.self) { try RetentionPolicy.parseAge("7") }
    #expect(throws: EngineError.self) { try RetentionPolicy.parseAge("x7q") }
  }
}
