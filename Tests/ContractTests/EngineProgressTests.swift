import EngineContract
import Foundation
import Testing

/// The progress line's parser reads what the engine writes and nothing else: the controller reads it from a Pod log,
/// so a line of another kind, a malformed one or an absurd value must not reach status or crash.
@Suite struct EngineProgressTests {
  @Test func roundTripsTheEnginesLine() throws {
    let p = EngineProgress(
      phase: "restore", files: 0, bytesDone: 500, bytesTotal: 2000, bytesStored: 0, errors: 0, secondsElapsed: 5.5)
    let line = String(decoding: try p.encodedLine(), as: UTF8.self)
    #expect(line.contains("\"message_type\":\"status\""))
    #expect(EngineProgress.parse(line[...]) == p)
  }

  @Test func readsTheNewestProgressLineOfALog() {
    let log = """
      {"bytesDone":10,"bytesStored":0,"errors":0,"files":1,"message_type":"status","phase":"backup"}
      warning: cannot read /backup/data/x: permission denied
      {"bytesDone":20,"bytesStored":5,"errors":1,"files":2,"message_type":"status","phase":"backup"}
      {"command":"backup","ok":true,"exitCode":0}

      """
    let p = EngineProgress.latest(inLog: log)
    #expect(p?.bytesDone == 20 && p?.files == 2 && p?.errors == 1)
    #expect(EngineProgress.latest(inLog: "no json here\n{\"command\":\"backup\"}\n") == nil)
    #expect(EngineProgress.latest(inLog: "") == nil)
  }

  @Test func refusesOrClampsHostileLines() {
    func parse(_ s: String) -> EngineProgress? { EngineProgress.parse(s[...]) }
    let base = #""message_type":"status","phase":"backup","bytesStored":0,"errors":0"#
    // Too long, not an object, not status, wrong types, a phase that is no word.
    #expect(
      parse("{" + base + #","files":1,"bytesDone":1,"pad":""# + String(repeating: "x", count: 2000) + "\"}")
        == nil)
    #expect(parse("[1,2]") == nil)
    #expect(
      parse(#"{"message_type":"summary","phase":"backup","files":1,"bytesDone":1,"bytesStored":0,"errors":0}"#)
        == nil)
    #expect(parse("{" + base + #","files":"1","bytesDone":1}"#) == nil)
    #expect(parse("{" + base + #","files":1,"bytesDone":1e40}"#) == nil)
    #expect(
      parse(#"{"message_type":"status","phase":"<b>x</b>","files":1,"bytesDone":1,"bytesStored":0,"errors":0}"#)
        == nil)
    // Negative counters are clamped; a total below the bytes done, or a non-finite time, is dropped.
    let p = parse("{" + base + #","files":-5,"bytesDone":-1,"bytesTotal":-3,"secondsElapsed":-2}"#)
    #expect(p?.files == 0 && p?.bytesDone == 0 && p?.bytesTotal == nil && p?.secondsElapsed == nil)
    let q = parse("{" + base + #","files":1,"bytesDone":100,"bytesTotal":50}"#)
    #expect(q?.bytesDone == 100 && q?.bytesTotal == nil)
  }

  @Test func progressRunsRenderJSONInsteadOfQuiet() {
    var common = EngineCommonArguments(repo: "file:///r", kms: "file:///k")
    let quiet = EngineArguments.backup(
      EngineBackupArguments(
        common: common, dataType: "files", tags: [], initIfMissing: false, objectLock: nil, compression: nil,
        source: .paths(["/data"])))
    #expect(quiet.argv.suffix(2) == ["--quiet", "/data"])
    common.progress = true
    let json = EngineArguments.restore(
      EngineRestoreArguments(common: common, snapshot: .latest, requireSnapshot: nil, output: .target("/t")))
    #expect(json.argv.last == "--json" && !json.argv.contains("--quiet"))
  }
}
