import CCurl
import Dispatch
import Foundation
import Synchronization

/// Performs HTTP requests with libcurl.
///
/// Blocking libcurl calls run on their own serial dispatch queue each, never on Swift's cooperative pool. A serial
/// queue gets a thread at once (overcommit); a shared concurrent queue is capped near the CPU count and grows only
/// slowly when its threads block, which held a controller with ~10 open watch streams back for ~9 s at start-up.
/// Easy handles are pooled and reset between requests, so connections (and TLS sessions) are
/// reused; HTTP/2 is negotiated over TLS where the server offers it.
public final class CurlClient: Sendable {
  private let pool = Mutex<[EasyHandle]>([])
  private let maxPooled: Int
  /// A queue for one blocking transfer.
  private var queue: DispatchQueue { DispatchQueue(label: "botrt.curl.transfer", qos: .userInitiated) }
  /// Extra libcurl verbosity for debugging (never logs bodies or headers by itself).
  public let verbose: Bool

  /// Certificates (PEM) trusted by every request that names no CA of its own (`TLSOptions.caFile`, `caPEM`), instead
  /// of libcurl's default bundle; nil = libcurl's default. `CurlClient.systemCABundle` plus a private CA adds that CA.
  public let defaultCAPEM: Data?

  public init(maxPooledConnections: Int = 16, verbose: Bool = false) {
    CurlGlobal.ensureInitialized()
    self.maxPooled = maxPooledConnections
    self.verbose = verbose
    self.defaultCAPEM = nil
  }

  /// A client whose requests trust `defaultCAPEM` unless they name a CA of their own.
  public init(defaultCAPEM: Data?, maxPooledConnections: Int = 16) {
    CurlGlobal.ensureInitialized()
    self.maxPooled = maxPooledConnections
    self.verbose = false
    self.defaultCAPEM = defaultCAPEM
  }

  /// Where Linux distributions keep the system's CA bundle (Debian and Ubuntu, Fedora and RHEL, Alpine, openSUSE).
  public static let systemCABundlePaths = [
    "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
  ]

  /// The system's CA bundle (the first of `systemCABundlePaths` that can be read), or nil.
  public static func systemCABundle() -> Data? {
    for p in systemCABundlePaths {
      if let d = FileManager.default.contents(atPath: p), !d.isEmpty { return d }
    }
    return nil
  }

