#!/usr/bin/env bash
# End to end: a disaster recovery cluster in restore-only mode, with two namespaces standing in for two clusters,
# each with its own botrt-controller (hack/node/lib.sh: every Job Pod is run by the local node in the engine image).
# It follows docs/runbooks.md, "Disaster recovery cluster":
#   1. the primary (namespace P, a controller as usual) backs up a BackupPolicy to moto S3, into a bucket with Object
#      Lock, so that every write leaves a version or a delete marker behind; its status records the repository's
#      identity;
#   2. every object version and delete marker of the bucket is listed;
#   3. the DR cluster (namespace D, a controller with --restore-only) gets the same Secrets and the same policy, as
#      from git, with the primary's identity stated in spec.repository.expectedIdentity: the policy is Ready with
#      reason RestoreOnly, ScheduleActive False, RPOMet Unknown, and no CronJob or Job appears in its backup
#      namespace;
#   4. a RecoveryPlan on the DR cluster restores the newest snapshot into a command that checks the bytes against the
#      primary's data, and verifies the repository with --read-data: Succeeded; a DRDrill there passes;
#   5. the bucket's versions and delete markers are exactly as in step 2: the restore-only policy's restore, verify
#      and drill Jobs wrote nothing into the repository the primary backs up into (no lock, no audit object);
#   6. the primary backs up again while the DR cluster stands by: its new snapshot is the DR cluster's `latest`
#      (a second plan run restores it);
#   7. a drill of a bigger snapshot (14 MiB of random bytes, backed up by the primary since step 1 into a bucket of
#      its own), restored on the DR cluster through a front of the storage paced to 480 KiB/s
#      (hack/lib/slow-proxy.py): its running restore's progress is in status.currentRun.progress and grows between two
#      reads 10 s apart; once the run ended there is no currentRun, so no progress.
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... hack/node/dr-e2e.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_FLOW=dr-e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
fail() { node_fail "$@"; }
log() { echo "dr-e2e: $(date -u +%H:%M:%S) $*" >&2; }
node_require
node_services_up

P="dr-primary-$$"
D="dr-standby-$$"
P_BACKUP="botrt-backup-drp-$$"
D_BACKUP="botrt-backup-drd-$$"
BUCKET="dr-e2e-$$-$RANDOM"
BULK_BUCKET="$BUCKET-bulk"
WORK="$(mktemp -d /tmp/botrt-dr-e2e.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  set +e
  for ns in "$D" "$P"; do
    kubectl -n "$ns" delete drdrills,recoveryplans --all --timeout=60s >/dev/null 2>&1
    kubectl -n "$ns" delete backuppolicies --all --timeout=60s >/dev/null 2>&1
  done
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [[ $rc -ne 0 ]]; then
    echo "--- primary controller log"; tail -n 25 "$WORK/primary.log"
    echo "--- DR controller log"; tail -n 40 "$WORK/standby.log"
    node_pods_dump "$D" "$D_BACKUP"
    echo "--- DR policy, plan and drill status"
    kubectl -n "$D" get backuppolicies,recoveryplans,drdrills -o jsonpath='{range .items[*]}{.kind} {.metadata.name}: {.status}{"\n"}{end}'
  fi >&2
  kubectl delete namespace "$P" "$D" "$P_BACKUP" "$D_BACKUP" --wait=false >/dev/null 2>&1
  node_services_down
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# Every version and delete marker of the bucket, one per line (key, version id, size or "marker"), sorted.
versions() { python3 - "$BUCKET" <<'EOF'
import os, sys, boto3
s = boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1")
out = []
for page in s.get_paginator("list_object_versions").paginate(Bucket=sys.argv[1]):
    out += ["%s %s %s" % (v["Key"], v["VersionId"], v["Size"]) for v in page.get("Versions", [])]
    out += ["%s %s marker" % (v["Key"], v["VersionId"]) for v in page.get("DeleteMarkers", [])]
print("\n".join(sorted(out)))
EOF
}

