import Foundation
import Testing

@testable import KubeCore

@Suite struct RequestBuilderTests {
  let cms = RequestBuilder(.configMaps)
  let crd = RequestBuilder(
    ResourceDescriptor(
      group: "dr.botrt.io", version: "v1alpha1", plural: "backuppolicies", kind: "BackupPolicy",
      namespaced: true))

  @Test func corePaths() throws {
    #expect(try cms.get(namespace: "ns", name: "a").pathAndQuery == "/api/v1/namespaces/ns/configmaps/a")
    #expect(try cms.list(namespace: nil).pathAndQuery == "/api/v1/configmaps")
    #expect(
      try RequestBuilder(.namespaces).get(namespace: nil, name: "kube-system").path == "/api/v1/namespaces/kube-system")
  }

  @Test func groupPathsAndSubresources() throws {
    let r = try crd.get(namespace: "ns", name: "p", subresource: "status")
    #expect(r.path == "/apis/dr.botrt.io/v1alpha1/namespaces/ns/backuppolicies/p/status")
    #expect(r.method == "GET")
    #expect(
      try RequestBuilder(.leases).list(namespace: "kube-system").path
        == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases")
  }

  @Test func listQueryIsEncoded() throws {
    let r = try cms.list(
      namespace: "ns",
      options: ListOptions(
        labelSelector: "app=backup-service,env in (a,b)", fieldSelector: "metadata.name!=x", limit: 500,
        continueToken: "abc+/=", resourceVersion: "0", resourceVersionMatch: "NotOlderThan"))
    #expect(
      r.pathAndQuery == "/api/v1/namespaces/ns/configmaps?labelSelector=app%3Dbackup-service%2Cenv%20in%20%28a%2Cb%29"
        + "&fieldSelector=metadata.name%21%3Dx&limit=500&continue=abc%2B%2F%3D&resourceVersion=0"
        + "&resourceVersionMatch=NotOlderThan")
    #expect(r.queryValue("limit") == "500")
  }

  @Test func watchQuery() throws {
    let r = try cms.watch(
      namespace: "ns",
      options: ListOptions(limit: 5, resourceVersion: "123", timeoutSeconds: 290, allowWatchBookmarks: true))
    #expect(r.isWatch)
    #expect(
      r.pathAndQuery
        == "/api/v1/namespaces/ns/configmaps?watch=true&resourceVersion=123&allowWatchBookmarks=true&timeoutSeconds=290"
    )
  }

  @Test func createAndReplace() throws {
    let c = try cms.create(
      namespace: "ns", body: Data("{}".utf8), options: WriteOptions(fieldManager: "botrt", dryRun: true))
    #expect(c.method == "POST")
    #expect(c.pathAndQuery == "/api/v1/namespaces/ns/configmaps?fieldManager=botrt&dryRun=All")
    #expect(c.contentType == "application/json")
    #expect(!c.isIdempotent)
    let u = try crd.replace(namespace: "ns", name: "p", subresource: "status", body: Data("{}".utf8))
    #expect(u.method == "PUT")
    #expect(u.path.hasSuffix("/backuppolicies/p/status"))
    #expect(u.isIdempotent)
  }

  @Test func patchContentTypes() throws {
    let merge = try cms.patch(namespace: "ns", name: "a", patch: .merge(["data": ["k": nil]]))
    #expect(merge.contentType == "application/merge-patch+json")
    #expect(String(decoding: merge.body!, as: UTF8.self) == #"{"data":{"k":null}}"#)
    let strategic = try cms.patch(namespace: "ns", name: "a", patch: .strategic(["data": ["k": "v"]]))
    #expect(strategic.contentType == "application/strategic-merge-patch+json")
    let json = try cms.patch(
      namespace: "ns", name: "a",
      patch: .json([.test(path: "/metadata/finalizers/0", value: "a/b"), .remove(path: "/metadata/finalizers/0")]))
    #expect(json.contentType == "application/json-patch+json")
    #expect(
      String(decoding: json.body!, as: UTF8.self)
        == #"[{"op":"test","path":"/metadata/finalizers/0","value":"a/b"},"#
        + #"{"op":"remove","path":"/metadata/finalizers/0"}]"#
    )
    let apply = try crd.patch(
      namespace: "ns", name: "p", subresource: "status", patch: .apply(["status": ["phase": "Ready"]]),
      options: WriteOptions(fieldManager: "botrt-controller", force: true))
    #expect(apply.contentType == "application/apply-patch+yaml")
    #expect(apply.pathAndQuery.hasSuffix("/backuppolicies/p/status?fieldManager=botrt-controller&force=true"))
  }

  @Test func applyNeedsFieldManagerAndForceNeedsApply() {
    #expect(throws: RequestBuildError.self) { try cms.patch(namespace: "ns", name: "a", patch: .apply([:])) }
    #expect(throws: RequestBuildError.self) {
      try cms.patch(namespace: "ns", name: "a", patch: .merge([:]), options: WriteOptions(force: true))
    }
  }

  @Test func deleteBody() throws {
    let d = try cms.delete(
      namespace: "ns", name: "a",
      options: DeleteOptions(
        propagationPolicy: .foreground, preconditions: Preconditions(uid: "u1", resourceVersion: "7")))
    #expect(d.method == "DELETE")
    let body = try JSONValue(jsonData: d.body!)
    #expect(body["propagationPolicy"] == "Foreground")
    #expect(body[path: "preconditions", "uid"] == "u1")
    #expect(body[path: "preconditions", "resourceVersion"] == "7")
    #expect(body["kind"] == "DeleteOptions")
  }

  @Test func scopeAndNameValidation() {
    #expect(throws: RequestBuildError.self) { try cms.get(namespace: nil, name: "a") }
    #expect(throws: RequestBuildError.self) { try cms.get(namespace: "ns", name: "a/b") }
    #expect(throws: RequestBuildError.self) { try cms.get(namespace: "ns", name: "..") }
    #expect(throws: RequestBuildError.self) { try RequestBuilder(.namespaces).get(namespace: "x", name: "a") }
    #expect(throws: RequestBuildError.self) { try cms.create(namespace: nil, body: Data()) }
  }

  @Test func encodesNonASCII() {
    #expect(KubeRequest.encode("a b/ü") == "a%20b%2F%C3%BC")
    #expect(JSONPatchOperation.escape("dr.botrt.io/finalizer~x") == "dr.botrt.io~1finalizer~0x")
  }
}