  /// Sends a request and collects the whole response. HTTP error statuses are returned, not thrown.
  public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
    let ctx = TransferContext(stream: nil)
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (cont: CheckedContinuation<HTTPResponse, Error>) in
        queue.async { [self] in
          let result = self.perform(request, ctx: ctx)
          switch result {
          case .success:
            cont.resume(returning: HTTPResponse(status: ctx.status, headers: ctx.headers, body: ctx.body))
          case .failure(let e):
            cont.resume(throwing: e)
          }
        }
      }
    } onCancel: {
      ctx.cancel()
    }
  }

  /// Sends a request and returns as soon as the response head arrives; the body streams.
  ///
  /// The stream is bounded: when the consumer falls behind by `bufferedChunks` chunks, the
  /// transfer pauses until it catches up. Ending iteration early aborts the transfer.
  public func stream(_ request: HTTPRequest, bufferedChunks: Int = 16) async throws -> HTTPStreamingResponse {
    let (body, continuation) = AsyncThrowingStream<Data, Error>.makeStream(bufferingPolicy: .unbounded)
    // Start at 0 and add the credits: libdispatch traps when a semaphore is freed while its value
    // is below the value it was created with, which is the case after a body is not read to the end.
    let credits = DispatchSemaphore(value: 0)
    for _ in 0..<max(1, bufferedChunks) { credits.signal() }
    let sink = StreamSink(continuation: continuation, credits: credits)
    let ctx = TransferContext(stream: sink)
    continuation.onTermination = { _ in
      ctx.cancel()
      credits.signal()
    }
    let head: (Int, [String: String]) = try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (cont: CheckedContinuation<(Int, [String: String]), Error>) in
        ctx.setHeadContinuation(cont)
        queue.async { [self] in
          let result = self.perform(request, ctx: ctx)
          switch result {
          case .success:
            ctx.resolveHead(.success((ctx.status, ctx.headers)))
            continuation.finish()
          case .failure(let e):
            ctx.resolveHead(.failure(e))
            continuation.finish(throwing: e)
          }
        }
      }
    } onCancel: {
      ctx.cancel()
    }
    return HTTPStreamingResponse(
      status: head.0, headers: head.1, body: HTTPBodyStream(base: body, credits: credits), cancelHandle: ctx)
  }

  // MARK: - Blocking core

  private func checkout() -> EasyHandle {
    if let h = pool.withLock({ $0.popLast() }) { return h }
    return EasyHandle()
  }

  private func checkin(_ h: EasyHandle) {
    pool.withLock { handles in
      if handles.count < maxPooled { handles.append(h) }
    }
  }

  private func perform(_ request: HTTPRequest, ctx: TransferContext) -> Result<Void, HTTPTransportError> {
    let handle = checkout()
    defer { checkin(handle) }
    let h = handle.raw
    curl_easy_reset(h)
    // libcurl keeps this pointer for the whole transfer, so it must be a stable allocation.
    let errbuf = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    errbuf.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    defer { errbuf.deallocate() }
    var slist: UnsafeMutablePointer<curl_slist>? = nil
    defer { if let s = slist { curl_slist_free_all(s) } }
    var blobs: [UnsafeMutablePointer<curl_blob>] = []
    defer { blobs.forEach { $0.deallocate() } }

    let unmanaged = Unmanaged.passRetained(ctx)
    defer { unmanaged.release() }
    let userdata = unmanaged.toOpaque()

    _ = botrt_curl_setopt_string(h, CURLOPT_URL, request.url)
    _ = botrt_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
    _ = botrt_curl_setopt_long(h, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_2TLS))
    _ = botrt_curl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 0)
    _ = botrt_curl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1)
    _ = botrt_curl_setopt_string(h, CURLOPT_ACCEPT_ENCODING, "")
    if verbose { _ = botrt_curl_setopt_long(h, CURLOPT_VERBOSE, 1) }
    _ = botrt_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, curlMilliseconds(request.connectTimeout))
    if let t = request.timeout {
      _ = botrt_curl_setopt_long(h, CURLOPT_TIMEOUT_MS, curlMilliseconds(t))
    }
    if let lst = request.lowSpeedTime {
      _ = botrt_curl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, max(1, Int(lst.components.seconds)))
      _ = botrt_curl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, request.lowSpeedLimit)
    }

    // TLS
    blobs = applyTLS(h, request.tls)

    // Headers
    var hasContentType = false
    for (name, value) in request.headers {
      if name.caseInsensitiveCompare("Content-Type") == .orderedSame { hasContentType = true }
      slist = curl_slist_append(slist, value.isEmpty ? "\(name);" : "\(name): \(value)")
    }
    slist = curl_slist_append(slist, "Expect:")
    if request.body != nil && !hasContentType { slist = curl_slist_append(slist, "Content-Type:") }
    _ = botrt_curl_setopt_slist(h, CURLOPT_HTTPHEADER, slist)

    // Callbacks
    _ = botrt_curl_setopt_pointer(h, CURLOPT_ERRORBUFFER, errbuf)
    _ = botrt_curl_setopt_datacb(h, CURLOPT_WRITEFUNCTION, curlWriteCallback)
    _ = botrt_curl_setopt_pointer(h, CURLOPT_WRITEDATA, userdata)
    _ = botrt_curl_setopt_datacb(h, CURLOPT_HEADERFUNCTION, curlHeaderCallback)
    _ = botrt_curl_setopt_pointer(h, CURLOPT_HEADERDATA, userdata)
    _ = botrt_curl_setopt_long(h, CURLOPT_NOPROGRESS, 0)
    _ = botrt_curl_setopt_xferinfo(h, curlProgressCallback)
    _ = botrt_curl_setopt_pointer(h, CURLOPT_XFERINFODATA, userdata)

    let method = request.method.uppercased()
    let code: CURLcode
    if method == "HEAD" {
      _ = botrt_curl_setopt_long(h, CURLOPT_NOBODY, 1)
      code = curl_easy_perform(h)
    } else if let body = request.body ?? (["POST", "PUT", "PATCH"].contains(method) ? Data() : nil) {
      _ = botrt_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method)
      code = body.withUnsafeBytes { raw -> CURLcode in
        _ = botrt_curl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(raw.count))
        let empty: StaticString = ""
        let ptr = raw.baseAddress ?? UnsafeRawPointer(empty.utf8Start)
        _ = botrt_curl_setopt_pointer(h, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: ptr))
        return curl_easy_perform(h)
      }
    } else {
      if method != "GET" { _ = botrt_curl_setopt_string(h, CURLOPT_CUSTOMREQUEST, method) }
      code = curl_easy_perform(h)
    }

    var status: Int = 0
    _ = botrt_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
    ctx.status = status
    if code == CURLE_OK { return .success(()) }
    let detail = cString(errbuf).trimmingCharacters(in: .whitespacesAndNewlines)
    let message = detail.isEmpty ? cString(curl_easy_strerror(code)) : detail
    return .failure(
      HTTPTransportError(
        kind: ctx.isCancelled ? .cancelled : Self.kind(of: code), url: request.url, message: message,
        curlCode: Int32(code.rawValue)))
  }

  /// Sets the TLS options of `tls` on a handle (the CA, else `defaultCAPEM`; the client identity; verification);
  /// returns the blob descriptors to free once the transfer is done.
  func applyTLS(_ h: UnsafeMutableRawPointer, _ tls: TLSOptions) -> [UnsafeMutablePointer<curl_blob>] {
    var blobs: [UnsafeMutablePointer<curl_blob>] = []
    if tls.insecureSkipVerify {
      _ = botrt_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 0)
      _ = botrt_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 0)
    }
    if let f = tls.caFile { _ = botrt_curl_setopt_string(h, CURLOPT_CAINFO, f) }
    if let f = tls.clientCertFile { _ = botrt_curl_setopt_string(h, CURLOPT_SSLCERT, f) }
    if let f = tls.clientKeyFile { _ = botrt_curl_setopt_string(h, CURLOPT_SSLKEY, f) }
    func setBlob(_ opt: CURLoption, _ data: Data) {
      let b = UnsafeMutablePointer<curl_blob>.allocate(capacity: 1)
      // CURL_BLOB_COPY: libcurl keeps its own copy, so the Swift buffer may go away.
      data.withUnsafeBytes { raw in
        b.pointee = curl_blob(
          data: UnsafeMutableRawPointer(mutating: raw.baseAddress), len: raw.count, flags: UInt32(CURL_BLOB_COPY))
        _ = botrt_curl_setopt_blob(h, opt, b)
      }
      blobs.append(b)
    }
    if let d = tls.caPEM {
      setBlob(CURLOPT_CAINFO_BLOB, d)
    } else if tls.caFile == nil, let d = defaultCAPEM {
      setBlob(CURLOPT_CAINFO_BLOB, d)
    }
    if let d = tls.clientCertPEM { setBlob(CURLOPT_SSLCERT_BLOB, d) }
    if let d = tls.clientKeyPEM { setBlob(CURLOPT_SSLKEY_BLOB, d) }
    return blobs
  }

  static func kind(of code: CURLcode) -> HTTPTransportError.Kind {
    switch code {
    case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_SEND_ERROR,
      CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_HTTP2, CURLE_HTTP2_STREAM:
      return .connection
    case CURLE_OPERATION_TIMEDOUT:
      return .timeout
    case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CACERT_BADFILE,
      CURLE_SSL_CIPHER, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_CRL_BADFILE:
      return .tls
    case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_BAD_FUNCTION_ARGUMENT:
      return .invalidRequest
    case CURLE_ABORTED_BY_CALLBACK:
      return .cancelled
    default:
      return .other
    }
  }
}

