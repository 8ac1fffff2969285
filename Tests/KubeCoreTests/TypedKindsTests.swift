import Foundation
import Testing

@testable import KubeCore

/// The typed built-in kinds keep what they do not model: a live object decoded and encoded again is the same JSON.
@Suite struct TypedKindsTests {
  /// A Job as the apiserver returns it: defaulted fields, status, managedFields, members nobody models.
  static let liveJob = #"""
    {"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"p-run-1","namespace":"botrt-backup","uid":"u-1",
    "resourceVersion":"42","generation":1,"creationTimestamp":"2026-01-02T03:04:05Z","selfLink":"/apis/x",
    "labels":{"a":"b"},"managedFields":[{"manager":"botrt-controller","operation":"Apply"}],
    "ownerReferences":[{"apiVersion":"dr.botrt.io/v1","kind":"BackupPolicy","name":"p","uid":"o","controller":true}]},
    "spec":{"backoffLimit":1,"completions":1,"parallelism":1,"completionMode":"NonIndexed","suspend":false,
    "selector":{"matchLabels":{"batch.kubernetes.io/controller-uid":"u-1"}},
    "template":{"metadata":{"creationTimestamp":null,"labels":{"a":"b"}},"spec":{
    "restartPolicy":"Never","dnsPolicy":"ClusterFirst","schedulerName":"default-scheduler",
    "terminationGracePeriodSeconds":30,"automountServiceAccountToken":false,"serviceAccountName":"sa",
    "securityContext":{"runAsNonRoot":true,"runAsUser":65532,"fsGroup":65532,"seccompProfile":{"type":"RuntimeDefault"},
    "supplementalGroups":[5]},
    "tolerations":[{"key":"k","operator":"Exists","effect":"NoSchedule"}],
    "volumes":[{"name":"tmp","emptyDir":{}},{"name":"s","secret":{"secretName":"x","defaultMode":420}},
    {"name":"c","configMap":{"name":"cm"}}],
    "containers":[{"name":"engine","image":"e:1","imagePullPolicy":"IfNotPresent","command":["/e"],"args":["a"],
    "env":[{"name":"A","value":"1"},{"name":"B","valueFrom":{"secretKeyRef":{"name":"s","key":"k","optional":true}}},
    {"name":"C","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.name"}}}],
    "volumeMounts":[{"name":"tmp","mountPath":"/tmp","mountPropagation":"None"}],
    "resources":{"requests":{"cpu":"100m"},"claims":[{"name":"gpu"}]},
    "securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]},"privileged":false},
    "terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}]}}},
    "status":{"active":1,"startTime":"2026-01-02T03:04:06Z","ready":0,
    "conditions":[{"type":"Complete","status":"True","lastProbeTime":"2026-01-02T03:05:00Z"}]}}
    """#

  @Test func aLiveJobEncodesBackUnchanged() throws {
    let json = try JSONValue(jsonData: Data(Self.liveJob.utf8))
    let job = try json.decode(as: Job.self)
    #expect(job.metadata.name == "p-run-1")
    #expect(job.spec?.backoffLimit == 1)
    let pod = try #require(job.spec?.template.spec)
    #expect(pod.containers.first?.env?[1].valueFrom?.secretKeyRef?.key == "k")
    #expect(pod.containers.first?.env?[2].valueFrom?.unknownFields.members["fieldRef"] != nil)
    #expect(pod.volumes?[1].secret?.secretName == "x")
    #expect(pod.securityContext?.seccompProfile?.type == "RuntimeDefault")
    #expect(job.json == json)
    #expect(try JSONValue(encoding: job) == json)
    // Through Codable with bytes, too.
    let again = try KubeJSON.decoder().decode(Job.self, from: try KubeJSON.encoder().encode(job))
    #expect(again == job)
    #expect(again.json == json)
  }

  @Test func aChangedFieldIsWrittenAndTheRestKept() throws {
    let json = try JSONValue(jsonData: Data(Self.liveJob.utf8))
    var job = try json.decode(as: Job.self)
    job.spec?.backoffLimit = 3
    job.metadata.labels?["c"] = "d"
    let out = job.json
    #expect(out[path: "spec", "backoffLimit"] == 3)
    #expect(out[path: "spec", "completionMode"] == "NonIndexed")
    #expect(out[path: "metadata", "labels", "c"] == "d")
    #expect(out[path: "metadata", "uid"] == "u-1")
    #expect(out["status"] == json["status"])
  }

  @Test func aMemberOfTheWrongTypeIsKeptAsWritten() throws {
    let json: JSONValue = ["name": "x", "readOnly": "yes", "mountPath": .null]
    let m = try json.decode(as: VolumeMount.self)
    #expect(m.name == "x" && m.readOnly == nil && m.mountPath == "")
    #expect(m.json == json)
  }

  @Test func unsetFieldsAreLeftOutAndRequiredOnesWritten() throws {
    let np = NetworkPolicy(
      metadata: ObjectMeta(name: "n", namespace: "ns"), spec: NetworkPolicySpec(policyTypes: ["Ingress"]))
    #expect(
      np.json.jsonString
        == #"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"n","namespace":"ns"},"#
        + #""spec":{"podSelector":{},"policyTypes":["Ingress"]}}"#)
    let c = Container(name: "c", env: [.secret("A", secret: "s", key: "k")], terminationMessagePolicy: "File")
    #expect(
      c.json.jsonString
        == #"{"env":[{"name":"A","valueFrom":{"secretKeyRef":{"key":"k","name":"s"}}}],"name":"c","#
        + #""terminationMessagePolicy":"File"}"#)
  }

  @Test func liveNetworkPoliciesAndRBACRoundTrip() throws {
    let np: JSONValue = try JSONValue(
      jsonData: Data(
        #"""
        {"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"n","generation":2},
        "spec":{"podSelector":{"matchExpressions":[{"key":"a","operator":"In","values":["b"]}]},
        "policyTypes":["Egress"],"egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0/8","except":["10.1.0.0/16"]}},
        {"namespaceSelector":{"matchLabels":{"x":"y"}},"podSelector":{}}],
        "ports":[{"protocol":"TCP","port":443},{"port":"https","endPort":9000}]}]},"status":{}}
        """#.utf8))
    let typed = try np.decode(as: NetworkPolicy.self)
    #expect(typed.spec?.egress?.first?.ports?[1].port == .string("https"))
    #expect(typed.json == np)
    let rb: JSONValue = [
      "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": ["name": "r"],
      "roleRef": ["apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"],
      "subjects": [["kind": "ServiceAccount", "name": "sa", "namespace": "ns"]],
    ]
    #expect(try rb.decode(as: RoleBinding.self).json == rb)
    let cj: JSONValue = [
      "apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": ["name": "c"],
      "spec": [
        "schedule": "0 * * * *", "timeZone": "UTC",
        "jobTemplate": ["metadata": ["labels": ["a": "b"]], "spec": ["template": ["spec": ["containers": []]]]],
      ],
      "status": ["lastScheduleTime": "2026-01-01T00:00:00Z"],
    ]
    let cron = try cj.decode(as: CronJob.self)
    #expect(cron.apiVersion == "batch/v1beta1" && cron.spec?.schedule == "0 * * * *")
    #expect(cron.json == cj)
  }
}

/// The typed status of Jobs and Pods: what the reconcilers read back from a run (state, times, the engine's result
/// in a termination message), every other member kept.
@Suite struct WorkloadStatusTests {
  @Test func aLiveJobsStatusIsTyped() throws {
    let json = try JSONValue(jsonData: Data(TypedKindsTests.liveJob.utf8))
    let job = try json.decode(as: Job.self)
    let status = try #require(job.status)
    #expect(status.active == 1)
    #expect(status.startDate == KubeJSON.parseDate("2026-01-02T03:04:06Z"))
    #expect(status.complete?.type == "Complete")
    #expect(status.isFinished)
    #expect(status.failedCondition == nil)
    // Unmodeled members stay: "ready", and the condition's lastProbeTime.
    #expect(status.unknownFields.members["ready"] == .int(0))
    #expect(status.conditions?[0].unknownFields.members["lastProbeTime"] != nil)
    #expect(job.json == json)
    // Only the status decoded, from a body as a cache holds it.
    #expect(JobStatus.of(json) == status)
    #expect(JobStatus.of(["metadata": ["name": "x"]]) == JobStatus())
  }

  @Test func aFailedJobSaysWhy() {
    let job: JSONValue = [
      "status": [
        "conditions": [
          ["type": "Complete", "status": "False"],
          [
            "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the limit",
            "lastTransitionTime": "2026-01-02T03:05:00Z",
          ],
        ]
      ]
    ]
    let s = JobStatus.of(job)
    #expect(s.complete == nil)
    #expect(s.failedCondition?.summary == "BackoffLimitExceeded: Job has reached the limit")
    #expect(s.failedCondition?.lastTransitionDate == KubeJSON.parseDate("2026-01-02T03:05:00Z"))
    #expect(s.isFinished)
    #expect(!JobStatus.of(["status": ["active": 1]]).isFinished)
  }

  @Test func aPodsTerminatedContainersAreTyped() throws {
    let json: JSONValue = [
      "apiVersion": "v1", "kind": "Pod", "metadata": ["name": "p"],
      "status": [
        "phase": "Failed", "qosClass": "Burstable",
        "initContainerStatuses": [
          ["name": "restore", "state": ["terminated": ["exitCode": 0, "message": "{\"ok\":true}"]]]
        ],
        "containerStatuses": [
          [
            "name": "backup", "restartCount": 0, "imageID": "sha256:x",
            "state": [
              "terminated": [
                "exitCode": 12, "reason": "Error", "message": "{\"ok\":false}",
                "finishedAt": "2026-01-02T03:05:00Z",
              ]
            ],
          ],
          ["name": "dump", "state": ["running": ["startedAt": "2026-01-02T03:04:00Z"]]],
        ],
      ],
    ]
    let pod = try json.decode(as: Pod.self)
    let status = try #require(pod.status)
    #expect(status.isFinished)
    #expect(status.allContainerStatuses.map(\.name) == ["backup", "dump", "restore"])
    let t = try #require(status.containerStatuses?[0].terminated)
    #expect(t.exitCode32 == 12)
    #expect(t.reason == "Error")
    #expect(t.message == "{\"ok\":false}")
    #expect(t.finishedDate == KubeJSON.parseDate("2026-01-02T03:05:00Z"))
    #expect(status.containerStatuses?[1].terminated == nil)
    #expect(status.containerStatuses?[1].state?.unknownFields.members["running"] != nil)
    #expect(pod.json == json)
    #expect(PodStatus.of(json) == status)
    #expect(!PodStatus.of(["status": ["phase": "Running"]]).isFinished)
  }
}
