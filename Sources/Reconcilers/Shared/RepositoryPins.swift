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
  public static func identity(
    previous: RepositoryIdentity?, reports: [RepositoryPinReport], repositoryURL: String?
  ) -> (identity: RepositoryIdentity?, conflict: String?) {
    guard let url = repositoryURL else { return (previous, nil) }
    if let p = previous, EngineRepositoryURL.same(p.repository, url) { return (p, nil) }
    let reported = reports.compactMap { r -> (RepositoryPinReport, String, String)? in
      guard let repo = r.repository, EngineRepositoryURL.same(repo, url),
        let id = r.id?.lowercased(), let key = r.signingKey?.lowercased(),
        EngineRepositoryURL.validPins(id: id, signingKey: key)
      else { return nil }
      return (r, id, key)
    }.sorted { ($0.0.finishTime ?? .distantFuture, $0.0.jobName) < ($1.0.finishTime ?? .distantFuture, $1.0.jobName) }
    guard let first = reported.first else { return (nil, nil) }
    let identity = RepositoryIdentity(
      repository: url, id: first.1, signingKey: first.2, recordedAt: first.0.finishTime, recordedFrom: first.0.jobName)
    let others = reported.dropFirst().filter { $0.1 != first.1 || $0.2 != first.2 }.map { $0.0.jobName }
    let conflict =
      others.isEmpty
      ? nil
      : "Jobs \(others.joined(separator: ", ")) reported another repository identity at \(url) than Job "
        + "\(first.0.jobName) (id \(first.1)): the repository was replaced between them. The first one is pinned; "
        + "check who can write to the storage."
    return (identity, conflict)
  }
}
