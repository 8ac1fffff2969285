import Foundation
import Testing

@testable import DRAPI

@Suite struct ValidationTests {
  @Test func validPolicyHasNoErrors() {
    #expect(SpecValidation.validate(policySpec(tier: .critical, schedule: "*/5 * * * *", rpo: "5m")).isEmpty)
  }

  @Test func policyErrorsNameTheField() {
    var spec = policySpec(tier: .critical, schedule: "0 0 32 * *", rpo: "soon")
    spec.repository.gcs = GCSRepository(bucket: "abc")
    spec.source.command = ContainerSpec(image: "")
    spec.encryption.kms = KMSSpec()
    spec.encryption.keyRotationDays = 91
    spec.retention = RetentionSpec(keepDaily: -1, maxAge: "forever")
    let fields = Set(SpecValidation.validate(spec).map(\.field))
    #expect(
      fields == [
        "spec.schedule", "spec.rpo", "spec.retention.maxAge", "spec.source", "spec.source.command.image",
        "spec.repository", "spec.encryption.kms", "spec.encryption.keyRotationDays", "spec.retention.keepDaily",
      ])
    let repo = SpecValidation.validate(spec).first { $0.field == "spec.repository" }
    #expect(repo?.message.contains("gcs and local") == true)
    let kms = SpecValidation.validate(spec).first { $0.field == "spec.encryption.kms" }
    #expect(kms?.message.contains("none is set") == true)
  }

  /// Object Lock days: 1 to 36500 (100 years), as the CRD's minimum and maximum; a longer lock would be refused by
  /// the store, or hold data for longer than anyone can release it.
  @Test func objectLockDaysInRange() {
    for (days, ok) in [(Int32(0), false), (1, true), (36500, true), (36501, false), (Int32.max, false)] {
      var spec = policySpec(tier: .standard)
      spec.repository = RepositorySpec(
        s3: S3Repository(
          bucket: "backups", credentialsSecretRef: SecretNameReference(name: "s3"),
          objectLock: ObjectLock(mode: .compliance, days: days)))
      let errors = SpecValidation.validate(spec).filter { $0.field == "spec.repository.s3.objectLock.days" }
      #expect(errors.isEmpty == ok, "\(days): \(errors)")
    }
  }

  @Test func replicaChecks() {
    var spec = policySpec(tier: .critical)
    let gcs = RepositorySpec(gcs: GCSRepository(bucket: "dr"))
    spec.replicas = [
      ReplicaSpec(name: "a", repository: gcs),
      ReplicaSpec(name: "a", repository: RepositorySpec()),
      ReplicaSpec(name: "self", repository: spec.repository),
      ReplicaSpec(
        name: "keys", repository: gcs,
        encryption: EncryptionSpec(
          kms: KMSSpec(
            awsKms: AWSKMS(keyId: "k"), gcpKms: GCPKMS(keyName: "projects/p/locations/l/keyRings/r/cryptoKeys/k")))),
    ]
    #expect(
      SpecValidation.validate(spec).map(\.field) == [
        "spec.replicas[1].name", "spec.replicas[1].repository", "spec.replicas[2].repository",
        "spec.replicas[3].encryption.kms",
      ])
    spec.replicas = [ReplicaSpec(name: "ok", repository: gcs, countsForRPO: true)]
    #expect(SpecValidation.validate(spec).isEmpty)
  }

  @Test func envValueAndValueFromAreExclusive() {
    var spec = policySpec(tier: .standard)
    spec.source = BackupSource(
      command: ContainerSpec(
        image: "postgres:16",
        env: [
          EnvVar(name: "A", value: "x", valueFrom: EnvVarSource(secretKeyRef: SecretKeySelector(name: "s", key: "k")))
        ]))
    #expect(SpecValidation.validate(spec).map(\.field) == ["spec.source.command.env[0]"])
  }

  func plan(_ steps: [RecoveryStep]) -> RecoveryPlanSpec {
    RecoveryPlanSpec(tier: .critical, procedures: [RecoveryProcedure(name: "p", steps: steps)])
  }

  @Test func stepsNeedTheFieldsOfTheirAction() {
    let errors = SpecValidation.validate(
      plan([
        RecoveryStep(name: "a", action: .scaleDown),
        RecoveryStep(name: "b", action: .restore),
        RecoveryStep(name: "c", action: .verify),
        RecoveryStep(name: "d", action: .job),
        RecoveryStep(name: "d", action: .waitReady, targets: [WorkloadReference(kind: .deployment, name: "x")]),
        RecoveryStep(
          name: "e", action: .scaleUp, targets: [WorkloadReference(kind: .statefulSet, name: "y")], timeout: "10",
          retries: 11),
      ]))
    #expect(
      errors.map(\.field) == [
        "spec.procedures[0].steps[0].targets", "spec.procedures[0].steps[1].restore",
        "spec.procedures[0].steps[2].verify", "spec.procedures[0].steps[3].job", "spec.procedures[0].steps[4].name",
        "spec.procedures[0].steps[5].timeout", "spec.procedures[0].steps[5].retries",
      ])
    #expect(errors[0].message == "action scaleDown needs targets")
  }

  @Test func restoreStepChecks() {
    let bad = RestoreStepSpec(
      policyRef: LocalObjectReference(name: "db"), snapshot: "deadbeef", beforeTime: Date(timeIntervalSince1970: 0),
      into: RestoreDestination(pvc: RestorePVC(claimName: "a"), command: ContainerSpec(image: "psql")))
    let errors = SpecValidation.validate(plan([RecoveryStep(name: "r", action: .restore, restore: bad)]))
    #expect(
      errors.map(\.field) == [
        "spec.procedures[0].steps[0].restore.into", "spec.procedures[0].steps[0].restore.beforeTime",
      ])
    let good = RestoreStepSpec(
      policyRef: LocalObjectReference(name: "db"), into: RestoreDestination(pvc: RestorePVC(claimName: "a")))
    #expect(SpecValidation.validate(plan([RecoveryStep(name: "r", action: .restore, restore: good)])).isEmpty)
  }

  @Test func duplicateProceduresAndEmptyPlans() {
    let step = RecoveryStep(name: "s", action: .job, job: ContainerSpec(image: "busybox"))
    let dup = RecoveryPlanSpec(
      tier: .standard, rtoTarget: "0s",
      procedures: [RecoveryProcedure(name: "p", steps: [step]), RecoveryProcedure(name: "p", steps: [])])
    #expect(
      SpecValidation.validate(dup).map(\.field) == [
        "spec.rtoTarget", "spec.procedures[1].name", "spec.procedures[1].steps",
      ])
    #expect(
      SpecValidation.validate(RecoveryPlanSpec(tier: .standard, procedures: [])).map(\.field) == ["spec.procedures"])
  }

  @Test func drillChecks() {
    let ok = DRDrillSpec(schedule: "weekly", target: DrillTarget(backupPolicyRef: LocalObjectReference(name: "p")))
    #expect(SpecValidation.validate(ok).isEmpty)
    let cron = DRDrillSpec(schedule: "0 4 * * 1", target: DrillTarget(recoveryPlanRef: LocalObjectReference(name: "r")))
    #expect(SpecValidation.validate(cron).isEmpty)
    let bad = DRDrillSpec(
      schedule: "every week",
      target: DrillTarget(
        backupPolicyRef: LocalObjectReference(name: "p"), recoveryPlanRef: LocalObjectReference(name: "r")),
      restore: RestoreDestination(), verification: DrillVerification(minComplianceScore: 101), historyLimit: 0,
      timeout: "1 hour")
    #expect(
      SpecValidation.validate(bad).map(\.field) == [
        "spec.schedule", "spec.target", "spec.restore", "spec.timeout", "spec.historyLimit",
        "spec.verification.minComplianceScore",
      ])
    #expect(bad.target.displayName == nil)
    #expect(ok.target.displayName == "BackupPolicy/p")
  }

  @Test func drillHistoryIsBoundedNewestFirst() {
    var status = DRDrillStatus()
    for i in 0..<5 {
      status.record(DrillResult(startTime: Date(timeIntervalSince1970: Double(i)), complianceScore: Int32(i)), limit: 3)
    }
    #expect(status.history?.map(\.complianceScore) == [4, 3, 2])
    #expect(status.lastResult?.complianceScore == 4)
    #expect(status.lastRunTime == Date(timeIntervalSince1970: 4))
  }

  @Test func databaseQueryComparison() {
    let q = DatabaseQuery(image: "postgres:16", expected: " 42\n")
    #expect(q.matches(output: "42\n"))
    #expect(!q.matches(output: "41"))
    #expect(DatabaseQuery(image: "postgres:16").matches(output: "anything"))
  }
}
