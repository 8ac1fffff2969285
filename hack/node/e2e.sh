#!/usr/bin/env bash
# The operator on the local node, as users run it: every Pod below is started by the kubelet in containerd from the
# images hack/images.sh built from images/*/Containerfile, with the Pod's securityContext, volumes, probes and
# ServiceAccount token as a node applies them.
#
#  1. `kubectl apply -k hack/node/overlay` (manifests/ with the local image tags), and
#     `kubectl rollout status`: both controller replicas pass their readiness probe, one holds the Lease, and the
#     controller reaches the apiserver through its in-cluster ServiceAccount token and the `kubernetes` Service;
#  2. the security settings are in force inside the controller's container: uid/gid 65532, no capabilities, a
#     read-only root filesystem, the token mounted;
#  3. every shell block of docs/quickstart.md from "Credentials" on: Secrets, a BackupPolicy whose pg_dump runs in a
#     stock-like PostgreSQL image (botrt.local/postgres:15, tagged postgres:16: it has no libcurl, libyaml or zstd of
#     BotRT's) and streams into the engine's own container, a first backup to S3 with Vault Transit keys, a DRDrill
#     that restores into a scratch namespace and passes, a RecoveryPlan, `kubectl get botrt`;
#  4. the backup Pod ran on the node, its dump container had none of the storage credentials, its engine container
#     had no ServiceAccount token, and the run's result was the engine container's termination message.
#
# The Pods reach the host's services at the bridge address: this script starts its own S3 (moto), OpenBao and
# PostgreSQL there (hack/services.sh with BOTRT_SERVICES_HOST), and stops them when it ends.
#
#   hack/cluster.sh up   (with the node; or BOTRT_NODE=0 ... up, then hack/cluster.sh node-up)
#   hack/images.sh && hack/node/e2e.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fail() {
  echo "node-e2e: FAIL: $*" >&2
  exit 1
}
log() { echo "node-e2e: $(date +%H:%M:%S) $*" >&2; }

# shellcheck disable=SC1090
source <(bash "$REPO/hack/cluster.sh" env)
CLUSTER_DIR="$BOTRT_CLUSTER_DIR"
[[ -f "$CLUSTER_DIR/node.env" ]] || fail "no node settings in $CLUSTER_DIR; start the node with hack/cluster.sh node-up"
# shellcheck disable=SC1091
source "$CLUSTER_DIR/node.env"
NODE_IP="$NODE_SUBNET.1"
NODE_RUN="/run/botrt-node-$(printf '%s' "$CLUSTER_DIR" | sha256sum | cut -c1-10)"
ctr_() { ctr --address "$NODE_RUN/containerd.sock" -n k8s.io "$@"; }
K=(kubectl)
APP_NS=shop
SYS_NS=botrt-system
WORK="$(mktemp -d /tmp/botrt-node-e2e.XXXXXX)"
SVC_DIR="$REPO/.local/node-services"

