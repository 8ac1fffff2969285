#!/usr/bin/env bash
# End to end: a namespace's Kubernetes objects, backed up with its claim and re-created in another namespace (issue
# 15 §2, BackupPolicy spec.objects and a RecoveryPlan restore step's into.objects), on the local node.
#   1. namespace SRC holds an application: claim `data` (a hostPath PersistentVolume of the node) with a file, a
#      ServiceAccount, a Secret, a ConfigMap, a Role and a RoleBinding to the ServiceAccount, a Service, and a
#      Deployment that mounts the claim, the ConfigMap and the Secret, whose readiness probe passes only when the
#      claim's file and the Secret's value are there; plus a ConfigMap labelled dr.botrt.io/exclude-from-backup;
#   2. a BackupPolicy (source.pvc data, objects: {}) backs them up: the backup pod's init container `objects`
#      (botrt-objects export, the only container with a ServiceAccount token) reports the objects it wrote, and the
#      run's RoleBinding to botrt-objects-reader is gone once the run ended;
#   3. namespace DST (allowing recoveries from SRC) is empty. A RecoveryPlan of SRC with targetNamespace DST restores
#      the claim (into.pvc with create: the claim is created from the recorded spec; the claim's files come back
#      without the snapshot's _kubernetes entry), then the objects (into.objects), then waits for the Deployment:
#      it becomes available in DST, so its pods found the restored claim, ConfigMap and Secret; the Secret and
#      ConfigMap hold the source's values, the RoleBinding's subject is DST's ServiceAccount, the Service got a
#      clusterIP of its own, and the excluded ConfigMap is not there;
#   4. the plan runs again: every object exists, none is created, the plan still succeeds;
#   5. a policy of the objects alone (source.objects, kinds ConfigMap and Secret): its backup pod runs in the backup
#      namespace and mounts no claim, the snapshot holds the _kubernetes entry alone, and a plan re-creates the
#      ConfigMap and the Secret (with the source's values) in a third namespace.
# Every Pod is started by the kubelet (hack/node/lib.sh); the controller runs on the host for the two namespaces.
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... hack/node/objects-e2e.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_FLOW=objects-e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
node_require
node_services_up
[[ -x "${BOTRT_ENGINE_BIN:-}" ]] || fail "BOTRT_ENGINE_BIN is not set to the built botrt-engine (it lists a snapshot)"

