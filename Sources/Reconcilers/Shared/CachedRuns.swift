import KubeClient
import KubeCore

/// A Job the controller runs, with the Pods its Job controller labelled with its name.
public typealias JobWithPods = (job: JSONValue, pods: [JSONValue])

extension ManagedCaches {
  /// The Jobs with every label of `labels` (and a component among `components`) in `namespace`, each with its Pods,
  /// from the shared caches; nil when the Jobs or Pods are not cached (not listed yet) or the Pods have not caught up
  /// with the Jobs (`podsCaughtUp`): then the caller reads live.
  public func cachedJobsWithPods(
    namespace: String, labels: [String: String], components: Set<String>? = nil
  ) -> [JobWithPods]? {
    guard let jobs = objects(ChildResources.jobs, namespace: namespace, labels: labels, components: components),
      let pods = objects(ChildResources.pods, namespace: namespace, labels: labels)
    else { return nil }
    let j = jobs.map(\.body)
    let p = pods.map(\.body)
    return Self.podsCaughtUp(jobs: j, pods: p) ? Self.withTheirPods(j, p) : nil
  }

  /// The same selection from the caches when `cachedJobsWithPods` has it, else one live list of each (the Pods only
  /// when there are Jobs).
  public func jobsWithPods(
    namespace: String, labels: [String: String], components: Set<String>? = nil, client: KubeClient
  ) async throws -> [JobWithPods] {
    if let cached = cachedJobsWithPods(namespace: namespace, labels: labels, components: components) { return cached }
    let jobs = try await Self.live(
      ChildResources.jobs, namespace: namespace, labels: labels, components: components, client: client)
    if jobs.isEmpty { return [] }
    let pods = try await Self.live(
      ChildResources.pods, namespace: namespace, labels: labels, components: components, client: client)
    return Self.withTheirPods(jobs, pods)
  }

  /// Each Job with the Pods its controller labelled with its name.
  public static func withTheirPods(_ jobs: [JSONValue], _ pods: [JSONValue]) -> [JobWithPods] {
    jobs.map { job in
      let name = job[path: "metadata", "name"]?.stringValue ?? ""
      return (job, pods.filter { $0[path: "metadata", "labels", "job-name"]?.stringValue == name })
    }
  }

  /// Whether the cached Pods have caught up with the cached Jobs: every finished Job has a finished Pod. The Jobs and
  /// Pods come through two watches, so a Job's completion can arrive before the Pod that holds its result; then the
  /// reconcile lists both live rather than record a run without its result.
  public static func podsCaughtUp(jobs: [JSONValue], pods: [JSONValue]) -> Bool {
    let finishedPods = Set(
      pods.filter { PodStatus.of($0).isFinished }.compactMap {
        $0[path: "metadata", "labels", "job-name"]?.stringValue
      })
    return jobs.allSatisfy { job in
      !JobStatus.of(job).isFinished || finishedPods.contains(job[path: "metadata", "name"]?.stringValue ?? "")
    }
  }
}
