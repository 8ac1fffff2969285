#!/usr/bin/env bash
# End to end: application-consistent hooks (BackupPolicy spec.hooks) on the local node. Three hooked policies of one
# application claim run at once, each with its own marker files:
#   ok:      a pre hook writes a marker into the claim in the application Pod (`sh -c 'date +%s > /data/.frozen-ok'`,
#            through pods/exec as the controller, allowed by the namespace's RoleBinding of ClusterRole
#            botrt-hook-executor); the backup Pod's gate opens once the controller marked it done; the snapshot holds
#            the marker; the post hook removes it (and leaves .thawed-ok);
#   badrepo: a backup that fails (its repository's bucket does not exist) still runs its post hook;
#   abort:   a pre hook that exits 1 (onError Abort by default) fails the gate (exit 20, the hook's stderr in the
#            termination message): the backup container never starts, and the post hook still runs.
# It reports how long the kubelet took to show the gate the controller's mark (the downward API refresh), and checks
# that in a namespace without the RoleBinding the apiserver's refusal sets HooksPermitted=False naming it, and no
# backup runs (that step's refused requests are recorded as expected for hack/rbac-audit.py).
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... BOTRT_ENGINE_BIN=... hack/node/hooks-e2e.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_FLOW=hooks-e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
fail() { node_fail "$@"; }
log() { echo "hooks-e2e: $(date -u +%H:%M:%S) $*" >&2; }
node_require
node_services_up
[[ -x "${BOTRT_ENGINE_BIN:-}" ]] || fail "BOTRT_ENGINE_BIN is not set to the built botrt-engine (it lists the snapshot)"

NS="hooks-e2e-$$"
NS2="hooks-e2e-noopt-$$"
BACKUP_NS="botrt-backup-hooks-$$"
BUCKET="botrt-hooks-e2e-$$-$RANDOM"
PV="botrt-hooks-e2e-$$"
PV2="botrt-hooks-e2e-noopt-$$"
WORK="$(mktemp -d /tmp/botrt-hooks-e2e.XXXXXX)"
VOL="$(mktemp -d /var/tmp/botrt-hooks-e2e.XXXXXX)"
VOL2="$(mktemp -d /var/tmp/botrt-hooks-e2e-noopt.XXXXXX)"
chmod 0755 "$VOL" "$VOL2"
# The application's volume root belongs to it (uid 1001), as a provisioner or fsGroup would make it.
chown 1001:1001 "$VOL" "$VOL2"
NODE_CONTROLLER_PID=""
REFUSED_START=""
cleanup() {
  local rc=$?
  set +e
  kubectl -n "$NS" delete backuppolicies --all --timeout=60s >/dev/null 2>&1
  kubectl -n "$NS2" delete backuppolicies --all --timeout=60s >/dev/null 2>&1
  if [[ -n "$NODE_CONTROLLER_PID" ]]; then
    kill -TERM "$NODE_CONTROLLER_PID"
    wait "$NODE_CONTROLLER_PID"
  fi
  if [[ -n "$REFUSED_START" ]]; then
    # The refusals of step 6 are the test: hack/rbac-audit.py lists them as expected, not as a missing grant.
    sleep 2
    echo "$REFUSED_START $(date -u +%Y-%m-%dT%H:%M:%S.%6NZ) hooks-e2e step 6, hooks in a namespace without the RoleBinding" \
      >>"${BOTRT_CLUSTER_DIR:?}/rbac-audit-teardown"
  fi
  if [[ $rc -ne 0 ]]; then
    echo "--- controller log (whole: ${TMPDIR:-/tmp}/hooks-e2e-controller.log)"
    cat "$WORK"/controller*.log >"${TMPDIR:-/tmp}/hooks-e2e-controller.log"
    grep -v ' outcome=success' "$WORK"/controller*.log | tail -n 40
    node_pods_dump "$NS" "$NS2"
    echo "--- policy status"
    kubectl -n "$NS" get backuppolicies -o jsonpath='{range .items[*]}{.metadata.name}: {.status.lastHooks} {.status.conditions}{"\n"}{end}'
  fi >&2
  kubectl delete namespace "$NS" "$NS2" "$BACKUP_NS" --wait=false >/dev/null 2>&1
  kubectl delete pv "$PV" "$PV2" --wait=false >/dev/null 2>&1
  node_services_down
  rm -rf "$WORK" "$VOL" "$VOL2"
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT
k() { kubectl -n "$NS" "$@"; }
jp() { k get backuppolicy "$1" -o jsonpath="$2"; }

kubectl apply -f "$REPO/crds/" -f "$REPO/manifests/rbac/hook-executor.yaml" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io >/dev/null
python3 -c 'import os, sys, boto3; boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1").create_bucket(Bucket=sys.argv[1])' "$BUCKET"
printf '%s' "$VAULT_TOKEN" >"$WORK/vault-token"
for ns in "$NS" "$NS2"; do
  kubectl create namespace "$ns" >/dev/null
  for _ in $(seq 1 100); do kubectl -n "$ns" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
  kubectl -n "$ns" create secret generic s3-creds --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
    --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" >/dev/null
  kubectl -n "$ns" create secret generic vault-token --from-file=token="$WORK/vault-token" >/dev/null
done
# The opt-in: the namespace admin binds botrt-hook-executor to the controller's ServiceAccount (docs/quickstart.md).
k apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: botrt-hooks}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: botrt-hook-executor}
subjects: [{kind: ServiceAccount, name: botrt-controller, namespace: botrt-system}]
YAML
node_controller "$WORK/controller.log" --metrics-address off --namespace "$NS" --backup-namespace "$BACKUP_NS"