SRC="objects-src-$$"
DST="objects-dst-$$"
BACKUP_NS="botrt-backup-objects-$$"
BUCKET="botrt-objects-e2e-$$-$RANDOM"
WORK="$(mktemp -d /tmp/botrt-objects-e2e.XXXXXX)"
VOL_SRC="$(mktemp -d /var/tmp/botrt-objects-e2e-src.XXXXXX)"
VOL_DST="$(mktemp -d /var/tmp/botrt-objects-e2e-dst.XXXXXX)"
# The engine's user (65532) reads the backup and writes the restore; the application runs as it too.
chown 65532:65532 "$VOL_SRC" "$VOL_DST"
NODE_FLOW_WORK="$WORK"
NODE_FLOW_NAMESPACES+=("$SRC" "$DST" "$BACKUP_NS")
NODE_FLOW_PVS+=("botrt-objects-e2e-$$-src" "botrt-objects-e2e-$$-dst")
NODE_FLOW_PATHS+=("$WORK" "$VOL_SRC" "$VOL_DST")
cleanup() {
  local rc=$?
  node_flow_cleanup "$rc" "$SRC"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
ks() { kubectl -n "$SRC" "$@"; }
kd() { kubectl -n "$DST" "$@"; }

kubectl apply -f "$REPO/crds/" -f "$REPO/manifests/rbac/objects.yaml" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io >/dev/null
node_flow_bucket "$BUCKET"
node_flow_namespace "$SRC"
node_flow_namespace "$DST"
kubectl annotate namespace "$DST" "dr.botrt.io/recovery-allowed-from=$SRC" >/dev/null
# DST's admin lets objects restores re-create Roles and RoleBindings there (manifests/rbac/objects.yaml).
kubectl -n "$DST" create rolebinding botrt-objects-rbac --clusterrole=botrt-objects-rbac-restorer \
  --serviceaccount="$DST:botrt-objects-restore" >/dev/null
node_flow_secrets "$SRC"
node_controller "$WORK/controller.log" --metrics-address off --namespace "$SRC" --backup-namespace "$BACKUP_NS"

log "1. the application in $SRC: claim, ServiceAccount, Secret, ConfigMap, Role, RoleBinding, Service, Deployment"
node_hostpath_pv "botrt-objects-e2e-$$-src" "$SRC" data "$VOL_SRC"
# The restored claim in DST binds to a volume of its own.
node_hostpath_pv "botrt-objects-e2e-$$-dst" "$DST" data "$VOL_DST"
SECRET_VALUE="s3cr3t-$RANDOM-$RANDOM"
echo "restored data $$" >"$VOL_SRC/notes.txt"
chown 65532:65532 "$VOL_SRC/notes.txt"
ks apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, labels: {app: web}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: botrt-objects-e2e-$$-src
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, labels: {app: web}}
---
apiVersion: v1
kind: Secret
metadata: {name: web-secret, labels: {app: web}}
stringData: {password: "$SECRET_VALUE"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, labels: {app: web}}
data: {greeting: "hello from $SRC"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: scratch, labels: {app: web, dr.botrt.io/exclude-from-backup: "true"}}
data: {note: "not backed up"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: web-reader, labels: {app: web}}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web-reader, labels: {app: web}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web-reader}
subjects: [{kind: ServiceAccount, name: web, namespace: $SRC}]
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: web}}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      securityContext: {runAsUser: 65532, runAsGroup: 65532}
      containers:
      - name: web
        image: $APP_IMAGE
        command: ["sleep", "3600"]
        env:
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: web-secret, key: password}}
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: config, mountPath: /config}
        readinessProbe:
          exec:
            command: ["sh", "-c", "grep -q 'restored data' /data/notes.txt && test \"\$PASSWORD\" = '$SECRET_VALUE' && test -s /config/greeting"]
          periodSeconds: 1
      volumes:
      - {name: data, persistentVolumeClaim: {claimName: data}}
      - {name: config, configMap: {name: web-config}}
EOF
ks wait --for=condition=available deployment/web --timeout=120s >/dev/null || fail "the source Deployment is not available"
SRC_IP="$(ks get service web -o jsonpath='{.spec.clusterIP}')"

log "2. a BackupPolicy backs up claim data and the namespace's objects in one snapshot"
ks apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: app}
spec:
  tier: standard
  dataType: files
  suspend: true
  trigger: t1
  source:
    pvc: {claimName: data}
  objects: {}
$(node_flow_store app)
EOF
SNAP="$(node_flow_snapshot "$SRC" app)"
# A claim's backup pod runs in the claim's namespace.
pod="$(ks get pods -l dr.botrt.io/component=on-demand -o jsonpath='{.items[0].metadata.name}')"
export_result="$(ks get pod "$pod" \
  -o jsonpath='{.status.initContainerStatuses[?(@.name=="objects")].state.terminated.message}')"
python3 - "$export_result" <<'PY' || fail "the export's result: $export_result"
import json, sys
r = json.loads(sys.argv[1].strip().splitlines()[-1])
# ServiceAccounts web and default, Secret web-secret, ConfigMaps web-config and kube-root-ca.crt, Role, RoleBinding,
# the claim, the Service and the Deployment: the excluded ConfigMap is not among them.
assert r["command"] == "export" and r["objects"] >= 9 and not r["failures"], r
PY
# The controller read the export's result from the objects container: the BackupSucceeded Event counts them.
n="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1].strip().splitlines()[-1])["objects"])' "$export_result")"
for _ in $(seq 1 20); do
  ks get events --field-selector involvedObject.name=app,reason=BackupSucceeded -o jsonpath='{.items[*].message}' |
    grep -q "with $n Kubernetes objects" && break
  sleep 0.5
done
ks get events --field-selector involvedObject.name=app,reason=BackupSucceeded -o jsonpath='{.items[*].message}' |
  grep -q "with $n Kubernetes objects" || fail "the BackupSucceeded Event does not count the $n exported objects"
