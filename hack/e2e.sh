#!/usr/bin/env bash
# End to end on the local control plane (hack/cluster.sh) and its node: every Job Pod is started by the kubelet in
# containerd (hack/node/lib.sh), the engine in the image built from images/engine/Containerfile, pg_dump and psql in
# a stock-like PostgreSQL image (botrt.local/postgres:15 answering to postgres:16), against a real PostgreSQL server
# on the node's bridge address:
#   1. a real PostgreSQL database is backed up by a BackupPolicy (pg_dump streamed into the engine) to moto S3 with
#      Object Lock, data keys wrapped by OpenBao Transit;
#   2. rows are deleted (and the damage is backed up too); a RecoveryPlan stops the dependent Deployment, restores
#      the newest snapshot taken before the deletion (restore.beforeTime) with psql, verifies the row count with a
#      query and --read-data, and starts the Deployment again;
#   3. a DRDrill restores the newest backup into a scratch database from a fenced scratch namespace, runs the
#      verification query, compares it with the expected result and passes with measured RTO and RPO;
#   4. after a data pack of the repository is tampered with, the drill fails: dataIntegrity False, Passed False and
#      a Warning Event naming the damaged object;
#   5. `kubectl describe` says in sentences what each run measured and whether each target was met, and
#      `botrt-controller report` reads the policy, the plan and the drill back.
# It ends by printing `kubectl get drdrills,recoveryplans,backuppolicies -A -o wide`.
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... hack/e2e.sh
#
# The services (S3 on moto, OpenBao, PostgreSQL) run on the bridge address (started here unless running).
# Everything it creates (namespaces, databases; buckets' contents stay: moto forgets them when it stops) and every
# process it starts is removed or stopped at the end.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fail() { echo "e2e: FAIL: $*" >&2; exit 1; }
log() { echo "e2e: $(date -u +%H:%M:%S) $*" >&2; }
NODE_FLOW=e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
node_require
node_services_up
for b in psql createdb dropdb pg_dump; do [[ -x "$BOTRT_PG_BIN/$b" ]] || fail "$BOTRT_PG_BIN/$b is missing"; done
export PATH="$BOTRT_PG_BIN:$PATH"