kubectl apply -f "$REPO/crds/" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io >/dev/null
python3 -c 'import os, boto3; boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1").create_bucket(Bucket="'"$BUCKET"'", ObjectLockEnabledForBucket=True)'
python3 -c 'import os, boto3; boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1").create_bucket(Bucket="'"$BULK_BUCKET"'")'
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$WORK/key"

# The data: a deterministic stream (the second backup's is one line longer), and its digests, which the DR cluster's
# restore command checks.
DATA_CMD='seq 1 200000'
WANT1="$(seq 1 200000 | sha256sum | cut -c1-64)"
WANT2="$(seq 1 200001 | sha256sum | cut -c1-64)"

# The policy as it is kept in git, applied to both clusters (STATED: the DR copy's expectedIdentity lines).
policy() { # NAMESPACE [STATED]
  kubectl -n "$1" apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: orders}
spec:
  tier: critical
  # Backups here are the triggered ones (the critical tier's default schedule is every 2 minutes).
  schedule: "0 0 1 1 *"
  trigger: ${TRIGGER:-b1}
  source:
    command: {image: $APP_IMAGE, command: ["sh", "-c", "$DATA_CMD"], fileName: orders.txt}
  repository:
    s3:
      bucket: "$BUCKET"
      prefix: orders
      endpoint: "$BOTRT_S3_ENDPOINT"
      region: us-east-1
      forcePathStyle: true
      credentialsSecretRef: {name: s3-creds}
      objectLock: {mode: governance, days: 1}
${2:-}
  encryption:
    kms: {localKeySecretRef: {name: master-key}}
EOF
}
secrets() { # NAMESPACE
  kubectl create namespace "$1" >/dev/null
  for _ in $(seq 1 100); do kubectl -n "$1" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
  kubectl -n "$1" create secret generic s3-creds --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
    --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" >/dev/null
  kubectl -n "$1" create secret generic master-key --from-file=key="$WORK/key" >/dev/null
}
jp() { kubectl -n "$1" get "$2" -o jsonpath="$3"; }
cond() { jp "$1" "$2" "{.status.conditions[?(@.type==\"$3\")].$4}"; }

log "1. the primary backs up"
secrets "$P"
node_controller "$WORK/primary.log" --metrics-address off --namespace "$P" --backup-namespace "$P_BACKUP"
PIDS+=("$NODE_CONTROLLER_PID")
policy "$P"
# Step 7's snapshot, backed up while steps 1 to 6 run (its bucket is not the one steps 2 and 5 list).
bulk() { # NAMESPACE ENDPOINT
  kubectl -n "$1" apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: bulk}
spec:
  tier: standard
  schedule: "0 0 1 1 *"
  trigger: b1
  source:
    command: {image: $APP_IMAGE, command: ["head", "-c", "14680064", "/dev/urandom"], fileName: bulk.bin}
  repository:
    s3: {bucket: "$BULK_BUCKET", prefix: bulk, endpoint: "$2", region: us-east-1, forcePathStyle: true,
         credentialsSecretRef: {name: s3-creds}}
  encryption:
    kms: {localKeySecretRef: {name: master-key}}
