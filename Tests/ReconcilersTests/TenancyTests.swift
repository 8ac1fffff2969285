import DRAPI
import Foundation
import KubeCore
import Testing

@testable import Reconcilers

/// The 32-bit FNV-1a the child names used before (kept here to play the attacker against it).
func legacyFNV(_ text: String) -> UInt32 {
  var h: UInt32 = 0x811c_9dc5
  for b in text.utf8 {
    h ^= UInt32(b)
    h = h &* 0x0100_0193
  }
  return h
}

/// The child-name base of the earlier ChildNames: "<ns>-<name>" cut to 30 characters plus FNV-1a of "ns/name".
func legacyBase(namespace: String, name: String) -> String {
  var head = String("\(namespace)-\(name)".prefix(30))
  while head.hasSuffix("-") || head.hasSuffix(".") { head.removeLast() }
  return "\(head)-\(String(format: "%08x", legacyFNV("\(namespace)/\(name)")))"
}

/// The attacker: a 7-character [a-z0-9] suffix `s` with FNV-1a(prefix + s) == target, by meeting in the middle
/// (FNV-1a's steps are invertible: 36^3 states forward, 36^4 backward, about 18 expected matches).
func fnvSuffix(prefix: String, target: UInt32) -> String? {
  let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
  let prime: UInt32 = 0x0100_0193
  var inverse: UInt32 = prime
  for _ in 0..<5 { inverse = inverse &* (2 &- prime &* inverse) }
  let start = legacyFNV(prefix)
  var forward: [UInt32: [UInt8]] = [:]
  for a in alphabet {
    for b in alphabet {
      for c in alphabet {
        var h = start
        for x in [a, b, c] { h = (h ^ UInt32(x)) &* prime }
        forward[h] = [a, b, c]
      }
    }
  }
  for d in alphabet {
    for e in alphabet {
      for f in alphabet {
        for g in alphabet {
          // Undo g, f, e, d (the last byte first).
          var h = target
          for x in [g, f, e, d] { h = (h &* inverse) ^ UInt32(x) }
          if let head = forward[h] { return String(decoding: head + [d, e, f, g], as: UTF8.self) }
        }
      }
    }
  }
  return nil
}

func foreignLabels(namespace: String = "shop-prod", name: String = "orders") -> [String: String] {
  [
    ChildLabels.policyNamespace: namespace, ChildLabels.policyName: name, ChildLabels.policyUID: "uid-victim",
    ChildLabels.managedBy: ChildLabels.controllerName,
  ]
}

@Suite struct TenancyTests {
  @Test func sha256MatchesTheFIPSVectors() {
    #expect(SHA256Digest.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(SHA256Digest.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(
      SHA256Digest.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
        == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    // Two blocks of padding (55, 56 and 64 bytes straddle the length field).
    #expect(
      SHA256Digest.hex(String(repeating: "a", count: 64))
        == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
    #expect(
      SHA256Digest.hex(String(repeating: "a", count: 1000))
        == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    #expect(nameHash("shop", "orders").count == 16)
    #expect(nameHash("a-b", "c") != nameHash("a", "b-c"))
    #expect(nameHash("shop", "orders") == String(SHA256Digest.hex("shop\u{0}orders").prefix(16)))
  }