NS="e2e-$$"
BACKUP_NS="botrt-backup-e2e-$$"
BUCKET="botrt-e2e-$$-$RANDOM"
DB="botrt_e2e_$$"
SCRATCH_DB="botrt_e2e_drill_$$"
WORK="$(mktemp -d /tmp/botrt-e2e.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  set +e
  # The BackupPolicy's finalizer needs the running controller: delete it before stopping the controller.
  kubectl -n "$NS" delete backuppolicies --all --timeout=60s >/dev/null 2>&1
  kubectl -n "$NS" delete drdrills --all --timeout=60s >/dev/null 2>&1
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  kubectl delete namespace "$NS" "$BACKUP_NS" --wait=false >/dev/null 2>&1
  kubectl delete namespace -l "dr.botrt.io/drill-namespace=$NS" --wait=false >/dev/null 2>&1
  dropdb --if-exists "$DB" >/dev/null 2>&1
  dropdb --if-exists "$SCRATCH_DB" >/dev/null 2>&1
  if [[ $rc -ne 0 ]]; then
    echo "--- controller log"; tail -n 40 "$WORK/controller.log"
    node_pods_dump "$NS" "$BACKUP_NS"
  fi >&2
  node_services_down
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT
k() { kubectl -n "$NS" "$@"; }
q() { psql -X -Atq -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
s3() { python3 - "$@" <<'EOF'
import os, sys, boto3
s = boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1")
cmd, bucket = sys.argv[1], sys.argv[2]
if cmd == "mb":  # Object Lock needs a bucket created with it (and so versioned)
    s.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
elif cmd == "retained":  # how many data packs carry a retention date
    keys = [o["Key"] for o in s.list_objects_v2(Bucket=bucket, Prefix="appdb/data/").get("Contents", [])]
    print(sum(1 for k in keys if s.head_object(Bucket=bucket, Key=k).get("ObjectLockRetainUntilDate")))
elif cmd == "tamper":  # damage one byte in the middle of a data pack of the newest backup, as bit rot would
    # Drills verify the snapshot they restore, not the whole repository: the damage must be in a pack the newest
    # snapshot references, and the newest backup's own packs are (the largest of them). Writing a damaged copy over
    # it is not enough: the engine reads the stored version whose hash matches the pack's name (a hostile store that
    # can only write cannot damage locked data). So the good versions go first, as only an admin can do under a
    # governance lock (BypassGovernanceRetention), and the damaged bytes are the only version left.
    objs = s.list_objects_v2(Bucket=bucket, Prefix="appdb/data/").get("Contents", [])
    o = max(objs, key=lambda o: (o["LastModified"], o["Size"]))
    b = bytearray(s.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
    b[len(b) // 2] ^= 0xFF
    for v in s.list_object_versions(Bucket=bucket, Prefix=o["Key"]).get("Versions", []):
        if v["Key"] == o["Key"]:
            s.delete_object(Bucket=bucket, Key=o["Key"], VersionId=v["VersionId"], BypassGovernanceRetention=True)
    s.put_object(Bucket=bucket, Key=o["Key"], Body=bytes(b))
    print(o["Key"])
EOF
}

kubectl apply -f "$REPO/crds/" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/drdrills.dr.botrt.io crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io >/dev/null
s3 mb "$BUCKET"
printf '%s' "$VAULT_TOKEN" >"$WORK/vault-token"

log "a PostgreSQL database $DB with 100 rows"
createdb "$DB"
q "create table items(id int primary key, name text not null)" >/dev/null
q "insert into items select g, 'item-' || g from generate_series(1, 100) g" >/dev/null
[[ "$(q 'select count(*) from items')" == 100 ]] || fail "the database does not have its 100 rows"

kubectl create namespace "$NS" >/dev/null
for _ in $(seq 1 100); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
k create secret generic s3-creds --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" >/dev/null
k create secret generic vault-token --from-file=token="$WORK/vault-token" >/dev/null
# The database login, as a Secret the dump, restore and query commands read (the server trusts the bridge's /24).
k create secret generic appdb-login --from-literal=username="$PGUSER" --from-literal=password=not-checked >/dev/null
# Port 0 by default: the kernel picks a free one, read back from the controller's log when scraping (a fixed or
# random port in the ephemeral range can collide with an outgoing connection).
METRICS_PORT="${BOTRT_E2E_METRICS_PORT:-0}"
node_controller "$WORK/controller.log" --metrics-address "127.0.0.1:$METRICS_PORT" --namespace "$NS" \
  --backup-namespace "$BACKUP_NS"
PIDS+=("$NODE_CONTROLLER_PID")

# The connection settings every database command gets (image postgres:16, in its own container on the node).
PGENV="[{name: PGHOST, value: \"$PGHOST\"}, {name: PGPORT, value: \"$PGPORT\"},
        {name: PGUSER, valueFrom: {secretKeyRef: {name: appdb-login, key: username}}},
        {name: PGPASSWORD, valueFrom: {secretKeyRef: {name: appdb-login, key: password}}}]"

log "1. a BackupPolicy streams pg_dump into the engine (S3 with Object Lock, OpenBao Transit keys)"
k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: appdb}
spec:
  tier: critical
  schedule: "0 3 1 1 *"   # on-demand runs only: a scheduled run at a 5-minute boundary made the drill restore an older snapshot than expected
  dataType: database
  trigger: b1
  source:
    command:
      image: postgres:16
      command: [pg_dump, --clean, --if-exists, --no-owner, --dbname=$DB]
      fileName: appdb.sql
      env: $PGENV
  repository:
    s3: {bucket: "$BUCKET", prefix: appdb, endpoint: "$BOTRT_S3_ENDPOINT", region: us-east-1, forcePathStyle: true,
         credentialsSecretRef: {name: s3-creds}, objectLock: {mode: governance, days: 1}}
  encryption:
    kms:
      vaultTransit: {address: "$VAULT_ADDR", key: botrt-test, authSecretRef: {name: vault-token}}
      allowPlaintextHTTP: true  # the test services' Vault speaks plain HTTP
EOF
backup() { # TRIGGER: run the policy now and wait for its new snapshot; prints the snapshot id
  local before
  before="$(k get backuppolicy appdb -o jsonpath='{.status.lastSnapshot}')"
  k patch backuppolicy appdb --type merge -p "{\"spec\":{\"trigger\":\"$1\"}}" >/dev/null
  for _ in $(seq 1 120); do
    local s
    s="$(k get backuppolicy appdb -o jsonpath='{.status.lastSnapshot}')"
    [[ -n "$s" && "$s" != "$before" ]] && { echo "$s"; return 0; }
    sleep 1
  done
  fail "backup $1 made no snapshot: $(k get backuppolicy appdb -o jsonpath='{.status.conditions[*].message}')"
}
# b1 is the spec's trigger already; the helper's patch to the same value is a no-op.
SNAP1="$(backup b1)"
log "   snapshot $SNAP1 of 100 rows"
[[ "$(s3 retained "$BUCKET")" -ge 1 ]] || fail "no data pack carries an Object Lock retention date"
# Backup windows: the run's storage egress and credentials RoleBinding existed while it ran, and are gone after.
grep -q 'run access granted.*policy=.*/appdb' "$WORK/controller.log" || fail "no run access was granted for the backup"
access() { kubectl -n "$BACKUP_NS" get rolebindings,networkpolicies -l dr.botrt.io/component=run-access -o name; }
for _ in $(seq 1 30); do [[ -z "$(access)" ]] && break; sleep 1; done
[[ -z "$(access)" ]] || fail "the run's access was not revoked after it ended: $(access)"
grep -q 'run access revoked.*policy=.*/appdb' "$WORK/controller.log" || fail "no revocation was logged"
log "   the run's storage egress and credentials binding were granted during the run and revoked after it"
sleep 2
GOOD_TIME="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
sleep 2

log "2. rows are deleted and the damage is backed up too; a RecoveryPlan restores from before $GOOD_TIME"
q "delete from items where id > 60" >/dev/null
[[ "$(q 'select count(*) from items')" == 60 ]] || fail "the delete did not leave 60 rows"
SNAP2="$(backup b2)"
[[ "$SNAP2" != "$SNAP1" ]] || fail "the second backup made no new snapshot"
log "   snapshot $SNAP2 of 60 rows (the newest)"
# The first backup's result pinned the repository; the second one's Job required it (issue 14 item 5).
PIN="$(k get backuppolicy appdb -o jsonpath='{.status.repositoryIdentity.id}')"
[[ "$PIN" =~ ^[0-9a-f]{32}$ ]] || fail "status.repositoryIdentity.id is '$PIN' after two backups"
kubectl -n "$BACKUP_NS" get jobs,cronjobs -l dr.botrt.io/policy-name=appdb -o json |
  grep -q -- "--expect-repository-id" || fail "no Job or CronJob of appdb passes --expect-repository-id"
kubectl -n "$BACKUP_NS" get jobs,cronjobs -l dr.botrt.io/policy-name=appdb -o json | grep -q -- "\"$PIN\"" ||
  fail "the pinned id $PIN is in no Job or CronJob of appdb"
log "   repository $PIN is pinned in status and passed to the Jobs"
k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app, botrt-e2e: "$NS"}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: app, image: $APP_IMAGE, command: ["sleep", "3600"]}]
EOF
k rollout status deployment/app --timeout=60s >/dev/null || fail "the Deployment app did not become ready"
k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: appdb-recovery}
spec:
  tier: critical
  trigger: r1
  procedures:
  - name: assess-damage
    steps:
    - name: check-connectivity
      action: job
      timeout: 1m
      job: {image: postgres:16, command: [psql, -X, -Atq, --dbname=$DB, -c, "select 1"], env: $PGENV}
  - name: restore-from-backup
    steps:
    - {name: stop-app, action: scaleDown, targets: [{kind: Deployment, name: app}]}
    - name: restore-before-the-delete
      action: restore
      timeout: 5m
      restore:
        policyRef: {name: appdb}
        beforeTime: "$GOOD_TIME"
        into:
          command: {image: postgres:16, command: [psql, -X, -q, -v, ON_ERROR_STOP=1, --dbname=$DB], env: $PGENV}
    - name: verify-row-count
      action: verify
      timeout: 5m
      verify:
        policyRef: {name: appdb}
        readData: true
        databaseQuery:
          image: postgres:16
          command: [psql, -X, -Atq, --dbname=$DB]
          env: $PGENV
          query: select count(*) from items
          expected: "100"
    - {name: start-app, action: scaleUp, targets: [{kind: Deployment, name: app}]}
    - {name: app-ready, action: waitReady, timeout: 2m, targets: [{kind: Deployment, name: app}]}
