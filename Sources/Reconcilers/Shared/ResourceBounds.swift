import DRAPI
import Foundation

/// The administrator's bounds on the containers the controller runs for a policy (backup, dump, prune, verify,
/// copy, key rotation and repository deletion), set with `--default-requests`, `--default-limits` and
/// `--max-resources` (each `NAME=QUANTITY,...`, e.g. `cpu=2,memory=4Gi,ephemeral-storage=20Gi`).
///
/// A container gets the spec's requests and limits (spec.resources), the defaults for the names the spec leaves
/// out, and, for every name with a maximum, a limit (the default limit, else the maximum), so no container of a
/// bounded resource runs unlimited. A spec value above the maximum is refused, naming the field and the maximum.
public struct ResourceBounds: Sendable, Hashable {
  public var defaultRequests: [String: Quantity]
  public var defaultLimits: [String: Quantity]
  /// The largest request or limit a spec may ask for, by resource name.
  public var maximum: [String: Quantity]

  public init(
    defaultRequests: [String: Quantity] = [:], defaultLimits: [String: Quantity] = [:],
    maximum: [String: Quantity] = [:]
  ) {
    self.defaultRequests = defaultRequests
    self.defaultLimits = defaultLimits
    self.maximum = maximum
  }

  /// Whether nothing is set (containers get only what their spec says).
  public var isEmpty: Bool { defaultRequests.isEmpty && defaultLimits.isEmpty && maximum.isEmpty }

  /// Parses `NAME=QUANTITY,...` (empty: none).
  public static func parseList(_ text: String, option: String) throws(ControllerOptionsError) -> [String: Quantity] {
    var out: [String: Quantity] = [:]
    for item in text.split(separator: ",") {
      let parts = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
      guard parts.count == 2, !parts[0].isEmpty, QuantityValue.parse(parts[1]) != nil else {
        throw ControllerOptionsError(
          option: option, message: "'\(item)' is not NAME=QUANTITY (e.g. cpu=500m,memory=1Gi)")
      }
      out[parts[0]] = Quantity(parts[1])
    }
    return out
  }

  /// Checks the bounds themselves: every default within its maximum, every default request within its default
  /// limit.
  public func validate() throws(ControllerOptionsError) {
    for (flag, list) in [("--default-requests", defaultRequests), ("--default-limits", defaultLimits)] {
      for (name, q) in list.sorted(by: { $0.key < $1.key }) {
        if let max = maximum[name], let v = QuantityValue.parse(q.text), let m = QuantityValue.parse(max.text), v > m {
          throw ControllerOptionsError(
            option: flag, message: "\(name)=\(q.text) is above --max-resources \(name)=\(max.text)")
        }
      }
    }
    for (name, q) in defaultRequests {
      if let l = defaultLimits[name], let v = QuantityValue.parse(q.text), let lv = QuantityValue.parse(l.text),
        v > lv
      {
        throw ControllerOptionsError(
          option: "--default-requests", message: "\(name)=\(q.text) is above --default-limits \(name)=\(l.text)")
      }
    }
  }

  /// The resources of a container of a policy whose spec asks for `spec` (at `field`); nil when neither the spec nor
  /// the bounds set anything. Throws naming the field when the spec asks for more than a maximum, or for a request
  /// above its limit.
  public func effective(
    _ spec: ResourceRequirements?, field: String = "spec.resources"
  ) throws(SpecError) -> ResourceRequirements? {
    let asked = [("requests", spec?.requests ?? [:]), ("limits", spec?.limits ?? [:])]
    for (part, list) in asked {
      for (name, q) in list.sorted(by: { $0.key < $1.key }) {
        guard let max = maximum[name] else { continue }
        guard let v = QuantityValue.parse(q.text) else {
          throw SpecError(field: "\(field).\(part).\(name)", message: "'\(q.text)' is not a quantity")
        }
        if let m = QuantityValue.parse(max.text), v > m {
          throw SpecError(
            field: "\(field).\(part).\(name)",
            message: "\(q.text) is above the maximum \(max.text) the administrator allows (--max-resources)")
        }
      }
    }
    if isEmpty { return spec }
    var limits = defaultLimits.merging(spec?.limits ?? [:]) { $1 }
    for (name, max) in maximum where limits[name] == nil { limits[name] = max }
    var requests = defaultRequests.merging(spec?.requests ?? [:]) { $1 }
    for (name, r) in requests {
      guard let l = limits[name], let rv = QuantityValue.parse(r.text), let lv = QuantityValue.parse(l.text), rv > lv
      else { continue }
      if spec?.requests?[name] != nil {
        throw SpecError(
          field: "\(field).requests.\(name)",
          message: "\(r.text) is above the limit \(l.text)\(spec?.limits?[name] == nil ? " (the administrator's)" : "")"
        )
      }
      // A default request above the spec's own limit: the limit is the request.
      requests[name] = l
    }
    return ResourceRequirements(
      requests: requests.isEmpty ? nil : requests, limits: limits.isEmpty ? nil : limits)
  }
}

/// The numeric value of a Kubernetes quantity ("500m", "2", "1.5Gi", "1e3"), for comparisons.
public enum QuantityValue {
  static let suffixes: [(String, Double)] = [
    ("Ki", 1024), ("Mi", 1_048_576), ("Gi", 1_073_741_824), ("Ti", 1_099_511_627_776),
    ("Pi", 1_125_899_906_842_624), ("Ei", 1_152_921_504_606_846_976), ("n", 1e-9), ("u", 1e-6), ("m", 1e-3),
    ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("P", 1e15), ("E", 1e18),
  ]

  public static func parse(_ text: String) -> Double? {
    let t = text.trimmingCharacters(in: .whitespaces)
    guard !t.isEmpty else { return nil }
    for (suffix, factor) in suffixes where t.hasSuffix(suffix) {
      guard let n = number(String(t.dropLast(suffix.count))) else { return nil }
      return n * factor
    }
    return number(t)
  }

  static func number(_ s: String) -> Double? {
    guard !s.isEmpty, s.allSatisfy({ $0.isNumber || "+-.eE".contains($0) }), let v = Double(s), v >= 0,
      v.isFinite
    else { return nil }
    return v
  }
}