EOF
}
bulk "$P" "$BOTRT_S3_ENDPOINT"
for _ in $(seq 1 120); do [[ -n "$(jp "$P" bp/orders '{.status.lastSnapshot}')" ]] && break; sleep 1; done
FIRST="$(jp "$P" bp/orders '{.status.lastSnapshot}')"
[[ -n "$FIRST" ]] || fail "the primary did not back up: $(jp "$P" bp/orders '{.status.conditions[*].message}')"
ID="$(jp "$P" bp/orders '{.status.repositoryIdentity.id}')"
SIGNING="$(jp "$P" bp/orders '{.status.repositoryIdentity.signingKey}')"
[[ ${#ID} == 32 && ${#SIGNING} == 64 ]] || fail "no repository identity in the primary's status: '$ID' '$SIGNING'"

log "2. the bucket's versions before the DR cluster touches it"
versions >"$WORK/before"
grep -q '^orders/audit/' "$WORK/before" && grep -q '^orders/locks/.* marker$' "$WORK/before" ||
  fail "the listing does not show the primary's own writes (an audit object, a removed lock): $(cat "$WORK/before")"

log "3. the DR cluster applies the same policy restore-only, with the primary's identity stated"
secrets "$D"
node_controller "$WORK/standby.log" --metrics-address off --namespace "$D" --backup-namespace "$D_BACKUP" --restore-only
PIDS+=("$NODE_CONTROLLER_PID")
policy "$D" "    expectedIdentity: {repositoryId: \"$ID\", signingKey: \"$SIGNING\"}"
for _ in $(seq 1 60); do [[ "$(cond "$D" bp/orders Ready reason)" == RestoreOnly ]] && break; sleep 1; done
[[ "$(cond "$D" bp/orders Ready status)/$(cond "$D" bp/orders Ready reason)" == True/RestoreOnly ]] ||
  fail "DR policy Ready: $(cond "$D" bp/orders Ready status)/$(cond "$D" bp/orders Ready reason): $(cond "$D" bp/orders Ready message)"
[[ "$(cond "$D" bp/orders ScheduleActive status)" == False && "$(cond "$D" bp/orders RPOMet status)" == Unknown ]] ||
  fail "DR policy ScheduleActive $(cond "$D" bp/orders ScheduleActive status), RPOMet $(cond "$D" bp/orders RPOMet status)"
cond "$D" bp/orders Ready message | grep -q 'spec.trigger' || fail "the DR policy does not say its trigger is ignored"
[[ -z "$(kubectl -n "$D_BACKUP" get cronjobs,jobs -o name 2>/dev/null)" ]] ||
  fail "the restore-only policy has children: $(kubectl -n "$D_BACKUP" get cronjobs,jobs -o name)"

log "4. a RecoveryPlan on the DR cluster restores the primary's newest snapshot and verifies the repository"
plan() { # TRIGGER DIGEST
  kubectl -n "$D" apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: orders-failover}
spec:
  tier: critical
  trigger: $1
  procedures:
  - name: restore
    steps:
    - name: restore-orders
      action: restore
      timeout: 5m
      restore:
        policyRef: {name: orders}
        into:
          command:
            image: $APP_IMAGE
            command: [sh, -c, 'got="\$(sha256sum | cut -c1-64)"; echo "restored \$got"; test "\$got" = "$2"']
    - name: verify-repository
      action: verify
      timeout: 5m
      verify: {policyRef: {name: orders}, readData: true}
EOF
  local phase=""
  for _ in $(seq 1 180); do
    phase="$(jp "$D" rp/orders-failover '{.status.phase}')"
    [[ "$(jp "$D" rp/orders-failover '{.status.lastHandledTrigger}')" == *"$1" ]] &&
      [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
    sleep 1
  done
  [[ "$phase" == Succeeded ]] ||
    fail "the DR RecoveryPlan ($1) ended '$phase': $(jp "$D" rp/orders-failover '{.status.message}') $(jp "$D" rp/orders-failover '{.status.steps}')"
}
plan f1 "$WANT1"
[[ "$(jp "$D" rp/orders-failover '{.status.steps[*].state}')" == "Succeeded Succeeded" ]] ||
  fail "plan steps: $(jp "$D" rp/orders-failover '{.status.steps[*].state}')"
kubectl -n "$D" apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: DRDrill
metadata: {name: orders-drill}
spec:
  schedule: weekly
  trigger: d1
  target: {backupPolicyRef: {name: orders}}
  verification: {readData: true}
EOF
for _ in $(seq 1 180); do
  [[ "$(jp "$D" drdrill/orders-drill '{.status.lastResult.trigger}')" == trigger:d1 ]] && break
  sleep 1
done
[[ "$(jp "$D" drdrill/orders-drill '{.status.lastResult.passed}')" == true ]] ||
  fail "the DR drill did not pass: $(jp "$D" drdrill/orders-drill '{.status.lastResult}')"
[[ "$(jp "$D" drdrill/orders-drill '{.status.lastResult.snapshot}')" == "$FIRST"* ]] ||
  fail "the DR drill restored $(jp "$D" drdrill/orders-drill '{.status.lastResult.snapshot}'), not $FIRST"
# The drill reports what it fetched from the storage (its restore's and its verify's reads, as stored). The data is
# downloaded once, by the restore (restore --verify reads the restored files back from the scratch volume, and the
# verify checks the snapshot's structure without downloading it again): at most 1.1 times what the bucket of the one
# snapshot holds (issue 18's target), and less than the restored bytes (the data compresses to a fraction of them).
STORED="$(python3 -c 'import os, sys, boto3
s = boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1")
print(sum(o["Size"] for p in s.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1]) for o in p.get("Contents", [])))' "$BUCKET")"
READ="$(jp "$D" drdrill/orders-drill '{.status.lastResult.bytesRead}')"
RESTORED="$(seq 1 200000 | wc -c)"
[[ -n "$READ" && "$READ" -gt 0 && $((READ * 10)) -le $((STORED * 11)) && "$READ" -lt "$RESTORED" ]] ||
  fail "the drill's bytesRead '$READ' is not what it fetched (the bucket holds $STORED bytes; $RESTORED were restored)"
log "   the drill fetched $READ bytes from a bucket of $STORED bytes ($(python3 -c "print(f'{$READ/$STORED:.3f}')")x) to restore $RESTORED bytes"

log "5. the repository is exactly as the primary left it"
versions >"$WORK/after"
diff "$WORK/before" "$WORK/after" >"$WORK/diff" ||
  fail "the DR cluster wrote into the primary's repository (versions or delete markers added):$(echo; cat "$WORK/diff")"
[[ -z "$(kubectl -n "$D_BACKUP" get cronjobs -o name 2>/dev/null)" ]] || fail "a CronJob appeared on the DR cluster"
log "   $(wc -l <"$WORK/after") object versions and delete markers, unchanged"

log "6. the primary backs up again; the DR cluster's next restore takes the new snapshot"
DATA_CMD='seq 1 200001' TRIGGER=b2 policy "$P"
for _ in $(seq 1 120); do
  [[ -n "$(jp "$P" bp/orders '{.status.lastSnapshot}')" && "$(jp "$P" bp/orders '{.status.lastSnapshot}')" != "$FIRST" ]] && break
  sleep 1
done
SECOND="$(jp "$P" bp/orders '{.status.lastSnapshot}')"
[[ "$SECOND" != "$FIRST" ]] || fail "the primary's second backup did not happen"
versions >"$WORK/before2"
# The restore command checks the digest of the second backup's data: the DR cluster's latest is the new snapshot.
plan f2 "$WANT2"
kubectl -n "$D" patch drdrill orders-drill --type merge -p '{"spec":{"trigger":"d2"}}' >/dev/null
for _ in $(seq 1 180); do
  [[ "$(jp "$D" drdrill/orders-drill '{.status.lastResult.trigger}')" == trigger:d2 ]] && break
  sleep 1
done
[[ "$(jp "$D" drdrill/orders-drill '{.status.lastResult.passed}')" == true &&
  "$(jp "$D" drdrill/orders-drill '{.status.lastResult.snapshot}')" == "$SECOND"* ]] ||
  fail "the second DR drill: $(jp "$D" drdrill/orders-drill '{.status.lastResult}') (want snapshot $SECOND)"
versions >"$WORK/after2"
diff "$WORK/before2" "$WORK/after2" >"$WORK/diff" ||
  fail "the DR cluster's second run wrote into the repository:$(echo; cat "$WORK/diff")"

log "7. a drill's running restore shows its progress in status.currentRun.progress, gone when the run ends"
for _ in $(seq 1 60); do [[ -n "$(jp "$P" bp/bulk '{.status.lastSnapshot}')" ]] && break; sleep 1; done
[[ -n "$(jp "$P" bp/bulk '{.status.lastSnapshot}')" ]] ||
  fail "the primary's bulk backup did not happen: $(jp "$P" bp/bulk '{.status.conditions[*].message}')"
log "   the bulk snapshot $(jp "$P" bp/bulk '{.status.lastSnapshot}') is there: the DR cluster drills it"
# The DR cluster reaches the bulk bucket through the paced front: the restore of 14 MiB runs for about 30 s. The
# drill downloads the packs once either way (readData: false only skips the read-back of the restored files).
s3hostport="${BOTRT_S3_ENDPOINT#*://}"
s3hostport="${s3hostport%%/*}"
slowport="$(python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$NODE_IP")"
python3 "$REPO/hack/lib/slow-proxy.py" "$NODE_IP:$slowport" "$s3hostport" 491520 >"$WORK/slow-proxy.log" 2>&1 &
PIDS+=("$!")
bulk "$D" "http://$NODE_IP:$slowport"
kubectl -n "$D" apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: DRDrill
metadata: {name: bulk-drill}
spec:
  schedule: weekly
  trigger: p1
  target: {backupPolicyRef: {name: bulk}}
  verification: {readData: false}
