import Foundation
import KubeCore
import Testing

@testable import KubeRuntime

@Suite struct BackoffTests {
  @Test func ceilingDoublesFromInitialToMax() {
    let b = Backoff(initial: .milliseconds(800), max: .seconds(30))
    #expect(b.ceiling(attempt: 0) == .milliseconds(800))
    #expect(b.ceiling(attempt: 1) == .milliseconds(1600))
    #expect(b.ceiling(attempt: 5) == .milliseconds(25600))
    #expect(b.ceiling(attempt: 6) == .seconds(30))
    #expect(b.ceiling(attempt: 1000) == .seconds(30))
  }

  @Test func jitterStaysWithinBounds() {
    var low = Backoff(jitter: 0.5, random: { 1 })
    var high = Backoff(jitter: 0.5, random: { 0 })
    #expect(low.next(now: .zero) == .milliseconds(400))
    #expect(high.next(now: .zero) == .milliseconds(800))
    #expect(low.next(now: .seconds(1)) == .milliseconds(800))
    #expect(high.next(now: .seconds(1)) == .milliseconds(1600))
    var random = Backoff()
    for n in 0..<12 {
      let d = random.next(now: .seconds(n))
      let ceiling = random.ceiling(attempt: n)
      #expect(d <= ceiling && d >= ceiling / 2, "attempt \(n): \(d) outside [\(ceiling / 2), \(ceiling)]")
    }
  }

  @Test func resetsAfterHealthyPeriod() {
    var b = Backoff(jitter: 0, resetAfter: .seconds(120))
    #expect(b.next(now: .seconds(0)) == .milliseconds(800))
    #expect(b.next(now: .seconds(1)) == .milliseconds(1600))
    #expect(b.next(now: .seconds(2)) == .milliseconds(3200))
    // Failures closer than the reset period keep growing.
    #expect(b.next(now: .seconds(100)) == .milliseconds(6400))
    // 120 s without a failure: back to the start.
    #expect(b.next(now: .seconds(220)) == .milliseconds(800))
    #expect(b.attempt == 1)
    b.reset()
    #expect(b.next(now: .seconds(221)) == .milliseconds(800))
  }

  @Test func itemBackoffIsClientGoLike() {
    let b = ItemBackoff()
    #expect(b.delay(failures: 1) == .milliseconds(5))
    #expect(b.delay(failures: 2) == .milliseconds(10))
    #expect(b.delay(failures: 11) == .milliseconds(5120))
    #expect(b.delay(failures: 18) == .milliseconds(655_360))
    #expect(b.delay(failures: 30) == .seconds(1000))
    #expect(b.delay(failures: 10_000) == .seconds(1000))
  }
}

@Suite(.timeLimit(.minutes(1))) struct WorkQueueTests {
  @Test func deduplicatesWaitingKeys() async {
    let q = WorkQueue<String>(name: "t", clock: RuntimeClock(ManualClock()))
    await q.add("a")
    await q.add("b")
    await q.add("a")
    #expect(await q.depth == 2)
    #expect(await q.get() == "a")
    #expect(await q.get() == "b")
    #expect(await q.addsTotal == 2)
  }

  @Test func keyBeingProcessedIsNotHandedOutTwice() async {
    let q = WorkQueue<String>(name: "t", clock: RuntimeClock(ManualClock()))
    await q.add("a")
    let first = await q.get()
    #expect(first == "a")
    // Re-added while processing: marked dirty, not queued.
    await q.add("a")
    await q.add("b")
    #expect(await q.depth == 1)
    #expect(await q.get() == "b")
    #expect(await q.depth == 0)
    // Done: the dirty key comes back once.
    await q.done("a")
    #expect(await q.depth == 1)
    #expect(await q.get() == "a")
    await q.done("a")
    await q.done("b")
    #expect(await q.depth == 0)
    #expect(await q.inFlight == 0)
  }

  @Test func waitingGetterReceivesNewKey() async {
    let q = WorkQueue<String>(name: "t", clock: RuntimeClock(ManualClock()))
    async let got = q.get()
    // Let the getter suspend, then add.
    for _ in 0..<100 { await Task.yield() }
    await q.add("x")
    #expect(await got == "x")
    #expect(await q.inFlight == 1)
  }

  @Test func rateLimitedRequeueWaitsPerKeyBackoff() async {
    let clock = ManualClock()
    let metrics = MetricsRegistry()
    let q = WorkQueue<String>(name: "rl", clock: RuntimeClock(clock), metrics: metrics)
    await q.add("a")
    let k = await q.get()
    #expect(k == "a")
    await q.addRateLimited("a")
    await q.done("a")
    #expect(await q.numRequeues("a") == 1)
    #expect(await q.depth == 0)
    await clock.waitForSleepers(atLeast: 1)
    clock.advance(by: .milliseconds(4))
    #expect(await q.depth == 0)
    clock.advance(by: .milliseconds(1))
    #expect(await q.get() == "a")
    // Second failure: 10 ms.
    await q.addRateLimited("a")
    await q.done("a")
    await clock.waitForSleepers(atLeast: 1)
    clock.advance(by: .milliseconds(9))
    #expect(await q.depth == 0)
    clock.advance(by: .milliseconds(1))
    #expect(await q.get() == "a")
    await q.forget("a")
    #expect(await q.numRequeues("a") == 0)
    #expect(metrics.value("botrt_workqueue_retries_total", labels: ["rl"]) == 2)
    #expect(await q.retriesTotal == 2)
  }

  @Test func addAfterKeepsEarliestDeadline() async {
    let clock = ManualClock()
    let q = WorkQueue<String>(name: "t", clock: RuntimeClock(clock))
    await q.addAfter("a", .seconds(10))
    await q.addAfter("a", .seconds(30))
    #expect(await q.pendingDelayed == 1)
    await clock.waitForSleepers(atLeast: 1)
    clock.advance(by: .seconds(9))
    #expect(await q.depth == 0)
    clock.advance(by: .seconds(1))
    #expect(await q.get() == "a")
    // An earlier deadline replaces a later one.
    await q.addAfter("b", .seconds(60))
    await q.addAfter("b", .seconds(5))
    await clock.waitForSleepers(atLeast: 1)
    clock.advance(by: .seconds(5))
    #expect(await q.get() == "b")
    clock.advance(by: .seconds(60))
    for _ in 0..<50 { await Task.yield() }
    #expect(await q.depth == 0)
  }

  @Test func shutdownReleasesGettersAndLetsInFlightFinish() async {
    let q = WorkQueue<String>(name: "t", clock: RuntimeClock(ManualClock()))
    await q.add("a")
    #expect(await q.get() == "a")
    async let waiting = q.get()
    for _ in 0..<100 { await Task.yield() }
    await q.shutDown()
    #expect(await waiting == nil)
    #expect(await q.get() == nil)
    await q.add("b")
    #expect(await q.depth == 0)
    async let idle: Void = q.waitUntilIdle()
    await q.done("a")
    await idle
    #expect(await q.inFlight == 0)
  }

  @Test func cancelledGetterReturnsNil() async {
    let q = WorkQueue<String>(name: "t", clock: RuntimeClock(ManualClock()))
    let t = Task { await q.get() }
    for _ in 0..<100 { await Task.yield() }
    t.cancel()
    #expect(await t.value == nil)
    await q.add("a")
    #expect(await q.get() == "a")
  }
}
