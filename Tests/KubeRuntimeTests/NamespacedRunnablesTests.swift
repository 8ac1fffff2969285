import Synchronization
import Testing

@testable import KubeRuntime

@Suite struct NamespacedRunnablesTests {
  /// The runnables made so far, by namespace (a namespace that leaves and joins again gets new ones).
  final class Made: Sendable {
    let byNamespace = Mutex<[String: [RecordingRunnable]]>([:])
    func make(_ ns: String) -> [any Runnable] {
      let r = RecordingRunnable()
      byNamespace.withLock { $0[ns, default: []].append(r) }
      return [r]
    }
    func last(_ ns: String) -> RecordingRunnable? { byNamespace.withLock { $0[ns]?.last } }
    var namespaces: Set<String> { byNamespace.withLock { Set($0.keys) } }
  }

  func eventually(_ what: String, _ check: () -> Bool) async throws {
    for _ in 0..<400 where !check() { try await Task.sleep(for: .milliseconds(5)) }
    #expect(check(), "\(what)")
  }

  @Test func namespacesJoinAndLeaveWhileRunning() async throws {
    let made = Made()
    let set = NamespacedRunnables(name: "audit") { made.make($0) }
    // Before run (a standby): recorded, nothing started.
    await set.set(["a"])
    #expect(made.namespaces.isEmpty)
    let task = Task { await set.run() }
    try await eventually("a runs once run() starts") { made.last("a")?.ran.withLock { $0 } == true }
    // b joins, a leaves: a is stopped (set returns after it stopped), b runs.
    await set.set(["b"])
    #expect(made.last("a")?.stopped.withLock { $0 } == true)
    try await eventually("b runs") { made.last("b")?.ran.withLock { $0 } == true }
    #expect(set.running == ["b"])
    // The same set again changes nothing.
    await set.set(["b"])
    #expect(made.byNamespace.withLock { $0["b"]?.count } == 1)
    // a joins again: new runnables.
    await set.set(["a", "b"])
    try await eventually("a runs again") { made.byNamespace.withLock { $0["a"]?.count } == 2 }
    // Stop: everything stops, and a later set starts nothing.
    await set.requestStop()
    await task.value
    #expect(made.last("a")?.stopped.withLock { $0 } == true)
    #expect(made.last("b")?.stopped.withLock { $0 } == true)
    await set.set(["c"])
    #expect(!made.namespaces.contains("c"))
    #expect(set.running.isEmpty)
  }
}
