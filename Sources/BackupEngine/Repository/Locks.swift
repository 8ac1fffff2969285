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
    do { try await store.delete(key) } catch {
      FileHandle.standardError.write(Data("warning: could not remove lock \(key): \(error)\n".utf8))
    }
  }
}

extension Repository {
  /// Takes a shared or exclusive lock, removing stale locks (expired, or from a dead local process).
  public func lock(exclusive: Bool) async throws -> RepositoryLock {
    let host = ProcessInfo.processInfo.hostName
    for o in try await store.list(prefix: "locks/") {
      let d: Data
      do { d = try await store.get(o.key) } catch StorageError.notFound { continue }
      let r: LockRecord
      do { r = try JSONDecoder().decode(LockRecord.self, from: d) } catch {
        logger.warning("removing unreadable lock \(o.key): \(error)")
        try await store.delete(o.key)
        continue
      }
      let expired = (Manifest.parseTime(r.expires) ?? .distantPast) < Date()
      let deadLocal = r.host == host && r.pid != getpid() && kill(r.pid, 0) != 0 && errno == ESRCH
      if expired || deadLocal {
        logger.info("removing stale lock \(o.key) of \(r.host) pid \(r.pid)")
        try await store.delete(o.key)
        continue
      }
      if exclusive || r.exclusive {
        throw EngineError.locked(
          "repository \(store.location) is locked by \(r.host) pid \(r.pid) since \(r.time) (\(r.exclusive ? "exclusive" : "shared")); "
            + "wait for it to finish; a lock expires \(Int(RepositoryLock.ttl)) s after its holder stops refreshing it")
      }
    }
    let rec = LockRecord(
      host: host, pid: getpid(), time: Self.now(),
      expires: Manifest.formatTime(Date().addingTimeInterval(RepositoryLock.ttl)),
      exclusive: exclusive)
    let key = "locks/" + Hex.encode(Crypto.randomBytes(16))
    try await store.put(key, data: try JSONEncoder().encode(rec), options: PutOptions(ifNoneMatch: true))
    return RepositoryLock(store: store, key: key, record: rec)
  }
}
