import Foundation

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// A parsed XML element: name (without namespace prefix), text content and children.
struct XMLElementNode: Sendable {
  var name: String
  var text: String
  var children: [XMLElementNode]

  /// The first direct child with this name.
  func child(_ name: String) -> XMLElementNode? { children.first { $0.name == name } }
  /// All direct children with this name.
  func all(_ name: String) -> [XMLElementNode] { children.filter { $0.name == name } }
  /// The text of the first direct child with this name.
  func text(_ name: String) -> String? { child(name)?.text }

  /// Parses a document; nil when it is not well-formed XML.
  static func parse(_ data: Data) -> XMLElementNode? {
    let builder = XMLTreeBuilder()
    let parser = XMLParser(data: data)
    parser.delegate = builder
    parser.shouldProcessNamespaces = true
    guard parser.parse(), let root = builder.root else { return nil }
    return root
  }
}

private final class XMLTreeBuilder: NSObject, XMLParserDelegate {
  var stack: [XMLElementNode] = []
  var root: XMLElementNode?

  func parser(
    _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName qName: String?,
    attributes attributeDict: [String: String] = [:]
  ) {
    let local = elementName.split(separator: ":").last.map(String.init) ?? elementName
    stack.append(XMLElementNode(name: local, text: "", children: []))
  }

  func parser(_ parser: XMLParser, foundCharacters string: String) {
    if !stack.isEmpty { stack[stack.count - 1].text += string }
  }

  func parser(
    _ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName qName: String?
  ) {
    guard let done = stack.popLast() else { return }
    if stack.isEmpty { root = done } else { stack[stack.count - 1].children.append(done) }
  }
}

/// One page of an S3 ListObjectsV2 answer.
struct S3ListPage: Sendable, Equatable {
  struct Item: Sendable, Equatable {
    var key: String
    var size: Int64
    var lastModified: Date?
  }
  var items: [Item]
  var isTruncated: Bool
  var nextContinuationToken: String?

  /// Parses a ListBucketResult document; nil when it is not one.
  static func parse(_ data: Data) -> S3ListPage? {
    guard let root = XMLElementNode.parse(data), root.name == "ListBucketResult" else { return nil }
    let items = root.all("Contents").compactMap { c -> Item? in
      guard let key = c.text("Key") else { return nil }
      return Item(
        key: key, size: Int64(c.text("Size") ?? "0") ?? 0, lastModified: c.text("LastModified").flatMap(parseISO8601))
    }
    let truncated = root.text("IsTruncated")?.lowercased() == "true"
    let token = root.text("NextContinuationToken").flatMap { $0.isEmpty ? nil : $0 }
    return S3ListPage(items: items, isTruncated: truncated, nextContinuationToken: token)
  }
}

/// The versions (and delete markers) of objects from ListObjectVersions.
struct S3VersionsPage: Sendable, Equatable {
  struct Version: Sendable, Equatable {
    var key: String
    var versionId: String
    var isDeleteMarker: Bool
    /// Whether this is the key's current entry (a delete marker on top hides the object).
    var isLatest: Bool = false
    /// The version's size (0 for a delete marker).
    var size: Int64 = 0
  }
  var versions: [Version]
  var isTruncated: Bool
  var nextKeyMarker: String?
  var nextVersionIdMarker: String?

  static func parse(_ data: Data) -> S3VersionsPage? {
    guard let root = XMLElementNode.parse(data), root.name == "ListVersionsResult" else { return nil }
    var versions: [Version] = []
    for c in root.children where c.name == "Version" || c.name == "DeleteMarker" {
      guard let key = c.text("Key"), let v = c.text("VersionId") else { continue }
      versions.append(
        Version(
          key: key, versionId: v, isDeleteMarker: c.name == "DeleteMarker",
          isLatest: c.text("IsLatest")?.lowercased() == "true", size: Int64(c.text("Size") ?? "0") ?? 0))
    }
    return S3VersionsPage(
      versions: versions, isTruncated: root.text("IsTruncated")?.lowercased() == "true",
      nextKeyMarker: root.text("NextKeyMarker"), nextVersionIdMarker: root.text("NextVersionIdMarker"))
  }
}

/// An S3 error document's code and message.
struct S3ErrorBody: Sendable, Equatable {
  var code: String
  var message: String

  /// Parses `<Error><Code>…</Code><Message>…</Message></Error>`; nil when the body is not one.
  static func parse(_ data: Data) -> S3ErrorBody? {
    guard !data.isEmpty, let root = XMLElementNode.parse(data), root.name == "Error" else { return nil }
    return S3ErrorBody(code: root.text("Code") ?? "", message: root.text("Message") ?? "")
  }
}

/// Escapes text for an XML element.
func xmlEscape(_ s: String) -> String {
  var out = ""
  for ch in s {
    switch ch {
    case "&": out += "&amp;"
    case "<": out += "&lt;"
    case ">": out += "&gt;"
    case "\"": out += "&quot;"
    case "'": out += "&apos;"
    default: out.append(ch)
    }
  }
  return out
}
