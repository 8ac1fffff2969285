import Foundation
import KubeCore
import Logging
import Synchronization

/// The Lease calls leader election needs; `KubeLeaseAPI` implements them over KubeClient, tests use a fake.
public protocol LeaseAPI: Sendable {
  /// The lease, or nil when it does not exist.
  func get(namespace: String, name: String) async throws -> Lease?
  /// Creates the lease; throws `LeaseConflict` when it already exists.
  func create(_ lease: Lease) async throws -> Lease
  /// Replaces the lease; throws `LeaseConflict` when `metadata.resourceVersion` is stale.
  func update(_ lease: Lease) async throws -> Lease
}

/// Another candidate changed the lease first (409 Conflict or AlreadyExists).
public struct LeaseConflict: Error, Sendable, CustomStringConvertible {
  public var lease: String
  public init(lease: String) { self.lease = lease }
  public var description: String { "lease \(lease) was changed by another candidate; will retry" }
}

/// Settings of leader election (client-go's defaults).
public struct LeaderElectionConfig: Sendable {
  public var namespace: String
  public var name: String
  /// This candidate's identity (e.g. the pod name plus a random suffix).
  public var identity: String
  /// How long a lease is valid after its last renewal; others take over after it expires.
  public var leaseDuration: Duration
  /// The leader gives up when it could not renew for this long (must be below leaseDuration).
  public var renewDeadline: Duration
  /// Pause between attempts to acquire or renew.
  public var retryPeriod: Duration

  public init(
    namespace: String, name: String, identity: String, leaseDuration: Duration = .seconds(15),
    renewDeadline: Duration = .seconds(10), retryPeriod: Duration = .seconds(2)
  ) {
    precondition(renewDeadline < leaseDuration, "renewDeadline must be shorter than leaseDuration")
    precondition(retryPeriod < renewDeadline, "retryPeriod must be shorter than renewDeadline")
    self.namespace = namespace
    self.name = name
    self.identity = identity
    self.leaseDuration = leaseDuration
    self.renewDeadline = renewDeadline
    self.retryPeriod = retryPeriod
  }
}

/// Leader election on a coordination.k8s.io/v1 Lease with optimistic concurrency (resourceVersion).
///
/// A candidate takes the lease when it does not exist, is free (empty holder), or has not changed for
/// `leaseDuration` as measured on this candidate's monotonic clock since it last saw a change, dated back to the
/// change's renewTime by at most one retry period (so clock skew between nodes matters by no more than that), and
/// a standby polls at that expiry rather than up to a period after it. The leader renews every `retryPeriod`; if it cannot renew within
/// `renewDeadline` it stops leading. On a graceful stop the leader releases the lease (empty holder), so a standby
/// takes over at its next retry instead of waiting for expiry.
public final class LeaderElector: Sendable {
  public let config: LeaderElectionConfig
  private let api: any LeaseAPI
  private let clock: RuntimeClock
  private let logger: Logger

  private struct Observed {
    var spec: LeaseSpec?
    var resourceVersion: String?
    /// Monotonic time when `spec` was first seen in this form.
    var at: Duration
  }

  private let observed = Mutex<Observed?>(nil)
  private let leading = Mutex(false)
  /// Monotonic time of the apiserver's last answer to a lease call (a conflict is an answer too).
  private let lastAnswer = Mutex<Duration?>(nil)
  private let changes: AsyncStream<Bool>
  private let changesContinuation: AsyncStream<Bool>.Continuation

  public init(config: LeaderElectionConfig, api: any LeaseAPI, clock: RuntimeClock = .continuous, logger: Logger) {
    self.config = config
    self.api = api
    self.clock = clock
    var l = logger
    l[metadataKey: "lease"] = "\(config.namespace)/\(config.name)"
    l[metadataKey: "identity"] = "\(config.identity)"
    self.logger = l
    (changes, changesContinuation) = AsyncStream.makeStream(of: Bool.self, bufferingPolicy: .bufferingNewest(16))
  }

