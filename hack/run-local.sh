#!/usr/bin/env bash
# The operator on the local node, as a user runs it: brings the control plane and the node up, builds the images
# from images/*/Containerfile (hack/images.sh), starts S3 (moto), Vault Transit (OpenBao) and PostgreSQL on the
# node's bridge address, installs the operator with `kubectl apply -k hack/node/overlay`, and applies the samples
# that really run here (hack/node/samples/local.yaml: a database dump policy, a policy of files on a claim, a drill).
# It starts a first backup of each policy and then the drill, and shows `kubectl get botrt -A` every 30 s: within a
# few minutes LAST BACKUP is filled, RPO MET is True and the drill has PASSED with its RTO. Ctrl-C stops everything it
# started. The samples in crds/samples/ are written for real clouds and are not applied.
#
# Options (environment):
#   BOTRT_RUN_LOCAL_CHECK=1  no loop: wait (at most 5 minutes after the first backups are started) until both policies have a
#                            snapshot and RPOMet=True and the drill has passed, print the view, then stop; exit 0 if
#                            that happened, 1 if not (hack/test.sh runs it so)
#   BOTRT_CLUSTER_DIR and the BOTRT_*_PORT variables are honoured by hack/cluster.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
RUN_DIR="$REPO/.local/run"
SVC_DIR="$RUN_DIR/services"
mkdir -p "$RUN_DIR"
CHECK="${BOTRT_RUN_LOCAL_CHECK:-0}"
say() { echo "run-local: $(date +%H:%M:%S) $*" >&2; }

CLUSTER_STARTED=0
INSTALLED=0
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if ((INSTALLED)); then
    say "removing the samples and the operator"
    kubectl delete -n botrt-local drdrills,backuppolicies --all --timeout=90s >/dev/null 2>&1
    kubectl delete -f "$RUN_DIR/samples.yaml" --wait=false >/dev/null 2>&1
    # Everything the overlay installed but the CRDs (deleting a CRD is asynchronous: a later install would race it).
    kubectl delete namespace botrt-system --wait=false >/dev/null 2>&1
    kubectl delete clusterrole,clusterrolebinding botrt-controller >/dev/null 2>&1
    kubectl delete clusterrole botrt-edit botrt-view >/dev/null 2>&1
    kubectl delete namespace botrt-backup --wait=false >/dev/null 2>&1
  fi
  BOTRT_SERVICES_DIR="$SVC_DIR" bash hack/services.sh down >/dev/null 2>&1
  if ((CLUSTER_STARTED)); then
    say "stopping the local cluster"
    bash hack/cluster.sh down >/dev/null 2>&1
  else
    say "the cluster was already running before; left running (hack/cluster.sh down stops it)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Images, then the control plane and the node (which imports them).
say "building the images (hack/images.sh)"
bash hack/images.sh
if bash hack/cluster.sh status >/dev/null 2>&1; then
  say "control plane already running; using it"
  bash hack/cluster.sh node-up
  bash hack/cluster.sh node-images
else
  CLUSTER_STARTED=1
  bash hack/cluster.sh up
fi
# shellcheck disable=SC1090
source <(bash hack/cluster.sh env)
# shellcheck disable=SC1091
source "$BOTRT_CLUSTER_DIR/node.env"
NODE_IP="$NODE_SUBNET.1"
ctr --address "/run/botrt-node-$(printf '%s' "$BOTRT_CLUSTER_DIR" | sha256sum | cut -c1-10)/containerd.sock" -n k8s.io \
  images tag --force botrt.local/postgres:15 docker.io/library/postgres:16 >/dev/null

# 2. The services the Pods use, on the bridge address.
say "starting S3, Vault Transit and PostgreSQL on $NODE_IP"
BOTRT_SERVICES_DIR="$SVC_DIR" BOTRT_SERVICES_HOST="$NODE_IP" BOTRT_SERVICES_ONLY="moto vault postgres" \
  BOTRT_S3_PORT=15100 BOTRT_VAULT_PORT=18300 BOTRT_PG_PORT=15533 bash hack/services.sh up
