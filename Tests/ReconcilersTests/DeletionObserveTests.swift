import DRAPI
import Foundation
import KubeClient
import KubeCore
import KubeRuntime
import Logging
import Testing

@testable import Reconcilers

/// What the deletion of a policy with spec.deleteBackupsOnDelete observes when the Secrets its deletion Job needs
/// cannot be read: a transient failure is retried, not recorded as the final BackupsNotDeleted outcome.
@Suite struct DeletionObserveTests {
  /// A reconciler whose caches of the controller's own objects are filled and empty, and whose client reaches no
  /// apiserver (a closed port): every live read fails as an unreachable apiserver does.
  func reconciler(_ s: ControllerSettings) -> BackupPolicyReconciler {
    var stores: [ResourceDescriptor: Store<Unstructured>] = [:]
    for r in BackupPolicyDeletion.ownedKinds(s) + [ChildResources.jobs, ChildResources.pods] {
      let store = Store<Unstructured>()
      store.apply(.restarted([]))
      stores[r] = store
    }
    let client = KubeClient(config: ClientConfig(server: "https://127.0.0.1:1"), retry: RetryPolicy(maxAttempts: 1))
    return BackupPolicyReconciler(
      client: client, settings: s, now: { testNow }, recorder: nil, metrics: nil, logger: Logger(label: "test"),
      managed: ManagedCaches(stores))
  }

  func deleting(_ p: BackupPolicy) -> BackupPolicy {
    var p = p
    p.spec.deleteBackupsOnDelete = true
    p.metadata.deletionTimestamp = testNow
    return p
  }

  @Test func anUnreachableApiserverIsRetriedNotTakenAsBackupsNotDeleted() async throws {
    let s = ControllerSettings(engineImage: "e:1")
    let p = deleting(try recoveryTestPolicy())
    await #expect(throws: KubeError.self) { _ = try await reconciler(s).observeDeletion(p, store: Store()) }
  }

  @Test func aSpecTheJobCannotRunFromIsTheRecordedOutcome() async throws {
    let s = ControllerSettings(engineImage: "e:1")
    var p = deleting(try recoveryTestPolicy())
    p.spec.encryption.kms.vaultTransit?.address = "ftp://vault:8200"
    let w = try await reconciler(s).observeDeletion(p, store: Store())
    guard case .failure(let e)? = w.secrets else {
      Issue.record("expected the spec error as the outcome, got \(String(describing: w.secrets))")
      return
    }
    #expect(e.description.contains("spec.encryption.kms.vaultTransit.address"), "\(e)")
  }
}