  /// Whether this candidate currently leads.
  public var isLeader: Bool { leading.withLock { $0 } }

  /// Whether the apiserver answered one of this candidate's lease calls within `window` (default: the lease
  /// duration): a standby that can take over when the leader goes, and a leader that can renew. Readiness uses it.
  public func canReachAPI(within window: Duration? = nil) -> Bool {
    guard let at = lastAnswer.withLock({ $0 }) else { return false }
    return clock.now() - at <= (window ?? config.leaseDuration)
  }

  private func answered() {
    let now = clock.now()
    lastAnswer.withLock { $0 = now }
  }

  /// Leadership changes (true when acquired, false when lost or released), newest 16 buffered.
  public var leadershipChanges: AsyncStream<Bool> { changes }

  private func setLeading(_ value: Bool) {
    let changed = leading.withLock { l -> Bool in
      defer { l = value }
      return l != value
    }
    if changed { changesContinuation.yield(value) }
  }

  /// One attempt to acquire or renew; returns whether this candidate holds the lease afterwards.
  public func tryAcquireOrRenew() async -> Bool {
    let now = clock.now()
    let wall = clock.wallNow()
    let seconds = Int(config.leaseDuration.components.seconds)
    do {
      let found = try await api.get(namespace: config.namespace, name: config.name)
      answered()
      guard let current = found else {
        let lease = Lease(
          metadata: ObjectMeta(name: config.name, namespace: config.namespace),
          spec: LeaseSpec(
            holderIdentity: config.identity, leaseDurationSeconds: seconds, acquireTime: wall, renewTime: wall,
            leaseTransitions: 0))
        let created = try await api.create(lease)
        remember(created, at: now, wall: wall)
        return true
      }
      let seen = remember(current, at: now, wall: wall)
      let holder = current.spec?.holderIdentity ?? ""
      let iHold = holder == config.identity
      if !holder.isEmpty && !iHold {
        if now - seen.at < leaseDuration(of: current.spec) { return false }
        logger.info("lease expired; taking over", metadata: ["previousHolder": "\(holder)"])
      }
      var next = current
      var spec = current.spec ?? LeaseSpec()
      if !iHold {
        spec.acquireTime = wall
        spec.leaseTransitions = (spec.leaseTransitions ?? 0) + 1
      }
      spec.holderIdentity = config.identity
      spec.leaseDurationSeconds = seconds
      spec.renewTime = wall
      next.spec = spec
      let updated = try await api.update(next)
      remember(updated, at: now, wall: wall)
      return true
    } catch let e as LeaseConflict {
      answered()
      logger.debug("lease conflict", metadata: ["error": "\(e)"])
      return false
    } catch {
      logger.warning("lease call failed", metadata: ["error": "\(error)"])
      return false
    }
  }

  /// Records the lease as observed; the observation time only moves when the lease changed.
  ///
  /// A change is dated back to its `renewTime` by at most one `retryPeriod` (the most a poll can lag behind a
  /// renewal), so a standby does not wait a lease duration plus its polling lag after the holder's last renewal,
  /// while clock skew between nodes can shorten the wait by no more than that period (a live holder renews every
  /// period, well inside the lease).
  ///
  /// `now` and `wall` are the same instant on the monotonic and the wall clock, both read before the request: the
  /// renewTime is placed on the monotonic clock as `now - (wall - renewTime)`. (A wall time read after the request
  /// would date the renewal earlier by the request's latency, and a standby would take over that much before the
  /// lease expired.)
  @discardableResult
  private func remember(_ lease: Lease, at now: Duration, wall: Date) -> Observed {
    observed.withLock { o in
      if let old = o, old.spec == lease.spec, old.resourceVersion == lease.metadata.resourceVersion { return old }
      var lag = Duration.zero
      if let renewed = lease.spec?.renewTime {
        let age = wall.timeIntervalSince(renewed)
        if age > 0 { lag = min(.milliseconds(Int64(age * 1000)), config.retryPeriod) }
      }
      let fresh = Observed(spec: lease.spec, resourceVersion: lease.metadata.resourceVersion, at: now - lag)
      o = fresh
      return fresh
    }
  }

