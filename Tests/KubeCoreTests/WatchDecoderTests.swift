import Foundation
import Testing

@testable import KubeCore

@Suite struct WatchDecoderTests {
  func event(_ type: String, name: String, rv: String, extra: String = "") -> String {
    #"{"type":"\#(type)","object":{"kind":"ConfigMap","apiVersion":"v1","#
      + #""metadata":{"name":"\#(name)","namespace":"n","resourceVersion":"\#(rv)"}\#(extra)}}"#
  }

  @Test func linesSplitAcrossChunksAtEveryOffset() throws {
    let stream = Data((event("ADDED", name: "a", rv: "1") + "\n" + event("MODIFIED", name: "a", rv: "2") + "\n").utf8)
    for cut in 1..<stream.count {
      var d = WatchEventDecoder<ConfigMap>()
      var events = try d.feed(stream.prefix(cut))
      events += try d.feed(stream.dropFirst(cut))
      events += try d.finish()
      #expect(events.count == 2)
      #expect(events.first?.type == .added)
      #expect(events.last?.object?.metadata.resourceVersion == "2")
    }
  }

  @Test func byteAtATime() throws {
    let stream = Data((event("DELETED", name: "x", rv: "9") + "\r\n\n").utf8)
    var d = WatchEventDecoder<ConfigMap>()
    var events: [WatchEvent<ConfigMap>] = []
    for b in stream { events += try d.feed([b]) }
    events += try d.finish()
    #expect(events.count == 1)
    #expect(events[0].type == .deleted)
  }

  @Test func twoMegabyteObject() throws {
    let big = String(repeating: "x", count: 2 << 20)
    let line = event("ADDED", name: "big", rv: "5", extra: #","data":{"blob":"\#(big)"}"#) + "\n"
    let bytes = Array(line.utf8)
    var d = WatchEventDecoder<ConfigMap>()
    var events: [WatchEvent<ConfigMap>] = []
    var i = 0
    while i < bytes.count {
      let end = min(bytes.count, i + 16_384)
      events += try d.feed(bytes[i..<end])
      i = end
    }
    #expect(events.count == 1)
    #expect(events[0].object?.data?["blob"]?.count == 2 << 20)
  }

  @Test func lineLimitIsEnforced() {
    var d = WatchEventDecoder<ConfigMap>(maxLineBytes: 1024)
    #expect(throws: WatchLineTooLong.self) { _ = try d.feed(Array(repeating: UInt8(ascii: "a"), count: 2000)) }
  }

  @Test func errorAndBookmarkEvents() throws {
    let err =
      #"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#
      + #""message":"too old resource version: 1 (250)","reason":"Expired","code":410}}"#
    let bm =
      #"{"type":"BOOKMARK","object":{"kind":"ConfigMap","apiVersion":"v1","#
      + #""metadata":{"resourceVersion":"250","creationTimestamp":null}}}"#
    var d = WatchEventDecoder<ConfigMap>()
    let events = try d.feed(Data((bm + "\n" + err + "\n").utf8))
    #expect(events.count == 2)
    guard case .bookmark(let rv) = events[0] else {
      Issue.record("expected a bookmark, got \(events[0].type)")
      return
    }
    #expect(rv == "250")
    guard case .error(let status) = events[1] else {
      Issue.record("expected an error event")
      return
    }
    #expect(status.code == 410)
    #expect(status.typedReason == .expired)
  }

  @Test func malformedLineNamesTheType() {
    var d = WatchEventDecoder<ConfigMap>()
    do {
      _ = try d.feed(Data(#"{"type":"ADDED","object":{"metadata":{"name":5}}}"#.utf8 + [10]))
      Issue.record("expected a decode error")
    } catch let e as WatchDecodeError {
      #expect(e.typeName == "ConfigMap")
      #expect(e.underlying.contains(".object.metadata.name"))
    } catch {
      Issue.record("unexpected \(error)")
    }
  }

  @Test func unterminatedFinalLine() throws {
    var d = WatchEventDecoder<Unstructured>()
    #expect(try d.feed(Data(event("ADDED", name: "a", rv: "1").utf8)).isEmpty)
    let rest = try d.finish()
    #expect(rest.count == 1)
    #expect(rest[0].object?.metadata.name == "a")
  }
}