# app NAMESPACE PV DIR: the claim `data` on the node's DIR and an application Pod (label app=db, uid 1001) that
# writes table.dat into it and stays Running.
app() {
  node_hostpath_pv "$2" "$1" data "$3"
  kubectl -n "$1" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: $2
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: app, labels: {app: db}}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 1001, runAsGroup: 1001, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: db
    image: $APP_IMAGE
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
    command: [sh, -c, 'umask 022; echo "row 1" > /data/table.dat; exec sleep 3600']
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: data}}
YAML
  kubectl -n "$1" wait --for=condition=Ready pod/app --timeout=90s >/dev/null || fail "the application Pod in $1 is not Ready"
}

# policy NAMESPACE NAME BUCKET PRE_COMMAND: a hooked policy, triggered once; the post hook removes the pre hook's
# marker and leaves its own (.thawed-NAME), so that a run's post hook shows on the volume.
policy() {
  # Another flow on the same cluster may have applied its own checkout's CRDs meanwhile: apply these again first.
  kubectl apply -f "$REPO/crds/dr.botrt.io_backuppolicies.yaml" >/dev/null
  kubectl -n "$1" apply -f - >/dev/null <<YAML
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: $2}
spec:
  tier: standard
  dataType: files
  suspend: true
  trigger: t1
  source:
    pvc: {claimName: data}
  hooks:
    pre:
    - name: freeze
      podSelector: {matchLabels: {app: db}}
      command: $4
      timeoutSeconds: 20
    post:
    - name: thaw
      podSelector: {matchLabels: {app: db}}
      command: [sh, -c, 'rm -f /data/.frozen-$2; date +%s > /data/.thawed-$2']
  repository:
    s3: {bucket: "$3", prefix: "$2", endpoint: "$BOTRT_S3_ENDPOINT", region: us-east-1, forcePathStyle: true,
         credentialsSecretRef: {name: s3-creds}}
  encryption:
    kms:
      vaultTransit: {address: "$VAULT_ADDR", key: botrt-test, authSecretRef: {name: vault-token}}
      allowPlaintextHTTP: true  # the test services' Vault speaks plain HTTP
YAML
}

log "1. the application writes to its claim"
app "$NS" "$PV" "$VOL"