  /// The lease duration the holder wrote, else this candidate's.
  private func leaseDuration(of spec: LeaseSpec?) -> Duration {
    spec?.leaseDurationSeconds.map { Duration.seconds($0) } ?? config.leaseDuration
  }

  /// How long a standby waits before its next attempt: the retry period, or less when the holder's lease (as
  /// observed) expires sooner, so that it takes over at the expiry and not up to a period later.
  func nextAttemptDelay() -> Duration {
    let now = clock.now()
    return observed.withLock { o in
      guard let o, let holder = o.spec?.holderIdentity, !holder.isEmpty, holder != config.identity else {
        return config.retryPeriod
      }
      let untilExpiry = leaseDuration(of: o.spec) - (now - o.at) + .milliseconds(20)
      return max(.milliseconds(20), min(config.retryPeriod, untilExpiry))
    }
  }

  /// Gives the lease up if this candidate holds it (empty holder, 1 s duration), so others take over at once.
  public func release() async {
    do {
      guard let current = try await api.get(namespace: config.namespace, name: config.name),
        current.spec?.holderIdentity == config.identity
      else { return }
      var next = current
      next.spec?.holderIdentity = ""
      next.spec?.leaseDurationSeconds = 1
      next.spec?.renewTime = clock.wallNow()
      _ = try await api.update(next)
      logger.info("released the lease")
    } catch {
      logger.warning("could not release the lease; others take over after it expires", metadata: ["error": "\(error)"])
    }
    setLeading(false)
  }

  /// Waits until this candidate holds the lease (retrying every `retryPeriod`); throws `CancellationError`.
  public func acquire() async throws {
    while true {
      try Task.checkCancellation()
      if await tryAcquireOrRenew() {
        logger.info("acquired the lease")
        setLeading(true)
        return
      }
      try await clock.sleep(for: nextAttemptDelay())
    }
  }

  /// Renews every `retryPeriod` until a renewal could not succeed within `renewDeadline`; then returns (leadership
  /// lost). Throws `CancellationError` when cancelled.
  public func renewUntilLost() async throws {
    var lastRenew = clock.now()
    while true {
      try await clock.sleep(for: config.retryPeriod)
      if await tryAcquireOrRenew() {
        lastRenew = clock.now()
      } else if clock.now() - lastRenew >= config.renewDeadline {
        logger.error("could not renew the lease within the renew deadline; stopping leading")
        setLeading(false)
        return
      }
    }
  }

  /// The outcome of `run(whileLeader:)`.
  public enum Outcome: Sendable, Equatable {
    /// `whileLeader` finished (graceful stop) and the lease was released.
    case finished
    /// The lease could not be renewed: `whileLeader` was cancelled; the process should exit and restart.
    case lost
    /// Cancelled before leadership was acquired.
    case cancelled
  }

  /// Acquires the lease, then runs `whileLeader` while renewing. If leadership is lost, `whileLeader` is cancelled
  /// (stop reconciling at once); when it returns by itself, the lease is released.
  public func run(whileLeader: @escaping @Sendable () async -> Void) async -> Outcome {
    do {
      try await acquire()
    } catch {
      return .cancelled
    }
    let lost = await withTaskGroup(of: Bool.self) { group -> Bool in
      group.addTask {
        await whileLeader()
        return false
      }
      group.addTask {
        do {
          try await self.renewUntilLost()
          return true
        } catch {
          return false
        }
      }
      let first = await group.next() ?? false
      group.cancelAll()
      await group.waitForAll()
      return first
    }
    if lost {
      setLeading(false)
      return .lost
    }
    // Release even when this task was cancelled (the calls would fail at once otherwise): an unstructured task
    // does not inherit cancellation, and the client's timeouts bound it.
    await Task { await self.release() }.value
    return .finished
  }
}
