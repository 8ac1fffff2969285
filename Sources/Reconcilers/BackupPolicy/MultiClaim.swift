import DRAPI
import Foundation
import KubeCore

// Many claims per policy (issue 15 §1, spec.source.claims): the claims of the policy's namespace that a label selector
// or a list selects, each backed up as a snapshot of its own (tagged claim=NAME) by a backup CronJob of its own,
// placed next to the pod that mounts it (RWO placement, per claim). Observe (the claims of the namespace, from the
// shared cache) → decide (`MultiClaim.selection`, `MultiClaim.status`, pure) → the builders make one CronJob (and
// on-demand Job) per selected claim.

/// The claims a multi-claim policy backs up now, as observed.
public struct ClaimSelection: Sendable, Hashable {
  /// The selected claims' names, sorted, at most `ClaimsSource.maxClaims`.
  public var names: [String]
  /// The claims as read, by name (a named claim that does not exist is absent).
  public var read: [String: PersistentVolumeClaim]
  /// How many claims the selector matched (or the list named) before the bound.
  public var matched: Int
  /// Where each selected claim's backup pods run (RWO placement); absent: anywhere.
  public var placements: [String: ClaimPlacement.Decision]

  public init(
    names: [String] = [], read: [String: PersistentVolumeClaim] = [:], matched: Int = 0,
    placements: [String: ClaimPlacement.Decision] = [:]
  ) {
    self.names = names
    self.read = read
    self.matched = matched
    self.placements = placements
  }

  /// Claims the bound left out (the selector matched more than `ClaimsSource.maxClaims`).
  public var leftOut: Int { max(0, matched - names.count) }
}

/// The pure logic of a multi-claim source: which claims, their status, and the RPO over them.
public enum MultiClaim {
  /// The annotation on a claim's backup CronJob, its Jobs and the on-demand Job: the claim's name (claim names can be
  /// 253 characters, longer than a label value may be).
  public static let claimAnnotation = "dr.botrt.io/claim"
  /// The tag of each claim's snapshots (besides policy=NS/NAME): `latest` of one claim is `--tag claim=NAME`.
  public static func tag(_ claim: String) -> String { "claim=\(claim)" }

  /// The policy's multi-claim source, or nil.
  public static func source(_ policy: BackupPolicy) -> ClaimsSource? {
    policy.spec.source.claims
  }

  /// The claims `source` selects among `claims` (the claims of the policy's namespace): a list's names as given (a
  /// missing one included: its backups wait for it, as a pvc source's do), or the claims whose labels match the
  /// selector; sorted by name, the first `ClaimsSource.maxClaims` of them.
  public static func selection(_ source: ClaimsSource, claims: [PersistentVolumeClaim]) -> ClaimSelection {
    var byName: [String: PersistentVolumeClaim] = [:]
    for c in claims where !c.metadata.isDeleting { byName[c.name] = c }
    var names: [String]
    switch source.kind {
    case .claimNames(let list)?: names = list
    case .selector(let sel)?: names = byName.values.filter { sel.matches($0.metadata.labels ?? [:]) }.map(\.name)
    case nil: names = []
    }
    names = Array(Set(names)).sorted()
    let matched = names.count
    names = Array(names.prefix(ClaimsSource.maxClaims))
    var read: [String: PersistentVolumeClaim] = [:]
    for n in names { read[n] = byName[n] }
    return ClaimSelection(names: names, read: read, matched: matched)
  }

  /// A claim's child names: "<ns>-<name>" cut to 10 characters, the claim cut to 12, and `nameHash` of the policy
  /// and the claim (64 bits of SHA-256): at most 40 characters, so that the backup CronJob (`-backup`) stays within
  /// 52 and the on-demand Job (`-run-HASH`) within 63.
  public static func base(namespace: String, name: String, claim: String) -> String {
    func cut(_ s: String, _ n: Int) -> String {
      var h = String(s.prefix(n))
      while h.hasSuffix("-") || h.hasSuffix(".") { h.removeLast() }
      return h
    }
    return "\(cut("\(namespace)-\(name)", 10))-\(cut(claim, 12))-\(nameHash(namespace, name, claim))"
  }

  /// The backup CronJob of one claim.
  public static func cronJob(namespace: String, name: String, claim: String) -> String {
    "\(base(namespace: namespace, name: name, claim: claim))-backup"
  }

  /// The on-demand Job of one claim for a run token.
  public static func runJob(namespace: String, name: String, claim: String, token: String) -> String {
    "\(base(namespace: namespace, name: name, claim: claim))-run-\(shortHash(token))"
  }

