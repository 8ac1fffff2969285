#!/usr/bin/env bash
# End to end: RWO placement on two real nodes (issue 15 §1, k8up#319, k8up#978). A ReadWriteOnce claim mounted by a
# running pod can only be mounted on that pod's node, so the backup pod must follow that pod, with its tolerations.
#
# The second node (hack/lib/node2.sh, started here if it is not running and stopped again at the end) is tainted
# NoSchedule: a backup pod lands there only if the controller gives it the application pod's node and tolerations.
# Without the placement the scheduler puts every backup pod on the first node, and steps 2 and 3 fail.
#   1. claims near and free (ReadWriteOnce, hostPath PersistentVolumes), both labelled backup=yes; the application pod
#      app (tolerating the taint, pinned to botrt-node2) mounts near and writes a file into it; free is mounted by no
#      pod;
#   2. a BackupPolicy with source.pvc near: status.placement names botrt-node2 and app; its on-demand backup pod runs
#      on botrt-node2 and succeeds, and its CronJob's pod template has the node affinity and app's toleration;
#   3. a BackupPolicy with source.claims selecting both: status.claims[near].placement names botrt-node2, free has no
#      placement; near's backup pod runs on botrt-node2, free's on botrt-node; both succeed;
#   4. app moves to botrt-node (deleted, re-created there without the toleration): both policies' placements follow
#      without a restart, and the next backup of near runs on botrt-node.
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... hack/node/rwo-e2e.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_FLOW=rwo-e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
node_require
node_services_up

NODE1=botrt-node
NODE2=botrt-node2
TAINT_KEY=dr.botrt.io/second-node
NODE2_STARTED=0
NS="rwo-e2e-$$"
BUCKET="botrt-rwo-e2e-$$-$RANDOM"
NODE_FLOW_WORK="$(mktemp -d /tmp/botrt-rwo-e2e.XXXXXX)"
NODE_FLOW_PATHS+=("$NODE_FLOW_WORK")
NODE_FLOW_NAMESPACES+=("botrt-backup-rwo-$$")
declare -A VOL
for c in near free; do
  VOL[$c]="$(mktemp -d "/var/tmp/botrt-rwo-e2e-$c.XXXXXX")"
  NODE_FLOW_PATHS+=("${VOL[$c]}")
  echo "the claim $c" >"${VOL[$c]}/readme.txt"
  chown -R 65532:65532 "${VOL[$c]}"
