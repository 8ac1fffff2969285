import Foundation
import Testing

@testable import BackupEngine

#if canImport(Glibc)
  import Glibc
#endif

/// `restore --verify` (restic's): after the restore, every restored file is read back from the target and checked
/// against the snapshot, so what landed on the target's storage is what was backed up. A drill's data check
/// (`verification.readData`), which downloads nothing more. The target is changed between the writes and the read-back
/// (the restore's `.contentsWritten` hook), as a faulty volume or another writer would.
@Suite struct RestoreVerifyTests {
  func restore(
    _ f: RestoreAttackTests.Fixture, hook: (@Sendable (RestoreHookPoint) -> Void)? = nil
  ) async throws -> RestoreResult {
    var o = RestoreOptions(target: f.target, workers: 2, verify: true)
    o.hook = hook
    return try await f.repo.restore(f.snapshot, index: f.index, options: o)
  }

  @Test func anUntouchedRestoreVerifiesEveryFileAndByte() async throws {
    let f = try await RestoreAttackTests.Fixture()
    defer { try? FileManager.default.removeItem(atPath: f.dir) }
    let r = try await restore(f)
    let v = try #require(r.verification)
    // Every regular file of the snapshot: a.txt, big.bin, 3 small ones, big2.bin, g.txt, suid, sgid.
    #expect(v.files == 9, "\(v) of \(r.files) restored")
    #expect(v.bytes == r.bytes, "read back \(v.bytes) of \(r.bytes) restored bytes")
    // Without --verify nothing is read back.
    try FileManager.default.removeItem(atPath: f.target)
    let plain = try await f.repo.restore(f.snapshot, index: f.index, options: RestoreOptions(target: f.target))
    #expect(plain.verification == nil)
  }

  @Test(arguments: ["flip", "truncate", "append", "symlink", "remove", "two"])
  func aFileChangedOnTheTargetFailsTheRestore(change: String) async throws {
    let f = try await RestoreAttackTests.Fixture()
    defer { try? FileManager.default.removeItem(atPath: f.dir) }
    let target = f.target
    let outside = f.outside
    let hook: @Sendable (RestoreHookPoint) -> Void = { p in
      guard p == .contentsWritten else { return }
      let big = target + "/src/big.bin"
      switch change {
      case "flip":
        // One byte in the middle of a multi-chunk file.
        let fd = open(big, O_RDWR)
        var b: UInt8 = 0
        _ = pread(fd, &b, 1, 3 << 20)
        b ^= 0x01
        _ = pwrite(fd, &b, 1, 3 << 20)
        close(fd)
      case "truncate": _ = truncate(big, 1 << 20)
      case "append":
        let fd = open(big, O_WRONLY | O_APPEND)
        _ = write(fd, "x", 1)
        close(fd)
      case "symlink":
        // A file swapped for a link to a file outside the target: the read-back does not follow it.
        unlink(big)
        symlink(outside + "/big", big)
      case "two":
        // Two files, read back by different workers: both counted and named.
        _ = truncate(big, 10)
        _ = truncate(target + "/src/d/big2.bin", 10)
      default: unlink(big)
      }
    }
    await #expect {
      _ = try await restore(f, hook: hook)
    } throws: { e in
      guard case EngineError.integrity(let object, let message) = e else { return false }
      if change == "two" {
        return message.contains("2 file(s) differ") && message.contains("src/big.bin")
          && message.contains("src/d/big2.bin")
      }
      return object.contains(target) && message.contains("big.bin") && message.contains("1 file(s) differ")
    }
    // Nothing of the outside file was read into the message.
    do { _ = try await restore(f, hook: hook) } catch { #expect(!"\(error)".contains("BIG SECRET")) }
  }
}
