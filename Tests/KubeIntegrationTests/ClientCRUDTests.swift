import Foundation
import KubeClient
import KubeCore
import Testing

@Suite(.serialized) struct ClientCRUDTests {
  @Test func configMapLifecycle() async throws {
    let client = try ClientEnv.client()
    try await withTestNamespace("kc-crud", client: client) { ns in
      let created = try await client.create(
        ConfigMap(metadata: ObjectMeta(name: "cm", namespace: ns, labels: ["app": "backup-service"]), data: ["a": "1"]))
      let uid = try #require(created.metadata.uid)
      #expect(created.metadata.resourceVersion != nil)
      #expect(created.metadata.creationTimestamp != nil)

      // Create twice: AlreadyExists.
      do {
        _ = try await client.create(ConfigMap(metadata: ObjectMeta(name: "cm", namespace: ns)))
        Issue.record("expected AlreadyExists")
      } catch let e as KubeError {
        #expect(e.isAlreadyExists)
        #expect(e.code == 409)
      }

      // Get and update (replace).
      var got = try await client.get(ConfigMap.self, namespace: ns, name: "cm")
      #expect(got.data == ["a": "1"])
      got.data?["b"] = "2"
      let updated = try await client.update(got)
      #expect(updated.data == ["a": "1", "b": "2"])

      // A stale resourceVersion: Conflict.
      do {
        _ = try await client.update(got)
        Issue.record("expected Conflict")
      } catch let e as KubeError {
        #expect(e.isConflict)
      }

      // Merge patch (null deletes) and JSON patch with a test op.
      let merged = try await client.patch(
        ConfigMap.self, namespace: ns, name: "cm", .merge(["data": ["a": nil, "c": "3"]]))
      #expect(merged.data == ["b": "2", "c": "3"])
      let jsonPatched = try await client.patch(
        ConfigMap.self, namespace: ns, name: "cm",
        .json([.test(path: "/data/b", value: "2"), .replace(path: "/data/b", value: "22")]))
      #expect(jsonPatched.data?["b"] == "22")
      do {
        _ = try await client.patch(
          ConfigMap.self, namespace: ns, name: "cm",
          .json([.test(path: "/data/b", value: "wrong"), .remove(path: "/data/b")]))
        Issue.record("a failing test op must reject the patch")
      } catch let e as KubeError {
        #expect(e.code == 422 || e.code == 409 || e.code == 500)
      }
      #expect(try await client.get(ConfigMap.self, namespace: ns, name: "cm").data?["b"] == "22")

      // Strategic merge patch on a built-in kind.
      let strategic = try await client.patch(
        ConfigMap.self, namespace: ns, name: "cm", .strategic(["metadata": ["labels": ["tier": "x"]]]))
      #expect(strategic.metadata.labels == ["app": "backup-service", "tier": "x"])

      // Invalid data key: the cause names the field.
      do {
        _ = try await client.create(ConfigMap(metadata: ObjectMeta(name: "bad", namespace: ns), data: ["bad key": "v"]))
        Issue.record("expected Invalid")
      } catch let e as KubeError {
        #expect(e.isInvalid)
        #expect(e.apiError?.causes.contains { ($0.field ?? "").contains("data[bad key]") } == true)
      }

      // Delete with a wrong uid precondition: Conflict; with the right one: gone.
      do {
        try await client.delete(
          ConfigMap.self, namespace: ns, name: "cm", options: DeleteOptions(preconditions: Preconditions(uid: "nope")))
        Issue.record("expected a precondition failure")
      } catch let e as KubeError {
        #expect(e.isConflict)
      }
      let rv = try #require(try await client.get(ConfigMap.self, namespace: ns, name: "cm").metadata.resourceVersion)
      try await client.delete(
        ConfigMap.self, namespace: ns, name: "cm",
        options: DeleteOptions(
          propagationPolicy: .background, preconditions: Preconditions(uid: uid, resourceVersion: rv)))
      do {
        _ = try await client.get(ConfigMap.self, namespace: ns, name: "cm")
        Issue.record("expected NotFound")
      } catch let e as KubeError {
        #expect(e.isNotFound)
        #expect(e.description.contains("configmaps"))
      }
    }
  }

