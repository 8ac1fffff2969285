import EngineContract
import KubeClient
import Logging

extension RunProgressLogic {
  /// The latest progress line in the tail of `container`'s log of Pod `namespace/pod` (the one read of a run's log
  /// that the BackupPolicy, RecoveryPlan and DRDrill reconcilers share); nil when the log has none or cannot be read.
  /// A log that cannot be read is logged as `cannot read <what>` (docs/runbooks.md quotes them): a warning when the
  /// controller has no grant of pods/log there or the request failed otherwise, a debug line for a container still
  /// starting (400) or a Pod just gone, which the next read finds or the run's end makes moot.
  static func readLatest(
    client: KubeClient, logger: Logger, namespace: String, pod: String, container: String, what: String,
    object: String
  ) async -> EngineProgress? {
    let meta: Logger.Metadata = ["object": "\(object)", "pod": "\(namespace)/\(pod)"]
    do {
      let log = try await client.podLog(
        namespace: namespace, name: pod, container: container, tailLines: tailLines, limitBytes: limitBytes)
      return EngineProgress.latest(inLog: log)
    } catch let e as KubeError where e.isForbidden {
      logger.warning("cannot read \(what) (grant get on pods/log in namespace \(namespace))", metadata: meta)
    } catch let e as KubeError where e.code == 400 || e.isNotFound {
      logger.debug("cannot read \(what) yet", metadata: meta.merging(["error": "\(e)"]) { $1 })
    } catch {
      // Anything else (a refused request, an apiserver out of reach) keeps the progress in status from moving.
      logger.warning("cannot read \(what)", metadata: meta.merging(["error": "\(error)"]) { $1 })
    }
    return nil
  }
}
