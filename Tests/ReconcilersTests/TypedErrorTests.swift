import DRAPI
import Reconcilers
import Testing

/// Condition reasons come from the error's type, never from its text, and a ChildError keeps its cause.
@Suite struct TypedErrorTests {
  @Test func theReasonIsTheErrorsNotTheMessagesWords() {
    let text = SpecError(field: "spec.source.pvc.claimName", message: "the claim does not exist; it has no key")
    #expect(PolicyProblem.from(text).reason == "InvalidSpec")
    let missing = SpecError(field: "spec.repository.s3", message: "Secret 's3' is absent", reason: .secretNotFound)
    #expect(PolicyProblem.from(missing).reason == "SecretNotFound")
    #expect(SpecError(field: "spec.encryption.kms.vaultTransit", message: "x").reason == .invalidKMS)
    #expect(SpecError(field: "spec.schedule", message: "x").reason == .invalidSchedule)
  }

  @Test func aChildErrorKeepsItsCause() {
    let cause = SpecError(field: "spec.schedule", message: "not a cron expression")
    let e = ChildError(child: "CronJob botrt-backup/x", operation: "build", cause: cause)
    #expect(e.cause as? SpecError == cause)
    #expect(e.description == "cannot build CronJob botrt-backup/x: spec.schedule: not a cron expression")
  }
}
