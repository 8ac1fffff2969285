import KubeCore
import KubeRuntime
import Logging

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

  /// A controller of `Object` in `namespace` (nil: all namespaces) that also reconciles an object when one of the
  /// Jobs or Pods it runs changes: the controller's own, shared with the other controllers, mapped back by `owner`.
  public func runsController<Object: KubeResource>(
    name: String, namespace: String?, workers: Int, logger: Logger, metrics: MetricsRegistry?,
    owner: @escaping KeyMapper<Unstructured>, reconcile: @escaping Controller<Object>.Reconcile
  ) -> Controller<Object> {
    let controller = Controller<Object>(
      name: name, informer: informer(Object.self, namespace: namespace), options: ControllerOptions(workers: workers),
      logger: logger, metrics: metrics, reconcile: reconcile)
    for resource in [ResourceDescriptor.jobs, .pods] { controller.watches(managed(resource), mapper: owner) }
    return controller
  }
}