/// A response whose body arrives as a bounded stream of chunks.
public struct HTTPStreamingResponse: Sendable {
  public let status: Int
  public let headers: [String: String]
  public let body: HTTPBodyStream
  let cancelHandle: TransferContext

  public func header(_ name: String) -> String? { headers[name.lowercased()] }

  /// Aborts the transfer; the body stream then ends with a cancellation error.
  public func cancel() { cancelHandle.cancel() }

  /// Reads the rest of the body, up to `limit` bytes.
  public func collect(limit: Int = 16 << 20) async throws -> Data {
    var out = Data()
    for try await chunk in body {
      out.append(chunk)
      if out.count > limit { cancel(); break }
    }
    return out
  }
}

/// The body of a streaming response; each element is one chunk as libcurl delivered it.
///
/// The body is read once. The transfer is aborted when its iterator is dropped before the end
/// (a `break` out of `for try await`), or when the response is dropped without its body being read:
/// either terminates the underlying stream, whose termination handler cancels the transfer.
public struct HTTPBodyStream: AsyncSequence, Sendable {
  public typealias Element = Data
  let base: AsyncThrowingStream<Data, Error>
  let credits: DispatchSemaphore

  public struct AsyncIterator: AsyncIteratorProtocol {
    var inner: AsyncThrowingStream<Data, Error>.AsyncIterator
    let credits: DispatchSemaphore

    public mutating func next() async throws -> Data? {
      let v = try await inner.next()
      if v != nil { credits.signal() }
      return v
    }
  }

  public func makeAsyncIterator() -> AsyncIterator {
    AsyncIterator(inner: base.makeAsyncIterator(), credits: credits)
  }
}

// MARK: - Internals

/// A duration in whole milliseconds for libcurl's `*_MS` options, at least 1 (0 would mean "no limit").
func curlMilliseconds(_ d: Duration) -> Int {
  let (seconds, attoseconds) = d.components
  if seconds < 0 { return 1 }
  if seconds > 1_000_000_000 { return 1_000_000_000_000 }
  return max(1, Int(seconds * 1000 + attoseconds / 1_000_000_000_000_000))
}

/// Reads a NUL-terminated C string as UTF-8.
func cString(_ p: UnsafePointer<CChar>?) -> String {
  guard let p else { return "" }
  return String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)), as: UTF8.self)
}