# shellcheck disable=SC1090
source <(BOTRT_SERVICES_DIR="$SVC_DIR" bash hack/services.sh env)
BUCKET="botrt-local"
DB_NAME="orders"
python3 - "$BUCKET" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1")
if sys.argv[1] not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket=sys.argv[1])
PY
"$BOTRT_PG_BIN/psql" -q -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep 1 >/dev/null ||
  "$BOTRT_PG_BIN/psql" -q -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -c "CREATE DATABASE $DB_NAME"
"$BOTRT_PG_BIN/psql" -q -h "$PGHOST" -p "$PGPORT" -U postgres -d "$DB_NAME" -c \
  "CREATE TABLE IF NOT EXISTS orders (id int primary key, item text);
   INSERT INTO orders VALUES (1, 'tea'), (2, 'cake') ON CONFLICT DO NOTHING" >/dev/null

# 3. The operator, as users install it (local image tags).
say "installing the operator: kubectl apply -k hack/node/overlay"
# An earlier install being removed (its namespace terminating) would refuse the new one's objects.
kubectl wait --for=delete namespace/botrt-system --timeout=180s >/dev/null 2>&1 || true
INSTALLED=1
kubectl apply -k hack/node/overlay >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io crd/drdrills.dr.botrt.io >/dev/null
kubectl -n botrt-system rollout status deployment/botrt-controller --timeout=180s

# 4. The samples that run here.
PV_DIR="$RUN_DIR/pv-uploads"
mkdir -p "$PV_DIR"
chmod 0777 "$PV_DIR"
export NODE_IP S3_PORT=15100 VAULT_PORT=18300 PG_PORT=15533 BUCKET DB_NAME PV_DIR
python3 - hack/node/samples/local.yaml >"$RUN_DIR/samples.yaml" <<'PY'
import os, re, sys
print(re.sub(r"\$\{(\w+)\}", lambda m: os.environ[m.group(1)], open(sys.argv[1]).read()), end="")
PY
say "applying hack/node/samples/local.yaml"
kubectl apply -f "$RUN_DIR/samples.yaml"
kubectl -n botrt-local wait --for=condition=Ready pod/uploads-app --timeout=120s >/dev/null
kubectl -n botrt-local wait --for=condition=Ready bp/orders-db bp/uploads --timeout=120s >/dev/null
STARTED=$SECONDS
say "starting a first backup of each policy"
kubectl -n botrt-local annotate --overwrite bp orders-db uploads dr.botrt.io/run-now="$(date +%s)" >/dev/null

show() {
  echo
  kubectl get botrt -A
  echo
  echo "--- botrt-controller (last 10 lines of one replica)"
  kubectl -n botrt-system logs deployment/botrt-controller --tail=10 2>/dev/null | cut -c1-200 || true
}
cond() { kubectl -n botrt-local get "$1" -o jsonpath="{.status.conditions[?(@.type==\"$2\")].status}" 2>/dev/null; }
done_all() {
  [[ "$(cond bp/orders-db RPOMet)" == True && "$(cond bp/uploads RPOMet)" == True ]] &&
    [[ -n "$(kubectl -n botrt-local get bp uploads -o jsonpath='{.status.lastSnapshot}')" ]] &&
    [[ "$(kubectl -n botrt-local get drill orders-db-drill -o jsonpath='{.status.lastResult.passed}')" == true ]]
}

# 5. The drill, once the policy it rehearses has a backup.
drill_started=0
while ((SECONDS - STARTED < 300)); do
  if ((!drill_started)) && [[ "$(cond bp/orders-db LastBackupSucceeded)" == True ]]; then
    say "the first backup of orders-db is stored; starting the drill"
    kubectl -n botrt-local annotate --overwrite drill orders-db-drill dr.botrt.io/run-now="$(date +%s)" >/dev/null
    drill_started=1
  fi
  done_all && break
  sleep 2
done
show
if done_all; then
  say "a real backup of both policies, RPO met, and a drill passed, $((SECONDS - STARTED)) s after the first backups were started"
  ok=0
else
  say "not everything is green after $((SECONDS - STARTED)) s: see kubectl describe -n botrt-local bp,drill"
  ok=1
fi
if ((CHECK)); then exit "$ok"; fi

say "KUBECONFIG=$KUBECONFIG; Ctrl-C stops what this script started"
while true; do
  sleep 30
  show
done
