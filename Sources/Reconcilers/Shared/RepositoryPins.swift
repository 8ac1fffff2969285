import DRAPI
import EngineContract
import Foundation

/// One successful run's report of a repository's identity, as its engine result gave it: a backup's (the primary's
/// `repositoryId`, `signingKey`, `repository`) or a copy's (the target's `targetRepositoryId`, `targetSigningKey`,
/// `targetRepository`). The pins of the primary and of each replica are chosen from such reports by one rule.
public struct RepositoryPinReport: Sendable, Hashable {
  public var jobName: String
  public var finishTime: Date?
  public var repository: String?
  public var id: String?
  public var signingKey: String?

  public init(jobName: String, finishTime: Date?, repository: String?, id: String?, signingKey: String?) {
    self.jobName = jobName
    self.finishTime = finishTime
    self.repository = repository
    self.id = id
    self.signingKey = signingKey
  }

  /// The identity to keep: `previous` while it belongs to `repositoryURL`; otherwise (none yet, or the spec moved
  /// the repository) the id and signing key of the oldest report that names `repositoryURL` with well-formed pins,
  /// or nil. `conflict` names later reports of another identity for the same repository (it was replaced between
  /// them): the oldest one is kept, and the later ones are the suspects. A nil `repositoryURL` (a spec the
  /// controller cannot run) keeps `previous`. `reports` must be of successful runs only.
  ///
  /// `stated` is the identity the spec states (`repository.expectedIdentity`): the Jobs require it whatever status
  /// says, so a successful run under it reports it. The record follows the first such report: `previous` is kept
  /// while it already is the stated identity, and replaced by the oldest report of the stated identity otherwise (the
  /// repository proved to be the stated one); with no such report the rule above applies, and `mismatch` tells
  /// whether the kept record differs from the statement.
  public static func identity(
    previous: RepositoryIdentity?, reports: [RepositoryPinReport], repositoryURL: String?,
    stated: ExpectedRepositoryIdentity? = nil
  ) -> (identity: RepositoryIdentity?, conflict: String?) {
    guard let url = repositoryURL else { return (previous, nil) }
    if let stated {
      if let p = previous, EngineRepositoryURL.same(p.repository, url), !mismatch(p, stated) { return (p, nil) }
      let confirmed = reports.filter { r in
        guard let repo = r.repository, EngineRepositoryURL.same(repo, url) else { return false }
        return r.id?.lowercased() == stated.repositoryId && r.signingKey?.lowercased() == stated.signingKey
      }
      if !confirmed.isEmpty {
        return firstReported(reports: reports, url: url, among: Set(confirmed.map(\.jobName)))
      }
    }
    if let p = previous, EngineRepositoryURL.same(p.repository, url) { return (p, nil) }
    return firstReported(reports: reports, url: url, among: nil)
  }

  /// Whether a recorded identity differs from the stated one (id or signing key; hex compared in lowercase).
  public static func mismatch(_ recorded: RepositoryIdentity, _ stated: ExpectedRepositoryIdentity) -> Bool {
    recorded.id.lowercased() != stated.repositoryId || recorded.signingKey.lowercased() != stated.signingKey
  }

  /// The Warning an identity recorded in status that differs from the stated one raises, or nil when they agree (or
  /// belong to another repository). `field` is the statement's field, e.g. `spec.repository.expectedIdentity`.
  public static func mismatchWarning(
    recorded: RepositoryIdentity?, stated: ExpectedRepositoryIdentity?, repositoryURL: String?, field: String,
    statusField: String
  ) -> String? {
    guard let recorded, let stated, let url = repositoryURL, EngineRepositoryURL.same(recorded.repository, url),
      mismatch(recorded, stated)
    else { return nil }
    var parts: [String] = []
    if recorded.id.lowercased() != stated.repositoryId {
      parts.append("\(field).repositoryId is \(stated.repositoryId) but \(statusField).id recorded \(recorded.id)")
    }
    if recorded.signingKey.lowercased() != stated.signingKey {
      parts.append(
        "\(field).signingKey is \(stated.signingKey.prefix(16))... but \(statusField).signingKey recorded "
          + "\(recorded.signingKey.prefix(16))...")
    }
    return parts.joined(separator: "; ")
      + " (from Job \(recorded.recordedFrom ?? "unknown")). Every Job requires the stated identity, so Jobs fail (exit 5) "
      + "while the repository at \(url) is another one: either the statement is wrong (correct \(field)), or the "
      + "repository was replaced before the controller recorded it (check who can write to the storage)."
  }

  /// The oldest well-formed report of `url` (among the Jobs `among`, when given) and the later reports of another
  /// identity.
  static func firstReported(reports: [RepositoryPinReport], url: String, among: Set<String>?) -> (
    identity: RepositoryIdentity?, conflict: String?
  ) {
    let reported = reports.compactMap { r -> (RepositoryPinReport, String, String)? in
      guard let repo = r.repository, EngineRepositoryURL.same(repo, url),
        let id = r.id?.lowercased(), let key = r.signingKey?.lowercased(),
        EngineRepositoryURL.validPins(id: id, signingKey: key)
      else { return nil }
      return (r, id, key)
    }.sorted { ($0.0.finishTime ?? .distantFuture, $0.0.jobName) < ($1.0.finishTime ?? .distantFuture, $1.0.jobName) }
    guard let first = reported.first(where: { among?.contains($0.0.jobName) ?? true }) else { return (nil, nil) }
    let identity = RepositoryIdentity(
      repository: url, id: first.1, signingKey: first.2, recordedAt: first.0.finishTime, recordedFrom: first.0.jobName)
    let others = reported.filter {
      ($0.1 != first.1 || $0.2 != first.2)
        && ($0.0.finishTime ?? .distantFuture, $0.0.jobName)
          > (first.0.finishTime ?? .distantFuture, first.0.jobName)
    }.map { $0.0.jobName }
    let conflict =
      others.isEmpty
      ? nil
      : "Jobs \(others.joined(separator: ", ")) reported another repository identity at \(url) than Job "
        + "\(first.0.jobName) (id \(first.1)): the repository was replaced between them. The first one is pinned; "
        + "check who can write to the storage."
    return (identity, conflict)
  }
}