EOF
dp() { jp "$D" drdrill/bulk-drill "{.status.currentRun.progress$1}"; }
ended() { [[ "$(jp "$D" drdrill/bulk-drill '{.status.lastResult.trigger}')" == trigger:p1 ]]; }
b1=""
for _ in $(seq 1 90); do
  b1="$(dp .bytesDone)"
  [[ -n "$b1" && "$b1" -gt 0 ]] && break
  ended && break
  sleep 1
done
[[ -n "$b1" && "$b1" -gt 0 ]] ||
  fail "no progress while the drill's restore ran: '$(dp "")' (phase $(jp "$D" drdrill/bulk-drill '{.status.phase}'): $(jp "$D" drdrill/bulk-drill '{.status.lastResult.message}')"
scratch="$(jp "$D" drdrill/bulk-drill '{.status.currentRun.scratchNamespace}')"
[[ "$(dp .job)" == drill-run && "$(dp .phase)" == restore && "$(dp .totalBytesSource)" == Engine &&
  "$(dp .totalBytes)" -ge 14680064 && -n "$(dp .percent)" ]] || fail "drill restore progress: $(dp "")"
[[ "$(kubectl -n "$scratch" get job drill-run -o jsonpath='{.status.active}')" == 1 ]] ||
  fail "progress while the run Job in $scratch is not running"