  /// The reviewer's attack: a policy in `shop` whose children had the names of a policy's in `shop-prod`, so the
  /// attacker's apply took over the victim's CronJobs, ServiceAccount and Secret copies in the backup namespace.
  @Test func aComputedFNVCollisionNoLongerGivesTheVictimsChildNames() throws {
    let victimNS = "shop-prod"
    let victim = "orders-database-primary"
    // The attacker's name keeps the 30-character head ("shop-prod-orders-database-prim") and adds 7 characters.
    let stem = "prod-orders-database-prim"
    let suffix = try #require(
      fnvSuffix(prefix: "shop/\(stem)", target: legacyFNV("\(victimNS)/\(victim)")))
    let attacker = stem + suffix
    // Before: the same base, hence the same CronJob, ServiceAccount, Role and Secret copy names.
    #expect(legacyBase(namespace: "shop", name: attacker) == legacyBase(namespace: victimNS, name: victim))
    // Now: different names for every child.
    let a = ChildNames(namespace: "shop", name: attacker)
    let v = ChildNames(namespace: victimNS, name: victim)
    #expect(a.base != v.base)
    for (x, y) in [
      (a.backupCronJob, v.backupCronJob), (a.serviceAccount, v.serviceAccount), (a.role, v.role),
      (a.secretCopy("s3-creds"), v.secretCopy("s3-creds")), (a.runJob(token: "t"), v.runJob(token: "t")),
    ] {
      #expect(x != y)
    }
  }

  @Test func childNamesStayWithinTheKubernetesLimits() {
    let long = ChildNames(namespace: String(repeating: "n", count: 63), name: String(repeating: "x", count: 253))
    #expect(long.base.count <= 45)
    #expect(long.backupCronJob.count <= 52)
    #expect(long.pruneCronJob.count <= 52)
    #expect(long.rotateJob(token: "t").count <= 63)
    #expect(long.runJob(token: "t").count <= 63)
    #expect(long.copyJob(replica: "r", snapshot: "s").count <= 63)
    #expect(long.replicaRotateJob(replica: "r", token: "t").count <= 63)
    #expect(long.deleteRepositoryJob.count <= 63)
  }

  @Test func anExistingChildOfAnotherPolicyIsRefusedWithAConditionAndAWarning() throws {
    let p = dumpPolicy()
    let children = try build(p)
    let names = ChildNames(namespace: "shop", name: "payments-db")
    let copy = try #require(child(children, "Secret", names.secretCopy("s3-creds")))
    // The object of that name belongs to shop-prod/orders: refused, naming it and its owner.
    let conflict = try #require(ChildOwnership.conflict(copy, existingLabels: foreignLabels()))
    #expect(conflict.child == "Secret botrt-backup/\(names.secretCopy("s3-creds"))")
    #expect(conflict.owner == "BackupPolicy shop-prod/orders")
    // Same name in another namespace, or another name in the same namespace, is another owner.
    #expect(ChildOwnership.conflict(copy, existingLabels: foreignLabels(namespace: "shop", name: "orders")) != nil)
    #expect(
      ChildOwnership.conflict(copy, existingLabels: foreignLabels(namespace: "other", name: "payments-db")) != nil)
    // An object no BotRT owner claims (created by hand) is not taken over either.
    let unowned = try #require(ChildOwnership.conflict(copy, existingLabels: ["app": "x"]))
    #expect(unowned.owner.contains("no BotRT owner"))
    // Absent, or this policy's own (also of an earlier incarnation with another uid): applied.
    #expect(ChildOwnership.conflict(copy, existingLabels: nil) == nil)
    #expect(ChildOwnership.conflict(copy, existingLabels: BackupPolicyChildren.ownerLabels(p)) == nil)
    var earlier = BackupPolicyChildren.ownerLabels(p)
    earlier[ChildLabels.policyUID] = "uid-of-a-deleted-incarnation"
    #expect(ChildOwnership.conflict(copy, existingLabels: earlier) == nil)
    // Shared children (the backup namespace, its common NetworkPolicies) are every policy's.
    for c in children where c.shared { #expect(ChildOwnership.conflict(c, existingLabels: foreignLabels()) == nil) }

    // The refusal: Ready=False/ChildNameConflict naming the object and its owner, and a Warning Event.
    let refusal = ChildOwnership.refusal([conflict])
    #expect(refusal.event.warning)
    #expect(refusal.event.reason == "ChildNameConflict")
    let eff = try EffectivePolicy(spec: p.spec, now: testNow)
    let outcome = BackupPolicyStatusLogic.compute(
      policy: p, effective: eff, problem: refusal.problem, runs: [], backupNamespace: "botrt-backup",
      handledTrigger: nil, childSummary: "", now: testNow)
    let ready = try #require(outcome.status.conditions?.condition(BackupPolicyCondition.ready))
    #expect(ready.status == .false)
    #expect(ready.reason == "ChildNameConflict")
    #expect(ready.message.contains("BackupPolicy shop-prod/orders"))
    #expect(ready.message.contains(names.secretCopy("s3-creds")))
  }

  /// Drill triggers are the attacker's: with FNV a trigger could be computed whose scratch namespace is another
  /// tenant's drill's (or any namespace named like one), and the run copied Secrets into it.
  @Test func drillScratchNamespacesDoNotCollideAndForeignOnesAreRefused() throws {
    var victim = try drillTestDrill()
    victim.metadata.namespace = "shop-prod"
    var attacker = try drillTestDrill()
    attacker.metadata.namespace = "shop"
    let victimToken = "schedule:2026-09-07T00:00:00Z"
    let target = legacyFNV("shop-prod/\(attacker.name)/\(victimToken)")
    let suffix = try #require(fnvSuffix(prefix: "shop/\(attacker.name)/trigger:", target: target))
    #expect(
      legacyFNV("shop/\(attacker.name)/trigger:\(suffix)") == target)  // the old names collided
    let mine = DrillLogic.scratchNamespace(attacker, token: "trigger:\(suffix)")
    let theirs = DrillLogic.scratchNamespace(victim, token: victimToken)
    #expect(mine != theirs)
    #expect(mine.count <= 63)

    // A namespace of the run's name that exists and is not this drill's scratch namespace is refused.
    let name = DrillLogic.scratchNamespace(attacker, token: "trigger:x")
    let own = DrillLogic.labels(attacker).merging([DrillLogic.scratchLabel: "true"]) { $1 }
    #expect(DrillLogic.scratchNamespaceConflict(attacker, scratch: name, existing: own) == nil)
    let precreated = try #require(
      DrillLogic.scratchNamespaceConflict(attacker, scratch: name, existing: ["team": "payments"]))
    #expect(precreated.child == "Namespace \(name)")
    let victims = DrillLogic.labels(victim).merging([DrillLogic.scratchLabel: "true"]) { $1 }
    let other = try #require(DrillLogic.scratchNamespaceConflict(attacker, scratch: name, existing: victims))
    #expect(other.owner == "DRDrill shop-prod/\(victim.name)")
    // Labels copied by hand without the scratch label are not enough.
    #expect(DrillLogic.scratchNamespaceConflict(attacker, scratch: name, existing: DrillLogic.labels(attacker)) != nil)
  }
}