done
cleanup() {
  local rc=$?
  node_flow_cleanup "$rc" "$NS"
  if ((NODE2_STARTED)); then bash "$REPO/hack/cluster.sh" node2-down >/dev/null 2>&1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
k() { kubectl -n "$NS" "$@"; }

status="$(bash "$REPO/hack/cluster.sh" status 2>/dev/null || true)"
if [[ "$status" != *"node2 kubelet2: running"* ]]; then
  log "0. starting the second node $NODE2"
  NODE2_STARTED=1
  bash "$REPO/hack/cluster.sh" node2-up >&2 || fail "the second node did not start (hack/cluster.sh node2-up)"
fi
[[ "$(kubectl get node "$NODE2" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]] ||
  fail "the node $NODE2 is not Ready"
[[ "$(kubectl get node "$NODE2" -o jsonpath='{.spec.taints[*].key}')" == *"$TAINT_KEY"* ]] ||
  fail "the node $NODE2 is not tainted $TAINT_KEY: the flow could not tell a placed pod from a lucky one"

kubectl apply -f "$REPO/crds/" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io >/dev/null
node_flow_bucket "$BUCKET"
node_flow_namespace "$NS"
node_flow_secrets "$NS"
node_controller "$NODE_FLOW_WORK/controller.log" --metrics-address off --namespace "$NS" --backup-namespace "botrt-backup-rwo-$$"

# app NODE [TOLERATE]: the application pod, pinned to NODE, mounting near read-write; it writes a file naming its node.
app() {
  local tolerations='[]'
  [[ "${2:-}" == tolerate ]] && tolerations="[{key: $TAINT_KEY, operator: Exists, effect: NoSchedule}]"
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: app, labels: {app: rwo}}
spec:
  nodeSelector: {kubernetes.io/hostname: $1}
  tolerations: $tolerations
  securityContext: {runAsUser: 65532, runAsGroup: 65532}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: $APP_IMAGE
    command: [bash, -c, 'echo "written on \$NODE" >/data/from-app.txt && exec sleep 3600']
    env: [{name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: near}}]
EOF
  k wait --for=condition=Ready pod/app --timeout=90s >/dev/null || fail "the application pod did not start on $1"
  [[ "$(k get pod app -o jsonpath='{.spec.nodeName}')" == "$1" ]] || fail "app is not on $1"
}

# backup_pod_node POLICY TRIGGER [CLAIM]: waits for the on-demand backup Job of POLICY (of CLAIM, for a claims
# source) started by TRIGGER to succeed, and prints the node its pod ran on.
backup_pod_node() {
  local policy="$1" trigger="$2" claim="${3:-}" job="" status=""
  for _ in $(seq 1 120); do
    job="$(k get jobs -l "dr.botrt.io/component=on-demand,dr.botrt.io/policy-name=$policy" -o json |
      python3 -c 'import json, sys
trigger, claim = sys.argv[1], sys.argv[2]
for j in json.load(sys.stdin)["items"]:
    a = j["metadata"].get("annotations", {})
    if a.get("dr.botrt.io/run-token") == "trigger:" + trigger and (not claim or a.get("dr.botrt.io/claim") == claim):
        print(j["metadata"]["name"])' "$trigger" "$claim")"
    if [[ -n "$job" ]]; then
      status="$(k get job "$job" -o jsonpath='{.status.succeeded}/{.status.failed}')"
      [[ "$status" == 1/* ]] && break
      [[ "$status" == */[1-9]* ]] && fail "the backup Job $job of $policy ${claim:+($claim) }failed"
    fi
    sleep 1
  done
  [[ "$status" == 1/* ]] || fail "no succeeded backup Job of $policy ${claim:+($claim) }for trigger $trigger (job '$job')"
  k get pods -l "job-name=$job" -o jsonpath='{.items[0].spec.nodeName}'
}

log "1. claims near and free; app on $NODE2 (tolerating $TAINT_KEY) mounts near"
for c in near free; do
  node_hostpath_pv "botrt-rwo-e2e-$$-$c" "$NS" "$c" "${VOL[$c]}"
  NODE_FLOW_PVS+=("botrt-rwo-e2e-$$-$c")
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $c, namespace: $NS, labels: {backup: "yes"}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: botrt-rwo-e2e-$$-$c
  resources: {requests: {storage: 1Gi}}
EOF
done
app "$NODE2" tolerate
[[ "$(cat "${VOL[near]}/from-app.txt")" == "written on $NODE2" ]] || fail "app did not write into near"

policy() { # NAME SOURCE-YAML TRIGGER
  k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: $1}
spec:
  tier: standard
  dataType: files
  schedule: "0 3 * * *"
  trigger: $3
  source: $2
$(node_flow_store "$1")
EOF
}

log "2. a pvc-source policy on near follows app to $NODE2"
policy one '{pvc: {claimName: near}}' t1
placement=""
for _ in $(seq 1 60); do
  placement="$(k get backuppolicy one -o jsonpath='{.status.placement.node}/{.status.placement.pod}')"
  [[ "$placement" == "$NODE2/app" ]] && break
  sleep 1
done
[[ "$placement" == "$NODE2/app" ]] || fail "status.placement of one: '$placement', expected $NODE2/app"
node="$(backup_pod_node one t1)"
[[ "$node" == "$NODE2" ]] || fail "one's backup pod ran on '$node', not on app's node $NODE2"
cron="$(k get cronjobs -l dr.botrt.io/policy-name=one,dr.botrt.io/component=backup -o jsonpath='{.items[0].spec.jobTemplate.spec.template.spec}')"
python3 - "$cron" "$NODE2" "$TAINT_KEY" <<'EOF' || fail "one's CronJob pod template does not follow app: $cron"
import json, sys
spec, node, taint = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}], terms
assert any(t.get("key") == taint for t in spec.get("tolerations", [])), spec.get("tolerations")
EOF
[[ "$(k get backuppolicy one -o jsonpath='{.status.conditions[?(@.type=="LastBackupSucceeded")].status}')" == True ]] ||
  fail "one's backup on $NODE2 is not reported as succeeded"
log "   one: placement $placement, its backup pod ran on $node and succeeded"

log "3. a claims-source policy: near's backup on $NODE2, free's anywhere (the untainted $NODE1)"
policy many '{claims: {selector: {matchLabels: {backup: "yes"}}}}' t1
results=""
for _ in $(seq 1 120); do
  results="$(k get backuppolicy many -o jsonpath='{range .status.claims[*]}{.name}={.result} {end}')"
  [[ "$results" == "free=Succeeded near=Succeeded " || "$results" == *Failed* ]] && break
  sleep 1
done
[[ "$results" == "free=Succeeded near=Succeeded " ]] || fail "status.claims of many: '$results'"
placement="$(k get backuppolicy many -o jsonpath='{.status.claims[?(@.name=="near")].placement.node}/{.status.claims[?(@.name=="near")].placement.pod}')"
[[ "$placement" == "$NODE2/app" ]] || fail "status.claims[near].placement: '$placement'"
[[ -z "$(k get backuppolicy many -o jsonpath='{.status.claims[?(@.name=="free")].placement}')" ]] ||
  fail "free, mounted by no pod, has a placement"
near_node="$(backup_pod_node many t1 near)"
free_node="$(backup_pod_node many t1 free)"
[[ "$near_node" == "$NODE2" ]] || fail "many's backup pod of near ran on '$near_node', not on $NODE2"
[[ "$free_node" == "$NODE1" ]] || fail "many's backup pod of free ran on '$free_node', expected $NODE1"
log "   many: near's backup pod on $near_node, free's on $free_node; both succeeded"

log "4. app moves to $NODE1: the placements follow, and near's next backup runs there"
k delete pod app --wait=true --timeout=60s >/dev/null
app "$NODE1"
for p in one many; do
  path='{.status.placement.node}'
  [[ $p == many ]] && path='{.status.claims[?(@.name=="near")].placement.node}'
  placement=""
  for _ in $(seq 1 60); do
    placement="$(k get backuppolicy "$p" -o jsonpath="$path")"
    [[ "$placement" == "$NODE1" ]] && break
    sleep 1
  done
  [[ "$placement" == "$NODE1" ]] || fail "$p's placement did not follow app to $NODE1: '$placement'"
done
k patch backuppolicy one --type merge -p '{"spec":{"trigger":"t2"}}' >/dev/null
node="$(backup_pod_node one t2)"
[[ "$node" == "$NODE1" ]] || fail "one's backup after the move ran on '$node', not on $NODE1"
log "   both placements name $NODE1; one's next backup pod ran on $node"
log PASS
