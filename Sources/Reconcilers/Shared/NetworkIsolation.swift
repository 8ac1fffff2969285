import DRAPI
import Foundation
import KubeCore

/// What an egress destination the administrator declares is for (`--egress KIND=DESTINATION:PORT`).
public enum EgressKind: String, Sendable, Hashable, CaseIterable {
  /// Object storage (S3, GCS, Azure Blob endpoints).
  case storage
  /// Cloud key services (AWS KMS, Azure Key Vault and its token endpoint, Google Cloud KMS and its token endpoint).
  case kms
  /// Vault servers (Transit).
  case vault
  /// Database servers that dump commands (and drill queries) reach outside the policy's own namespace.
  case database
  /// DNS servers besides the cluster DNS pods (for example node-local DNS at 169.254.20.10).
  case dns
  /// The Kubernetes apiserver's endpoints (the addresses behind the `kubernetes` Service), which the pods that back
  /// up or restore Kubernetes objects (spec.objects) reach.
  case apiserver
}

/// An IPv4 or IPv6 network in CIDR notation, parsed (a bare address is a host network).
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
  /// 4 or 16 bytes.
  public var bytes: [UInt8]
  public var prefix: Int

  public init?(_ text: String) {
    var t = text.trimmingCharacters(in: CharacterSet(charactersIn: "[] "))
    var prefix: Int? = nil
    if let slash = t.firstIndex(of: "/") {
      guard let p = Int(t[t.index(after: slash)...]) else { return nil }
      prefix = p
      t = String(t[..<slash])
    }
    guard let b = CIDR.address(t) else { return nil }
    let bits = b.count * 8
    let p = prefix ?? bits
    guard (0...bits).contains(p) else { return nil }
    bytes = b
    self.prefix = p
  }

  /// The bytes of an IPv4 or IPv6 address literal.
  static func address(_ text: String) -> [UInt8]? {
    if text.contains(":") {
      var a = text.lowercased()
      // An embedded IPv4 tail is not needed by any rule here.
      guard !a.contains("."), a.allSatisfy({ $0.isHexDigit || $0 == ":" }) else { return nil }
      if a.hasPrefix("::") { a = "0" + a }
      if a.hasSuffix("::") { a += "0" }
      let halves = a.components(separatedBy: "::")
      guard halves.count <= 2 else { return nil }
      let head = halves[0].split(separator: ":", omittingEmptySubsequences: false).map(String.init)
      let tail =
        halves.count == 2 ? halves[1].split(separator: ":", omittingEmptySubsequences: false).map(String.init) : []
      let fill = 8 - head.count - tail.count
      guard halves.count == 2 ? fill >= 1 : fill == 0 else { return nil }
      var out: [UInt8] = []
      for g in head + Array(repeating: "0", count: max(0, fill)) + tail {
        guard !g.isEmpty, g.count <= 4, let v = UInt16(g, radix: 16) else { return nil }
        out += [UInt8(v >> 8), UInt8(v & 0xff)]
      }
      return out
    }
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return nil }
    var out: [UInt8] = []
    for p in parts {
      guard !p.isEmpty, p.count <= 3, p.allSatisfy(\.isNumber), let v = UInt8(p) else { return nil }
      out.append(v)
    }
    return out
  }

  /// Whether `other` (a network or a host) lies inside this network.
  public func contains(_ other: CIDR) -> Bool {
    guard other.bytes.count == bytes.count, other.prefix >= prefix else { return false }
    var left = prefix
    for i in bytes.indices where left > 0 {
      let take = min(8, left)
      let mask: UInt8 = take == 8 ? 0xff : ~(0xff >> UInt8(take))
      if bytes[i] & mask != other.bytes[i] & mask { return false }
      left -= take
    }
    return true
  }

  public var isIPv6: Bool { bytes.count == 16 }

  /// The canonical text ("10.0.0.0/8", "fd00::/8" written in full groups).
  public var description: String {
    if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") + "/\(prefix)" }
    let groups = stride(from: 0, to: 16, by: 2).map {
      String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16)
    }
    return groups.joined(separator: ":") + "/\(prefix)"
  }
}

