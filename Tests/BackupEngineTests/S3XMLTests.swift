import CurlHTTP
import Foundation
import Testing

@testable import BackupEngine

@Suite struct S3XMLTests {
  @Test func listObjectsV2Page() throws {
    let xml = """
      <?xml version="1.0" encoding="UTF-8"?>
      <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
        <Name>bucket</Name><Prefix>repo/data/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
        <IsTruncated>true</IsTruncated>
        <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
        <Contents><Key>repo/data/ab/abc</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>
          <ETag>"fba9dede5f27731c9771645a39863328"</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>
        <Contents><Key>repo/data/a&amp;b &lt;x&gt;</Key><Size>0</Size></Contents>
      </ListBucketResult>
      """
    let page = try #require(S3ListPage.parse(Data(xml.utf8)))
    #expect(page.isTruncated)
    #expect(page.nextContinuationToken == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
    #expect(page.items.map(\.key) == ["repo/data/ab/abc", "repo/data/a&b <x>"])
    #expect(page.items[0].size == 434_234)
    #expect(page.items[0].lastModified == parseISO8601("2009-10-12T17:50:30Z"))
  }

  @Test func lastPageAndEmptyListing() throws {
    let xml = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"
    let page = try #require(S3ListPage.parse(Data(xml.utf8)))
    #expect(page.items.isEmpty)
    #expect(!page.isTruncated)
    #expect(page.nextContinuationToken == nil)
    #expect(S3ListPage.parse(Data("<Error><Code>x</Code></Error>".utf8)) == nil)
    #expect(S3ListPage.parse(Data("not xml".utf8)) == nil)
  }

  @Test func versionsAndDeleteMarkers() throws {
    let xml = """
      <ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated>
      <Version><Key>k</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest><Size>42</Size></Version>
      <DeleteMarker><Key>k</Key><VersionId>dm1</VersionId><IsLatest>true</IsLatest></DeleteMarker>
      <Version><Key>k2</Key><VersionId>null</VersionId></Version>
      </ListVersionsResult>
      """
    let page = try #require(S3VersionsPage.parse(Data(xml.utf8)))
    #expect(
      page.versions == [
        .init(key: "k", versionId: "v2", isDeleteMarker: false, isLatest: false, size: 42),
        .init(key: "k", versionId: "dm1", isDeleteMarker: true, isLatest: true),
        .init(key: "k2", versionId: "null", isDeleteMarker: false),
      ])
  }

  @Test func errorDocument() throws {
    let xml = """
      <?xml version="1.0" encoding="UTF-8"?>
      <Error><Code>NoSuchKey</Code><Message>The resource you requested does not exist</Message>
      <Resource>/mybucket/myfoto.jpg</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>
      """
    let e = try #require(S3ErrorBody.parse(Data(xml.utf8)))
    #expect(e.code == "NoSuchKey")
    #expect(e.message == "The resource you requested does not exist")
    #expect(S3ErrorBody.parse(Data()) == nil)
  }

  @Test func throttlingAs400IsRetryable() {
    let slow = Data("<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>".utf8)
    #expect(S3Store.isRetryable(HTTPResponse(status: 400, body: slow)))
    #expect(S3Store.isRetryable(HTTPResponse(status: 503, body: Data())))
    #expect(!S3Store.isRetryable(HTTPResponse(status: 403, body: Data())))
    #expect(
      !S3Store.isRetryable(HTTPResponse(status: 400, body: Data("<Error><Code>InvalidArgument</Code></Error>".utf8))))
  }

  @Test func xmlEscaping() {
    #expect(xmlEscape("\"a\"&<b>'") == "&quot;a&quot;&amp;&lt;b&gt;&apos;")
  }
}