  /// status.claims: an entry per selected claim (its runs' outcome, placement and recorded spec), then the previous
  /// entries of claims that no longer exist (kept, marked gone, so that a restore can create them again), at most
  /// `ClaimsSource.maxClaims` in all. Runs are matched to claims by `claimAnnotation`.
  public static func status(
    _ policy: BackupPolicy, selection: ClaimSelection, runs: [BackupRun], existing: Set<String>, now: Date
  ) -> [ClaimBackupStatus] {
    let ns = policy.metadata.namespace ?? "default"
    let previous = policy.status?.claims ?? []
    var out: [ClaimBackupStatus] = []
    for name in selection.names {
      let before = previous.first { $0.name == name }
      var st = before ?? ClaimBackupStatus(name: name)
      st.gone = nil
      st.cronJob = cronJob(namespace: ns, name: policy.name, claim: name)
      st.placement = selection.placements[name]?.status
      st.claim = SourceClaimRecord.record(
        name: name, namespace: ns, claim: selection.read[name], previous: before?.claim, now: now)
      let mine = runs.filter { $0.annotations[claimAnnotation] == name }
      if let r = mine.filter({ $0.state == .succeeded && $0.finishTime != nil }).max(by: {
        $0.finishTime! < $1.finishTime!
      }), let t = r.finishTime, st.lastSuccessfulBackup.map({ t > $0 }) ?? true {
        st.lastSuccessfulBackup = t
        st.lastSnapshotTime = r.result?.snapshotDate ?? r.startTime ?? t
        st.lastSnapshotId = r.result?.snapshotId ?? st.lastSnapshotId
      }
      if let r = mine.filter({ $0.state != .running && $0.finishTime != nil }).max(by: {
        $0.finishTime! < $1.finishTime!
      }) {
        let at = KubeJSON.formatDate(r.finishTime!)
        if r.state == .succeeded {
          st.result = "Succeeded"
          st.message = "Job \(r.jobName) stored snapshot \(r.result?.snapshotId ?? "unknown") at \(at)."
        } else if let snap = r.result?.snapshotId {
          st.result = "Partial"
          let errors = r.result?.errors ?? []
          st.message =
            "Job \(r.jobName) stored snapshot \(snap) at \(at) but could not read \(errors.count) paths"
            + (errors.first.map { "; first: \($0.prefix(512))" } ?? "") + "."
        } else {
          st.result = "Failed"
          var why = r.result?.errors?.joined(separator: "; ") ?? r.failureMessage ?? "no result was written"
          if why.isEmpty { why = "no result was written" }
          st.message = "Job \(r.jobName) failed at \(at): \(why.prefix(1024))."
        }
      } else if st.result == nil {
        st.result = "Pending"
        st.message = "No backup of this claim has finished yet."
      }
      out.append(st)
    }
    let selected = Set(selection.names)
    for var st in previous where !selected.contains(st.name) && !existing.contains(st.name) && st.claim != nil {
      guard out.count < ClaimsSource.maxClaims else { break }
      st.gone = true
      st.placement = nil
      st.cronJob = nil
      out.append(st)
    }
    return out
  }

  /// A claim's failed (or partial) last backup is not hidden by another claim's newer success: LastBackupSucceeded
  /// is False (ClaimBackupFailed) while a selected claim's last finished backup failed, naming the claims, and each
  /// claim's new failure is a Warning Event (ClaimBackupFailed) of its own.
  static func applyFailures(
    _ claims: [ClaimBackupStatus], previous: [ClaimBackupStatus], to outcome: inout StatusOutcome,
    generation: Int64?, now: Date
  ) {
    let failing = claims.filter { $0.gone != true && ($0.result == "Failed" || $0.result == "Partial") }
    for c in failing {
      let before = previous.first { $0.name == c.name }
      if before?.result != c.result || before?.message != c.message {
        outcome.events.append(
          PlannedEvent(
            warning: true, reason: "ClaimBackupFailed", message: "Claim \(c.name): \(c.message ?? c.result ?? "")"))
      }
    }
    guard let first = failing.first else { return }
    var conditions = outcome.status.conditions ?? []
    let names = failing.prefix(5).map(\.name).joined(separator: ", ") + (failing.count > 5 ? ", ..." : "")
    conditions.setCondition(
      type: BackupPolicyCondition.lastBackupSucceeded, status: .false, reason: "ClaimBackupFailed",
      message: "The last backup of \(failing.count) claims did not succeed (\(names)); claim \(first.name): "
        + "\(first.message ?? first.result ?? "")", observedGeneration: generation, now: now)
    outcome.status.conditions = conditions
  }

  /// What the RPO counts for a multi-claim policy: the oldest of the selected claims' newest snapshots; claims that
  /// never backed up are named (the RPO is not met while one is).
  public static func rpo(_ claims: [ClaimBackupStatus]) -> ClaimsRPO {
    let live = claims.filter { $0.gone != true }
    var oldest: (name: String, at: Date)? = nil
    for c in live {
      guard let at = c.lastSnapshotTime ?? c.lastSuccessfulBackup else { continue }
      if oldest == nil || at < oldest!.at { oldest = (c.name, at) }
    }
    return ClaimsRPO(
      oldest: oldest?.at, oldestClaim: oldest?.name,
      neverBackedUp: live.filter { ($0.lastSnapshotTime ?? $0.lastSuccessfulBackup) == nil }.map(\.name))
  }
}

/// The RPO basis of a multi-claim policy (`MultiClaim.rpo`).
public struct ClaimsRPO: Sendable, Hashable {
  /// The oldest of the claims' newest snapshot times.
  public var oldest: Date?
  /// The claim it belongs to.
  public var oldestClaim: String?
  /// Selected claims with no successful backup yet.
  public var neverBackedUp: [String]

  public init(oldest: Date?, oldestClaim: String?, neverBackedUp: [String]) {
    self.oldest = oldest
    self.oldestClaim = oldestClaim
    self.neverBackedUp = neverBackedUp
  }
}