/// A destination the administrator declares for the backup pods' egress, since NetworkPolicies cannot name a host:
/// `KIND=CIDR:PORT` (IPv6 in brackets: `storage=[fd00::/8]:443`) or `KIND=ns/NAMESPACE:PORT` (every pod of a
/// namespace, chosen by the `kubernetes.io/metadata.name` label the API server sets, e.g. an in-cluster Vault
/// addressed by host name: `vault=ns/vault:8200`).
public struct EgressDestination: Sendable, Hashable, CustomStringConvertible {
  /// Where the traffic may go.
  public enum Peer: Sendable, Hashable {
    case cidr(CIDR)
    case namespace(String)
  }

  public var kind: EgressKind
  public var peer: Peer
  public var port: Int

  public init(kind: EgressKind, peer: Peer, port: Int) {
    self.kind = kind
    self.peer = peer
    self.port = port
  }

  /// Parses `KIND=CIDR:PORT` or `KIND=ns/NAMESPACE:PORT`; the error names what is wrong.
  public static func parse(_ text: String) throws(ControllerOptionsError) -> EgressDestination {
    func bad(_ why: String) -> ControllerOptionsError {
      ControllerOptionsError(
        option: "--egress",
        message: "'\(text)': \(why); use KIND=CIDR:PORT or KIND=ns/NAMESPACE:PORT with KIND one of "
          + EgressKind.allCases.map(\.rawValue).joined(separator: ", "))
    }
    guard let eq = text.firstIndex(of: "=") else { throw bad("no KIND=") }
    guard let kind = EgressKind(rawValue: String(text[..<eq]).lowercased()) else { throw bad("unknown kind") }
    let rest = String(text[text.index(after: eq)...])
    guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]),
      (1...65535).contains(port)
    else { throw bad("no :PORT (1-65535) at the end") }
    let where_ = String(rest[..<colon])
    if where_.hasPrefix("ns/") {
      let ns = String(where_.dropFirst(3))
      let ok = !ns.isEmpty && ns.count <= 63 && ns.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "-" }
      guard ok else { throw bad("'\(ns)' is not a namespace name") }
      return EgressDestination(kind: kind, peer: .namespace(ns), port: port)
    }
    guard where_.contains("/") || where_.hasPrefix("["), let cidr = CIDR(where_) else {
      throw bad("'\(where_)' is not a CIDR (write a single address as ADDRESS/32)")
    }
    return EgressDestination(kind: kind, peer: .cidr(cidr), port: port)
  }

  public var description: String {
    switch peer {
    case .cidr(let c): "\(kind.rawValue)=\(c.isIPv6 ? "[\(c)]" : "\(c)"):\(port)"
    case .namespace(let n): "\(kind.rawValue)=ns/\(n):\(port)"
    }
  }
}

/// A bad controller option, naming it.
public struct ControllerOptionsError: Error, Sendable, Hashable, CustomStringConvertible {
  public var option: String
  public var message: String

  public init(option: String, message: String) {
    self.option = option
    self.message = message
  }

  public var description: String { "\(option): \(message)" }
}

/// The network isolation the controller builds: the Kubernetes NetworkPolicies of the backup namespaces, a policy's
/// run windows, drill scratch namespaces, and the Calico GlobalNetworkPolicy, all from one model so that they name the
/// same label keys and the same destinations.
///
/// Selectors use only labels a tenant cannot set:
/// - namespaces by `dr.botrt.io/backup-namespace=true`, which the controller sets on the backup namespaces
///   (cluster-scoped objects that tenants cannot label), or by `kubernetes.io/metadata.name`, which the API server
///   sets from the name;
/// - pods by `app.kubernetes.io/managed-by=botrt-controller`, always together with such a namespace selector: only
///   the controller creates pods in a backup namespace, and a tenant pod with copied labels in its own namespace
///   is not in one.
///
/// Egress (docs/security-model.md, "Network isolation"): DNS to the cluster DNS pods (kube-system, `k8s-app:
/// kube-dns`) and the declared `dns` destinations; the declared `vault` and `kms` destinations always; while a run
/// is active, the policy's storage (and cloud KMS) endpoints: an address literal as a /32 (/128), a host name
/// as the declared `storage` (`kms`) destinations on its port, or, when the administrator declared none of that
/// kind, 0.0.0.0/0 and ::/0 except link-local on port 443 only (the controller logs a warning at start-up); a dump
/// command's pods also reach the pods of the policy's own namespace and the declared `database` destinations.
/// When destinations of a kind are declared, an address literal in a spec must lie inside one of them.
public enum NetworkIsolation {
  /// The namespace label the controller sets on every backup namespace.
  public static let backupNamespaceLabel = "dr.botrt.io/backup-namespace"
  /// The label the API server sets on every namespace (its name).
  public static let namespaceNameLabel = "kubernetes.io/metadata.name"
  /// The default storage egress when no storage destination is declared: HTTPS only, anywhere but link-local
  /// (cloud metadata services).
  public static let defaultStoragePort = 443
  public static let defaultStorageNets: [(cidr: String, except: String)] = [
    ("0.0.0.0/0", "169.254.0.0/16"), ("::/0", "fe80::/10"),
  ]