  @Test func unstructuredCallsAndSecrets() async throws {
    let client = try ClientEnv.client()
    try await withTestNamespace("kc-unstr", client: client) { ns in
      let docs = try YAML.parseDocuments(
        """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: from-yaml
          namespace: \(ns)
        data:
          enabled: "true"
          count: "3"
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: s, namespace: \(ns)}
        stringData: {password: hunter2}
        """, file: "inline.yaml")
      let cm = try await client.create(
        .configMaps, namespace: ns, Unstructured(docs[0]))
      #expect(cm.body[path: "data", "enabled"] == "true")
      _ = try await client.create(.secrets, namespace: ns, Unstructured(docs[1]))
      let secret = try await client.get(Secret.self, namespace: ns, name: "s")
      #expect(secret.data?["password"] == Data("hunter2".utf8))
      let list = try await client.list(.configMaps, namespace: ns, as: Unstructured.self)
      #expect(list.items.contains { $0.metadata.name == "from-yaml" })
      let deleted = try await client.delete(.configMaps, namespace: ns, name: "from-yaml")
      #expect(deleted["kind"] != nil)

      // Delete a collection by label.
      for i in 0..<3 {
        _ = try await client.create(
          ConfigMap(metadata: ObjectMeta(name: "sweep-\(i)", namespace: ns, labels: ["sweep": "yes"])))
      }
      _ = try await client.create(
        ConfigMap(metadata: ObjectMeta(name: "keep", namespace: ns, labels: ["kept": "yes"]), data: ["a": "1"]))
      try await client.deleteCollection(
        .configMaps, namespace: ns, listOptions: ListOptions(labelSelector: "sweep=yes"))
      let left = try await client.list(ConfigMap.self, namespace: ns).items.map(\.name).filter {
        $0 != "kube-root-ca.crt"
      }
      #expect(left == ["keep"])

      // Re-applying an object read back from the server (with managedFields and resourceVersion) works.
      let keep = try await client.get(ConfigMap.self, namespace: ns, name: "keep")
      #expect(keep.metadata.managedFields != nil)
      var reapply = keep
      reapply.data = ["applied": "yes"]
      let reapplied = try await client.apply(reapply, fieldManager: "botrt-test")
      #expect(reapplied.data?["applied"] == "yes")
    }
  }

  @Test func paginatedListOf1200ConfigMaps() async throws {
    let client = try ClientEnv.client()
    try await withTestNamespace("kc-page", client: client) { ns in
      let total = 1200
      try await withThrowingTaskGroup(of: Void.self) { group in
        var next = 0
        func add() {
          let i = next
          next += 1
          group.addTask {
            _ = try await client.create(
              ConfigMap(
                metadata: ObjectMeta(name: String(format: "cm-%04d", i), namespace: ns, labels: ["batch": "page"]),
                data: ["i": String(i)]))
          }
        }
        for _ in 0..<16 { add() }
        while try await group.next() != nil {
          if next < total { add() }
        }
      }
      var pageSizes: [Int] = []
      var names: [String] = []
      for try await page in client.pages(
        .configMaps, namespace: ns, options: ListOptions(labelSelector: "batch=page", limit: 500), as: ConfigMap.self)
      {
        pageSizes.append(page.items.count)
        names += page.items.map(\.name)
      }
      #expect(pageSizes == [500, 500, 200])
      #expect(Set(names).count == total)
      // Not only ours: the controller-manager adds kube-root-ca.crt to every namespace.
      let all = try await client.listAll(
        ConfigMap.self, namespace: ns, options: ListOptions(labelSelector: "batch=page", limit: 500))
      #expect(all.items.count == total)
      #expect(all.items.first?.apiVersion == "v1")
      #expect(all.metadata.resourceVersion != nil)
    }
  }

  @Test func serverSideApplyConflict() async throws {
    let client = try ClientEnv.client()
    try await withTestNamespace("kc-ssa", client: client) { ns in
      let first = ConfigMap(metadata: ObjectMeta(name: "shared", namespace: ns), data: ["owner": "alpha"])
      let applied = try await client.apply(first, fieldManager: "alpha")
      #expect(applied.data?["owner"] == "alpha")
      // Re-applying the same intent is a no-op.
      let again = try await client.apply(first, fieldManager: "alpha")
      #expect(again.metadata.resourceVersion == applied.metadata.resourceVersion)

      let second = ConfigMap(metadata: ObjectMeta(name: "shared", namespace: ns), data: ["owner": "beta"])
      do {
        _ = try await client.apply(second, fieldManager: "beta")
        Issue.record("expected a conflict")
      } catch let e as KubeError {
        #expect(e.isConflict)
        let fields = e.apiError?.causes.compactMap(\.field) ?? []
        #expect(fields.contains(".data.owner"))
        #expect(e.description.contains("alpha"))
      }
      let forced = try await client.apply(second, fieldManager: "beta", force: true)
      #expect(forced.data?["owner"] == "beta")
      let managers = forced.metadata.managedFields?.arrayValue?.compactMap { $0["manager"]?.stringValue } ?? []
      #expect(managers.contains("beta"))
    }
  }
}
