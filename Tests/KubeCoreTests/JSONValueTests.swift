import Foundation
import Testing

@testable import KubeCore

@Suite struct JSONValueTests {
  @Test func keepsIntegersExactAndDistinguishesDoubles() throws {
    let v = try JSONValue(
      jsonData: Data(#"{"big":9007199254740993,"f":1.5,"b":true,"n":null,"s":"x","a":[1,"2"]}"#.utf8))
    #expect(v["big"] == .int(9_007_199_254_740_993))
    #expect(v["f"] == .double(1.5))
    #expect(v["b"] == .bool(true))
    #expect(v["n"] == .null)
    #expect(v["s"]?.stringValue == "x")
    #expect(v["a"]?[1] == .string("2"))
    #expect(v["missing"] == nil)
    #expect(v.jsonString == #"{"a":[1,"2"],"b":true,"big":9007199254740993,"f":1.5,"n":null,"s":"x"}"#)
  }

  @Test func subscriptSetAndPath() {
    var v: JSONValue = ["metadata": ["name": "a"]]
    v["spec"] = ["replicas": 3]
    #expect(v[path: "metadata", "name"] == "a")
    #expect(v[path: "spec", "replicas"]?.intValue == 3)
    v["metadata"] = nil
    #expect(v["metadata"] == nil)
  }

  @Test func mergePatchDeletesWithNull() {
    let base: JSONValue = ["a": 1, "b": ["c": 2, "d": 3]]
    let patched = base.mergePatched(with: ["a": nil, "b": ["c": 5]])
    #expect(patched == ["b": ["c": 5, "d": 3]])
  }

  @Test func roundTripsTypedObjects() throws {
    let cm = ConfigMap(metadata: ObjectMeta(name: "x", namespace: "ns", labels: ["a": "b"]), data: ["k": "v"])
    let v = try JSONValue(encoding: cm)
    #expect(v["apiVersion"] == "v1")
    #expect(v["kind"] == "ConfigMap")
    #expect(v[path: "metadata", "labels", "a"] == "b")
    let back = try v.decode(as: ConfigMap.self)
    #expect(back == cm)
  }

  @Test func listItemsWithoutKindDecode() throws {
    let json =
      #"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"tok"},"#
      + #""items":[{"metadata":{"name":"a","namespace":"n","creationTimestamp":"2024-01-02T03:04:05Z"},"#
      + #""data":{"k":"v"}}]}"#
    let list = try KubeJSON.decoder().decode(KubeList<ConfigMap>.self, from: Data(json.utf8))
    #expect(list.metadata.continueToken == "tok")
    #expect(list.items[0].kind == "ConfigMap")
    #expect(list.items[0].apiVersion == "v1")
    #expect(list.items[0].metadata.creationTimestamp == Date(timeIntervalSince1970: 1_704_164_645))
  }

  @Test func managedFieldsCanBeStripped() throws {
    let json = Data(
      (#"{"metadata":{"name":"a","labels":{"x":"y"},"managedFields":[{"manager":"m","fieldsV1":{"f:data":{}}}],"#
        + #""deletionTimestamp":"2024-01-02T03:04:05.5Z","finalizers":["f"]}}"#).utf8)
    let full = try KubeJSON.decoder().decode(ConfigMap.self, from: json)
    #expect(full.metadata.managedFields?[0]?["manager"] == "m")
    #expect(full.metadata.managedFields?[0]?[path: "fieldsV1", "f:data"] == .object([:]))
    #expect(full.metadata.deletionTimestamp == Date(timeIntervalSince1970: 1_704_164_645.5))
    #expect(full.metadata.isDeleting)
    #expect(full.metadata.hasFinalizer("f"))
    let stripped = try KubeJSON.decoder(stripManagedFields: true).decode(ConfigMap.self, from: json)
    #expect(stripped.metadata.managedFields == nil)
    #expect(stripped.metadata.labels == ["x": "y"])
  }

  @Test func decodesEveryJSONKind() throws {
    let v = try JSONValue(jsonData: Data(#"[{},[],"",0,-1.25,false,null,{"a":[{"b":null}]}]"#.utf8))
    #expect(v == [.object([:]), .array([]), "", 0, -1.25, false, nil, ["a": [["b": nil]]]])
  }

  @Test func unstructuredKeepsUnknownMetadataFields() throws {
    var u = try JSONValue(
      jsonData: Data(#"{"apiVersion":"x/v1","kind":"K","metadata":{"name":"a","selfLink":"/s"}}"#.utf8)
    )
    .decode(as: Unstructured.self)
    var m = u.metadata
    m.labels = ["l": "1"]
    u.metadata = m
    #expect(u.body[path: "metadata", "selfLink"] == "/s")
    #expect(u.body[path: "metadata", "labels", "l"] == "1")
    #expect(u.apiVersion == "x/v1")
  }
}

@Suite struct DateTests {
  @Test func parsesRFC3339Variants() {
    #expect(KubeJSON.parseDate("1970-01-01T00:00:00Z") == Date(timeIntervalSince1970: 0))
    #expect(KubeJSON.parseDate("2024-02-29T12:00:00.5Z") == Date(timeIntervalSince1970: 1_709_208_000.5))
    #expect(KubeJSON.parseDate("2024-02-29T14:00:00+02:00") == Date(timeIntervalSince1970: 1_709_208_000))
    #expect(KubeJSON.parseDate("2024-02-29 12:00") == nil)
    #expect(KubeJSON.parseDate("2024-13-01T00:00:00Z") == nil)
  }

  @Test func formatsWithMicroseconds() {
    #expect(KubeJSON.formatDate(Date(timeIntervalSince1970: 1_709_208_000.25)) == "2024-02-29T12:00:00.250000Z")
    #expect(KubeJSON.formatDate(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000000Z")
  }
}

@Suite struct ConditionTests {
  @Test func transitionTimeChangesOnlyWithStatus() {
    var cs: [Condition] = []
    let t0 = Date(timeIntervalSince1970: 1000.7)
    do {
      let changed = cs.setCondition(type: "Ready", status: .false, reason: "Pending", message: "waiting", now: t0)
      #expect(changed)
    }
    #expect(cs[0].lastTransitionTime == Date(timeIntervalSince1970: 1000))
    // Same status, new message: time kept.
    do {
      let changed = cs.setCondition(type: "Ready", status: .false, reason: "Pending", message: "still", now: t0 + 50)
      #expect(changed)
    }
    #expect(cs[0].lastTransitionTime == Date(timeIntervalSince1970: 1000))
    #expect(cs[0].message == "still")
    // Nothing changed: reports false.
    do {
      let changed = cs.setCondition(type: "Ready", status: .false, reason: "Pending", message: "still", now: t0 + 60)
      #expect(!changed)
    }
    // Status flips: time moves.
    do {
      let changed = cs.setCondition(
        type: "Ready", status: .true, reason: "Done", message: "", observedGeneration: 3, now: t0 + 100)
      #expect(changed)
    }
    #expect(cs[0].lastTransitionTime == Date(timeIntervalSince1970: 1100))
    #expect(cs.isTrue("Ready"))
    #expect(cs.condition("Ready")?.observedGeneration == 3)
    #expect(cs.count == 1)
  }
}

@Suite struct StatusTests {
  @Test func decodesInvalidWithCauses() throws {
    let json =
      #"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#
      + #""message":"ConfigMap \"x\" is invalid: data[bad key]: Invalid value","reason":"Invalid","#
      + #""details":{"name":"x","kind":"ConfigMap","#
      + #""causes":[{"reason":"FieldValueInvalid","message":"Invalid value","field":"data[bad key]"}]},"code":422}"#
    let s = try KubeJSON.decoder().decode(Status.self, from: Data(json.utf8))
    #expect(s.typedReason == .invalid)
    #expect(s.code == 422)
    #expect(s.details?.causes?.first?.field == "data[bad key]")
  }

  @Test func reasonFallsBackToCode() {
    #expect(StatusReason(reason: nil, code: 410) == .gone)
    #expect(StatusReason(reason: "Expired", code: 410) == .expired)
    #expect(StatusReason(reason: "Weird", code: 429) == .tooManyRequests)
  }
}