# Only the objects container mounts a token; the engine's never does.
mounts="$(ks get pod "$pod" -o jsonpath='{range .spec.containers[*]}{.name}:{.volumeMounts[*].mountPath}{"\n"}{end}')"
[[ "$mounts" != *serviceaccount* ]] || fail "the engine container mounts a ServiceAccount token: $mounts"
for _ in $(seq 1 60); do
  ks get rolebindings -l dr.botrt.io/component=run-access -o name | grep -q . || break
  sleep 1
done
[[ -z "$(ks get rolebindings -l dr.botrt.io/component=run-access -o name)" ]] ||
  fail "the run's RoleBinding to botrt-objects-reader outlived the run"
log "   snapshot ${SNAP:0:12}: $(python3 -c 'import json,sys; print(json.loads(sys.argv[1].strip().splitlines()[-1])["objects"])' "$export_result") objects exported"

log "3. a RecoveryPlan re-creates the claim and the objects in the empty namespace $DST"
ks apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: to-dst}
spec:
  tier: standard
  targetNamespace: $DST
  trigger: r1
  procedures:
  - name: restore
    steps:
    - name: claim
      action: restore
      timeout: 5m
      restore:
        policyRef: {name: app}
        into:
          pvc: {claimName: data, create: {}}
    - name: objects
      action: restore
      timeout: 5m
      restore:
        policyRef: {name: app}
        into:
          objects: {}
    - name: ready
      action: waitReady
      timeout: 3m
      targets: [{kind: Deployment, name: web, namespace: $DST}]
EOF
plan_done() {
  local phase=""
  for _ in $(seq 1 300); do
    phase=""
    [[ "$(ks get recoveryplan to-dst -o jsonpath='{.status.lastHandledTrigger}')" == "trigger:$1" ]] &&
      phase="$(ks get recoveryplan to-dst -o jsonpath='{.status.phase}')"
    [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
    sleep 1
  done
  [[ "$phase" == Succeeded ]] ||
    fail "the RecoveryPlan ended '$phase': $(ks get recoveryplan to-dst -o jsonpath='{.status.message}')"
}
plan_done r1
kd wait --for=condition=available deployment/web --timeout=10s >/dev/null || fail "the restored Deployment is not available"
[[ "$(kd get secret web-secret -o jsonpath='{.data.password}' | base64 -d)" == "$SECRET_VALUE" ]] ||
  fail "the restored Secret's value differs"
[[ "$(kd get configmap web-config -o jsonpath='{.data.greeting}')" == "hello from $SRC" ]] ||
  fail "the restored ConfigMap differs"
[[ "$(kd get rolebinding web-reader -o jsonpath='{.subjects[0].namespace}')" == "$DST" ]] ||
  fail "the restored RoleBinding's subject is not mapped to $DST"
dst_ip="$(kd get service web -o jsonpath='{.spec.clusterIP}')"
[[ -n "$dst_ip" && "$dst_ip" != "$SRC_IP" ]] || fail "the restored Service's clusterIP '$dst_ip' (source: $SRC_IP)"
kd get serviceaccount web >/dev/null || fail "the ServiceAccount was not restored"
kd get role web-reader >/dev/null || fail "the Role was not restored"
! kd get configmap scratch >/dev/null 2>&1 || fail "the excluded ConfigMap was restored"
[[ ! -e "$VOL_DST/_kubernetes" ]] || fail "the claim's restore wrote the snapshot's objects into the claim"
[[ "$(cat "$VOL_DST/notes.txt")" == "restored data $$" ]] || fail "the claim's file was not restored"
job="$(ks get recoveryplan to-dst -o jsonpath='{.status.steps[?(@.name=="objects")].jobName}')"
apply_result="$(kd get pods -l job-name="$job" \
  -o jsonpath='{.items[0].status.containerStatuses[?(@.name=="objects")].state.terminated.message}')"
log "   Deployment web available in $DST; apply: $apply_result"

log "4. the plan runs again: every object exists, none is created"
ks patch recoveryplan to-dst --type merge -p '{"spec":{"trigger":"r2"}}' >/dev/null
plan_done r2
job="$(ks get recoveryplan to-dst -o jsonpath='{.status.steps[?(@.name=="objects")].jobName}')"
again="$(kd get pods -l job-name="$job" \
  -o jsonpath='{.items[0].status.containerStatuses[?(@.name=="objects")].state.terminated.message}')"
python3 - "$again" <<'PY' || fail "the second apply's result: $again"
import json, sys
r = json.loads(sys.argv[1].strip().splitlines()[-1])
assert r["command"] == "apply" and r["objects"] == 0 and r["existing"] >= 7 and not r["failures"], r
PY

log "5. a policy of the objects alone (source.objects) backs up the ConfigMaps and Secrets, and a plan re-creates them"
DST2="objects-dst2-$$"
node_flow_namespace "$DST2"
kubectl annotate namespace "$DST2" "dr.botrt.io/recovery-allowed-from=$SRC" >/dev/null
ks apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: config}
spec:
  tier: standard
  suspend: true
  trigger: t1
  source:
    objects: {}
  objects:
    kinds: [ConfigMap, Secret]
