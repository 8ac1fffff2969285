import EngineContract
import Foundation

/// Checks the schema cannot express on Kubernetes 1.20 (no CEL): cron ranges, durations, "exactly one of" for
/// objects built in code, per-action step fields and unique names. Each error names the field. The ones CEL can
/// express are also `x-kubernetes-validations` in crds/cel/ (crds/generate.py); Tests/CEL/cases.yaml holds specs
/// both must accept or reject alike.
public enum SpecValidation {
  static func exactlyOne(_ set: [String], of all: [String], at field: String) -> [SpecError] {
    if set.count == 1 { return [] }
    let options = all.joined(separator: ", ")
    if set.isEmpty { return [SpecError(field: field, message: "set exactly one of \(options); none is set")] }
    return [
      SpecError(
        field: field, message: "set exactly one of \(options); \(set.joined(separator: " and ")) are all set")
    ]
  }

  static func duration(_ text: String?, at field: String, positive: Bool = true) -> [SpecError] {
    guard let text else { return [] }
    do {
      let s = try DurationText.parseSeconds(text, field: field)
      if positive && s == 0 { return [SpecError(field: field, message: "must be longer than 0s")] }
      return []
    } catch {
      return [SpecError(field: field, message: error.description)]
    }
  }

  static func container(_ c: ContainerSpec?, at field: String) -> [SpecError] {
    guard let c else { return [] }
    var errors: [SpecError] = []
    if c.image.isEmpty { errors.append(SpecError(field: "\(field).image", message: "must not be empty")) }
    for (i, e) in (c.env ?? []).enumerated() where e.value != nil && e.valueFrom != nil {
      errors.append(SpecError(field: "\(field).env[\(i)]", message: "set value or valueFrom, not both"))
    }
    return errors
  }

  /// A multi-claim source: exactly one of selector and claimNames, known selector operators, at most
  /// `ClaimsSource.maxClaims` names without repeats, and valid exclude patterns.
  static func claimsSource(_ c: ClaimsSource, at field: String) -> [SpecError] {
    var errors = c.exactlyOneErrors(at: field)
    if let names = c.claimNames {
      if names.isEmpty {
        errors.append(SpecError(field: "\(field).claimNames", message: "names no claim; name at least one"))
      }
      if names.count > ClaimsSource.maxClaims {
        errors.append(
          SpecError(
            field: "\(field).claimNames",
            message: "names \(names.count) claims; a policy backs up at most \(ClaimsSource.maxClaims) (split them "
              + "among several policies)"))
      }
      var seen = Set<String>()
      for (i, n) in names.enumerated() {
        if n.isEmpty || n.utf8.count > 253 {
          errors.append(
            SpecError(field: "\(field).claimNames[\(i)]", message: "must be a claim name (1-253 characters)"))
        } else if !seen.insert(n).inserted {
          errors.append(SpecError(field: "\(field).claimNames[\(i)]", message: "names claim '\(n)' twice"))
        }
      }
    }
    errors += selector(c.selector, at: "\(field).selector")
    errors += fileSelection(include: c.include, exclude: c.exclude, excludeFile: c.excludeFile, at: field)
    return errors
  }

  /// A claim's `include` paths (`IncludePaths.components`: anchored, globs per component, no `**`) and `exclude`
  /// patterns (`excludePattern`), each error naming its item.
  static func fileSelection(
    include: [String]?, exclude: [String]?, excludeFile: [String]?, at field: String
  ) -> [SpecError] {
    var errors: [SpecError] = []
    for (i, f) in (excludeFile ?? []).enumerated() {
      let parts = f.split(separator: "/")
      if !f.hasPrefix("/") || parts.isEmpty || parts.contains("..") {
        errors.append(
          SpecError(
            field: "\(field).excludeFile[\(i)]",
            message: "'\(f)' must name a file in the claim from the backed-up directory, starting with / and "
              + "without '..' (e.g. /.backupignore)"))
      }
    }
    for (i, p) in (include ?? []).enumerated() {
      do {
        _ = try IncludePaths.components(p)
      } catch {
        errors.append(SpecError(field: "\(field).include[\(i)]", message: error.description))
      }
    }
    for (i, p) in (exclude ?? []).enumerated() {
      errors += excludePattern(p, at: "\(field).exclude[\(i)]")
    }
    return errors
  }