# The next read is 10 s (plus at most a poll of 5 s) after this one: more bytes, a newer time.
u1="$(dp .updateTime)"
for _ in $(seq 1 20); do [[ "$(dp .updateTime)" == "$u1" ]] || break; sleep 1; done
b2="$(dp .bytesDone)"
u2="$(dp .updateTime)"
[[ -n "$b2" && "$b2" -gt "$b1" ]] ||
  fail "the drill's restore progress did not grow: $b1 then '$b2' ($(dp ""); phase $(jp "$D" drdrill/bulk-drill '{.status.phase}'))"
gap=$(($(date -d "$u2" +%s) - $(date -d "$u1" +%s)))
[[ "$gap" -ge 10 && "$gap" -le 20 ]] || fail "drill restore progress read $gap s apart ($u1, $u2): not every 10 s"
log "   $scratch: $b1 then $b2 of $(dp .totalBytes) bytes ($(dp .percent)%), read $gap s apart"
for _ in $(seq 1 90); do ended && break; sleep 1; done
ended || fail "the drill's run did not end: $(jp "$D" drdrill/bulk-drill '{.status}')"
[[ -z "$(jp "$D" drdrill/bulk-drill '{.status.currentRun}')" && "$(jp "$D" drdrill/bulk-drill '{.status.phase}')" == Idle ]] ||
  fail "currentRun (and its progress) stayed after the run ended: $(jp "$D" drdrill/bulk-drill '{.status.currentRun}')"
[[ "$(jp "$D" drdrill/bulk-drill '{.status.lastResult.dataIntegrity}')" == true ]] ||
  fail "the slow drill's restore did not verify: $(jp "$D" drdrill/bulk-drill '{.status.lastResult.message}')"

log "ok: the restore-only DR cluster restored and drilled both of the primary's snapshots and wrote nothing; a drill's restore showed its progress"