$(node_flow_store config)
EOF
CSNAP="$(node_flow_snapshot "$SRC" config)"
# Nothing of the application is mounted: the backup pod ran in the backup namespace, not beside the application.
job="$(kubectl -n "$BACKUP_NS" get jobs -l dr.botrt.io/policy-name=config,dr.botrt.io/component=on-demand \
  -o jsonpath='{.items[0].metadata.name}')"
[[ -n "$job" ]] || fail "no on-demand Job of policy config in the backup namespace $BACKUP_NS"
[[ -z "$(kubectl -n "$BACKUP_NS" get job "$job" -o jsonpath='{.spec.template.spec.volumes[*].persistentVolumeClaim}')" ]] ||
  fail "the objects-only backup pod mounts a claim"
# The snapshot holds the _kubernetes entry alone: the ConfigMaps and Secrets, no Deployment, no claim's files.
args="$(kubectl -n "$BACKUP_NS" get job "$job" -o jsonpath='{.spec.template.spec.containers[0].args}')"
repo="$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); print(a[a.index("--repo")+1])' "$args")"
kms="$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); print(a[a.index("--kms")+1])' "$args")"
AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  "$BOTRT_ENGINE_BIN" ls "$CSNAP" --repo "$repo" --kms "$kms" --vault-token-file "$WORK/vault-token" \
  --s3-endpoint "$BOTRT_S3_ENDPOINT" --s3-region us-east-1 --s3-path-style >"$WORK/ls.txt" 2>"$WORK/ls.err" ||
  fail "cannot list snapshot $CSNAP: $(tail -3 "$WORK/ls.err")"
grep -q 'web-config\.json$' "$WORK/ls.txt" && grep -q 'web-secret\.json$' "$WORK/ls.txt" ||
  fail "the snapshot lacks the ConfigMap or the Secret: $(cat "$WORK/ls.txt")"
! grep -q 'Deployment\|notes\.txt' "$WORK/ls.txt" || fail "the snapshot holds more than the kinds: $(cat "$WORK/ls.txt")"
! grep -v '_kubernetes' "$WORK/ls.txt" | grep -q . ||
  fail "the snapshot has entries beside _kubernetes: $(grep -v _kubernetes "$WORK/ls.txt" | head -5)"
ks apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: config-to-dst2}
spec:
  tier: standard
  trigger: r1
  procedures:
  - name: restore
    steps:
    - name: objects
      action: restore
      timeout: 5m
      restore:
        policyRef: {name: config}
        into:
          objects: {namespace: $DST2}
EOF
phase=""
for _ in $(seq 1 180); do
  phase="$(ks get recoveryplan config-to-dst2 -o jsonpath='{.status.phase}')"
  [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
  sleep 1
done
[[ "$phase" == Succeeded ]] ||
  fail "the objects-only plan ended '$phase': $(ks get recoveryplan config-to-dst2 -o jsonpath='{.status.message}')"
[[ "$(kubectl -n "$DST2" get secret web-secret -o jsonpath='{.data.password}' | base64 -d)" == "$SECRET_VALUE" ]] ||
  fail "the Secret restored from the objects-only snapshot differs"
[[ "$(kubectl -n "$DST2" get configmap web-config -o jsonpath='{.data.greeting}')" == "hello from $SRC" ]] ||
  fail "the ConfigMap restored from the objects-only snapshot differs"
! kubectl -n "$DST2" get deployment web >/dev/null 2>&1 || fail "a Deployment came back from a ConfigMap and Secret backup"
log "   snapshot ${CSNAP:0:12} holds only _kubernetes; web-config and web-secret re-created in $DST2"
log PASS
