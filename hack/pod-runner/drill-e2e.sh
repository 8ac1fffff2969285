#!/usr/bin/env bash
# End to end: a BackupPolicy (dump command -> moto S3, OpenBao Transit keys) backs up through botrt-controller and
# the pod runner; a DRDrill restores it into a fenced scratch namespace, verifies it (--read-data and a query), and
# passes with measured RTO and RPO; after a pack is tampered with, the drill fails on data integrity with a Warning
# Event naming the damaged object. The scratch namespaces are removed after each run.
#
#   KUBECONFIG=... BOTRT_CONTROLLER_BIN=... BOTRT_ENGINE_BIN=... BOTRT_S3_ENDPOINT=... VAULT_ADDR=... VAULT_TOKEN=...
#   AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... hack/pod-runner/drill-e2e.sh
#
# (hack/cluster.sh env and hack/services.sh env print all of these but the two binaries.) Needs root for the runner.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fail() { echo "drill-e2e: FAIL: $*" >&2; exit 1; }
log() { echo "drill-e2e: $*" >&2; }
for v in KUBECONFIG BOTRT_CONTROLLER_BIN BOTRT_ENGINE_BIN BOTRT_S3_ENDPOINT VAULT_ADDR VAULT_TOKEN AWS_ACCESS_KEY_ID \
  AWS_SECRET_ACCESS_KEY; do
  [[ -n "${!v:-}" ]] || fail "$v is not set (see the header of $0)"
done
[[ "$(id -u)" == 0 ]] || fail "the pod runner's mount isolation needs root"