[[ "$("${K[@]}" get node botrt-node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]] ||
  fail "the node botrt-node is not Ready"
for img in botrt.local/botrt-controller:dev botrt.local/botrt-engine:dev botrt.local/postgres:15; do
  ctr_ images ls -q | grep -Fx "$img" >/dev/null || fail "the node has no image $img; run hack/images.sh, then node-up"
done
# The stand-in answers to the stock image's name, so the quickstart's `image: postgres:16` runs unchanged.
ctr_ images tag --force botrt.local/postgres:15 docker.io/library/postgres:16 >/dev/null

dump_state() {
  echo "--- pods"
  "${K[@]}" get pods -A -o wide 2>&1 | grep -v "^kube-system" | head -30
  echo "--- botrt objects in $APP_NS"
  "${K[@]}" -n "$APP_NS" get botrt -o yaml 2>&1 | grep -E '^\s+(message|reason|type|status|phase):' | head -40
  echo "--- events in $APP_NS and botrt-backup"
  "${K[@]}" get events -n "$APP_NS" --sort-by=.lastTimestamp 2>&1 | tail -15
  "${K[@]}" get events -n botrt-backup --sort-by=.lastTimestamp 2>&1 | tail -15
  echo "--- controller logs"
  for p in $("${K[@]}" -n "$SYS_NS" get pods -l app.kubernetes.io/component=controller -o name 2>/dev/null); do
    echo "[$p]"
    "${K[@]}" -n "$SYS_NS" logs "$p" --tail=15 2>&1
  done
  echo "--- quickstart output"
  tail -n 30 "$WORK/quickstart.out" 2>/dev/null
} >&2

cleanup() {
  local rc=$?
  set +e
  if ((rc != 0)); then dump_state; fi
  "${K[@]}" -n "$APP_NS" delete drdrills,recoveryplans,backuppolicies --all --timeout=90s >/dev/null 2>&1
  # Everything the overlay installed but the CRDs (later steps use them; deleting a CRD is asynchronous).
  "${K[@]}" delete namespace "$SYS_NS" --timeout=120s >/dev/null 2>&1
  "${K[@]}" delete clusterrole,clusterrolebinding botrt-controller >/dev/null 2>&1
  "${K[@]}" delete clusterrole botrt-edit botrt-view >/dev/null 2>&1
  "${K[@]}" delete namespace "$APP_NS" botrt-backup --wait=false >/dev/null 2>&1
  "${K[@]}" delete namespace -l "dr.botrt.io/drill-namespace=$APP_NS" --wait=false >/dev/null 2>&1
  BOTRT_SERVICES_DIR="$SVC_DIR" bash "$REPO/hack/services.sh" down >/dev/null 2>&1
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# -------------------------------------------------------------------------------------------------------------------
log "0. services for the Pods on $NODE_IP (S3, Vault Transit, PostgreSQL)"
BOTRT_SERVICES_DIR="$SVC_DIR" BOTRT_SERVICES_HOST="$NODE_IP" BOTRT_SERVICES_ONLY="moto vault postgres" BOTRT_S3_PORT=15000 BOTRT_VAULT_PORT=18200 \
  BOTRT_VAULT_TLS_PORT=18210 BOTRT_GCS_PORT=14443 BOTRT_PG_PORT=15433 bash "$REPO/hack/services.sh" up >"$WORK/services.log" 2>&1 ||
  fail "the Pods' services did not start: $(tail -n 5 "$WORK/services.log")"
# shellcheck disable=SC1090
source <(BOTRT_SERVICES_DIR="$SVC_DIR" bash "$REPO/hack/services.sh" env)

# -------------------------------------------------------------------------------------------------------------------
log "1. kubectl apply -k hack/node/overlay; both replicas Ready"
"${K[@]}" apply -k "$REPO/hack/node/overlay" >"$WORK/apply.out" 2>&1 || fail "apply -k: $(cat "$WORK/apply.out")"
"${K[@]}" wait --for condition=established --timeout=60s crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io \
  crd/drdrills.dr.botrt.io >/dev/null || fail "the CRDs are not Established"
"${K[@]}" -n "$SYS_NS" rollout status deployment/botrt-controller --timeout=180s >"$WORK/rollout.out" 2>&1 ||
  fail "rollout status: $(cat "$WORK/rollout.out")"
ready="$("${K[@]}" -n "$SYS_NS" get deployment botrt-controller -o jsonpath='{.status.readyReplicas}/{.status.replicas}')"
[[ "$ready" == 2/2 ]] || fail "the Deployment has $ready ready replicas"
pods=($("${K[@]}" -n "$SYS_NS" get pods -l app.kubernetes.io/component=controller -o jsonpath='{.items[*].metadata.name}'))
((${#pods[@]} == 2)) || fail "expected 2 controller Pods, found ${#pods[@]}"
for p in "${pods[@]}"; do
  node="$("${K[@]}" -n "$SYS_NS" get pod "$p" -o jsonpath='{.spec.nodeName}')"
  [[ "$node" == botrt-node ]] || fail "controller Pod $p is on '$node', not the node"
done
holder=""
for _ in $(seq 1 60); do
  holder="$("${K[@]}" -n "$SYS_NS" get lease botrt-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
  [[ -n "$holder" ]] && break
  sleep 1
done
[[ -n "$holder" ]] || fail "no replica took the Lease"
leaders=0
for p in "${pods[@]}"; do
  logs="$("${K[@]}" -n "$SYS_NS" logs "$p")"
  grep '"msg":"acquired the lease"' <<<"$logs" >/dev/null && leaders=$((leaders + 1))
  grep '"msg":"connected"' <<<"$logs" | head -1 | grep 'https://10.96.0.1:443' >/dev/null ||
    fail "controller $p did not connect through the kubernetes Service (in-cluster): $(head -c 600 <<<"$logs")"
done
((leaders == 1)) || fail "$leaders replicas acquired the lease (want 1)"

# -------------------------------------------------------------------------------------------------------------------
log "2. the controller's security settings, inside its container"
out="$("${K[@]}" -n "$SYS_NS" exec "${pods[0]}" -- sh -c \
  'id -u; id -g; grep ^CapEff /proc/self/status; if touch /probe 2>/dev/null; then echo writable; else echo read-only; fi;
   ls /var/run/secrets/kubernetes.io/serviceaccount/token' 2>&1)" || fail "kubectl exec: $out"
want="65532
65532
CapEff:	0000000000000000
read-only
/var/run/secrets/kubernetes.io/serviceaccount/token"
[[ "$out" == "$want" ]] || fail "inside the controller's container: got
$out
want
$want"

# -------------------------------------------------------------------------------------------------------------------
log "3. docs/quickstart.md from 'Credentials' on, in real Pods"
python3 - "$REPO/docs/quickstart.md" "$WORK/blocks" <<'PY' || fail "docs/quickstart.md: its tested blocks"
import os, re, sys
text = open(sys.argv[1]).read()
os.makedirs(sys.argv[2])
blocks = re.findall(r"<!-- install-test: (\w+)[^>]*-->\n```sh\n(.*?)```", text, re.S)
assert [t for t, _ in blocks][:2] == ["replaced", "install"], [t for t, _ in blocks]
for i, (tag, body) in enumerate(blocks):
    with open(os.path.join(sys.argv[2], f"{i:02d}-{tag}.sh"), "w") as f:
        f.write(body)
PY
BUCKET="node-quickstart-$$"
SECRET_MARK="s3cr3t-$RANDOM$RANDOM"
python3 - "$BUCKET" <<'PY' || fail "cannot create the bucket"
import os, sys, boto3
boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1").create_bucket(Bucket=sys.argv[1])
PY
DB_NAME="orders_$$"
"$BOTRT_PG_BIN/psql" -q -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -c "CREATE DATABASE $DB_NAME" >/dev/null
"$BOTRT_PG_BIN/psql" -q -h "$PGHOST" -p "$PGPORT" -U postgres -d "$DB_NAME" \
  -c "CREATE TABLE orders (id int primary key, item text); INSERT INTO orders VALUES (1, 'tea'), (2, 'cake')" >/dev/null
run_block() { # FILE
  log "   quickstart: $(grep -m1 -v '^\s*$' "$1" | cut -c1-100)"
  (
    cd "$REPO"
    export BUCKET S3_ENDPOINT="$BOTRT_S3_ENDPOINT" S3_REGION=us-east-1
    export AWS_ACCESS_KEY_ID="quickstart-key-$SECRET_MARK" AWS_SECRET_ACCESS_KEY="quickstart-secret-$SECRET_MARK"
    export VAULT_ADDR VAULT_TOKEN VAULT_KEY=botrt-test DB_HOST="$PGHOST" DB_PORT="$PGPORT" DB_USER=postgres
    export DB_NAME DB_PASSWORD="db-password-$SECRET_MARK"
    exec timeout -k 10 600 bash -euo pipefail "$1"
  ) >>"$WORK/quickstart.out" 2>&1 &
  local pid=$! verdict
  while kill -0 "$pid" 2>/dev/null; do
    verdict="$("${K[@]}" -n "$APP_NS" get drill orders-db-drill -o jsonpath='{.status.lastResult.passed}' 2>/dev/null || true)"
    if [[ "$verdict" == false ]]; then
      kill "$pid" 2>/dev/null || true
      fail "the quickstart's drill failed: $("${K[@]}" -n "$APP_NS" get drill orders-db-drill -o jsonpath='{.status.lastResult.message}')"
    fi
    sleep 1
  done
  wait "$pid" || fail "docs/quickstart.md block $(basename "$1") failed: $(tail -n 15 "$WORK/quickstart.out")"
}
# Block 02 waits for the rollout (done above, with the overlay); 03 on are the Secrets, policy, backup, drill, plan.
for f in "$WORK"/blocks/0[3-9]-run.sh "$WORK"/blocks/[1-9]?-run.sh; do
  [[ -f "$f" ]] && run_block "$f"
done
q() { "${K[@]}" -n "$APP_NS" "$@"; }
[[ -n "$(q get bp orders-db -o jsonpath='{.status.lastSnapshot}')" ]] || fail "the policy has no lastSnapshot"
[[ "$(q get drill orders-db-drill -o jsonpath='{.status.lastResult.passed}')" == true ]] || fail "the drill did not pass"

# -------------------------------------------------------------------------------------------------------------------
log "4. the backup Pod: on the node, credentials only in the engine's container"
"${K[@]}" -n botrt-backup get pods -o json >"$WORK/backup-pods.json"
python3 - "$WORK/backup-pods.json" "$SECRET_MARK" <<'PY' || fail "the backup Pod"
import json, sys
pods = [p for p in json.load(open(sys.argv[1]))["items"]
        if p["metadata"]["labels"].get("app") == "backup-service"
        and {c["name"] for c in p["spec"]["containers"]} == {"dump", "backup"}]
assert pods, "no backup Pod with a dump and a backup container in botrt-backup"
ok = [p for p in pods if p["status"].get("phase") == "Succeeded"]
assert ok, [(p["metadata"]["name"], p["status"].get("phase")) for p in pods]
p = ok[0]
assert p["spec"]["nodeName"] == "botrt-node", p["spec"].get("nodeName")
assert p["spec"]["automountServiceAccountToken"] is False
cs = {c["name"]: c for c in p["spec"]["containers"]}
credential = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
dump_env = {e["name"] for e in cs["dump"].get("env", [])}
assert not (dump_env & credential), dump_env
assert not any(m["mountPath"].startswith("/var/run/botrt/secrets") for m in cs["dump"].get("volumeMounts", []))
assert {e["name"] for e in cs["backup"].get("env", [])} & credential
assert cs["dump"]["image"].endswith("postgres:16") and "botrt-engine" in cs["backup"]["image"]
st = {c["name"]: c["state"]["terminated"] for c in p["status"]["containerStatuses"]}
assert st["dump"]["exitCode"] == 0 and st["backup"]["exitCode"] == 0, st
res = json.loads(st["backup"]["message"])
assert res["command"] == "backup" and res["ok"] and res["snapshotId"], res
assert sys.argv[2] not in json.dumps(p["status"]), "a Secret value is in the Pod's status"
print(f"node-e2e: backup Pod {p['metadata']['name']}: snapshot {res['snapshotId'][:12]}, {res['bytesRead']} bytes read")
PY
for p in "${pods[@]}"; do
  if "${K[@]}" -n "$SYS_NS" logs "$p" | grep -F "$SECRET_MARK" >/dev/null; then fail "a Secret value is in $p's log"; fi
done
log PASS
