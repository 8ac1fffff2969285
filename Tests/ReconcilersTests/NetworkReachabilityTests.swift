import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

// Reachability of the pods the controller creates, computed from the NetworkPolicy objects its builders return (the
// objects it applies), with the Kubernetes semantics of networking.k8s.io/v1: a pod selected by a policy of a type
// is isolated for that direction; a connection is allowed when some selecting policy has a rule whose peer and port
// match. No cluster and no CNI: real packets need an enforcing CNI, which the local testbed (CNI bridge) lacks.

/// A pod as policies see it.
struct NetPod {
  var namespace: String
  var namespaceLabels: [String: String]
  var labels: [String: String]
  var ip: String = "10.244.0.10"

  init(namespace: String, namespaceLabels: [String: String] = [:], labels: [String: String]) {
    self.namespace = namespace
    self.namespaceLabels = namespaceLabels.merging([NetworkIsolation.namespaceNameLabel: namespace]) { $1 }
    self.labels = labels
  }
}

/// A destination of a connection: an address outside the cluster's pods, or a pod.
enum NetDestination {
  case address(String, port: Int, proto: String = "TCP")
  case pod(NetPod, port: Int, proto: String = "TCP")
}

/// A pure evaluator of NetworkPolicies.
struct PolicyEvaluator {
  /// NetworkPolicy bodies (apiVersion, kind, metadata, spec).
  var policies: [JSONValue]

  init(_ children: [DesiredChild]) {
    policies = children.filter { $0.resource.kind == "NetworkPolicy" }.map(\.body)
  }

  static func matches(_ selector: JSONValue?, _ labels: [String: String]) -> Bool {
    guard let selector else { return false }
    for (k, v) in selector["matchLabels"]?.objectValue ?? [:] where labels[k] != v.stringValue { return false }
    for e in selector["matchExpressions"]?.arrayValue ?? [] {
      let key = e["key"]?.stringValue ?? ""
      let values = (e["values"]?.arrayValue ?? []).compactMap(\.stringValue)
      switch e["operator"]?.stringValue {
      case "In": if !values.contains(labels[key] ?? "\u{0}") { return false }
      case "NotIn": if let v = labels[key], values.contains(v) { return false }
      case "Exists": if labels[key] == nil { return false }
      case "DoesNotExist": if labels[key] != nil { return false }
      default: return false
      }
    }
    return true
  }

  /// The policies selecting `pod` for `type` ("Ingress" or "Egress").
  func selecting(_ pod: NetPod, _ type: String) -> [JSONValue] {
    policies.filter { p in
      p[path: "metadata", "namespace"]?.stringValue == pod.namespace
        && Self.matches(p[path: "spec", "podSelector"], pod.labels)
        && (p[path: "spec", "policyTypes"]?.arrayValue ?? []).contains(.string(type))
    }
  }

  static func portMatches(_ rule: JSONValue, _ port: Int, _ proto: String) -> Bool {
    guard let ports = rule["ports"]?.arrayValue, !ports.isEmpty else { return true }
    return ports.contains { p in
      (p["protocol"]?.stringValue ?? "TCP") == proto && (p["port"] == nil || p["port"]?.intValue == Int64(port))
    }
  }

  /// Whether a peer of a rule of a policy in `policyNS` matches `pod` (nil: an address that is no pod).
  static func peerMatches(_ peer: JSONValue, policyNS: String, pod: NetPod?, address: String) -> Bool {
    if let ip = peer["ipBlock"] {
      guard let c = CIDR(ip["cidr"]?.stringValue ?? ""), let a = CIDR(address), c.contains(a) else { return false }
      let excluded = (ip["except"]?.arrayValue ?? []).contains { CIDR($0.stringValue ?? "")?.contains(a) == true }
      return !excluded
    }
    guard let pod else { return false }
    let nsSel = peer["namespaceSelector"]
    let podSel = peer["podSelector"]
    if let nsSel {
      guard matches(nsSel, pod.namespaceLabels) else { return false }
    } else if pod.namespace != policyNS {
      return false
    }
    return podSel == nil || matches(podSel, pod.labels)
  }