  /// A label selector's expressions: known operators, and values exactly where the operator takes them.
  static func selector(_ sel: ClaimSelector?, at field: String) -> [SpecError] {
    var errors: [SpecError] = []
    for (i, e) in (sel?.matchExpressions ?? []).enumerated() {
      let f = "\(field).matchExpressions[\(i)]"
      if !ClaimSelectorRequirement.operators.contains(e.operator) {
        errors.append(
          SpecError(
            field: "\(f).operator",
            message: "must be one of \(ClaimSelectorRequirement.operators.joined(separator: ", ")), got "
              + "'\(e.operator.prefix(64))'"))
      } else if (e.operator == "In" || e.operator == "NotIn") && (e.values ?? []).isEmpty {
        errors.append(SpecError(field: "\(f).values", message: "operator \(e.operator) needs at least one value"))
      } else if (e.operator == "Exists" || e.operator == "DoesNotExist") && !(e.values ?? []).isEmpty {
        errors.append(SpecError(field: "\(f).values", message: "operator \(e.operator) takes no values"))
      }
    }
    return errors
  }

  /// A list of kinds (`Kind` or `Kind.group`): each parses, none twice.
  static func kinds(_ list: [String]?, at field: String) -> [SpecError] {
    var errors: [SpecError] = []
    var seen = Set<ObjectsKind>()
    for (i, k) in (list ?? []).enumerated() {
      guard let kind = ObjectsKind(k) else {
        errors.append(
          SpecError(
            field: "\(field)[\(i)]",
            message: "'\(k.prefix(128))' is not a kind: write Kind for the core group (ConfigMap) or Kind.group "
              + "(Deployment.apps, Widget.example.io)"))
        continue
      }
      if !seen.insert(kind).inserted {
        errors.append(SpecError(field: "\(field)[\(i)]", message: "names kind \(kind) twice"))
      }
    }
    return errors
  }

  /// spec.objects: a claim or objects source to share the snapshot with, kinds that parse, custom resources with a group and a
  /// Kind, a valid selector, and at least one kind left.
  static func objects(_ spec: BackupPolicySpec) -> [SpecError] {
    guard let o = spec.objects else { return [] }
    var errors: [SpecError] = []
    if spec.source.command != nil {
      errors.append(
        SpecError(
          field: "spec.objects",
          message: "objects are stored in the snapshot of a claim, or alone: set spec.source.pvc, spec.source.claims "
            + "or spec.source.objects, or remove spec.objects (a dump command's snapshot is one stream)"))
    }
    errors += kinds(o.kinds, at: "spec.objects.kinds")
    errors += kinds(o.excludeKinds, at: "spec.objects.excludeKinds")
    for (i, c) in (o.customResources ?? []).enumerated() {
      let f = "spec.objects.customResources[\(i)]"
      if c.group.isEmpty || c.group.contains(" ") || !c.group.contains(".") {
        errors.append(
          SpecError(
            field: "\(f).group", message: "must be an API group with a dot (example.io), got '\(c.group.prefix(128))'"))
      }
      if ObjectsKind(c.kind) == nil || c.kind.contains(".") {
        errors.append(SpecError(field: "\(f).kind", message: "must be a Kind (Widget), got '\(c.kind.prefix(128))'"))
      }
    }
    errors += selector(o.selector, at: "spec.objects.selector")
    if errors.isEmpty && o.effectiveKinds.isEmpty {
      errors.append(
        SpecError(field: "spec.objects.excludeKinds", message: "leaves no kind to back up; remove spec.objects instead")
      )
    }
    return errors
  }

  /// `objectsAllowed`: a RecoveryPlan's step may restore objects; a drill's restore may not.
  static func restoreDestination(_ d: RestoreDestination, at field: String, objectsAllowed: Bool = true)
    -> [SpecError]
  {
    var errors = d.exactlyOneErrors(at: field)
    for choice in d.setChoices {
      switch choice {
      case .pvc: break
      case .command(let c): errors += container(c, at: "\(field).command")
      case .objects(let o):
        if !objectsAllowed {
          errors.append(
            SpecError(
              field: "\(field).objects",
              message: "a drill restores data into its scratch namespace; restore objects in a RecoveryPlan step"))
        }
        errors += kinds(o.kinds, at: "\(field).objects.kinds")
        if let ns = o.namespace, !isDNSLabel(ns) {
          errors.append(
            SpecError(field: "\(field).objects.namespace", message: "must be a namespace name, got '\(ns.prefix(128))'")
          )
        }
      }
    }
    return errors
  }

