import Foundation
import Synchronization

/// A thread-safe registry of counters, gauges and histograms with labels, rendered in the Prometheus text format.
public final class MetricsRegistry: Sendable {
  enum Kind: String, Sendable {
    case counter, gauge, histogram
  }

  struct HistogramValue: Sendable {
    var buckets: [Int]
    var sum: Double = 0
    var count: Int = 0
  }

  struct Family: Sendable {
    var name: String
    var help: String
    var kind: Kind
    var labelNames: [String]
    var buckets: [Double]
    var values: [[String]: Double] = [:]
    var histograms: [[String]: HistogramValue] = [:]
  }

  private let families = Mutex<[String: Family]>([:])

  public init() {}

  /// Registers (or returns the already registered) counter `name`.
  public func counter(_ name: String, help: String, labels: [String] = []) -> Counter {
    register(name, help: help, kind: .counter, labels: labels, buckets: [])
    return Counter(registry: self, name: name, labelNames: labels)
  }

  /// Registers (or returns the already registered) gauge `name`.
  public func gauge(_ name: String, help: String, labels: [String] = []) -> Gauge {
    register(name, help: help, kind: .gauge, labels: labels, buckets: [])
    return Gauge(registry: self, name: name, labelNames: labels)
  }

  /// Registers (or returns the already registered) histogram `name` with upper bucket bounds `buckets`.
  public func histogram(
    _ name: String, help: String, labels: [String] = [],
    buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
  ) -> Histogram {
    register(name, help: help, kind: .histogram, labels: labels, buckets: buckets.sorted())
    return Histogram(registry: self, name: name, labelNames: labels)
  }

  private func register(_ name: String, help: String, kind: Kind, labels: [String], buckets: [Double]) {
    precondition(Self.isValidName(name), "invalid metric name \(name)")
    for l in labels { precondition(Self.isValidName(l) && !l.hasPrefix("__"), "invalid label name \(l) of \(name)") }
    families.withLock { f in
      if let existing = f[name] {
        precondition(
          existing.kind == kind && existing.labelNames == labels,
          "metric \(name) registered twice with a different type or labels")
        return
      }
      f[name] = Family(name: name, help: help, kind: kind, labelNames: labels, buckets: buckets)
    }
  }

  func update(_ name: String, _ labelValues: [String], _ body: (inout Double) -> Void) {
    families.withLock { f in
      guard var fam = f[name] else { return }
      precondition(labelValues.count == fam.labelNames.count, "metric \(name) needs labels \(fam.labelNames)")
      body(&fam.values[labelValues, default: 0])
      f[name] = fam
    }
  }

  func observe(_ name: String, _ labelValues: [String], _ value: Double) {
    families.withLock { f in
      guard var fam = f[name] else { return }
      precondition(labelValues.count == fam.labelNames.count, "metric \(name) needs labels \(fam.labelNames)")
      var h = fam.histograms[labelValues] ?? HistogramValue(buckets: Array(repeating: 0, count: fam.buckets.count))
      for (i, bound) in fam.buckets.enumerated() where value <= bound { h.buckets[i] += 1 }
      h.sum += value
      h.count += 1
      fam.histograms[labelValues] = h
      f[name] = fam
    }
  }

  /// Removes every series whose labels include all of `labels` (name → value), in every family that has all those
  /// label names; returns how many went. For objects that are gone (a deleted policy, a removed replica), so their
  /// series stop feeding dashboards and alerts.
  /// `only` limits the removal to those families; the series with exactly the label values `except` stays.
  @discardableResult
  public func removeSeries(
    matching labels: [String: String], only: Set<String>? = nil, except: [String]? = nil
  ) -> Int {
    families.withLock { f in
      var removed = 0
      for (name, var fam) in f where only?.contains(name) ?? true {
        let idx = labels.keys.compactMap { k in fam.labelNames.firstIndex(of: k).map { (k, $0) } }
        guard idx.count == labels.count, !idx.isEmpty else { continue }
        func matches(_ values: [String]) -> Bool {
          values != except && idx.allSatisfy { values[$0.1] == labels[$0.0] }
        }
        let before = fam.values.count + fam.histograms.count
        fam.values = fam.values.filter { !matches($0.key) }
        fam.histograms = fam.histograms.filter { !matches($0.key) }
        removed += before - fam.values.count - fam.histograms.count
        f[name] = fam
      }
      return removed
    }
  }

  /// The current value of a counter or gauge (nil when never set), for tests and health logic.
  public func value(_ name: String, labels: [String] = []) -> Double? {
    families.withLock { $0[name]?.values[labels] }
  }

