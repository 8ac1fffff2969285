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

  @Test func maxAgeRemovesOldSnapshotsEvenIfKept() throws {
    var p = RetentionPolicy()
    p.maxAge = try RetentionPolicy.parseAge("7d")
    let r = p.apply(snaps, now: now)
    #expect(r.keep.count == 29)  // 7 days * 4 per day, plus s28 which is exactly 7 days old (not older)
    p.keepYearly = 1
    let r2 = p.apply(snaps, now: now)
    #expect(r2.keep.contains("s0"))
    #expect(!r2.keep.contains("s200"))
  }

  @Test func parseAgeUnits() throws {
    #expect(try RetentionPolicy.parseAge("24h") == 86400)
    #expect(try RetentionPolicy.parseAge("90d") == 90 * 86400)
    #expect(try RetentionPolicy.parseAge("7y") == 7 * 365 * 86400)
    #expect(throws: EngineError.self) { try RetentionPolicy.parseAge("7") }
    #expect(throws: EngineError.self) { try RetentionPolicy.parseAge("x7q") }
  }
}
