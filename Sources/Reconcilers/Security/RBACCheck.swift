import DRAPI
import Foundation
import KubeCore

/// What the builders declare for a policy's backup ServiceAccount (`BackupPolicyChildren.declaredRBAC`).
public struct DeclaredRBAC: Sendable, Hashable {
  /// The workload namespace the ServiceAccount, Role and RoleBinding live in.
  public var namespace: String
  public var serviceAccount: String
  public var role: String
  public var roleBinding: String
  /// The Role's rules.
  public var rules: [JSONValue]
  /// The RoleBinding of a backup run's object reads (spec.objects), when the policy has them: it may bind the
  /// ClusterRole `KubeObjects.readerClusterRole` (in the policy's namespace, which is the workload namespace when
  /// the policy's pods run there).
  public var objectsBinding: String? = nil

  public init(namespace: String, serviceAccount: String, role: String, roleBinding: String, rules: [JSONValue]) {
    self.namespace = namespace
    self.serviceAccount = serviceAccount
    self.role = role
    self.roleBinding = roleBinding
    self.rules = rules
  }

  /// Nil when the observed RBAC grants the backup ServiceAccount exactly what is declared; else what is wider.
  /// `role` is the observed Role of the declared name (nil: absent, which grants nothing and is within);
  /// `bindings` are the observed RoleBindings of the workload namespace. Only the declared RoleBinding may name the
  /// ServiceAccount, and only with the declared Role; the Role's rules must equal the declared ones.
  /// (ClusterRoleBindings are not observed: the controller is not allowed to list them.)
  public func widerThanDeclared(role observed: JSONValue?, bindings: [JSONValue]) -> String? {
    if let observed, (observed["rules"]?.arrayValue ?? []) != rules {
      return "Role \(namespace)/\(role) has rules other than the declared ones"
    }
    for b in bindings {
      let subjects = b["subjects"]?.arrayValue ?? []
      let names = subjects.contains {
        $0["kind"] == "ServiceAccount" && $0["name"]?.stringValue == serviceAccount
          && ($0["namespace"]?.stringValue ?? namespace) == namespace
      }
      guard names else { continue }
      let name = b[path: "metadata", "name"]?.stringValue ?? "?"
      let ref = b["roleRef"]
      // A backup run's object reads (spec.objects): the reader ClusterRole, under its declared name.
      if let objectsBinding, name == objectsBinding, ref?["kind"] == "ClusterRole",
        ref?["name"]?.stringValue == KubeObjects.readerClusterRole
      {
        continue
      }
      if name != roleBinding || ref?["kind"] != "Role" || ref?["name"]?.stringValue != role {
        return "RoleBinding \(namespace)/\(name) grants \(ref?["kind"]?.stringValue ?? "?") "
          + "'\(ref?["name"]?.stringValue ?? "?")' to the backup ServiceAccount \(serviceAccount)"
      }
    }
    return nil
  }
}
