import Synchronization
import Testing

@testable import KubeRuntime

/// A runnable that records whether it ran and runs until stopped.
final class RecordingRunnable: Runnable {
  let name = "recording"
  let ran = Mutex(false)
  let stopped = Mutex(false)
  func run() async {
    ran.withLock { $0 = true }
    while !stopped.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) }
  }
  func requestStop() async { stopped.withLock { $0 = true } }
}

@Suite struct GatedRunnableTests {
  @Test func innerRunsOnlyOnceOpened() async throws {
    let inner = RecordingRunnable()
    let gate = GatedRunnable(inner)
    let task = Task { await gate.run() }
    try await Task.sleep(for: .milliseconds(50))
    #expect(!inner.ran.withLock { $0 }, "ran before the gate opened")
    gate.open()
    for _ in 0..<200 where !inner.ran.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
    #expect(inner.ran.withLock { $0 })
    await gate.requestStop()
    await task.value
  }

  @Test func openBeforeRunStartsAtOnce() async throws {
    let inner = RecordingRunnable()
    let gate = GatedRunnable(inner)
    gate.open()
    #expect(gate.isOpen)
    let task = Task { await gate.run() }
    for _ in 0..<200 where !inner.ran.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
    #expect(inner.ran.withLock { $0 })
    await gate.requestStop()
    await task.value
  }

  @Test func stopWhileClosedReturnsWithoutRunning() async throws {
    let inner = RecordingRunnable()
    let gate = GatedRunnable(inner)
    let task = Task { await gate.run() }
    try await Task.sleep(for: .milliseconds(20))
    await gate.requestStop()
    await task.value
    gate.open()
    #expect(!inner.ran.withLock { $0 })
    #expect(!gate.isOpen)
  }
}