  /// Whether `from` may connect to `to`, as far as `from`'s egress is concerned.
  func egressAllowed(from: NetPod, to: NetDestination) -> Bool {
    let sel = selecting(from, "Egress")
    if sel.isEmpty { return true }
    let (pod, address, port, proto): (NetPod?, String, Int, String)
    switch to {
    case .address(let a, let p, let pr): (pod, address, port, proto) = (nil, a, p, pr)
    case .pod(let d, let p, let pr): (pod, address, port, proto) = (d, d.ip, p, pr)
    }
    return sel.contains { p in
      let ns = p[path: "metadata", "namespace"]?.stringValue ?? ""
      return (p[path: "spec", "egress"]?.arrayValue ?? []).contains { rule in
        guard Self.portMatches(rule, port, proto) else { return false }
        guard let to = rule["to"]?.arrayValue, !to.isEmpty else { return true }
        return to.contains { Self.peerMatches($0, policyNS: ns, pod: pod, address: address) }
      }
    }
  }

  /// Whether `from` may connect to `to` on `port`, as far as `to`'s ingress is concerned.
  func ingressAllowed(to: NetPod, from: NetPod, port: Int = 8080) -> Bool {
    let sel = selecting(to, "Ingress")
    if sel.isEmpty { return true }
    return sel.contains { p in
      let ns = p[path: "metadata", "namespace"]?.stringValue ?? ""
      return (p[path: "spec", "ingress"]?.arrayValue ?? []).contains { rule in
        guard Self.portMatches(rule, port, "TCP") else { return false }
        guard let peers = rule["from"]?.arrayValue, !peers.isEmpty else { return true }
        return peers.contains { Self.peerMatches($0, policyNS: ns, pod: from, address: from.ip) }
      }
    }
  }

  /// What `pod` may reach, one line per peer and port ("cidr 10.0.0.0/8 TCP/443", "ns name=x pods k=v UDP/53",
  /// "ns name=shop any port"); nil when no policy isolates its egress.
  func egressAtoms(_ pod: NetPod) -> Set<String>? {
    let sel = selecting(pod, "Egress")
    if sel.isEmpty { return nil }
    var out = Set<String>()
    for p in sel {
      for rule in p[path: "spec", "egress"]?.arrayValue ?? [] {
        for peer in rule["to"]?.arrayValue ?? ["*"] {
          for port in Self.portTexts(rule) { out.insert("\(Self.peerText(peer)) \(port)") }
        }
      }
    }
    return out
  }

  static func portTexts(_ rule: JSONValue) -> [String] {
    guard let ports = rule["ports"]?.arrayValue, !ports.isEmpty else { return ["any port"] }
    return ports.map { "\($0["protocol"]?.stringValue ?? "TCP")/\($0["port"]?.intValue.map(String.init) ?? "*")" }
  }

