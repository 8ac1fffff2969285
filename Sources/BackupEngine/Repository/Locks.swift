import Foundation

/// A repository lock as stored in locks/<id>.
struct LockRecord: Codable, Sendable {
  var host: String
  var pid: Int32
  var time: String
  var expires: String
  var exclusive: Bool
}

/// A held lock; refreshes itself until released.
public final class RepositoryLock: @unchecked Sendable {
  let store: any ObjectStore
  public let key: String
  private var refresher: Task<Void, Never>?

  static let ttl: TimeInterval = 600
  static let refreshEvery: UInt64 = 120

  /// A read-only repository's lock: no object was written, so there is nothing to refresh or remove.
  init(readOnly store: any ObjectStore) {
    self.store = store
    self.key = ""
  }

  init(store: any ObjectStore, key: String, record: LockRecord) {
    self.store = store
    self.key = key
    let store = self.store
    refresher = Task {
      while !Task.isCancelled {
        do { try await Task.sleep(nanoseconds: Self.refreshEvery * 1_000_000_000) } catch { return }
        var r = record
        r.time = Repository.now()
        r.expires = Manifest.formatTime(Date().addingTimeInterval(Self.ttl))
        do { try await store.put(key, data: try JSONEncoder().encode(r)) } catch {
          // A missed refresh is retried on the next tick; the lock only expires after several misses.
          FileHandle.standardError.write(Data("warning: could not refresh lock \(key): \(error)\n".utf8))
        }
      }
    }
  }

  /// Releases the lock (deletes the object).
  public func release() async {
    refresher?.cancel()
    if key.isEmpty { return }
    do { try await store.delete(key) } catch {
      FileHandle.standardError.write(Data("warning: could not remove lock \(key): \(error)\n".utf8))
    }
  }
}

extension Repository {
  /// Takes a shared or exclusive lock, removing stale locks (expired, or from a dead local process). A lock that
  /// conflicts (an exclusive one, or any other when `exclusive`) fails at once with `EngineError.locked`, or, with
  /// `wait` > 0, is tried again every few seconds until it is free or `wait` has passed (restic's --retry-lock).
  ///
  /// Two lockers that check at the same moment could both find the repository free; so after writing its lock
  /// each looks again, and one that then sees a conflicting lock removes its own and counts as locked out. Of two
  /// such lockers at least one sees the other (the list after a write sees every earlier write), so a prune and a
  /// backup never both proceed; both may back off, and the waits are jittered so they do not meet again.
  public func lock(exclusive: Bool, wait: TimeInterval = 0) async throws -> RepositoryLock {
    let deadline = Date().addingTimeInterval(max(0, wait))
    var pause: TimeInterval = 1
    while true {
      do {
        return try await tryLock(exclusive: exclusive)
      } catch let e as EngineError {
        guard case .locked = e else { throw e }
        let left = deadline.timeIntervalSinceNow
        if left <= 0 { throw e }
        logger.info("repository locked; trying again for up to \(Int(left.rounded(.up))) s: \(e)")
        let sleep = min(left, pause * Double.random(in: 0.5...1.5))
        try await Task.sleep(nanoseconds: UInt64(sleep * 1_000_000_000))
        pause = min(pause * 2, 30)
      }
    }
  }

  func tryLock(exclusive: Bool) async throws -> RepositoryLock {
    if store.isReadOnly {
      // Nothing is written: a read-only run (a DR cluster's restore or verify) only checks that no exclusive lock (a
      // prune, a key rotation) is live, waiting for it as a shared lock would; stale locks are left for their owner.
      guard !exclusive else {
        throw EngineError.usage(
          "this command needs the repository's exclusive lock, which a read-only run (--read-only) cannot take")
      }
      try await checkLocks(exclusive: false, own: nil)
      return RepositoryLock(readOnly: store)
    }
    try await checkLocks(exclusive: exclusive, own: nil)
    let rec = LockRecord(
      host: ProcessInfo.processInfo.hostName, pid: getpid(), time: Self.now(),
      expires: Manifest.formatTime(Date().addingTimeInterval(RepositoryLock.ttl)),
      exclusive: exclusive)
    let key = "locks/" + Hex.encode(Crypto.randomBytes(16))
    try await store.create(key, data: try JSONEncoder().encode(rec))
    do {
      try await checkLocks(exclusive: exclusive, own: key)
    } catch {
      do { try await store.delete(key) } catch StorageError.notFound {}
      throw error
    }
    return RepositoryLock(store: store, key: key, record: rec)
  }

  /// Throws `EngineError.locked` when a live lock other than `own` conflicts; removes stale ones.
  func checkLocks(exclusive: Bool, own: String?) async throws {
    let host = ProcessInfo.processInfo.hostName
    for o in try await store.list(prefix: "locks/") where o.key != own {
      let d: Data
      do { d = try await store.get(o.key) } catch StorageError.notFound { continue }
      let r: LockRecord
      do { r = try JSONDecoder().decode(LockRecord.self, from: d) } catch {
        if store.isReadOnly { continue }
        logger.warning("removing unreadable lock \(o.key): \(error)")
        try await store.delete(o.key)
        continue
      }
      let expired = (Manifest.parseTime(r.expires) ?? .distantPast) < Date()
      let deadLocal = r.host == host && r.pid != getpid() && kill(r.pid, 0) != 0 && errno == ESRCH
      if expired || deadLocal {
        if store.isReadOnly { continue }
        logger.info("removing stale lock \(o.key) of \(r.host) pid \(r.pid)")
        try await store.delete(o.key)
        continue
      }
      if exclusive || r.exclusive {
        throw EngineError.locked(
          "repository \(store.location) is locked by \(r.host) pid \(r.pid) since \(r.time) (\(r.exclusive ? "exclusive" : "shared")); "
            + "wait for it to finish (or pass --retry-lock DURATION); a lock expires \(Int(RepositoryLock.ttl)) s "
            + "after its holder stops refreshing it")
      }
    }
  }
}
