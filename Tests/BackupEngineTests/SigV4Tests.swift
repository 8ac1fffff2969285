import Foundation
import Testing

@testable import BackupEngine

/// SigV4 against AWS's published examples: the Signature Version 4 test suite ("get-vanilla" and
/// "get-vanilla-query-order-key-case", service "service", 2015-08-30T12:36:00Z) and the worked examples of S3's
/// "Signature Calculations for the Authorization Header" page (2013-05-24T00:00:00Z, bucket "examplebucket").
@Suite struct SigV4Tests {
  static let suiteCreds = AWSCredentials(
    accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
  static let s3Creds = AWSCredentials(
    accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
  static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)  // 20150830T123600Z
  static let s3Date = Date(timeIntervalSince1970: 1_369_353_600)  // 20130524T000000Z

  func authorization(_ headers: [(name: String, value: String)]) -> String {
    headers.first { $0.name == "Authorization" }?.value ?? ""
  }

  @Test func timestamps() {
    #expect(SigV4.timestamps(Self.suiteDate) == ("20150830T123600Z", "20150830"))
    #expect(SigV4.timestamps(Self.s3Date) == ("20130524T000000Z", "20130524"))
  }

  @Test func getVanilla() {
    let signer = SigV4(credentials: Self.suiteCreds, region: "us-east-1", service: "service")
    let r = SignableRequest(
      method: "GET", scheme: "https", host: "example.amazonaws.com", encodedPath: "/", query: [], headers: [], body: nil
    )
    let h = signer.sign(r, date: Self.suiteDate, payloadHash: SigV4.emptySHA256, sendContentSHA256: false)
    #expect(
      authorization(h)
        == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        + "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    #expect(h.contains { $0.name == "x-amz-date" && $0.value == "20150830T123600Z" })
    #expect(!h.contains { $0.name.lowercased() == "host" }, "libcurl sends Host itself")
  }

  @Test func getVanillaQueryOrderKeyCase() {
    let signer = SigV4(credentials: Self.suiteCreds, region: "us-east-1", service: "service")
    let r = SignableRequest(
      method: "GET", scheme: "https", host: "example.amazonaws.com", encodedPath: "/",
      query: [("Param2", "value2"), ("Param1", "value1")], headers: [], body: nil)
    let (canonical, _) = signer.canonicalRequest(
      r, headers: [("host", "example.amazonaws.com"), ("x-amz-date", "20150830T123600Z")],
      payloadHash: SigV4.emptySHA256)
    #expect(canonical.split(separator: "\n", omittingEmptySubsequences: false)[2] == "Param1=value1&Param2=value2")
    let h = signer.sign(r, date: Self.suiteDate, payloadHash: SigV4.emptySHA256, sendContentSHA256: false)
    #expect(authorization(h).hasSuffix("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"))
  }

  @Test func s3GetObjectWithRange() {
    let signer = SigV4(credentials: Self.s3Creds, region: "us-east-1", service: "s3")
    let r = SignableRequest(
      method: "GET", scheme: "https", host: "examplebucket.s3.amazonaws.com", encodedPath: "/test.txt", query: [],
      headers: [("Range", "bytes=0-9")], body: nil)
    let (canonical, signed) = signer.canonicalRequest(
      r,
      headers: [
        ("host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"), ("x-amz-content-sha256", SigV4.emptySHA256),
        ("x-amz-date", "20130524T000000Z"),
      ], payloadHash: SigV4.emptySHA256)
    #expect(signed == "host;range;x-amz-content-sha256;x-amz-date")
    #expect(
      Hex.encode(Crypto.sha256(Array(canonical.utf8)))
        == "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")
    let h = signer.sign(r, date: Self.s3Date, payloadHash: SigV4.emptySHA256, sendContentSHA256: true)
    #expect(
      authorization(h)
        == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
  }