log "2. three hooked policies at once: ok, badrepo (no such bucket), abort (the pre hook exits 1)"
START=$SECONDS
policy "$NS" ok "$BUCKET" "[sh, -c, 'date +%s > /data/.frozen-ok']"
policy "$NS" badrepo "$BUCKET-missing" "[sh, -c, 'date +%s > /data/.frozen-badrepo']"
policy "$NS" abort "$BUCKET" "[sh, -c, 'echo cannot lock the tables >&2; exit 1']"
done_post() { [[ "$(jp "$1" '{.status.lastHooks.post}')" == Done ]]; }
for _ in $(seq 1 150); do
  done_post ok && done_post badrepo && done_post abort && break
  sleep 1
done
for p in ok badrepo abort; do
  done_post "$p" || fail "policy $p: the post hooks did not run: $(jp "$p" '{.status.lastHooks}')"
done
log "   every run's post hooks ran, $((SECONDS - START)) s after the policies were applied"

log "3. ok: the gate opened after the pre hook, the snapshot holds its marker, the post hook removed it"
[[ "$(jp ok '{.status.lastHooks.pre}')" == Done ]] || fail "ok: pre hooks $(jp ok '{.status.lastHooks}')"
SNAP=""
for _ in $(seq 1 30); do
  SNAP="$(jp ok '{.status.lastSnapshot}')"
  [[ -n "$SNAP" ]] && break
  sleep 1
done
[[ -n "$SNAP" ]] || fail "ok: no snapshot: $(jp ok '{.status.conditions}')"
[[ ! -e "$VOL/.frozen-ok" && -e "$VOL/.thawed-ok" ]] || fail "ok: the post hook did not run on the volume: $(ls -A "$VOL")"
job="$(jp ok '{.status.lastHooks.job}')"
args="$(k get job "$job" -o jsonpath='{.spec.template.spec.containers[0].args}')"
repo="$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); print(a[a.index("--repo")+1])' "$args")"
kms="$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); print(a[a.index("--kms")+1])' "$args")"
AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  "$BOTRT_ENGINE_BIN" ls "$SNAP" --repo "$repo" --kms "$kms" --vault-token-file "$WORK/vault-token" \
  --s3-endpoint "$BOTRT_S3_ENDPOINT" --s3-region us-east-1 --s3-path-style >"$WORK/ls.txt" 2>"$WORK/ls.err" ||
  fail "cannot list snapshot $SNAP: $(tail -3 "$WORK/ls.err")"
grep -q '\.frozen-ok$' "$WORK/ls.txt" || fail "the snapshot lacks the pre hook's marker: $(cat "$WORK/ls.txt")"
grep -q 'table\.dat$' "$WORK/ls.txt" || fail "the snapshot lacks the application's file: $(cat "$WORK/ls.txt")"
pod="$(k get pods -l job-name="$job" -o jsonpath='{.items[0].metadata.name}')"
# The downward API refresh: from the controller's mark (the pre result's time, just before it) to the gate's log line.
marked="$(jp ok '{.status.lastHooks.results[0].time}')"
seen="$(k logs "$pod" -c hooks-gate --timestamps | grep 'pre-hooks=done' | head -1 | cut -d' ' -f1)"
python3 - "$marked" "$seen" <<'PY' || fail "cannot read the gate's latency (marked $marked, seen $seen)"
import datetime, sys
def t(s):
    s = s.rstrip("Z")
    if "." in s:
        head, frac = s.split(".")
        s = f"{head}.{frac[:6]}"
    return datetime.datetime.fromisoformat(s)
d = (t(sys.argv[2]) - t(sys.argv[1])).total_seconds()
print(f"hooks-e2e:    the gate saw 'done' {d:.1f} s after the controller's mark (the kubelet's downward API refresh)",
      file=sys.stderr)
PY
log "   snapshot ${SNAP:0:12} holds .frozen-ok; the volume has .thawed-ok and no .frozen-ok"

