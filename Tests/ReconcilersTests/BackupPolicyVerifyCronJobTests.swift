import DRAPI
import EngineContract
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// Issue 18: spec.verify runs `verify --all --read-data-subset` as a CronJob of its own.
@Suite struct BackupPolicyVerifyCronJobTests {
  let names = ChildNames(namespace: "shop", name: "payments-db")

  @Test func noVerifyNoCronJob() throws {
    let cs = try build(dumpPolicy())
    #expect(child(cs, "CronJob", names.verifyCronJob) == nil)
  }

  @Test func theVerifyCronJobRunsASubsetOnItsSchedule() throws {
    var p = dumpPolicy()
    p.spec.verify = PolicyVerifySpec(schedule: "0 5 * * 0")
    var c = try #require(child(try build(p), "CronJob", names.verifyCronJob))
    #expect(c.body[path: "spec", "schedule"]?.stringValue == "0 5 * * 0")
    #expect(c.body[path: "metadata", "labels", ChildLabels.component]?.stringValue == "verify")
    let pod = try #require(c.body[path: "spec", "jobTemplate", "spec", "template", "spec"])
    var args = (pod["containers"]?[0]?["args"]?.arrayValue ?? []).compactMap(\.stringValue)
    #expect(args.first == "verify")
    #expect(args.contains("--all"))
    #expect(!args.contains("--read-data"))
    #expect(args.joined(separator: " ").contains("--read-data-subset 10%"), "\(args)")
    p.spec.verify?.readDataSubset = "1/7"
    c = try #require(child(try build(p), "CronJob", names.verifyCronJob))
    args =
      (c.body[path: "spec", "jobTemplate", "spec", "template", "spec", "containers"]?[0]?["args"]?.arrayValue
      ?? []).compactMap(\.stringValue)
    #expect(args.joined(separator: " ").contains("--read-data-subset 1/7"), "\(args)")
  }

  @Test func validation() {
    var p = dumpPolicy()
    p.spec.verify = PolicyVerifySpec(schedule: "0 5 * * 0", readDataSubset: "10%")
    #expect(SpecValidation.validate(p.spec).isEmpty)
    p.spec.verify = PolicyVerifySpec(schedule: "not cron", readDataSubset: "0%")
    let fields = SpecValidation.validate(p.spec).map(\.field)
    #expect(fields.contains("spec.verify.schedule") && fields.contains("spec.verify.readDataSubset"), "\(fields)")
    #expect(SpecValidation.validReadDataSubset("1/7") && SpecValidation.validReadDataSubset("100%"))
    #expect(!SpecValidation.validReadDataSubset("8/7") && !SpecValidation.validReadDataSubset("101%"))
  }
}
