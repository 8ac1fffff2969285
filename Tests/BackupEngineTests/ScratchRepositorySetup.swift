import Foundation

@testable import BackupEngine

/// A scratch directory with an empty source tree (`src/`) and a local KEK: the setup the attack tests share.
struct ScratchRepositorySetup {
  let dir: String
  let kek: LocalKeyService

  init(prefix: String = "botrt-scratch") throws {
    dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
    try makeFile(atPath: dir + "/kek", contents: Data(Crypto.randomBytes(32)))
    kek = try LocalKeyService(path: dir + "/kek")
  }

  func cleanup() { try? FileManager.default.removeItem(atPath: dir) }
}
