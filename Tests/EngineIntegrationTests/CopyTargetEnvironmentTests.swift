import Testing

@testable import EngineCLI

/// `botrt-engine copy` gives the target its own credentials and settings from `BOTRT_TO_ENV_*`.
@Suite struct CopyTargetEnvironmentTests {
  @Test func targetOnlyVariablesOverrideTheSourcesForTheTarget() {
    let env = [
      "AWS_ACCESS_KEY_ID": "source-id", "AWS_SECRET_ACCESS_KEY": "source-secret",
      "BOTRT_TO_ENV_AWS_ACCESS_KEY_ID": "target-id", "BOTRT_TO_ENV_BOTRT_GCS_ENDPOINT": "http://127.0.0.1:4443",
      "BOTRT_TO_ENV_": "ignored",
    ]
    let t = CopyCommand.targetEnvironment(env)
    #expect(t["AWS_ACCESS_KEY_ID"] == "target-id")
    #expect(t["AWS_SECRET_ACCESS_KEY"] == "source-secret")
    #expect(t["BOTRT_GCS_ENDPOINT"] == "http://127.0.0.1:4443")
    #expect(t[""] == nil)
    #expect(CopyCommand.targetEnvironment(["A": "1"]) == ["A": "1"])
  }
}