  static func labelsText(_ sel: JSONValue?) -> String {
    (sel?["matchLabels"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.map {
      "\($0.key)=\($0.value.stringValue ?? "")"
    }
    .joined(separator: ",")
  }

  static func peerText(_ peer: JSONValue) -> String {
    if peer == "*" { return "anywhere" }
    if let ip = peer["ipBlock"] {
      let ex = (ip["except"]?.arrayValue ?? []).compactMap(\.stringValue)
      return "cidr \(ip["cidr"]?.stringValue ?? "")" + (ex.isEmpty ? "" : " except \(ex.joined(separator: ","))")
    }
    var parts: [String] = []
    if let ns = peer["namespaceSelector"] { parts.append("ns \(labelsText(ns))") }
    if let pods = peer["podSelector"] { parts.append("pods \(labelsText(pods))") }
    return parts.joined(separator: " ")
  }
}

/// The declared destinations of the scenarios.
func declaredSettings() throws -> ControllerSettings {
  var s = settings(calico: true)
  s.egress = try [
    "storage=10.20.0.0/16:443", "storage=10.30.0.0/16:9000", "vault=ns/vault:8200", "kms=10.40.0.0/24:443",
    "database=10.50.0.0/16:5432",
  ].map { (t) throws(ControllerOptionsError) in try EgressDestination.parse(t) }
  return s
}

/// A dump policy whose storage and Vault are named by host (as in the quickstart), with one replica.
func hostNamedPolicy() -> BackupPolicy {
  var p = dumpPolicy(s3Endpoint: "https://s3.storage.internal", trigger: "r1")
  p.spec.replicas = [
    ReplicaSpec(
      name: "dr",
      repository: RepositorySpec(
        s3: S3Repository(
          bucket: "dr", region: "eu-west-1", endpoint: "http://minio.dr.internal:9000",
          credentialsSecretRef: SecretNameReference(name: "s3-creds"))))
  ]
  return p
}

let dnsAtoms: Set<String> = [
  "ns kubernetes.io/metadata.name=kube-system pods k8s-app=kube-dns UDP/53",
  "ns kubernetes.io/metadata.name=kube-system pods k8s-app=kube-dns TCP/53",
]
let keyServiceAtoms: Set<String> = ["ns kubernetes.io/metadata.name=vault TCP/8200", "cidr 10.40.0.0/24 TCP/443"]

@Suite struct NetworkReachabilityTests {
  let backupNS = NetPod(
    namespace: "botrt-backup", namespaceLabels: [NetworkIsolation.backupNamespaceLabel: "true"], labels: [:])

  func podIn(_ ns: NetPod, labels: JSONValue?) -> NetPod {
    var p = ns
    p.labels = (labels?.objectValue ?? [:]).compactMapValues(\.stringValue)
    return p
  }

  /// Probes nobody in the backup namespace may reach: the API server (service and endpoint), databases anywhere,
  /// the cloud metadata service, SSH.
  func expectNoStrayEgress(_ e: PolicyEvaluator, _ pod: NetPod, _ what: String) {
    for (a, port) in [
      ("10.96.0.1", 443), ("172.18.0.2", 6443), ("8.8.8.8", 5432), ("8.8.8.8", 443), ("169.254.169.254", 80),
      ("10.20.1.1", 22), ("10.50.1.1", 3306),
    ] {
      #expect(!e.egressAllowed(from: pod, to: .address(a, port: port)), "\(what) reaches \(a):\(port)")
    }
    let other = NetPod(namespace: "bank", labels: ["app": "postgres"])
    #expect(!e.egressAllowed(from: pod, to: .pod(other, port: 5432)), "\(what) reaches another tenant's pods")
    let fakeDNS = NetPod(namespace: "mallory", labels: ["k8s-app": "kube-dns"])
    #expect(!e.egressAllowed(from: pod, to: .pod(fakeDNS, port: 53, proto: "UDP")), "\(what) reaches a forged DNS pod")
    let fakeVault = NetPod(namespace: "mallory", labels: ["app": "vault"])
    #expect(!e.egressAllowed(from: pod, to: .pod(fakeVault, port: 8200)), "\(what) reaches a forged Vault pod")
  }

  @Test func backupPodReachesExactlyStorageKeysDNSAndItsDatabase() throws {
    let s = try declaredSettings()
    let p = hostNamedPolicy()
    let cs = try build(p, s)
    let names = ChildNames(namespace: "shop", name: "payments-db")
    let job = try #require(child(cs, "Job", names.runJob(token: "trigger:r1")))
    let e = PolicyEvaluator(cs + BackupPolicyChildren.runAccess(p, settings: s))
    let pod = podIn(backupNS, labels: job.body[path: "spec", "template", "metadata", "labels"])
    #expect(
      e.egressAtoms(pod)
        == dnsAtoms.union(keyServiceAtoms).union([
          "cidr 10.20.0.0/16 TCP/443", "ns kubernetes.io/metadata.name=shop any port", "cidr 10.50.0.0/16 TCP/5432",
        ]))
    #expect(e.egressAllowed(from: pod, to: .address("10.20.3.4", port: 443)))
    #expect(e.egressAllowed(from: pod, to: .pod(NetPod(namespace: "vault", labels: ["app": "vault"]), port: 8200)))
    #expect(e.egressAllowed(from: pod, to: .pod(NetPod(namespace: "shop", labels: ["app": "db"]), port: 5432)))
    #expect(e.egressAllowed(from: pod, to: .address("10.50.0.9", port: 5432)))
    expectNoStrayEgress(e, pod, "the backup pod")

    // Without a run, the storage and database are closed; DNS and the key services stay.
    let idle = PolicyEvaluator(cs)
    #expect(idle.egressAtoms(pod) == dnsAtoms.union(keyServiceAtoms))
    // The prune pod of a run window gets storage but not the database.
    let prune = try #require(child(cs, "CronJob", names.pruneCronJob))
    let prunePod = podIn(
      backupNS, labels: prune.body[path: "spec", "jobTemplate", "spec", "template", "metadata", "labels"])
    #expect(e.egressAtoms(prunePod) == dnsAtoms.union(keyServiceAtoms).union(["cidr 10.20.0.0/16 TCP/443"]))
  }

  @Test func withoutDeclaredStorageOnlyHTTPSOutsideLinkLocalAndWarned() throws {
    var s = settings()
    s.egress = [try EgressDestination.parse("vault=ns/vault:8200")]
    let p = hostNamedPolicy()
    let e = PolicyEvaluator(try build(p, s) + BackupPolicyChildren.runAccess(p, settings: s))
    let pod = NetPod(
      namespace: "botrt-backup", namespaceLabels: [NetworkIsolation.backupNamespaceLabel: "true"],
      labels: BackupPolicyChildren.ownerLabels(p).merging([ChildLabels.component: "prune", "app": "backup-service"]) {
        $1
      })
    #expect(e.egressAllowed(from: pod, to: .address("52.1.2.3", port: 443)))
    #expect(!e.egressAllowed(from: pod, to: .address("169.254.169.254", port: 443)))
    #expect(!e.egressAllowed(from: pod, to: .address("52.1.2.3", port: 9000)), "only 443 by default")
    #expect(NetworkIsolation.warnings(s).count == 1)
    #expect(NetworkIsolation.warnings(s)[0].contains("--egress storage="))
  }

  @Test func copyPodReachesPrimaryAndReplicaStorageOnly() throws {
    let s = try declaredSettings()
    let p = hostNamedPolicy()
    let input = ChildInputs(
      policy: p, effective: try EffectivePolicy(spec: p.spec, now: testNow), settings: s, secrets: allSecrets)
    let job = try ReplicationChildren.copyJob(input, index: 0, snapshot: "abc", backupTime: testNow)
    let pod = podIn(backupNS, labels: job.body[path: "spec", "template", "metadata", "labels"])
    let e = PolicyEvaluator(try build(p, s) + ReplicationChildren.runAccess(p, settings: s))
    #expect(
      e.egressAtoms(pod)
        == dnsAtoms.union(keyServiceAtoms).union(["cidr 10.20.0.0/16 TCP/443", "cidr 10.30.0.0/16 TCP/9000"]))
    #expect(e.egressAllowed(from: pod, to: .address("10.30.0.7", port: 9000)))
    #expect(!e.egressAllowed(from: pod, to: .pod(NetPod(namespace: "shop", labels: [:]), port: 5432)))
    expectNoStrayEgress(e, pod, "the copy pod")
  }

