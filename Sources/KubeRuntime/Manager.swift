import Dispatch
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Waits for SIGTERM or SIGINT with DispatchSource signal sources (the default handlers are replaced meanwhile).
public enum ShutdownSignals {
  /// Returns the first of `signals` delivered to the process; nil when the task is cancelled first.
  public static func wait(for signals: [Int32] = [SIGTERM, SIGINT]) async -> Int32? {
    let received = Mutex<Int32?>(nil)
    let event = AsyncEvent()
    let queue = DispatchQueue(label: "botrt.signals")
    var sources: [any DispatchSourceSignal] = []
    for s in signals {
      signal(s, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: s, queue: queue)
      source.setEventHandler {
        received.withLock { if $0 == nil { $0 = s } }
        event.signal()
      }
      source.resume()
      sources.append(source)
    }
    await event.wait()
    for s in sources { s.cancel() }
    return received.withLock { $0 }
  }
}

/// Runs controllers, leader election, the event recorder and the metrics/health server together, with graceful
/// shutdown.
///
/// Order: the health server starts first (`/healthz` ok, `/readyz` 503); with leader election the manager waits
/// for the lease, then starts the controllers. Readiness means "healthy and able to take over", not "leader": with
/// leader election `/readyz` answers 200 on every replica whose lease calls the apiserver answered within the lease
/// duration, so the standby of a 2-replica Deployment is Ready and `kubectl rollout status` completes; without it,
/// once the controllers start. The `botrt_leader` gauge is 1 on the replica that runs the controllers. On `stop()` (or SIGTERM/SIGINT when
/// `handleSignals`), controllers stop taking new keys and in-flight reconciles get `shutdownDeadline` to finish
/// (then they are cancelled); the lease is released, the recorder flushes, and the server stops last. If the
/// lease is lost, controllers are cancelled at once and `run()` returns `.leadershipLost` (exit and restart).
public final class ControllerManager: Sendable {
  /// How `run()` ended.
  public enum Outcome: Sendable, Equatable {
    /// Stopped by `stop()` or a signal (with its number).
    case stopped(signal: Int32?)
    /// The lease was lost; the process should exit non-zero so it restarts as a candidate.
    case leadershipLost
  }

  private let controllers: [any Runnable]
  private let elector: LeaderElector?
  private let server: HealthServer?
  private let recorder: EventRecorder?
  private let shutdownDeadline: Duration
  private let handleSignals: Bool
  private let clock: RuntimeClock
  private let logger: Logger
  private let stopEvent = AsyncEvent()
  private let stopSignal = Mutex<Int32?>(nil)

  public init(
    controllers: [any Runnable], leaderElector: LeaderElector? = nil, healthServer: HealthServer? = nil,
    eventRecorder: EventRecorder? = nil, shutdownDeadline: Duration = .seconds(30), handleSignals: Bool = true,
    clock: RuntimeClock = .continuous, logger: Logger
  ) {
    self.controllers = controllers
    self.elector = leaderElector
    self.server = healthServer
    self.recorder = eventRecorder
    self.shutdownDeadline = shutdownDeadline
    self.handleSignals = handleSignals
    self.clock = clock
    self.logger = logger
  }

  /// Asks `run()` to shut down gracefully.
  public func stop() { stopEvent.signal() }

  /// `botrt_leader`, in the registry the health server renders.
  static func leaderGauge(_ server: HealthServer) -> Gauge { leaderGauge(server.registry) }

  /// Registers `botrt_leader` in `registry` (also before `run()`, so that a registry's metric names are complete
  /// from the start: the NoLeader alert reads it).
  @discardableResult
  public static func leaderGauge(_ registry: MetricsRegistry) -> Gauge {
    registry.gauge(
      "botrt_leader", help: "1 while this process holds the leader-election Lease and runs the controllers, else 0.")
  }

  /// Runs everything until stopped; throws only when the health server cannot start.
  public func run() async throws -> Outcome {
    let leaderGauge = server.map(Self.leaderGauge)
    leaderGauge?.set(0)
    if let elector, let server {
      server.setReadyCheck { elector.canReachAPI() }
      server.setReady(true)
    }
    try server?.start()
    defer { server?.stop() }
    let outcome: Outcome = await withTaskGroup(of: Outcome?.self) { group in
      if handleSignals {
        group.addTask {
          if let s = await ShutdownSignals.wait() {
            self.logger.info("signal received; shutting down", metadata: ["signal": "\(s)"])
            self.stopSignal.withLock { $0 = s }
            self.stopEvent.signal()
          }
          return nil
        }
      }
      if let recorder {
        group.addTask {
          await recorder.run()
          return nil
        }
      }
      group.addTask {
        if let elector = self.elector {
          let r = await elector.run { await self.runControllers() }
          leaderGauge?.set(0)
          self.server?.setReady(false)
          switch r {
          case .lost: return .leadershipLost
          case .finished, .cancelled: return .stopped(signal: self.stopSignal.withLock { $0 })
          }
        }
        await self.runControllers()
        return .stopped(signal: self.stopSignal.withLock { $0 })
      }
      // The elector may wait for the lease forever: a stop before acquisition cancels it.
      group.addTask {
        await self.stopEvent.wait()
        if let elector = self.elector, !elector.isLeader {
          return .stopped(signal: self.stopSignal.withLock { $0 })
        }
        return nil
      }
      var result: Outcome?
      while let r = await group.next() {
        if let r {
          result = r
          break
        }
      }
      recorder?.finish()
      group.cancelAll()
      while await group.next() != nil {}
      return result ?? .stopped(signal: stopSignal.withLock { $0 })
    }
    logger.info("manager stopped", metadata: ["outcome": "\(outcome)"])
    return outcome
  }

  /// Runs the controllers until `stop()`; then stops them gracefully within the deadline.
  private func runControllers() async {
    server?.setReady(true)
    server.map(Self.leaderGauge)?.set(1)
    logger.info("starting controllers", metadata: ["count": "\(controllers.count)"])
    await withTaskGroup(of: Bool.self) { outer in
      outer.addTask {
        await withTaskGroup(of: Void.self) { group in
          for c in self.controllers { group.addTask { await c.run() } }
        }
        return true
      }
      outer.addTask {
        await self.stopEvent.wait()
        if Task.isCancelled { return true }
        self.logger.info(
          "stopping controllers; waiting for in-flight reconciles", metadata: ["deadline": "\(self.shutdownDeadline)"])
        for c in self.controllers { await c.requestStop() }
        do {
          try await self.clock.sleep(for: self.shutdownDeadline)
        } catch {
          return true
        }
        return false
      }
      if await outer.next() == false {
        logger.warning("shutdown deadline passed; cancelling in-flight reconciles")
      }
      outer.cancelAll()
      await outer.waitForAll()
    }
  }
}