enum CurlGlobal {
  private static let initialized: Bool = {
    curl_global_init(Int(CURL_GLOBAL_DEFAULT))
    return true
  }()
  static func ensureInitialized() { _ = initialized }
}

/// One libcurl easy handle. Used by one thread at a time: the pool hands it out exclusively.
final class EasyHandle: @unchecked Sendable {
  let raw: UnsafeMutableRawPointer
  init() {
    guard let h = curl_easy_init() else { fatalError("curl_easy_init failed: out of memory") }
    raw = h
  }
  deinit { curl_easy_cleanup(raw) }
}

final class StreamSink: Sendable {
  let continuation: AsyncThrowingStream<Data, Error>.Continuation
  let credits: DispatchSemaphore
  init(continuation: AsyncThrowingStream<Data, Error>.Continuation, credits: DispatchSemaphore) {
    self.continuation = continuation
    self.credits = credits
  }
}

/// State shared between one transfer's libcurl callbacks and its Swift caller.
final class TransferContext: @unchecked Sendable {
  // Written only by the transfer thread until the transfer ends; read after it ends.
  var status = 0
  var headers: [String: String] = [:]
  var body = Data()
  let stream: StreamSink?
  private let lock = NSLock()
  private var cancelled = false
  private var headCont: CheckedContinuation<(Int, [String: String]), Error>?
  private var headResolved = false

  init(stream: StreamSink?) { self.stream = stream }

  func cancel() {
    lock.lock()
    cancelled = true
    lock.unlock()
    stream?.credits.signal()
  }

  var isCancelled: Bool {
    lock.lock()
    defer { lock.unlock() }
    return cancelled
  }

  func setHeadContinuation(_ c: CheckedContinuation<(Int, [String: String]), Error>) {
    lock.lock()
    headCont = c
    lock.unlock()
  }

  func resolveHead(_ r: Result<(Int, [String: String]), Error>) {
    lock.lock()
    let c = headResolved ? nil : headCont
    headResolved = true
    headCont = nil
    lock.unlock()
    c?.resume(with: r)
  }
}

private func curlWriteCallback(
  _ ptr: UnsafeMutablePointer<CChar>?, _ size: Int, _ nmemb: Int, _ userdata: UnsafeMutableRawPointer?
) -> Int {
  guard let userdata, let ptr else { return 0 }
  let ctx = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
  let n = size * nmemb
  if ctx.isCancelled { return 0 }
  guard let sink = ctx.stream else {
    ctx.body.append(UnsafeRawPointer(ptr).assumingMemoryBound(to: UInt8.self), count: n)
    return n
  }
  // The head is complete once the first body byte arrives.
  ctx.resolveHead(.success((ctx.status, ctx.headers)))
  // Back-pressure: wait for a credit, checking for cancellation now and then.
  while sink.credits.wait(timeout: .now() + .milliseconds(500)) == .timedOut {
    if ctx.isCancelled { return 0 }
  }
  if ctx.isCancelled { return 0 }
  sink.continuation.yield(Data(bytes: ptr, count: n))
  return n
}

private func curlHeaderCallback(
  _ ptr: UnsafeMutablePointer<CChar>?, _ size: Int, _ nmemb: Int, _ userdata: UnsafeMutableRawPointer?
) -> Int {
  guard let userdata, let ptr else { return 0 }
  let ctx = Unmanaged<TransferContext>.fromOpaque(userdata).takeUnretainedValue()
  let n = size * nmemb
  let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: n), as: UTF8.self)
    .trimmingCharacters(in: .whitespacesAndNewlines)
  if line.isEmpty {
    // End of a header block. A final (non-1xx) head is complete: streaming callers get it now,
    // even when the body starts much later (a watch with no events yet).
    if ctx.stream != nil && ctx.status >= 200 { ctx.resolveHead(.success((ctx.status, ctx.headers))) }
  } else if line.hasPrefix("HTTP/") {
    // A new response head (after 100-continue or a proxy): start over.
    ctx.headers = [:]
    let parts = line.split(separator: " ")
    if parts.count >= 2, let code = Int(parts[1]) { ctx.status = code }
  } else if let colon = line.firstIndex(of: ":") {
    let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
    let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    ctx.headers[name] = value
  }
  return n
}

private func curlProgressCallback(
  _ clientp: UnsafeMutableRawPointer?, _ dltotal: curl_off_t, _ dlnow: curl_off_t, _ ultotal: curl_off_t,
  _ ulnow: curl_off_t
) -> Int32 {
  guard let clientp else { return 0 }
  let ctx = Unmanaged<TransferContext>.fromOpaque(clientp).takeUnretainedValue()
  return ctx.isCancelled ? 1 : 0
}