  /// A local repository must name the claim that holds it: without one nothing is mounted at `path`, so each Job
  /// would write its repository into its container's own filesystem, and every backup would be gone with its Pod.
  static func localClaim(_ repository: RepositorySpec, at field: String) -> [SpecError] {
    guard let local = repository.local, local.claimName == nil else { return [] }
    return [
      SpecError(
        field: "\(field).local.claimName",
        message: "is not set: nothing would be mounted at \(field).local.path ('\(local.path)'), so each Job would "
          + "write the repository into its container's own filesystem and the backups would be lost with the Pod; "
          + "name the PersistentVolumeClaim of this namespace that holds the repository, or use s3, gcs or azure")
    ]
  }

  /// Whether `verify --read-data-subset` accepts `s`: "P%" (0 < P <= 100) or "n/t" (1 <= n <= t <= 256).
  /// TLS by default: an http:// URL of the key service would carry its token or credentials and the plaintext data
  /// keys unencrypted; refused unless the spec opts in with allowPlaintextHTTP.
  static func plaintextKMS(_ kms: KMSSpec, at field: String) -> [SpecError] {
    guard kms.allowPlaintextHTTP != true else { return [] }
    return kms.plaintextCheckedURLs.filter { $0.url.lowercased().hasPrefix("http:") }.map {
      SpecError(
        field: "\(field).\($0.field)",
        message: "'\($0.url)' is http://: the key service's token or credentials and the plaintext data keys would "
          + "cross the network unencrypted; use https:// (with spec.caSecretRef or vaultTransit.caSecretRef for a "
          + "private CA), or set \(field).allowPlaintextHTTP: true for a key service on a trusted network")
    }
  }

  /// A restic exclude pattern the engine's matcher accepts: the engine's own parser (`PathPattern`, after the `!`
  /// that re-includes), so validation refuses exactly what the backup Job would.
  static func excludePattern(_ p: String, at field: String) -> [SpecError] {
    let body = p.hasPrefix("!") ? String(p.dropFirst()) : p
    if body.isEmpty { return [SpecError(field: field, message: "is empty; remove it or give a pattern")] }
    do {
      _ = try PathPattern(body)
      return []
    } catch {
      return [
        SpecError(
          field: field, message: "'\(p)' is not a valid pattern: \(error.reason); escape a literal [ or \\ with \\")
      ]
    }
  }

  public static func validReadDataSubset(_ s: String) -> Bool {
    if s.hasSuffix("%") {
      guard let p = Double(s.dropLast()) else { return false }
      return p > 0 && p <= 100
    }
    let parts = s.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, let n = Int(parts[0]), let t = Int(parts[1]) else { return false }
    return t >= 1 && t <= 256 && n >= 1 && n <= t
  }