EOF
jp() { k get recoveryplan appdb-recovery -o jsonpath="$1"; }
phase=""
for _ in $(seq 1 180); do
  phase="$(jp '{.status.phase}')"
  [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
  sleep 1
done
[[ "$phase" == Succeeded ]] || fail "the RecoveryPlan ended '$phase': $(jp '{.status.message}')"
[[ "$(jp '{.status.steps[*].state}')" == "Succeeded Succeeded Succeeded Succeeded Succeeded Succeeded" ]] ||
  fail "plan step states: $(jp '{.status.steps[*].state}')"
[[ "$(q 'select count(*) from items')" == 100 ]] || fail "after the plan the database has $(q 'select count(*) from items') rows, not 100"
[[ "$(k get deployment app -o jsonpath='{.spec.replicas}/{.status.readyReplicas}')" == 1/1 ]] ||
  fail "the Deployment app is not back at 1/1"
[[ -n "$(jp '{.status.rtoAchievedSeconds}')" ]] || fail "the plan measured no RTO"
for c in Succeeded RTOMet; do
  [[ "$(jp "{.status.conditions[?(@.type==\"$c\")].status}")" == True ]] || fail "plan condition $c is not True"
done
log "   the plan restored 100 rows in $(jp '{.status.rtoAchievedSeconds}') s (target $(jp '{.status.rtoTargetSeconds}') s)"

log "3. a fresh backup, then a DRDrill restores it into the scratch database $SCRATCH_DB and verifies it"
SNAP3="$(backup b3)"
k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: DRDrill
metadata: {name: appdb-drill}
spec:
  schedule: weekly
  target: {backupPolicyRef: {name: appdb}}
  # The scratch namespace's fence lets the drill's pods reach the database server too.
  egress: [{host: "$PGHOST", port: $PGPORT}]
  restore:
    command:
      image: postgres:16
      # Runs never overlap, so one scratch database per drill: recreated empty by each run.
      command: [sh, -c, 'dropdb --if-exists "\$0" && createdb "\$0" && psql -X -q -v ON_ERROR_STOP=1 --dbname="\$0"',
                $SCRATCH_DB]
      env: $PGENV
  verification:
    readData: true
    databaseQuery:
      image: postgres:16
      command: [psql, -X, -Atq, --dbname=$SCRATCH_DB]
      env: $PGENV
      query: select count(*) from items
      expected: "100"
EOF
drill_run() { # TRIGGER: start a run and wait for its result
  k patch drdrill appdb-drill --type merge -p "{\"spec\":{\"trigger\":\"$1\"}}" >/dev/null
  for _ in $(seq 1 180); do
    [[ "$(k get drdrill appdb-drill -o jsonpath='{.status.lastResult.trigger}')" == "trigger:$1" ]] && return 0
    sleep 1
  done
  fail "drill run $1 did not finish: $(k get drdrill appdb-drill -o jsonpath='{.status}')"
}
r() { k get drdrill appdb-drill -o jsonpath="{.status.lastResult.$1}"; }
cond() { k get drdrill appdb-drill -o jsonpath="{.status.conditions[?(@.type==\"$1\")].$2}"; }
drill_run d1
[[ "$(r passed)" == true ]] || fail "drill d1 did not pass: $(r message)"
[[ "$(r snapshot)" == "$SNAP3"* ]] || fail "drill d1 restored $(r snapshot), not the newest snapshot $SNAP3"
[[ "$(r dataIntegrity)" == true && -n "$(r rtoAchievedSeconds)" && -n "$(r rpoAchievedSeconds)" ]] ||
  fail "drill d1: integrity/RTO/RPO missing: $(r message)"
for c in Passed RTOMet RPOMet; do [[ "$(cond "$c" status)" == True ]] || fail "drill d1: condition $c is not True"; done
# The drill's RTO and its target are exported side by side (the RTOViolationRisk alert compares them).
if [[ "$METRICS_PORT" == 0 ]]; then
  METRICS_PORT="$(grep 'serving /metrics' "$WORK/controller.log" | tail -n 1 | grep -o '127\.0\.0\.1:[0-9]*' | sed 's/.*://')"
fi
METRICS="$(curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics")" || fail "no metrics on :$METRICS_PORT"
grep -qE "^botrt_drill_rto_seconds\{namespace=\"$NS\",drill=\"appdb-drill\"\} " <<<"$METRICS" &&
  grep -qE "^botrt_drill_rto_target_seconds\{namespace=\"$NS\",drill=\"appdb-drill\"\} 900$" <<<"$METRICS" ||
  fail "the drill's RTO and RTO target are not both exported: $(grep botrt_drill_rto <<<"$METRICS")"
[[ "$(psql -X -Atq -d "$SCRATCH_DB" -c 'select count(*) from items')" == 100 ]] ||
  fail "the scratch database $SCRATCH_DB does not hold the 100 restored rows"
scratch="$(r scratchNamespace)"
for _ in $(seq 1 60); do kubectl get namespace "$scratch" >/dev/null 2>&1 || break; sleep 1; done
! kubectl get namespace "$scratch" >/dev/null 2>&1 || fail "the scratch namespace $scratch was not removed"
describe="$(k describe drdrill appdb-drill)"
for s in "The drill passed: every target was met." "after the drill started, within the RTO target of 15m." \
  "old when the drill started, within the RPO target of 5m." "All restored data verified."; do
  grep -qF "$s" <<<"$describe" || fail "kubectl describe of the passed drill does not say '$s'"
done
log "   passed: RTO $(r rtoAchievedSeconds) s (target $(r rtoTargetSeconds) s), RPO $(r rpoAchievedSeconds) s (target $(r rpoTargetSeconds) s), score $(r complianceScore)"

log "4. a data pack is tampered with; the drill must fail on data integrity"
PACK="$(s3 tamper "$BUCKET")"
log "   flipped a byte of $PACK"
drill_run d2
[[ "$(r passed)" == false && "$(r dataIntegrity)" == false ]] || fail "drill d2 should fail integrity: $(r message)"
[[ "$(cond Passed status)" == False && "$(cond Passed reason)" == DataIntegrityFailed ]] ||
  fail "drill d2: Passed is $(cond Passed status) ($(cond Passed reason))"
PACK_NAME="${PACK#appdb/}"
k get events --field-selector involvedObject.name=appdb-drill,reason=DataIntegrityFailed,type=Warning \
  -o jsonpath='{.items[*].message}' | grep -F "$PACK_NAME" >/dev/null ||
  fail "no DataIntegrityFailed Warning naming the damaged pack $PACK_NAME"
scratch="$(r scratchNamespace)"
for _ in $(seq 1 60); do kubectl get namespace "$scratch" >/dev/null 2>&1 || break; sleep 1; done
! kubectl get namespace "$scratch" >/dev/null 2>&1 || fail "the failed run's scratch namespace $scratch was not removed"

log "what kubectl describe tells an admin"
describe="$(k describe drdrill appdb-drill)"
sed -n '/^Status:/,$p' <<<"$describe"
for s in "The drill failed: the restored data did not verify." "Data integrity FAILED." \
  "No restore was verified, so the RTO target of 15m was not met." "$PACK_NAME"; do
  grep -qF "$s" <<<"$describe" || fail "kubectl describe of the failed drill does not say '$s'"
done
[[ "$(k get drdrill appdb-drill -o jsonpath='{.status.history[*].trigger}')" == "trigger:d2 trigger:d1" ]] ||
  fail "drill history: $(k get drdrill appdb-drill -o jsonpath='{.status.history[*].trigger}')"

log "5. botrt-controller report reads the policy, the plan and the drills back from the cluster"
"$BOTRT_CONTROLLER_BIN" report -n "$NS" -o json >"$WORK/report.json" || fail "botrt-controller report failed"
python3 - "$WORK/report.json" <<'PY' || fail "the report does not show the policy, the plan and the failed drill"
import json, sys
r = json.load(open(sys.argv[1]))
assert [p["name"] for p in r["policies"]] == ["appdb"], r["policies"]
assert [p["name"] for p in r["plans"]] == ["appdb-recovery"], r["plans"]
assert r["drills"][0]["passed"] is False and r["drills"][0]["dataIntegrity"] is False, r["drills"]
assert {p["profile"] for p in r["profiles"]} == {"sox", "gdpr", "pci-dss", "hipaa"}
PY
"$BOTRT_CONTROLLER_BIN" report -n "$NS"
kubectl get drdrills,recoveryplans,backuppolicies -A -o wide
log PASS