log "4. badrepo: the backup failed (storage), the post hook still ran"
[[ "$(jp badrepo '{.status.conditions[?(@.type=="LastBackupSucceeded")].status}')" == False ]] ||
  fail "badrepo: the backup into a missing bucket did not fail: $(jp badrepo '{.status.conditions}')"
[[ "$(jp badrepo '{.status.lastHooks.pre}')" == Done ]] || fail "badrepo: pre $(jp badrepo '{.status.lastHooks}')"
[[ ! -e "$VOL/.frozen-badrepo" && -e "$VOL/.thawed-badrepo" ]] ||
  fail "badrepo: the post hook did not run after the failed backup: $(ls -A "$VOL")"

log "5. abort: the pre hook failed, the gate failed, the backup never started, the post hook ran"
[[ "$(jp abort '{.status.lastHooks.pre}')" == Failed ]] || fail "abort: pre $(jp abort '{.status.lastHooks}')"
[[ -z "$(jp abort '{.status.lastSnapshot}')" ]] || fail "abort: a snapshot was written"
job="$(jp abort '{.status.lastHooks.job}')"
k get pods -l job-name="$job" -o json >"$WORK/abort-pods.json"
python3 - "$WORK/abort-pods.json" <<'PY' || fail "abort: the gate's and the backup container's states"
import json, sys
pods = json.load(open(sys.argv[1]))["items"]
assert len(pods) == 1, f"{len(pods)} Pods: a hooked Job is not retried"
st = pods[0]["status"]
gate = st["initContainerStatuses"][0]
t = gate["state"]["terminated"]
assert gate["name"] == "hooks-gate" and t["exitCode"] == 20, gate
assert "cannot lock the tables" in t.get("message", ""), t
for c in st.get("containerStatuses", []):
    assert "terminated" not in c["state"] and "running" not in c["state"], f"the backup container ran: {c}"
print(f"hooks-e2e:    gate exit 20: {t['message'][:200]}", file=sys.stderr)
PY
[[ -e "$VOL/.thawed-abort" ]] || fail "abort: the post hook did not run: $(ls -A "$VOL")"
k get events --field-selector involvedObject.name=abort -o jsonpath='{range .items[*]}{.reason}{"\n"}{end}' |
  grep -qx HookFailed || fail "abort: no HookFailed Event"

log "6. a namespace without the RoleBinding: the apiserver refuses, HooksPermitted=False names it, no backup runs"
# The first namespace's policies go while their controller still runs (it removes their finalizers); deleted after
# it stopped, each would wait out the delete's timeout.
k delete backuppolicies --all --timeout=60s >/dev/null
kill -TERM "$NODE_CONTROLLER_PID"
wait "$NODE_CONTROLLER_PID" || true
NODE_CONTROLLER_PID=""
app "$NS2" "$PV2" "$VOL2"
REFUSED_START="$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"
node_controller "$WORK/controller2.log" --metrics-address off --namespace "$NS2" --backup-namespace "$BACKUP_NS"
policy "$NS2" noopt "$BUCKET" "[sh, -c, 'date +%s > /data/.frozen-noopt']"
c=""
for _ in $(seq 1 90); do
  c="$(kubectl -n "$NS2" get bp noopt -o jsonpath='{.status.conditions[?(@.type=="HooksPermitted")].status}')"
  [[ "$c" == False ]] && break
  sleep 1
done
msg="$(kubectl -n "$NS2" get bp noopt -o jsonpath='{.status.conditions[?(@.type=="HooksPermitted")].message}')"
[[ "$c" == False && "$msg" == *"--clusterrole=botrt-hook-executor"* ]] ||
  fail "no HooksPermitted=False naming the RoleBinding: $(kubectl -n "$NS2" get bp noopt -o jsonpath='{.status.conditions}')"
[[ ! -e "$VOL2/.frozen-noopt" && -z "$(kubectl -n "$NS2" get bp noopt -o jsonpath='{.status.lastSnapshot}')" ]] ||
  fail "a hook or a backup ran without the RoleBinding"
log "   $(cut -c1-240 <<<"$msg")"
log "PASS in $SECONDS s"
