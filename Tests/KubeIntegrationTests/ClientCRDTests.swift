import Foundation
import KubeClient
import KubeCore
import Testing

@Suite(.serialized) struct ClientCRDTests {
  @Test func customResourceCRUDAndStatusSubresource() async throws {
    let client = try ClientEnv.client()
    let group = "t\(String(UInt32.random(in: 0...UInt32.max), radix: 36)).client.botrt.io"
    let crdName = "widgets.\(group)"
    let crd = try YAML.parse(
      """
      apiVersion: apiextensions.k8s.io/v1
      kind: CustomResourceDefinition
      metadata:
        name: \(crdName)
      spec:
        group: \(group)
        scope: Namespaced
        names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
        versions:
        - name: v1
          served: true
          storage: true
          subresources:
            status: {}
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  properties:
                    size: {type: integer, minimum: 1}
                    color: {type: string, enum: [red, blue]}
                status:
                  type: object
                  properties:
                    phase: {type: string}
                    observedGeneration: {type: integer}
      """, file: "widget-crd.yaml")
    _ = try await client.create(.customResourceDefinitions, namespace: nil, Unstructured(crd))
    do {
      try await eventually("CRD \(crdName) to be Established") {
        let got = try await client.get(.customResourceDefinitions, namespace: nil, name: crdName, as: Unstructured.self)
        let conditions = got.status?["conditions"]?.arrayValue ?? []
        return conditions.contains { $0["type"] == "Established" && $0["status"] == "True" }
      }
      try await eventually("widgets.\(group) to be served") {
        client.invalidateDiscovery()
        return try await client.isServed(group: group, version: "v1", resource: "widgets")
      }
      let widgets = try #require(try await client.discoverResource(group: group, version: "v1", resource: "widgets"))
      #expect(widgets.kind == "Widget")
      #expect(widgets.namespaced)
      #expect(try await client.resources(groupVersion: "\(group)/v1").contains { $0.name == "widgets/status" })
      try await withTestNamespace("kc-crd", client: client) { ns in
        try await exercise(client, widgets, ns)
      }
    } catch {
      try await client.delete(.customResourceDefinitions, namespace: nil, name: crdName)
      throw error
    }
    try await client.delete(.customResourceDefinitions, namespace: nil, name: crdName)
  }

  private func exercise(_ client: KubeClient, _ widgets: ResourceDescriptor, _ ns: String) async throws {
    let body: JSONValue = [
      "apiVersion": .string(widgets.apiVersion), "kind": "Widget",
      "metadata": ["name": "w1", "namespace": .string(ns)],
      "spec": ["size": 1, "color": "red"],
      "status": ["phase": "IgnoredOnCreate"],
    ]
    let created = try await client.create(widgets, namespace: ns, Unstructured(body))
    #expect(created.spec?["size"] == 1)
    #expect(created.status?["phase"] == nil)
    #expect(created.metadata.generation == 1)

    // Status through the status subresource (PUT): spec changes there are ignored.
    var withStatus = created
    withStatus["status"] = ["phase": "Ready", "observedGeneration": 1]
    withStatus["spec"] = ["size": 99, "color": "blue"]
    let afterStatus = try await client.replace(
      widgets, namespace: ns, name: "w1", subresource: "status", withStatus)
    #expect(afterStatus.status?["phase"] == "Ready")
    #expect(afterStatus.spec?["size"] == 1)
    #expect(afterStatus.metadata.generation == 1)

    // Spec through the main resource: status changes there are ignored; generation moves.
    let patched = try await client.patch(
      widgets, namespace: ns, name: "w1", .merge(["spec": ["size": 2], "status": ["phase": "Nope"]]),
      as: Unstructured.self)
    #expect(patched.spec?["size"] == 2)
    #expect(patched.status?["phase"] == "Ready")
    #expect(patched.metadata.generation == 2)

    // Server-side apply of status, and a merge patch of status.
    let statusIntent: JSONValue = [
      "apiVersion": .string(widgets.apiVersion), "kind": "Widget",
      "metadata": ["name": "w1", "namespace": .string(ns)],
      "status": ["phase": "Applied", "observedGeneration": 2],
    ]
    let applied = try await client.apply(
      widgets, namespace: ns, name: "w1", subresource: "status", Unstructured(statusIntent),
      fieldManager: "botrt-test", force: true)
    #expect(applied.status?["phase"] == "Applied")
    #expect(applied.status?["observedGeneration"] == 2)
    let merged = try await client.patch(
      widgets, namespace: ns, name: "w1", subresource: "status", .merge(["status": ["phase": "Merged"]]),
      as: Unstructured.self)
    #expect(merged.status?["phase"] == "Merged")
    let fetchedStatus = try await client.get(
      widgets, namespace: ns, name: "w1", subresource: "status", as: Unstructured.self)
    #expect(fetchedStatus.status?["phase"] == "Merged")

    // Schema validation names the field.
    do {
      _ = try await client.patch(
        widgets, namespace: ns, name: "w1", .merge(["spec": ["color": "green"]]), as: Unstructured.self)
      Issue.record("expected Invalid")
    } catch let e as KubeError {
      #expect(e.isInvalid)
      #expect(e.apiError?.causes.contains { $0.field == "spec.color" } == true)
    }

    let list = try await client.list(widgets, namespace: ns, as: Unstructured.self)
    #expect(list.items.map(\.name) == ["w1"])
    try await client.delete(widgets, namespace: ns, name: "w1")
    do {
      _ = try await client.get(widgets, namespace: ns, name: "w1", as: Unstructured.self)
      Issue.record("expected NotFound")
    } catch let e as KubeError {
      #expect(e.isNotFound)
    }
  }
}