  /// Pods the controller made (label), restricted to backup namespaces (namespace label): the only peers that may
  /// open connections to backup pods.
  public static let controllerPeer = NetworkPolicyPeer(
    namespaceSelector: LabelSelector(matchLabels: [backupNamespaceLabel: "true"]),
    podSelector: LabelSelector(matchLabels: [ChildLabels.managedBy: ChildLabels.controllerName]))

  /// The ingress rule of backup pods.
  public static let ingressRule = NetworkPolicyIngressRule(from: [controllerPeer])

  /// The pods the shared policies govern: the controller's pods (the namespace is the backup namespace itself).
  public static let controllerPods = LabelSelector(matchLabels: [ChildLabels.managedBy: ChildLabels.controllerName])

  static func port(_ p: Int, _ proto: String = "TCP") -> NetworkPolicyPort {
    NetworkPolicyPort(protocol: proto, port: .int(Int64(p)))
  }

  /// Every pod of namespace `name` (by the label the API server sets).
  static func namespacePeer(_ name: String) -> NetworkPolicyPeer {
    NetworkPolicyPeer(namespaceSelector: LabelSelector(matchLabels: [namespaceNameLabel: name]))
  }

  /// A host network (a /32 or /128 for an address).
  static func hostRule(_ c: CIDR, port p: Int) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule(to: [NetworkPolicyPeer(ipBlock: IPBlock(cidr: c.description))], ports: [port(p)])
  }

  /// DNS: the cluster DNS pods in kube-system (53/UDP and TCP), plus the declared `dns` destinations.
  public static func dnsRules(_ settings: ControllerSettings) -> [NetworkPolicyEgressRule] {
    var kubeDNS = namespacePeer("kube-system")
    kubeDNS.podSelector = LabelSelector(matchLabels: ["k8s-app": "kube-dns"])
    var out = [NetworkPolicyEgressRule(to: [kubeDNS], ports: [port(53, "UDP"), port(53, "TCP")])]
    for d in settings.egress where d.kind == .dns {
      out.append(NetworkPolicyEgressRule(to: [peer(d.peer)], ports: [port(d.port, "UDP"), port(d.port, "TCP")]))
    }
    return out
  }

  static func peer(_ p: EgressDestination.Peer) -> NetworkPolicyPeer {
    switch p {
    case .cidr(let c): NetworkPolicyPeer(ipBlock: IPBlock(cidr: c.description))
    case .namespace(let n): namespacePeer(n)
    }
  }

  /// The rule of one declared destination.
  public static func rule(_ d: EgressDestination) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule(
      to: [peer(d.peer)], ports: d.kind == .dns ? [port(d.port, "UDP"), port(d.port, "TCP")] : [port(d.port)])
  }

  /// The key services every pod of a backup namespace reaches: the declared `vault` and `kms` destinations.
  public static func keyServiceRules(_ settings: ControllerSettings) -> [NetworkPolicyEgressRule] {
    settings.egress.filter { $0.kind == .vault || $0.kind == .kms }.map(rule)
  }

  /// The shared egress of a backup namespace: DNS and the declared key services.
  public static func sharedEgressRules(_ settings: ControllerSettings) -> [NetworkPolicyEgressRule] {
    dnsRules(settings) + keyServiceRules(settings)
  }

  /// The default storage rule (no storage destination declared): 443 anywhere but link-local.
  public static let defaultStorageRule = NetworkPolicyEgressRule(
    to: defaultStorageNets.map { NetworkPolicyPeer(ipBlock: IPBlock(cidr: $0.cidr, except: [$0.except])) },
    ports: [port(defaultStoragePort)])

  /// An endpoint of a spec: a host (name or address literal, nil when the service's default host is used) and port.
  public typealias Endpoint = (host: String?, port: Int)

  /// Storage endpoints and cloud KMS endpoints of a spec, and its Vault address.
  static func endpoints(_ spec: BackupPolicySpec) -> [(kind: EgressKind, endpoint: Endpoint)] {
    var out: [(EgressKind, Endpoint)] = []
    for e in EngineInvocation.storageEndpoints(spec.repository, kms: KMSSpec()) { out.append((.storage, e)) }
    // Cloud KMS endpoints (storageEndpoints leaves Vault out: its address is an egress kind of its own).
    for e in EngineInvocation.storageEndpoints(RepositorySpec(), kms: spec.encryption.kms) { out.append((.kms, e)) }
    for choice in spec.encryption.kms.setChoices {
      switch choice {
      case .vaultTransit(let v):
        if let c = URLComponents(string: v.address), let host = c.host {
          out.append((.vault, (host, c.port ?? (c.scheme?.lowercased() == "https" ? 443 : 80))))
        }
      case .awsKms, .localKey, .azureKeyVault, .gcpKms: break
      }
    }
    return out
  }

  /// The rules that open one endpoint of `kind`: an address literal as a host network (inside a declared
  /// destination of the kind on that port when any of the kind is declared); a host name as the declared
  /// destinations of the kind on that port, else (storage and cloud KMS only, none of the kind declared) the default
  /// storage rule on 443. Vault and cloud KMS host names are opened by the shared policy (declared destinations).
  public static func endpointRules(
    kind: EgressKind, _ e: Endpoint, settings: ControllerSettings
  ) -> [NetworkPolicyEgressRule] {
    let declared = settings.egress.filter { $0.kind == kind }
    if let h = e.host, !h.contains("/"), let host = CIDR(h) {
      if !declared.isEmpty {
        let inside = declared.contains { d in
          if case .cidr(let c) = d.peer { return d.port == e.port && c.contains(host) }
          return false
        }
        if !inside { return [] }
      }
      return [hostRule(host, port: e.port)]
    }
    if !declared.isEmpty {
      if kind == .vault || kind == .kms { return [] }
      return declared.filter { $0.port == e.port }.map(rule)
    }
    if kind == .vault { return [] }
    return e.port == defaultStoragePort ? [defaultStorageRule] : []
  }

  /// A run window's egress for a spec: its storage, cloud KMS and Vault endpoints (see `endpointRules`), without
  /// repeats. The declared key services are opened by the namespace's shared egress (`sharedEgressRules`).
  public static func windowRules(
    _ spec: BackupPolicySpec, settings: ControllerSettings
  ) -> [NetworkPolicyEgressRule] {
    var out: [NetworkPolicyEgressRule] = []
    for (kind, e) in endpoints(spec) {
      for r in endpointRules(kind: kind, e, settings: settings) where !out.contains(r) {
        out.append(r)
      }
    }
    return out
  }

  /// A dump command's database egress: every pod of the policy's own namespace (any port: the tenant's own
  /// servers) and the declared `database` destinations.
  /// The egress of pods that read or create Kubernetes objects: the declared `apiserver` destinations, else (none
  /// declared) every address but link-local on 443 and 6443, the apiserver's usual ports (NetworkPolicies see the
  /// endpoint's address, not the `kubernetes` Service's).
  public static func apiserverRules(_ settings: ControllerSettings) -> [NetworkPolicyEgressRule] {
    let declared = settings.egress.filter { $0.kind == .apiserver }
    if !declared.isEmpty { return declared.map(rule) }
    return [
      NetworkPolicyEgressRule(
        to: defaultStorageNets.map { NetworkPolicyPeer(ipBlock: IPBlock(cidr: $0.cidr, except: [$0.except])) },
        ports: [port(443), port(6443)])
    ]
  }

  public static func databaseRules(
    policyNamespace: String, settings: ControllerSettings
  ) -> [NetworkPolicyEgressRule] {
    [NetworkPolicyEgressRule(to: [namespacePeer(policyNamespace)])]
      + settings.egress.filter { $0.kind == .database }.map(rule)
  }

  /// The rules of a drill's spec.egress entry: an address or CIDR as written (inside a declared `database`
  /// destination on that port when any is declared), a host name as the declared `database` destinations on its
  /// port (none declared: nothing; NetworkPolicies cannot name hosts).
  public static func drillEgressRules(
    host: String?, port p: Int, settings: ControllerSettings
  ) -> [NetworkPolicyEgressRule] {
    let declared = settings.egress.filter { $0.kind == .database }
    if let h = host, let c = CIDR(h) {
      if !declared.isEmpty {
        let inside = declared.contains { d in
          if case .cidr(let dc) = d.peer { return d.port == p && dc.contains(c) }
          return false
        }
        if !inside { return [] }
      }
      return [hostRule(c, port: p)]
    }
    return declared.filter { $0.port == p }.map(rule)
  }

  /// Warnings about the declared destinations, logged at start-up.
  public static func warnings(_ settings: ControllerSettings) -> [String] {
    var out: [String] = []
    let kinds = Set(settings.egress.map(\.kind))
    if !kinds.contains(.storage) {
      out.append(
        "no --egress storage=... declared: storage endpoints named by host get port 443 to any address but "
          + "link-local (0.0.0.0/0, ::/0); declare the storage networks to narrow it")
    }
    if !kinds.contains(.vault) {
      out.append(
        "no --egress vault=... declared: a Vault addressed by host name is unreachable where NetworkPolicies are "
          + "enforced; declare e.g. --egress vault=ns/vault:8200 or --egress vault=CIDR:8200")
    }
    return out
  }

  // MARK: - Calico

  /// The Calico selector of the controller's pods.
  public static let calicoPodSelector = "\(ChildLabels.managedBy) == '\(ChildLabels.controllerName)'"
  /// The Calico selector of the backup namespaces.
  public static let calicoNamespaceSelector = "\(backupNamespaceLabel) == 'true'"

  /// A Kubernetes egress rule as Calico Allow rules (one per peer and protocol).
  static func calicoRules(_ k8s: NetworkPolicyEgressRule) -> [JSONValue] {
    let ports = k8s.ports ?? []
    let byProto = Dictionary(grouping: ports) { $0.protocol ?? "TCP" }
    func selector(_ labels: [String: String]) -> JSONValue {
      .string(labels.sorted { $0.key < $1.key }.map { "\($0.key) == '\($0.value)'" }.joined(separator: " && "))
    }
    var out: [JSONValue] = []
    for peer in k8s.to ?? [NetworkPolicyPeer()] {
      var dest: [String: JSONValue] = [:]
      if let ip = peer.ipBlock {
        dest["nets"] = [.string(ip.cidr)]
        if let ex = ip.except, !ex.isEmpty { dest["notNets"] = ex.json }
      }
      if let ns = peer.namespaceSelector?.matchLabels { dest["namespaceSelector"] = selector(ns) }
      if let pods = peer.podSelector?.matchLabels { dest["selector"] = selector(pods) }
      if byProto.isEmpty {
        out.append(["action": "Allow", "destination": .object(dest)])
        continue
      }
      for proto in byProto.keys.sorted() {
        var d = dest
        d["ports"] = .array(byProto[proto]!.compactMap { $0.port?.json })
        out.append(["action": "Allow", "protocol": .string(proto), "destination": .object(d)])
      }
    }
    return out
  }

  /// The Calico GlobalNetworkPolicy's spec: the controller's pods in the backup namespaces accept connections only
  /// from such pods, and may connect to DNS, the declared destinations of every kind and, without declared storage,
  /// the default storage rule; other egress passes to the Kubernetes NetworkPolicies (default deny, and the run
  /// windows that open a policy's own endpoints).
  public static func calicoSpec(_ settings: ControllerSettings) -> JSONValue {
    var k8s = dnsRules(settings)
    k8s += settings.egress.filter { $0.kind != .dns }.map(rule)
    if !settings.egress.contains(where: { $0.kind == .storage }) { k8s.append(defaultStorageRule) }
    return [
      "order": 100,
      "namespaceSelector": .string(calicoNamespaceSelector),
      "selector": .string(calicoPodSelector),
      "types": ["Ingress", "Egress"],
      "ingress": [
        [
          "action": "Allow",
          "source": [
            "namespaceSelector": .string(calicoNamespaceSelector), "selector": .string(calicoPodSelector),
          ],
        ],
        ["action": "Deny"],
      ],
      "egress": .array(k8s.flatMap(calicoRules) + [["action": "Pass"]]),
    ]
  }
}
