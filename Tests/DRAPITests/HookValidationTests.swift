import Foundation
import KubeCore
import Testing

@testable import DRAPI

/// spec.hooks: what validation refuses, each error naming its field.
@Suite struct HookValidationTests {
  func hook(_ name: String, labels: [String: String] = ["app": "db"], command: [String] = ["sync"]) -> BackupHook {
    BackupHook(name: name, podSelector: HookPodSelector(matchLabels: labels), command: command)
  }

  @Test func aPVCPolicyWithHooksIsValid() {
    var spec = policySpec(tier: .standard)
    spec.hooks = BackupHooks(pre: [hook("freeze")], post: [hook("thaw")])
    #expect(SpecValidation.validate(spec).isEmpty)
  }

  @Test func aDumpCommandWithHooksIsRefusedSayingWhy() {
    var spec = policySpec(tier: .standard)
    spec.source = BackupSource(command: ContainerSpec(image: "postgres:16", command: ["pg_dump"]))
    spec.hooks = BackupHooks(pre: [hook("freeze")])
    let e = SpecValidation.validate(spec).filter { $0.field == "spec.hooks" }
    #expect(e.count == 1)
    #expect(e.first?.message.contains("consistency point") == true)
    // A multi-claim source takes hooks (run around each claim's backup).
    spec.source = BackupSource(claims: ClaimsSource(claimNames: ["a"]))
    spec.hooks = BackupHooks(pre: [hook("freeze")])
    #expect(SpecValidation.validate(spec).filter { $0.field == "spec.hooks" }.isEmpty)
    spec.source = BackupSource(command: ContainerSpec(image: "postgres:16", command: ["pg_dump"]))
    // An empty hooks object is no hooks.
    spec.hooks = BackupHooks(pre: [], post: nil)
    #expect(SpecValidation.validate(spec).isEmpty)
  }

  @Test func badHooksNameTheirFields() {
    var spec = policySpec(tier: .standard)
    var timed = hook("slow")
    timed.timeoutSeconds = 0
    var long = hook("long")
    long.timeoutSeconds = 3601
    var container = hook("c")
    container.container = "Main_Container"
    spec.hooks = BackupHooks(
      pre: [hook("Freeze"), hook("dup"), hook("dup"), hook("all", labels: [:]), hook("empty", command: [])],
      post: [timed, long, container] + (0..<6).map { hook("p\($0)") })
    let fields = SpecValidation.validate(spec).map(\.field)
    #expect(
      Set(fields) == [
        "spec.hooks.pre[0].name", "spec.hooks.pre[2].name", "spec.hooks.pre[3].podSelector.matchLabels",
        "spec.hooks.pre[4].command", "spec.hooks.post", "spec.hooks.post[0].timeoutSeconds",
        "spec.hooks.post[1].timeoutSeconds", "spec.hooks.post[2].container",
      ])
  }

  @Test func hooksDecodeWithTheirDefaultsLeftToTheController() throws {
    let json = #"{"pre":[{"name":"f","podSelector":{"matchLabels":{"app":"db"}},"command":["fsfreeze","-f","/d"]}]}"#
    let h = try JSONDecoder().decode(BackupHooks.self, from: Data(json.utf8))
    #expect(h.pre?.first?.effectiveTimeoutSeconds == 60 && h.pre?.first?.onError == nil)
  }
}
