import DRAPI
import EngineContract
import Foundation
import Testing

@testable import Reconcilers

/// spec.source.pvc.excludeFile and spec.source.claims.excludeFile (issue 15: restic's --exclude-file): files in the
/// claim whose lines are more exclude patterns, so the application keeps its own list. The backup container the
/// controller builds is run by the real engine against a test tree standing in for the claim; the claim is the
/// tenant's data, so the file is read as untrusted bytes: no symlink out of the claim, no fifo, no huge file, no
/// environment variable read into a pattern.
@Suite struct ClaimExcludeFileTests {
  func spec(_ h: CLIHarness, excludeFile: [String], exclude: [String] = [], claims: Bool = false) -> BackupPolicySpec {
    var pvc = PVCSource(claimName: "data")
    pvc.exclude = exclude
    pvc.excludeFile = excludeFile
    var many = ClaimsSource(selector: ClaimSelector(matchLabels: ["backup": "yes"]))
    many.exclude = exclude
    many.excludeFile = excludeFile
    return BackupPolicySpec(
      tier: .standard, source: claims ? BackupSource(claims: many) : BackupSource(pvc: pvc),
      repository: RepositorySpec(local: LocalRepository(path: h.repo, claimName: "backups")),
      encryption: EncryptionSpec(kms: KMSSpec(localKeySecretRef: SecretReference(name: "kek", key: "key"))))
  }

  /// Runs the controller-built backup container with its claim mount (/backup/data) pointed at the test's `src`.
  func runBackup(
    _ h: CLIHarness, _ spec: BackupPolicySpec, claims: Bool = false, env: [String: String] = [:]
  ) throws -> (args: [String], out: CLIHarness.Output) {
    let container = try builtBackupContainer(name: "files", spec: spec, claim: claims ? "data" : nil)
    var args = (container["args"]?.arrayValue ?? []).compactMap(\.stringValue).map {
      $0.replacingOccurrences(of: "/backup/data", with: h.dir + "/src")
    }
    if let i = args.firstIndex(of: EngineFlag.long(EngineFlag.kms)) { args[i + 1] = h.kmsURL }
    return (args, try h.run(args, withRepo: false, env: env))
  }

  @Test(arguments: [false, true])
  func theClaimsOwnExcludeFileLeavesOutWhatItLists(claims: Bool) throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    for f in [
      "src/app/data.db", "src/cache/x.bin", "src/deep/cache/kept.bin", "src/a.tmp", "src/keep.tmp", "src/sub/b.tmp",
      "src/$HOME/literal", "src/tmp/scratch", "src/notes.txt",
    ] {
      try h.write(f, Data(f.utf8))
    }
    // The application's list: a comment, a blank line, an anchored pattern (at the claim's root), an unanchored
    // one, a re-include, and a $VAR that stays literal (it names the directory "$HOME", not the engine's home).
    try h.write("src/.backupignore", Data("# the app's own list\n\n/cache\n*.tmp\n!/keep.tmp\n  $HOME  \n".utf8))
    let s = spec(h, excludeFile: ["/.backupignore"], exclude: ["/tmp"], claims: claims)
    #expect(SpecValidation.validate(s).isEmpty)
    let (args, b) = try runBackup(h, s, claims: claims)
    #expect(b.code == 0, "\(b.stderr)")
    #expect(args.contains("--exclude-file-root=\(h.dir)/src") && args.contains("--exclude-file=/.backupignore"))
    #expect(try h.run(["restore", "latest", "--target", h.dir + "/out"]).code == 0)
    let files = (FileManager.default.subpaths(atPath: h.dir + "/out") ?? []).filter { p in
      var d: ObjCBool = false
      return FileManager.default.fileExists(atPath: h.dir + "/out/" + p, isDirectory: &d) && !d.boolValue
    }
    // Stored under the mount's base name (here the test tree's, src).
    let stored = files.map { $0.hasPrefix("src/") ? String($0.dropFirst(4)) : $0 }
    #expect(
      Set(stored) == ["app/data.db", "deep/cache/kept.bin", "keep.tmp", "notes.txt", ".backupignore"],
      "\(files.sorted())")
  }

  @Test func aHostileExcludeFileCannotReadOutsideTheClaim() throws {
    let h = try CLIHarness()
    defer { h.cleanup() }
    try h.write("src/a.txt", Data("a".utf8))
    // A file of the engine's container the tenant must not read: as patterns, an unclosed class would be echoed in
    // the error ("bad pattern '[TOPSECRET'"), and from there reach the termination message and the policy's status.
    try h.write("secret/token", Data("[TOPSECRET-7f3a\n".utf8))
    #expect(try h.run(["init"]).code == 0)
    func attempt(_ excludeFile: String, env: [String: String] = [:]) throws -> String {
      let (_, b) = try runBackup(h, spec(h, excludeFile: [excludeFile]), env: env)
      #expect(b.code != 0, "\(excludeFile): the backup must fail")
      #expect(b.code < 128, "\(excludeFile): exit \(b.code)")
      #expect(!b.text.contains("TOPSECRET"), "\(excludeFile): \(b.text)")
      #expect(b.text.contains(excludeFile), "\(excludeFile): the error names the file: \(b.stderr)")
      return b.stderr
    }
    // A symbolic link to the secret, and a directory link on the way to it.
    try FileManager.default.createSymbolicLink(
      atPath: h.dir + "/src/.backupignore", withDestinationPath: "../secret/token")
    #expect(try attempt("/.backupignore").contains("symbolic link"))
    try FileManager.default.createSymbolicLink(atPath: h.dir + "/src/conf", withDestinationPath: h.dir + "/secret")
    #expect(try attempt("/conf/token").contains("symbolic link"))
    // A fifo would block the backup forever; a device never ends.
    #expect(mkfifo(h.dir + "/src/fifo", 0o644) == 0)
    #expect(try attempt("/fifo").contains("not a regular file"))
    // Over the limit.
    try h.write("src/huge", Data(repeating: 0x61, count: (1 << 20) + 1))
    #expect(try attempt("/huge").contains("at most"))
    // Missing: the backup fails naming it, as restic's does.
    #expect(try attempt("/missing").contains("no such file"))
    // A $VAR is not expanded: the engine's environment (here a canary) does not become a pattern.
    try h.write("src/vars", Data("[$BOTRT_CANARY\n".utf8))
    let err = try attempt("/vars", env: ["BOTRT_CANARY": "TOPSECRET-env"])
    #expect(err.contains("[$BOTRT_CANARY"), "\(err)")
    // Nothing was stored by any of the attempts.
    #expect(try h.objects("snapshots").isEmpty)
  }

  @Test func anExcludeFileOutsideTheClaimIsRefusedNamingTheField() {
    let h = try? CLIHarness()
    defer { h?.cleanup() }
    guard let h else { Issue.record("no harness"); return }
    for claims in [false, true] {
      let errors = SpecValidation.validate(
        spec(h, excludeFile: ["relative", "/a/../../etc/passwd", "/", "/.backupignore"], claims: claims))
      let base = claims ? "spec.source.claims" : "spec.source.pvc"
      #expect(
        errors.map(\.field) == ["\(base).excludeFile[0]", "\(base).excludeFile[1]", "\(base).excludeFile[2]"],
        "\(errors)")
      #expect(errors.first?.message.contains("starting with /") == true)
    }
  }
}
