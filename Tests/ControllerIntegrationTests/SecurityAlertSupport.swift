import Foundation
import KubeCore
import Testing

/// Reads the controller's /metrics over HTTP and evaluates the PrometheusRule of manifests/monitoring with
/// `promtool test rules` (Debian's `prometheus` package, installed by hack/install-deps.sh). A missing promtool fails
/// the test.
enum PromRules {
  /// Runs a program and returns its exit status and combined output.
  static func run(_ argv: [String], cwd: String? = nil) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = argv
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  /// The text of `http://address/metrics`.
  static func scrape(_ address: String) throws -> String {
    let (rc, out) = try run(["curl", "-sf", "http://\(address)/metrics"])
    guard rc == 0 else { throw ControllerTestError(description: "cannot scrape http://\(address)/metrics: \(out)") }
    return out
  }

  /// The series of `metric` in a scrape whose labels contain all of `matching`: (series text, value).
  static func series(_ scrape: String, _ metric: String, matching: [String: String] = [:]) -> [(String, Double)] {
    scrape.split(separator: "\n").compactMap { line -> (String, Double)? in
      guard line.hasPrefix(metric + "{") || line.hasPrefix(metric + " ") else { return nil }
      guard let space = line.lastIndex(of: " "), let v = Double(line[line.index(after: space)...]) else { return nil }
      let text = String(line[..<space])
      for (k, want) in matching where !text.contains("\(k)=\"\(want)\"") { return nil }
      return (text, v)
    }
  }

  /// The labels of a series text `name{a="b",...}` (values without escapes, as the tests' labels are).
  static func labels(_ series: String) -> [String: String] {
    guard let open = series.firstIndex(of: "{"), series.hasSuffix("}") else { return [:] }
    var out: [String: String] = [:]
    let body = series[series.index(after: open)..<series.index(before: series.endIndex)]
    for pair in body.split(separator: ",") {
      let kv = pair.split(separator: "=", maxSplits: 1)
      guard kv.count == 2 else { continue }
      out[String(kv[0])] = String(kv[1].dropFirst().dropLast())
    }
    return out
  }

  /// The rule groups of manifests/monitoring/prometheusrule.yaml as a promtool rule file, without annotations
  /// (the tests check expressions and labels).
  static func ruleFile() throws -> JSONValue {
    let path = TestCluster.repoRoot + "/manifests/monitoring/prometheusrule.yaml"
    let doc = try YAML.parse(try String(contentsOfFile: path, encoding: .utf8), file: path)
    var groups: [JSONValue] = []
    for g in doc[path: "spec", "groups"]?.arrayValue ?? [] {
      var group = g
      group["rules"] = .array(
        (g["rules"]?.arrayValue ?? []).map { r in
          var rule = r
          rule["annotations"] = nil
          return rule
        })
      groups.append(group)
    }
    return ["groups": .array(groups)]
  }

  /// One input series for promtool: `values` in promtool's expanding notation.
  struct Input {
    var series: String
    var values: String
  }

  /// One expectation: at `evalTime`, alert `alert` fires exactly with these label sets (empty: does not fire).
  struct Expectation {
    var evalTime: String
    var alert: String
    var firing: [[String: String]]
  }

  /// Writes the rule file and a test file, runs `promtool test rules` and fails the test on a mismatch.
  static func test(_ inputs: [Input], _ expectations: [Expectation], name: String) throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-promtool-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let enc = KubeJSON.encoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    try enc.encode(try ruleFile()).write(to: dir.appendingPathComponent("rules.json"))
    let test: JSONValue = [
      "rule_files": ["rules.json"], "evaluation_interval": "1m",
      "tests": [
        [
          "interval": "1m",
          "input_series": .array(inputs.map { ["series": .string($0.series), "values": .string($0.values)] }),
          "alert_rule_test": .array(
            expectations.map { e in
              [
                "eval_time": .string(e.evalTime), "alertname": .string(e.alert),
                "exp_alerts": .array(
                  e.firing.map { ["exp_labels": .object($0.mapValues { .string($0) })] }),
              ]
            }),
        ]
      ],
    ]
    let testFile = dir.appendingPathComponent("\(name).json")
    try enc.encode(test).write(to: testFile)
    let (rc, out): (Int32, String)
    do {
      (rc, out) = try run(["promtool", "test", "rules", testFile.lastPathComponent], cwd: dir.path)
    } catch {
      throw ControllerTestError(
        description: "cannot run promtool (Debian package prometheus, installed by hack/install-deps.sh): \(error)")
    }
    if rc != 0 {
      let testText = String(decoding: try Data(contentsOf: testFile), as: UTF8.self)
      Issue.record("promtool test rules failed (\(rc)):\n\(out)\ntest file:\n\(testText)")
    }
  }
}