  /// Validates a BackupPolicy spec.
  public static func validate(_ spec: BackupPolicySpec) -> [SpecError] {
    var errors: [SpecError] = []
    if let s = spec.schedule {
      do {
        _ = try CronSchedule(s)
      } catch {
        errors.append(SpecError(field: "spec.schedule", message: error.description))
      }
    }
    if let v = spec.verify {
      do {
        _ = try CronSchedule(v.schedule)
      } catch {
        errors.append(SpecError(field: "spec.verify.schedule", message: error.description))
      }
      if let s = v.readDataSubset, !validReadDataSubset(s) {
        errors.append(
          SpecError(
            field: "spec.verify.readDataSubset",
            message: "'\(s)' must be a percentage above 0 and at most 100 (e.g. 10%) or n/t (1 <= n <= t <= 256, "
              + "e.g. 1/7)"))
      }
    }
    errors += duration(spec.rpo, at: "spec.rpo")
    errors += duration(spec.retention?.maxAge, at: "spec.retention.maxAge")
    if let r = spec.retention {
      let counts: [(String, Int32?)] = [
        ("keepLast", r.keepLast), ("keepHourly", r.keepHourly), ("keepDaily", r.keepDaily),
        ("keepWeekly", r.keepWeekly), ("keepMonthly", r.keepMonthly), ("keepYearly", r.keepYearly),
      ]
      for (name, n) in counts where (n ?? 0) < 0 {
        errors.append(SpecError(field: "spec.retention.\(name)", message: "must be 0 or more, got \(n ?? 0)"))
      }
      // Rules that are all 0 would let `forget --prune` remove every snapshot; an empty retention means the tier's.
      if !r.isEmpty && r.maxAge == nil && !counts.contains(where: { ($0.1 ?? 0) > 0 }) {
        errors.append(
          SpecError(
            field: "spec.retention",
            message: "the rules keep no snapshot; set maxAge or a keep rule above 0, or leave retention empty "
              + "for the tier's rules"))
      }
    }
    for (name, n) in [
      ("successfulJobsHistoryLimit", spec.successfulJobsHistoryLimit),
      ("failedJobsHistoryLimit", spec.failedJobsHistoryLimit),
    ] where !(0...100).contains(n ?? 0) {
      errors.append(SpecError(field: "spec.\(name)", message: "must be 0-100, got \(n ?? 0)"))
    }
    errors += spec.source.exactlyOneErrors(at: "spec.source")
    for choice in spec.source.setChoices {
      switch choice {
      case .command(let c):
        errors += container(c, at: "spec.source.command")
      case .pvc(let pvc):
        errors += fileSelection(
          include: pvc.include, exclude: pvc.exclude, excludeFile: pvc.excludeFile, at: "spec.source.pvc")
      case .claims(let claims):
        errors += claimsSource(claims, at: "spec.source.claims")
      case .objects: break
      }
    }
    errors += hooks(spec)
    errors += objects(spec)
    errors += spec.repository.exactlyOneErrors(at: "spec.repository")
    errors += localClaim(spec.repository, at: "spec.repository")
    errors += spec.repository.expectedIdentity?.errors(at: "spec.repository.expectedIdentity") ?? []
    errors += spec.encryption.kms.exactlyOneErrors(at: "spec.encryption.kms")
    errors += plaintextKMS(spec.encryption.kms, at: "spec.encryption.kms")
    var replicaNames = Set<String>()
    for (i, replica) in (spec.replicas ?? []).enumerated() {
      let rf = "spec.replicas[\(i)]"
      if !replicaNames.insert(replica.name).inserted {
        errors.append(SpecError(field: "\(rf).name", message: "duplicate replica name '\(replica.name)'"))
      }
      errors += replica.repository.exactlyOneErrors(at: "\(rf).repository")
      if replica.repository.sameLocation(spec.repository) {
        errors.append(
          SpecError(
            field: "\(rf).repository",
            message: "is the policy's own repository (the same location, whatever the credentials); give the replica "
              + "another location"))
      }
      errors += localClaim(replica.repository, at: "\(rf).repository")
      errors += replica.repository.expectedIdentity?.errors(at: "\(rf).repository.expectedIdentity") ?? []
      if let kms = replica.encryption?.kms {
        errors += kms.exactlyOneErrors(at: "\(rf).encryption.kms")
        errors += plaintextKMS(kms, at: "\(rf).encryption.kms")
      }
    }
    if let days = spec.encryption.keyRotationDays, !(1...90).contains(days) {
      errors.append(SpecError(field: "spec.encryption.keyRotationDays", message: "must be 1-90, got \(days)"))
    }
    for choice in spec.repository.setChoices {
      switch choice {
      case .s3(let s3):
        if let lock = s3.objectLock, !(1...36500).contains(lock.days) {
          errors.append(
            SpecError(
              field: "spec.repository.s3.objectLock.days", message: "must be 1-36500 (100 years), got \(lock.days)"))
        }
      case .gcs, .azure, .local: break
      }
    }
    return errors
  }