  /// The observation count of a histogram series.
  public func histogramCount(_ name: String, labels: [String] = []) -> Int? {
    families.withLock { $0[name]?.histograms[labels]?.count }
  }

  /// The Prometheus text exposition format (version 0.0.4), families and series sorted.
  public func render() -> String {
    let snapshot = families.withLock { $0 }
    var out = ""
    for name in snapshot.keys.sorted() {
      guard let fam = snapshot[name] else { continue }
      out += "# HELP \(name) \(Self.escapeHelp(fam.help))\n"
      out += "# TYPE \(name) \(fam.kind.rawValue)\n"
      switch fam.kind {
      case .counter, .gauge:
        for labels in fam.values.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
          out += "\(name)\(Self.labelText(fam.labelNames, labels)) \(Self.format(fam.values[labels] ?? 0))\n"
        }
      case .histogram:
        for labels in fam.histograms.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
          guard let h = fam.histograms[labels] else { continue }
          for (i, bound) in fam.buckets.enumerated() {
            let l = Self.labelText(fam.labelNames + ["le"], labels + [Self.format(bound)])
            out += "\(name)_bucket\(l) \(h.buckets[i])\n"
          }
          out += "\(name)_bucket\(Self.labelText(fam.labelNames + ["le"], labels + ["+Inf"])) \(h.count)\n"
          out += "\(name)_sum\(Self.labelText(fam.labelNames, labels)) \(Self.format(h.sum))\n"
          out += "\(name)_count\(Self.labelText(fam.labelNames, labels)) \(h.count)\n"
        }
      }
    }
    return out
  }

  static func isValidName(_ s: String) -> Bool {
    func letter(_ c: Unicode.Scalar) -> Bool {
      c == "_" || c == ":" || ("a"..."z").contains(c) || ("A"..."Z").contains(c)
    }
    guard let first = s.unicodeScalars.first, letter(first) else { return false }
    return s.unicodeScalars.allSatisfy { letter($0) || ("0"..."9").contains($0) }
  }

  static func labelText(_ names: [String], _ values: [String]) -> String {
    if names.isEmpty { return "" }
    let pairs = zip(names, values).map { "\($0)=\"\(escapeLabel($1))\"" }
    return "{" + pairs.joined(separator: ",") + "}"
  }

  /// Escapes a label value: backslash, double quote and newline.
  static func escapeLabel(_ s: String) -> String {
    s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
      .replacingOccurrences(of: "\n", with: "\\n")
  }

  /// Escapes HELP text: backslash and newline.
  static func escapeHelp(_ s: String) -> String {
    s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
  }

  static func format(_ v: Double) -> String {
    if v.isNaN { return "NaN" }
    if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    return String(v)
  }
}

/// A monotonically increasing counter family.
public struct Counter: Sendable {
  let registry: MetricsRegistry
  public let name: String
  public let labelNames: [String]

  /// Adds `amount` (must not be negative) to the series with `labels` (values in label-name order).
  public func inc(_ labels: [String] = [], by amount: Double = 1) {
    precondition(amount >= 0, "counter \(name) cannot decrease")
    registry.update(name, labels) { $0 += amount }
  }
}

/// A gauge family: a value that goes up and down.
public struct Gauge: Sendable {
  let registry: MetricsRegistry
  public let name: String
  public let labelNames: [String]

  public func set(_ value: Double, _ labels: [String] = []) { registry.update(name, labels) { $0 = value } }
  public func inc(_ labels: [String] = [], by amount: Double = 1) { registry.update(name, labels) { $0 += amount } }
  public func dec(_ labels: [String] = [], by amount: Double = 1) { registry.update(name, labels) { $0 -= amount } }
  /// Removes the series whose labels include all of `labels` (name → value): an object that is gone.
  @discardableResult
  public func remove(matching labels: [String: String]) -> Int {
    registry.removeSeries(matching: labels, only: [name])
  }
  /// Removes the other series whose labels include all of `labels`: after a label of the object changed (a
  /// policy's tier), its series under the old value would otherwise stay frozen.
  @discardableResult
  public func keepOnly(_ current: [String], among labels: [String: String]) -> Int {
    registry.removeSeries(matching: labels, only: [name], except: current)
  }
}

/// A histogram family with fixed buckets.
public struct Histogram: Sendable {
  let registry: MetricsRegistry
  public let name: String
  public let labelNames: [String]

  public func observe(_ value: Double, _ labels: [String] = []) { registry.observe(name, labels, value) }

  /// Observes a duration in seconds.
  public func observe(_ duration: Duration, _ labels: [String] = []) { observe(Backoff.seconds(duration), labels) }
}