  @Test func drillRestorePodReachesStorageKeysAndDeclaredDatabaseOnly() throws {
    let s = try declaredSettings()
    var drill = try drillTestDrill()
    drill.spec.egress = [DrillEgress(host: "db.shop.svc", port: 5432), DrillEgress(host: "0.0.0.0/0", port: 22)]
    var p = hostNamedPolicy()
    p.metadata.name = "db"
    let scratch = DrillLogic.scratchNamespace(drill, token: "trigger:a")
    let children = DrillLogic.scratchChildren(drill, namespace: scratch, policy: p, settings: s)
    let spec = try DrillLogic.runSpec(drill, plan: nil)
    let job = try DrillLogic.runJob(
      drill, spec: spec, namespace: scratch, settings: s, policies: ["db": p], timeoutSeconds: 600)
    let nsLabels = (children[0].body[path: "metadata", "labels"]?.objectValue ?? [:]).compactMapValues(\.stringValue)
    let scratchNS = NetPod(namespace: scratch, namespaceLabels: nsLabels, labels: [:])
    let pod = podIn(scratchNS, labels: job[path: "spec", "template", "metadata", "labels"])
    let e = PolicyEvaluator(children)
    #expect(
      e.egressAtoms(pod)
        == dnsAtoms.union(keyServiceAtoms).union(["cidr 10.20.0.0/16 TCP/443", "cidr 10.50.0.0/16 TCP/5432"]))
    expectNoStrayEgress(e, pod, "the drill's restore pod")
    #expect(!e.ingressAllowed(to: pod, from: NetPod(namespace: "shop", labels: [:])))
  }

  /// A plan's restore and verify pods, in the plan's namespace or the claim's: their own NetworkPolicy
  /// (RestoreIsolation) admits no connection and opens only DNS, the key services and the source's storage (and the
  /// namespace's pods and declared databases for a restore into a command or a database query). A job step's pod
  /// runs the author's container and gets none.
  @Test func planRestoreAndVerifyPodsReachStorageKeysAndDatabaseOnly() throws {
    let s = try declaredSettings()
    var p = hostNamedPolicy()
    p.metadata.name = "db"
    let plan = try recoveryTestPlan()
    var ctx = planContext(plan, policy: p)
    ctx.settings = s
    let steps = try RecoveryPlanLogic.steps(plan.spec)
    let shop = NetPod(namespace: "shop", labels: [:])
    var checked = 0
    for step in steps {
      let name = "shop-recovery-\(step.index)"
      let np = try RestoreIsolation.networkPolicy(step, jobName: name, namespace: "shop", ctx: ctx, owner: ctx.owner)
      guard step.step.action == .restore || step.step.action == .verify else {
        #expect(np == nil, "\(step.displayName) runs no engine and gets no policy")
        continue
      }
      let policy = try #require(np)
      #expect(policy.metadata.ownerReferences == [try #require(ctx.owner)])
      let e = PolicyEvaluator([DesiredChild(resource: ChildResources.networkPolicies, object: policy)])
      var pod = shop
      pod.labels = [RestoreIsolation.jobNameLabel: name]
      // restore-db restores into psql and check-rows runs a database query: both reach the namespace's pods.
      #expect(
        e.egressAtoms(pod)
          == dnsAtoms.union(keyServiceAtoms).union([
            "cidr 10.20.0.0/16 TCP/443", "ns kubernetes.io/metadata.name=shop any port", "cidr 10.50.0.0/16 TCP/5432",
          ]), "\(step.displayName)")
      #expect(e.egressAllowed(from: pod, to: .address("10.20.3.4", port: 443)))
      expectNoStrayEgress(e, pod, step.displayName)
      #expect(!e.ingressAllowed(to: pod, from: NetPod(namespace: "shop", labels: ["app": "web"])))
      // Another Job's pods in the namespace are not selected.
      var other = shop
      other.labels = [RestoreIsolation.jobNameLabel: "web-migrate"]
      #expect(e.egressAtoms(other) == nil)
      checked += 1
    }
    #expect(checked == 2)

    // A restore into a claim of another namespace: storage and keys only, no database, selected there.
    var into = try planRestoring(RestorePVC(claimName: "uploads", namespace: "shop-dr"))
    into.metadata.annotations = nil
    let files = try filesPolicy()
    var fctx = planContext(into, policy: files)
    fctx.settings = s
    let step = try #require(try RecoveryPlanLogic.steps(into.spec).first)
    let owner = OwnerReference(apiVersion: "batch/v1", kind: "Job", name: "j", uid: "u-j", controller: true)
    let np = try #require(
      try RestoreIsolation.networkPolicy(step, jobName: "j", namespace: "shop-dr", ctx: fctx, owner: owner))
    #expect(np.metadata.namespace == "shop-dr" && np.metadata.ownerReferences == [owner])
    let e = PolicyEvaluator([DesiredChild(resource: ChildResources.networkPolicies, object: np)])
    let pod = NetPod(namespace: "shop-dr", labels: [RestoreIsolation.jobNameLabel: "j"])
    let atoms = try #require(e.egressAtoms(pod))
    #expect(atoms.isSuperset(of: dnsAtoms.union(keyServiceAtoms)))
    #expect(!atoms.contains { $0.hasPrefix("ns kubernetes.io/metadata.name=shop-dr") }, "no database: \(atoms)")
    expectNoStrayEgress(e, pod, "the foreign restore pod")
  }

  @Test func tenantPodWithCopiedLabelsIsNotAllowedIn() throws {
    let s = try declaredSettings()
    let p = hostNamedPolicy()
    let cs = try build(p, s)
    let names = ChildNames(namespace: "shop", name: "payments-db")
    let job = try #require(child(cs, "Job", names.runJob(token: "trigger:r1")))
    let e = PolicyEvaluator(cs + BackupPolicyChildren.runAccess(p, settings: s))
    let labels = job.body[path: "spec", "template", "metadata", "labels"]
    let victim = podIn(backupNS, labels: labels)
    // Mallory copies every label of the backup pod, and the labels the old rules trusted.
    var forged = podIn(NetPod(namespace: "mallory", labels: [:]), labels: labels)
    forged.labels["component"] = "disaster-recovery"
    forged.labels["app"] = "disaster-recovery"
    forged.namespaceLabels["app"] = "backup-storage"
    #expect(!e.ingressAllowed(to: victim, from: forged), "a tenant pod with copied labels is let in")
    // The controller's own pods in a backup namespace are the only peers.
    #expect(e.ingressAllowed(to: victim, from: victim))
    // Pods of the tenant's own namespace are not selected by the backup namespace's rules at all.
    #expect(e.selecting(forged, "Ingress").isEmpty && e.selecting(forged, "Egress").isEmpty)
    // The Calico policy trusts the same keys: the namespace label the controller sets, the managed-by label.
    let gnp = try #require(child(cs, "GlobalNetworkPolicy", SharedChildNames.calicoPolicy))
    let source = try #require(gnp.body[path: "spec", "ingress"]?[0]?["source"])
    #expect(source["namespaceSelector"]?.stringValue == "\(NetworkIsolation.backupNamespaceLabel) == 'true'")
    #expect(source["selector"]?.stringValue == "\(ChildLabels.managedBy) == '\(ChildLabels.controllerName)'")
    let peer = NetworkIsolation.ingressRule.from?.first
    let ingressKeys = Set(
      [peer?.namespaceSelector, peer?.podSelector].flatMap { $0?.matchLabels?.keys.map { $0 } ?? [] })
    #expect(ingressKeys == [NetworkIsolation.backupNamespaceLabel, ChildLabels.managedBy])
  }

  /// Calico's Allow rules as the evaluator's atoms.
  func calicoAtoms(_ spec: JSONValue) -> Set<String> {
    func sel(_ text: String?) -> String {
      (text ?? "").components(separatedBy: " && ").filter { !$0.isEmpty }.map {
        $0.replacingOccurrences(of: " == ", with: "=").replacingOccurrences(of: "'", with: "")
      }.sorted().joined(separator: ",")
    }
    var out = Set<String>()
    for r in spec["egress"]?.arrayValue ?? [] where r["action"] == "Allow" {
      let d = r["destination"]
      var peer: String
      if let nets = d?["nets"]?.arrayValue {
        let ex = (d?["notNets"]?.arrayValue ?? []).compactMap(\.stringValue)
        peer = nets.compactMap(\.stringValue).map {
          "cidr \($0)" + (ex.isEmpty ? "" : " except \(ex.joined(separator: ","))")
        }
        .joined()
      } else {
        var parts: [String] = []
        if let ns = d?["namespaceSelector"]?.stringValue { parts.append("ns \(sel(ns))") }
        if let s = d?["selector"]?.stringValue { parts.append("pods \(sel(s))") }
        peer = parts.joined(separator: " ")
      }
      let ports = (d?["ports"]?.arrayValue ?? []).compactMap(\.intValue)
      if ports.isEmpty { out.insert("\(peer) any port") }
      for port in ports { out.insert("\(peer) \(r["protocol"]?.stringValue ?? "TCP")/\(port)") }
    }
    return out
  }

  @Test func calicoAllowsTheSameDestinationsAsTheNetworkPolicies() throws {
    for s in [try declaredSettings(), settings(calico: true)] {
      let p = hostNamedPolicy()
      let cs = try build(p, s)
      let gnp = try #require(child(cs, "GlobalNetworkPolicy", SharedChildNames.calicoPolicy))
      let spec = try #require(gnp.body["spec"])
      // The Kubernetes side: the shared egress, and every declared destination or the default storage rule.
      var k8s = NetworkIsolation.sharedEgressRules(s) + s.egress.map(NetworkIsolation.rule)
      if !s.egress.contains(where: { $0.kind == .storage }) { k8s.append(NetworkIsolation.defaultStorageRule) }
      let np: JSONValue = [
        "metadata": ["namespace": "x"], "spec": ["podSelector": [:], "policyTypes": ["Egress"], "egress": k8s.json],
      ]
      var e = PolicyEvaluator([])
      e.policies = [np]
      let want = e.egressAtoms(NetPod(namespace: "x", labels: [:])) ?? []
      #expect(calicoAtoms(spec) == want)
      // The run windows open nothing the Calico policy does not allow, once storage is declared (with none
      // declared, a policy's own address literal passes to the Kubernetes policies).
      if !s.egress.isEmpty {
        let window = PolicyEvaluator(BackupPolicyChildren.runAccess(p, settings: s))
        let pod = NetPod(
          namespace: "botrt-backup",
          labels: BackupPolicyChildren.ownerLabels(p).merging(["dr.botrt.io/component": "prune"]) { $1 })
        #expect((window.egressAtoms(pod) ?? []).isSubset(of: want))
      }
      #expect(spec["egress"]?.arrayValue?.last == ["action": "Pass"])
      #expect(spec["types"] == ["Ingress", "Egress"])
    }
  }

  @Test func addressLiteralsOutsideDeclaredNetworksAreNotOpened() throws {
    let s = try declaredSettings()
    // 10.0.0.5:9000 is in no declared storage network: not opened; 10.30.0.5:9000 is.
    let outside = BackupPolicyChildren.runAccess(dumpPolicy(s3Endpoint: "http://10.0.0.5:9000"), settings: s)
    #expect(outside.contains { $0.resource.kind == "NetworkPolicy" && $0.name.hasSuffix("-storage-egress") } == false)
    let inside = BackupPolicyChildren.runAccess(dumpPolicy(s3Endpoint: "http://10.30.0.5:9000"), settings: s)
    let np = try #require(inside.first { $0.name.hasSuffix("-storage-egress") })
    #expect(
      np.body[path: "spec", "egress"] == [
        ["to": [["ipBlock": ["cidr": "10.30.0.5/32"]]], "ports": [["protocol": "TCP", "port": 9000]]]
      ])
  }

  @Test func egressOptionParsing() throws {
    #expect(try EgressDestination.parse("storage=10.0.0.0/8:443").description == "storage=10.0.0.0/8:443")
    #expect(try EgressDestination.parse("vault=ns/vault:8200").peer == .namespace("vault"))
    #expect(try EgressDestination.parse("kms=[fd00::/8]:443").description == "kms=[fd00:0:0:0:0:0:0:0/8]:443")
    for bad in ["storage=10.0.0.1:443", "nope=10.0.0.0/8:443", "storage=10.0.0.0/8", "vault=ns/Bad_NS:1", "x"] {
      #expect(throws: ControllerOptionsError.self, "\(bad)") { try EgressDestination.parse(bad) }
    }
    #expect(CIDR("10.0.0.0/8")?.contains(CIDR("10.255.1.2")!) == true)
    #expect(CIDR("10.0.0.0/8")?.contains(CIDR("11.0.0.1")!) == false)
    #expect(CIDR("fd00::/8")?.contains(CIDR("fd12::1")!) == true)
  }
}