NS="drille2e-$$"
BACKUP_NS="botrt-backup-$$"
BUCKET="drill-e2e-$$-$RANDOM"
WORK="$(mktemp -d /tmp/botrt-drill-e2e.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  # The BackupPolicy's finalizer needs the running controller: delete it before stopping the controller.
  kubectl -n "$NS" delete backuppolicies --all --timeout=60s >/dev/null 2>&1 || true
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  kubectl delete namespace "$NS" "$BACKUP_NS" --wait=false >/dev/null 2>&1 || true
  kubectl delete namespace -l "dr.botrt.io/drill-namespace=$NS" --wait=false >/dev/null 2>&1 || true
  if [[ $rc -ne 0 ]]; then
    echo "--- controller log"; tail -n 30 "$WORK/controller.log" || true
    echo "--- runner log"; tail -n 20 "$WORK/runner.log" || true
  fi >&2
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
k() { kubectl -n "$NS" "$@"; }
s3() { python3 - "$@" <<'EOF'
import os, sys, boto3
s = boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1")
cmd, bucket = sys.argv[1], sys.argv[2]
if cmd == "mb":
    s.create_bucket(Bucket=bucket)
elif cmd == "tamper":  # flip one byte in the middle of every data pack
    for o in s.list_objects_v2(Bucket=bucket, Prefix="db/data/").get("Contents", []):
        b = bytearray(s.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
        b[len(b) // 2] ^= 0xFF
        s.put_object(Bucket=bucket, Key=o["Key"], Body=bytes(b))
        print(o["Key"])
EOF
}

kubectl apply -f "$REPO/crds/" >/dev/null
kubectl wait --for condition=established --timeout=60s crd/drdrills.dr.botrt.io crd/backuppolicies.dr.botrt.io >/dev/null
s3 mb "$BUCKET"
printf '%s' "$VAULT_TOKEN" >"$WORK/vault-token"
# No `botrt-engine init` here: the policy's first run creates the repository (backup --init-if-missing).

kubectl create namespace "$NS" >/dev/null
for _ in $(seq 1 100); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
k create secret generic s3-creds --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" >/dev/null
k create secret generic vault-token --from-file=token="$WORK/vault-token" >/dev/null
"$BOTRT_CONTROLLER_BIN" run --metrics-address off --namespace "$NS" --backup-namespace "$BACKUP_NS" \
  >"$WORK/controller.log" 2>&1 &
PIDS+=($!)
python3 "$REPO/hack/pod-runner.py" -l "dr.botrt.io/policy-namespace=$NS" -l "dr.botrt.io/drill-namespace=$NS" \
  --restart-backoff 1 --work-dir "$WORK/runner" >"$WORK/runner.log" 2>&1 &
PIDS+=($!)

log "1. an on-demand backup of a dump command"
k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: db}
spec:
  tier: critical
  trigger: b1
  source:
    command: {image: busybox:1.36, command: ["sh", "-c", "echo row-1; echo row-2"], fileName: db.dump}
  repository:
    s3: {bucket: "$BUCKET", prefix: db, endpoint: "$BOTRT_S3_ENDPOINT", region: us-east-1, forcePathStyle: true,
         credentialsSecretRef: {name: s3-creds}}
  encryption:
    kms:
      vaultTransit: {address: "$VAULT_ADDR", key: botrt-test, authSecretRef: {name: vault-token}}
EOF
for _ in $(seq 1 90); do [[ -n "$(k get backuppolicy db -o jsonpath='{.status.lastSnapshot}')" ]] && break; sleep 1; done
[[ -n "$(k get backuppolicy db -o jsonpath='{.status.lastSnapshot}')" ]] ||
  fail "no backup: $(k get backuppolicy db -o jsonpath='{.status.conditions[*].message}')"

drill_run() { # TRIGGER: start a run and wait for its result
  k patch drdrill db-drill --type merge -p "{\"spec\":{\"trigger\":\"$1\"}}" >/dev/null
  for _ in $(seq 1 120); do
    [[ "$(k get drdrill db-drill -o jsonpath='{.status.lastResult.trigger}')" == "trigger:$1" ]] && return 0
    sleep 1
  done
  fail "drill run $1 did not finish: $(k get drdrill db-drill -o jsonpath='{.status}')"
}
r() { k get drdrill db-drill -o jsonpath="{.status.lastResult.$1}"; }

log "2. a drill restores into a scratch namespace, verifies and passes"
k apply -f - >/dev/null <<'EOF'
apiVersion: dr.botrt.io/v1alpha1
kind: DRDrill
metadata: {name: db-drill}
spec:
  schedule: weekly
  target: {backupPolicyRef: {name: db}}
  restore:
    command: {image: busybox:1.36, command: ["sh", "-c", "cat > /tmp/db.restored"]}
  verification:
    readData: true
    databaseQuery: {image: busybox:1.36, command: ["sh", "-c", "cat >/dev/null; grep -c row /tmp/db.restored"],
                    query: "select count(*) from rows", expected: "2"}
EOF
drill_run d1
[[ "$(r passed)" == true ]] || fail "drill d1 did not pass: $(r message)"
[[ "$(r dataIntegrity)" == true && -n "$(r rtoAchievedSeconds)" && -n "$(r rpoAchievedSeconds)" ]] ||
  fail "drill d1: integrity/RTO/RPO missing: $(r message)"
(( $(r complianceScore) >= 95 )) || fail "drill d1: score $(r complianceScore)"
for c in Passed RTOMet RPOMet; do
  [[ "$(k get drdrill db-drill -o jsonpath="{.status.conditions[?(@.type==\"$c\")].status}")" == True ]] ||
    fail "drill d1: condition $c is not True"
done
scratch="$(r scratchNamespace)"
[[ "$scratch" == drill-db-drill-* ]] || fail "drill d1: scratch namespace '$scratch'"
for _ in $(seq 1 60); do kubectl get namespace "$scratch" >/dev/null 2>&1 || break; sleep 1; done
! kubectl get namespace "$scratch" >/dev/null 2>&1 || fail "the scratch namespace $scratch was not removed"
k describe drdrill db-drill | grep -q "The drill passed." || fail "kubectl describe does not say the drill passed"

log "3. after a pack is tampered with, the drill fails on data integrity"
s3 tamper "$BUCKET" >/dev/null
drill_run d2
[[ "$(r passed)" == false && "$(r dataIntegrity)" == false ]] || fail "drill d2 should fail integrity: $(r message)"
[[ "$(k get drdrill db-drill -o jsonpath='{.status.conditions[?(@.type=="Passed")].reason}')" == DataIntegrityFailed ]] ||
  fail "drill d2: Passed reason"
k get events --field-selector involvedObject.name=db-drill,reason=DataIntegrityFailed -o jsonpath='{.items[*].message}' |
  grep -q "data/" || fail "drill d2: no DataIntegrityFailed Warning naming the damaged pack"
[[ "$(k get drdrill db-drill -o jsonpath='{.status.history[*].trigger}')" == "trigger:d2 trigger:d1" ]] ||
  fail "drill history: $(k get drdrill db-drill -o jsonpath='{.status.history[*].trigger}')"
log "4. botrt-controller report reads it all back"
"$BOTRT_CONTROLLER_BIN" report -n "$NS" -o json >"$WORK/report.json" || fail "botrt-controller report failed"
python3 - "$WORK/report.json" <<'PY' || fail "the report does not show the policy and the failed drill"
import json, sys
r = json.load(open(sys.argv[1]))
assert [p["name"] for p in r["policies"]] == ["db"], r["policies"]
assert r["drills"][0]["passed"] is False and r["drills"][0]["dataIntegrity"] is False, r["drills"]
assert {p["profile"] for p in r["profiles"]} == {"sox", "gdpr", "pci-dss", "hipaa"}
PY
"$BOTRT_CONTROLLER_BIN" report -n "$NS"
kubectl get drdrills,recoveryplans,backuppolicies -n "$NS" -o wide
log PASS