  @Test func s3PutObject() {
    let body = Data("Welcome to Amazon S3.".utf8)
    #expect(SigV4.payloadHash(body) == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
    let signer = SigV4(credentials: Self.s3Creds, region: "us-east-1", service: "s3")
    let r = SignableRequest(
      method: "PUT", scheme: "https", host: "examplebucket.s3.amazonaws.com",
      encodedPath: "/" + SigV4.encode("test$file.text", keepSlash: true), query: [],
      headers: [("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")], body: body)
    #expect(r.encodedPath == "/test%24file.text")
    let h = signer.sign(r, date: Self.s3Date, payloadHash: SigV4.payloadHash(body), sendContentSHA256: true)
    #expect(
      authorization(h).hasSuffix(
        "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
          + "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"))
  }

  @Test func s3GetBucketLifecycleAndList() {
    let signer = SigV4(credentials: Self.s3Creds, region: "us-east-1", service: "s3")
    let lifecycle = SignableRequest(
      method: "GET", scheme: "https", host: "examplebucket.s3.amazonaws.com", encodedPath: "/",
      query: [("lifecycle", "")], headers: [], body: nil)
    #expect(
      authorization(signer.sign(lifecycle, date: Self.s3Date, payloadHash: SigV4.emptySHA256, sendContentSHA256: true))
        .hasSuffix("Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"))
    let list = SignableRequest(
      method: "GET", scheme: "https", host: "examplebucket.s3.amazonaws.com", encodedPath: "/",
      query: [("prefix", "J"), ("max-keys", "2")], headers: [], body: nil)
    #expect(
      authorization(signer.sign(list, date: Self.s3Date, payloadHash: SigV4.emptySHA256, sendContentSHA256: true))
        .hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"))
    #expect(list.url == "https://examplebucket.s3.amazonaws.com/?prefix=J&max-keys=2")
  }

  @Test func signatureChangesWithEveryInput() {
    let base = SignableRequest(
      method: "GET", scheme: "https", host: "h", encodedPath: "/k", query: [], headers: [], body: nil)
    func sig(_ creds: AWSCredentials, region: String, _ r: SignableRequest) -> String {
      authorization(
        SigV4(credentials: creds, region: region, service: "s3").sign(
          r, date: Self.s3Date, payloadHash: SigV4.emptySHA256, sendContentSHA256: true))
    }
    let a = sig(Self.s3Creds, region: "us-east-1", base)
    var other = base
    other.encodedPath = "/j"
    #expect(sig(Self.s3Creds, region: "us-east-1", other) != a)
    #expect(sig(Self.s3Creds, region: "eu-west-1", base) != a)
    #expect(sig(Self.suiteCreds, region: "us-east-1", base) != a)
  }

  @Test func sessionTokenIsSignedAndSecretNeverSent() {
    let creds = AWSCredentials(accessKeyId: "AKID", secretAccessKey: "SECRETSECRET", sessionToken: "TOKEN123")
    let r = SignableRequest(
      method: "GET", scheme: "http", host: "h:9000", encodedPath: "/", query: [], headers: [], body: nil)
    let h = SigV4(credentials: creds, region: "us-east-1", service: "s3").sign(
      r, date: Self.s3Date, payloadHash: SigV4.emptySHA256, sendContentSHA256: true)
    #expect(h.contains { $0.name == "x-amz-security-token" && $0.value == "TOKEN123" })
    #expect(authorization(h).contains("x-amz-security-token"))
    #expect(!h.contains { $0.value.contains("SECRETSECRET") })
  }

  @Test func uriEncoding() {
    #expect(SigV4.encode("a b/é+~_-.", keepSlash: true) == "a%20b/%C3%A9%2B~_-.")
    #expect(SigV4.encode("a/b") == "a%2Fb")
  }

  @Test func contentMD5MatchesRFC1321() {
    // RFC 1321 test suite: MD5("abc") = 900150983cd24fb0d6963f7d28e17f72.
    #expect(contentMD5(Data("abc".utf8)) == Data(Hex.decode("900150983cd24fb0d6963f7d28e17f72")!).base64EncodedString())
  }

  @Test func dates() {
    #expect(iso8601UTC(Self.s3Date) == "2013-05-24T00:00:00.000Z")
    #expect(httpDate(Self.s3Date) == "Fri, 24 May 2013 00:00:00 GMT")
    #expect(parseHTTPDate("Fri, 24 May 2013 00:00:00 GMT") == Self.s3Date)
    #expect(parseISO8601("2013-05-24T00:00:00.000Z") == Self.s3Date)
  }
}
