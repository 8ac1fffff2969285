import Foundation

extension Repository {
  /// Writes a snapshot whose tree is exactly `nodes` (no safety checks), signed with `signingKey`
  /// (default: the repository's). Used by tests that check restore's and verify's refusals.
  func writeRawSnapshot(
    nodes: [TreeNode], seq: Int, parent: String?, signingKey: [UInt8]? = nil, dataType: String = "files"
  ) async throws -> ID {
    let index = try await loadIndexSkippingDamaged()
    let run = BackupRun()
    let treeBytes = TreeFormat.encode(nodes)
    let treeIDs = try await onOwnThread { try self.storeTree(treeBytes, run: run, index: index) }
    if !run.pendingIndex.isEmpty { try await writeIndex(run.pendingIndex) }
    let m = Manifest(
      version: 1, repo: config.id, seq: seq, parent: parent, time: Manifest.formatTime(Date()), hostname: "test",
      dataType: dataType, paths: ["raw"], stdinName: nil, tags: [:], tree: treeIDs.map { $0.hex },
      summary: .init(files: nodes.count, dirs: 0, bytes: 0, errors: 0))
    let obj = try SnapshotFormat.encodeObject(
      m, signingKey: signingKey ?? self.signingKey, meta: try AESGCM(key: metaKey), zstd: ZstdContext(), repo: repoID)
    return try await putContentAddressed(prefix: "snapshots/", bytes: obj)
  }
}
