import Foundation
import Testing

@testable import KubeCore

@Suite struct YAMLTests {
  @Test func resolvesScalarsLikeTheCoreSchema() throws {
    let doc = try YAML.parse(
      """
      a: true
      b: False
      c: ~
      d: null
      e: 42
      f: -7
      g: 0x1F
      h: 1.5e3
      i: "true"
      j: '42'
      k: yes
      l: 1.2.3
      m:
      n: !!str 12
      o: .inf
      p: 0o17
      q: 12345678901234567890
      """, file: "t.yaml")
    #expect(doc["a"] == .bool(true))
    #expect(doc["b"] == .bool(false))
    #expect(doc["c"] == .null)
    #expect(doc["d"] == .null)
    #expect(doc["e"] == .int(42))
    #expect(doc["f"] == .int(-7))
    #expect(doc["g"] == .int(31))
    #expect(doc["h"] == .double(1500))
    #expect(doc["i"] == .string("true"))
    #expect(doc["j"] == .string("42"))
    #expect(doc["k"] == .string("yes"))
    #expect(doc["l"] == .string("1.2.3"))
    #expect(doc["m"] == .null)
    #expect(doc["n"] == .string("12"))
    #expect(doc["o"] == .double(.infinity))
    #expect(doc["p"] == .int(15))
    #expect(doc["q"] == .double(Double("12345678901234567890")!))
  }

  @Test func multipleDocumentsSkipEmptyOnes() throws {
    let docs = try YAML.parseDocuments(
      """
      ---
      apiVersion: v1
      kind: ConfigMap
      metadata: {name: a}
      ---
      # only a comment
      ---
      apiVersion: v1
      kind: Namespace
      metadata:
        name: b
        labels: [x, y]
      ...
      """, file: "multi.yaml")
    #expect(docs.count == 2)
    #expect(docs[0][path: "metadata", "name"] == "a")
    #expect(docs[1]["kind"] == "Namespace")
    #expect(docs[1][path: "metadata", "labels"] == ["x", "y"])
  }

  @Test func blockScalarsAnchorsAndMerge() throws {
    let doc = try YAML.parse(
      """
      base: &b
        x: 1
        y: 2
      derived:
        <<: *b
        y: 3
      text: |
        line one
        line two
      folded: >
        a
        b
      list: &l [1, 2]
      again: *l
      """, file: "a.yaml")
    #expect(doc["derived"] == ["x": 1, "y": 3])
    #expect(doc["text"] == "line one\nline two\n")
    #expect(doc["folded"] == "a b\n")
    #expect(doc["again"] == [1, 2])
  }

  @Test func errorsNameFileLineAndColumn() throws {
    do {
      _ = try YAML.parseDocuments("a: 1\nb: [1, 2\nc: 3\n", file: "/tmp/broken.yaml")
      Issue.record("expected a YAML error")
    } catch let e as YAMLError {
      #expect(e.file == "/tmp/broken.yaml")
      #expect(e.line >= 2)
      #expect(e.column >= 1)
      #expect(e.description.hasPrefix("/tmp/broken.yaml:\(e.line):\(e.column): invalid YAML"))
    }
    do {
      _ = try YAML.parseDocuments("a: 1\n  b: 2\n", file: "indent.yaml")
      Issue.record("expected a YAML error")
    } catch let e as YAMLError {
      #expect(e.line == 2)
    }
  }

  @Test func duplicateKeysAreRejected() {
    #expect(throws: YAMLError.self) { try YAML.parse("a: 1\na: 2\n", file: "dup.yaml") }
  }

  @Test func emptyInputHasNoDocuments() throws {
    #expect(try YAML.parseDocuments("", file: "e").isEmpty)
    #expect(try YAML.parseDocuments("---\n", file: "e").isEmpty)
  }

  @Test func jsonIsYAML() throws {
    let doc = try YAML.parse(#"{"a": [1, 2.5, "x", null, true], "b": {"c": "d"}}"#, file: "j")
    #expect(doc == ["a": [1, 2.5, "x", nil, true], "b": ["c": "d"]])
  }
}
