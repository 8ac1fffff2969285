import Foundation
import KubeCore
import Logging
import Testing

@testable import KubeRuntime

#if canImport(Glibc)
  import Glibc
#endif

/// A runnable that runs until stopped.
final class IdleRunnable: Runnable {
  let name = "idle"
  private let stopped = AsyncEvent()
  func run() async { await stopped.wait() }
  func requestStop() async { stopped.signal() }
}

/// A Lease API whose every call fails, as when the apiserver cannot be reached.
struct UnreachableLeaseAPI: LeaseAPI {
  func get(namespace: String, name: String) async throws -> Lease? { throw FakeTransportError() }
  func create(_ lease: Lease) async throws -> Lease { throw FakeTransportError() }
  func update(_ lease: Lease) async throws -> Lease { throw FakeTransportError() }
}

/// `GET path` over loopback; returns the status code and body.
func httpGet(port: UInt16, _ path: String) -> (status: Int, body: String) {
  #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
  #endif
  defer { close(fd) }
  var addr = sockaddr_in()
  addr.sin_family = sa_family_t(AF_INET)
  addr.sin_port = port.bigEndian
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
  let connected = withUnsafePointer(to: &addr) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
  }
  guard connected == 0 else { return (0, "") }
  let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
  _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
  var response = [UInt8]()
  var buf = [UInt8](repeating: 0, count: 4096)
  while true {
    let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
    if n <= 0 { break }
    response += buf[0..<n]
  }
  let text = String(decoding: response, as: UTF8.self)
  let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } ?? 0
  let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
  return (status, body)
}

/// Readiness with leader election means "healthy and able to take over": the standby of two replicas is Ready
/// (`kubectl rollout status` completes), one that cannot reach the apiserver is not; `botrt_leader` tells them apart.
@Suite(.serialized, .timeLimit(.minutes(1))) struct ReadinessTests {
  func manager(_ id: String, _ api: any LeaseAPI) -> (ControllerManager, LeaderElector, HealthServer) {
    let elector = LeaderElector(
      config: LeaderElectionConfig(
        namespace: "botrt-system", name: "botrt-controller", identity: id, leaseDuration: .seconds(3),
        renewDeadline: .seconds(2), retryPeriod: .milliseconds(200)),
      api: api, logger: Logger(label: id))
    let server = HealthServer(host: "127.0.0.1", port: 0, registry: MetricsRegistry(), logger: Logger(label: id))
    let manager = ControllerManager(
      controllers: [IdleRunnable()], leaderElector: elector, healthServer: server, shutdownDeadline: .seconds(5),
      handleSignals: false, logger: Logger(label: id))
    return (manager, elector, server)
  }

  func eventually(_ what: String, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while !condition() {
      guard ContinuousClock.now < deadline else {
        Issue.record("timed out waiting for: \(what)")
        return
      }
      try await Task.sleep(for: .milliseconds(50))
    }
  }

  @Test func theStandbyIsReadyAndAnUnreachableOneIsNot() async throws {
    let lease = FakeLeaseAPI()
    let (leader, leaderElector, leaderServer) = manager("leader", lease)
    let leaderRun = Task { try await leader.run() }
    try await eventually("leader elected") { leaderElector.isLeader }
    let (standby, standbyElector, standbyServer) = manager("standby", lease)
    let standbyRun = Task { try await standby.run() }
    try await eventually("standby ready") {
      standbyServer.port != 0 && httpGet(port: standbyServer.port, "/readyz").status == 200
    }

    #expect(!standbyElector.isLeader)
    #expect(httpGet(port: standbyServer.port, "/readyz").status == 200)
    #expect(httpGet(port: leaderServer.port, "/readyz").status == 200)
    #expect(httpGet(port: standbyServer.port, "/metrics").body.contains("\nbotrt_leader 0\n"))
    #expect(httpGet(port: leaderServer.port, "/metrics").body.contains("\nbotrt_leader 1\n"))

    // A replica whose lease calls fail is live but not ready: it could not take over.
    let (cut, _, cutServer) = manager("cut-off", UnreachableLeaseAPI())
    let cutRun = Task { try await cut.run() }
    try await eventually("cut-off serving") {
      cutServer.port != 0 && httpGet(port: cutServer.port, "/healthz").status == 200
    }
    try await Task.sleep(for: .milliseconds(600))
    #expect(httpGet(port: cutServer.port, "/readyz").status == 503)
    #expect(httpGet(port: cutServer.port, "/metrics").body.contains("\nbotrt_leader 0\n"))

    for m in [cut, standby, leader] { m.stop() }
    for run in [cutRun, standbyRun, leaderRun] { _ = try await run.value }
  }
}