  /// Validates a RecoveryPlan spec, including the fields each step's action needs.
  public static func validate(_ spec: RecoveryPlanSpec) -> [SpecError] {
    var errors = duration(spec.rtoTarget, at: "spec.rtoTarget")
    if spec.procedures.isEmpty {
      errors.append(SpecError(field: "spec.procedures", message: "needs at least one procedure"))
    }
    var procedureNames = Set<String>()
    for (pi, procedure) in spec.procedures.enumerated() {
      let pf = "spec.procedures[\(pi)]"
      if !procedureNames.insert(procedure.name).inserted {
        errors.append(SpecError(field: "\(pf).name", message: "duplicate procedure name '\(procedure.name)'"))
      }
      if procedure.steps.isEmpty { errors.append(SpecError(field: "\(pf).steps", message: "needs at least one step")) }
      var stepNames = Set<String>()
      for (si, step) in procedure.steps.enumerated() {
        let sf = "\(pf).steps[\(si)]"
        if !stepNames.insert(step.name).inserted {
          errors.append(SpecError(field: "\(sf).name", message: "duplicate step name '\(step.name)'"))
        }
        errors += duration(step.timeout, at: "\(sf).timeout")
        if let r = step.retries, !(0...10).contains(r) {
          errors.append(SpecError(field: "\(sf).retries", message: "must be 0-10, got \(r)"))
        }
        func need(_ present: Bool, _ name: String) {
          if !present {
            errors.append(SpecError(field: "\(sf).\(name)", message: "action \(step.action.rawValue) needs \(name)"))
          }
        }
        switch step.action {
        case .scaleDown, .scaleUp, .waitReady:
          need(!(step.targets ?? []).isEmpty, "targets")
        case .restore:
          need(step.restore != nil, "restore")
          if let r = step.restore {
            errors += restoreDestination(r.into, at: "\(sf).restore.into")
            if r.beforeTime != nil, let snap = r.snapshot, snap != "latest" {
              errors.append(
                SpecError(
                  field: "\(sf).restore.beforeTime", message: "set either a snapshot id or beforeTime, not both"))
            }
          }
        case .verify:
          need(step.verify != nil, "verify")
          if let v = step.verify, v.replica != nil, v.policyRef == nil {
            errors.append(
              SpecError(
                field: "\(sf).verify.replica", message: "names a replica of no policy; set verify.policyRef too"))
          }
          if let q = step.verify?.databaseQuery {
            errors += container(ContainerSpec(image: q.image, env: q.env), at: "\(sf).verify.databaseQuery")
          }
        case .job:
          need(step.job != nil, "job")
          errors += container(step.job, at: "\(sf).job")
        }
      }
    }
    return errors
  }

  /// Validates a DRDrill spec.
  public static func validate(_ spec: DRDrillSpec) -> [SpecError] {
    var errors: [SpecError] = []
    if let s = spec.schedule, DrillPreset(rawValue: s) == nil {
      do {
        _ = try CronSchedule(s)
      } catch {
        errors.append(SpecError(field: "spec.schedule", message: error.description))
      }
    }
    errors += spec.target.exactlyOneErrors(at: "spec.target")
    if let r = spec.restore { errors += restoreDestination(r, at: "spec.restore", objectsAllowed: false) }
    // A drill restores into a claim of its own scratch namespace, sized from the source claim.
    if spec.restore?.pvc?.namespace != nil {
      errors.append(
        SpecError(
          field: "spec.restore.pvc.namespace",
          message: "a drill restores into its scratch namespace; remove namespace (it is for RecoveryPlans)"))
    }
    if spec.restore?.pvc?.create != nil {
      errors.append(
        SpecError(
          field: "spec.restore.pvc.create",
          message: "a drill always creates its scratch claim, sized from the source claim; remove create (it is for "
            + "RecoveryPlans)"))
    }
    errors += duration(spec.timeout, at: "spec.timeout")
    if let h = spec.historyLimit, !(1...100).contains(h) {
      errors.append(SpecError(field: "spec.historyLimit", message: "must be 1-100, got \(h)"))
    }
    for (i, e) in (spec.egress ?? []).enumerated() {
      if !(1...65535).contains(e.port) {
        errors.append(SpecError(field: "spec.egress[\(i)].port", message: "must be a TCP port 1-65535, got \(e.port)"))
      }
      if let h = e.host, h.isEmpty || h.contains(" ") {
        errors.append(
          SpecError(
            field: "spec.egress[\(i)].host", message: "give an IP address, a CIDR or a host name, or leave it out"))
      }
    }
    if let v = spec.verification {
      if let p = v.maxPerformanceDegradationPercent, !(0...100).contains(p) {
        errors.append(
          SpecError(field: "spec.verification.maxPerformanceDegradationPercent", message: "must be 0-100, got \(p)"))
      }
      if let s = v.minComplianceScore, !(0...100).contains(s) {
        errors.append(SpecError(field: "spec.verification.minComplianceScore", message: "must be 0-100, got \(s)"))
      }
    }
    return errors
  }
}
