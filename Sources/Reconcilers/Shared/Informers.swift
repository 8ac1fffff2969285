import KubeCore
import KubeRuntime

extension InformerRegistry {
  /// The label selector of everything the controller creates.
  public static let managedSelector = "\(ChildLabels.managedBy)=\(ChildLabels.controllerName)"

  /// The one informer of the controller's own objects of `resource` (labelled managed-by=botrt-controller) in all
  /// namespaces: the policies', plans' and drills' Jobs and Pods, shared by every controller that follows them.
  public func managed(_ resource: ResourceDescriptor) -> SharedInformer<Unstructured> {
    informer(resource, namespace: nil, labelSelector: Self.managedSelector)
  }

  /// The caches `ExistingLabels` looks in: the controller's Jobs and NetworkPolicies, and the Secrets (metadata) of
  /// `secretsNamespace` (nil: all namespaces), as the controllers watch them.
  public func ownerLabelCaches(secretsNamespace: String?) -> [ResourceDescriptor: Store<Unstructured>] {
    [
      ResourceDescriptor.jobs: managed(.jobs).store, .networkPolicies: managed(.networkPolicies).store,
      .secrets: informer(.secrets, namespace: secretsNamespace, metadataOnly: true, as: Unstructured.self).store,
    ]
  }
}
