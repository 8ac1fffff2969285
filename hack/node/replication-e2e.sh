#!/usr/bin/env bash
# End to end: a BackupPolicy backs up to moto S3 (an OpenBao Transit key of its own) and replicates to a second
# provider, GCS on fake-gcs-server, under another Transit key, through botrt-controller on the local
# control plane, with every backup and copy Job Pod run by the local node (hack/node/lib.sh) in the engine image.
# Checks:
#   1. after the first backup the controller starts a copy Job; status.replicas shows the replica InSync with the
#      primary's snapshot, its id in the replica, lag 0; RPOMet (the replica counts) names it; the metric
#      botrt_replica_lag_seconds is exported;
#   2. a second backup is copied incrementally (the first snapshot is already there);
#   3. a replica whose bucket does not exist fails: state Failed, ReplicasInSync False, a Warning Event, while
#      RPOMet (that replica does not count) stays True;
#   4. a restore from the replica (with the replica's key) gives the bytes a restore from the primary gives, by the
#      engine and by a RecoveryPlan step naming the replica (restore.replica, the primary's snapshot id); the
#      primary's key cannot read the replica (re-encrypted);
#   5. with a second replica that shares the policy's key, dr.botrt.io/rotate-keys-now rotates the primary and the
#      replica with its own key, and rewraps the sharing replica after the primary; with the old key versions
#      retired in OpenBao, the next copies succeed and both replicas restore.
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... BOTRT_ENGINE_BIN=... hack/node/replication-e2e.sh
#
# The services (S3 on moto, fake-gcs-server, OpenBao) run on the node's bridge address (started here unless running).
# Everything it creates and starts is removed or stopped at the end.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fail() { echo "replication-e2e: FAIL: $*" >&2; exit 1; }
log() { echo "replication-e2e: $(date -u +%H:%M:%S) $*" >&2; }
NODE_FLOW=replication-e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
node_require
node_services_up
[[ -x "${BOTRT_ENGINE_BIN:-}" ]] || fail "BOTRT_ENGINE_BIN is not set to the built botrt-engine (the test reads the stores with it)"

NS="repl-e2e-$$"
BACKUP_NS="botrt-backup-repl-$$"
BUCKET="botrt-repl-$$-$RANDOM"
GCS_BUCKET="botrt-replica-$$-$RANDOM"
# Port 0 by default: the kernel picks a free one, read back from the controller's log when scraping (a fixed or
# random port in the ephemeral range can collide with an outgoing connection).
METRICS_PORT="${BOTRT_REPL_METRICS_PORT:-0}"
WORK="$(mktemp -d /tmp/botrt-repl-e2e.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  set +e
  kubectl -n "$NS" delete recoveryplans --all --timeout=60s >/dev/null 2>&1
  kubectl -n "$NS" delete backuppolicies --all --timeout=60s >/dev/null 2>&1
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  kubectl delete namespace "$NS" "$BACKUP_NS" --wait=false >/dev/null 2>&1
  if [[ $rc -ne 0 ]]; then
    echo "--- status"; kubectl -n "$NS" get backuppolicy data -o jsonpath='{.status}' 2>/dev/null; echo
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
jp() { k get backuppolicy data -o jsonpath="$1"; }
replica() { jp "{.status.replicas[?(@.name==\"$1\")].$2}"; }

kubectl apply -f "$REPO/crds/" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io >/dev/null
python3 - "$BUCKET" <<'EOF'
import os, sys, boto3
boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1").create_bucket(Bucket=sys.argv[1])
EOF
curl -fsS -X POST "$BOTRT_GCS_ENDPOINT/storage/v1/b?project=botrt" -H 'Content-Type: application/json' \
  -d "{\"name\":\"$GCS_BUCKET\"}" >/dev/null || fail "cannot create the GCS bucket $GCS_BUCKET on $BOTRT_GCS_ENDPOINT"
printf '%s' "$VAULT_TOKEN" >"$WORK/vault-token"
# Dedicated Transit keys: step 5 rotates them and retires their old versions.
KEY1="repl-$$-$RANDOM"
KEY2="repl-dr-$$-$RANDOM"
vault() { curl -sf -H "X-Vault-Token: $VAULT_TOKEN" "$@"; }
for key in "$KEY1" "$KEY2"; do
  vault -X POST -d '{}' "$VAULT_ADDR/v1/transit/keys/$key" >/dev/null || fail "cannot create the Transit key $key"
done

kubectl create namespace "$NS" >/dev/null
for _ in $(seq 1 100); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
k create secret generic s3-creds --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" >/dev/null
k create secret generic vault-token --from-file=token="$WORK/vault-token" >/dev/null
# The replica's key service has its own Secret (the same OpenBao here, another Transit key).
k create secret generic vault-token-dr --from-file=token="$WORK/vault-token" >/dev/null
node_controller "$WORK/controller.log" --metrics-address "127.0.0.1:$METRICS_PORT" --namespace "$NS" \
  --backup-namespace "$BACKUP_NS"
PIDS+=("$NODE_CONTROLLER_PID")

log "1. a policy backs up to S3 and replicates to GCS under another key"
k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: data}
spec:
  tier: critical
  trigger: b1
  # Only the triggered runs: a scheduled run in the middle would move the primary ahead of the checks.
  suspend: true
  source:
    command:
      image: $APP_IMAGE
      command: [sh, -c, 'echo "payload \$(date +%s%N)"; seq 1 2000']
      fileName: data.txt
  repository:
    s3: {bucket: "$BUCKET", prefix: data, endpoint: "$BOTRT_S3_ENDPOINT", region: us-east-1, forcePathStyle: true,
         credentialsSecretRef: {name: s3-creds}}
  encryption:
    kms:
      vaultTransit: {address: "$VAULT_ADDR", key: "$KEY1", authSecretRef: {name: vault-token}}
      allowPlaintextHTTP: true  # the test services' Vault speaks plain HTTP
  replicas:
  - name: dr-gcs
    countsForRPO: true
    repository:
      gcs: {bucket: "$GCS_BUCKET", prefix: data, endpoint: "$BOTRT_GCS_ENDPOINT"}
    encryption:
      kms:
        vaultTransit: {address: "$VAULT_ADDR", key: "$KEY2", authSecretRef: {name: vault-token-dr}}
        allowPlaintextHTTP: true
EOF
wait_snapshot() { # BEFORE: waits for a snapshot other than BEFORE; prints it
  for _ in $(seq 1 120); do
    local s
    s="$(jp '{.status.lastSnapshot}')"
    [[ -n "$s" && "$s" != "$1" ]] && { echo "$s"; return 0; }
    sleep 1
  done
  fail "no new snapshot: $(jp '{.status.conditions[*].message}')"
}
wait_in_sync() { # REPLICA SNAPSHOT
  for _ in $(seq 1 120); do
    [[ "$(replica "$1" state)/$(replica "$1" lastCopiedSnapshot)" == "InSync/$2" ]] && return 0
    sleep 1
  done
  fail "replica $1 is not in sync with $2: $(replica "$1" state): $(replica "$1" message)"
}
wait_event() { # REASON [TYPE]: Events are recorded just after the status write that they describe
  local sel="involvedObject.name=data${2:+,type=$2}"
  for _ in $(seq 1 20); do
    k get events --field-selector "$sel" -o jsonpath='{.items[*].reason}' | grep -w "$1" >/dev/null && return 0
    sleep 0.5
  done
  return 1
}
SNAP1="$(wait_snapshot "")"
log "   snapshot $SNAP1; waiting for its copy"
wait_in_sync dr-gcs "$SNAP1"
[[ "$(replica dr-gcs lagSeconds)" == 0 ]] || fail "lag of an in-sync replica: $(replica dr-gcs lagSeconds)"
REPLICA_SNAP="$(replica dr-gcs replicaSnapshot)"
[[ -n "$REPLICA_SNAP" && "$REPLICA_SNAP" != "$SNAP1" ]] || fail "replicaSnapshot '$REPLICA_SNAP' (re-encrypted copies get new ids)"
[[ "$(jp '{.status.conditions[?(@.type=="ReplicasInSync")].status}')" == True ]] || fail "ReplicasInSync not True"
[[ "$(jp '{.status.conditions[?(@.type=="RPOMet")].status}')" == True ]] || fail "RPOMet not True"
jp '{.status.conditions[?(@.type=="RPOMet")].message}' | grep "dr-gcs" >/dev/null || fail "RPOMet does not name the counted replica"
COPY_JOB="$(replica dr-gcs copyJob)"
k -n "$BACKUP_NS" get job "$COPY_JOB" -o jsonpath='{.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem}' |
  grep true >/dev/null || fail "copy Job $COPY_JOB is missing or not hardened"
wait_event ReplicaCopied || fail "no ReplicaCopied event"
if [[ "$METRICS_PORT" == 0 ]]; then
  METRICS_PORT="$(grep 'serving /metrics' "$WORK/controller.log" | tail -n 1 | grep -o '127\.0\.0\.1:[0-9]*' | sed 's/.*://')"
fi
METRICS="$(curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics")" || fail "no metrics on :$METRICS_PORT"
grep -E "^botrt_replica_lag_seconds\{.*policy=\"data\".*replica=\"dr-gcs\".*\} 0" <<<"$METRICS" >/dev/null ||
  fail "botrt_replica_lag_seconds of dr-gcs is not exported as 0: $(grep botrt_replica <<<"$METRICS")"
log "   copied by Job $COPY_JOB: replica snapshot $REPLICA_SNAP, lag 0 s"
# The copy window: the replicas' RoleBinding and egress existed while the copy ran and are gone after it; the copy
# Job counts as the controller's maintenance, not as an unexpected workload.
grep -q "run access granted.*runs=.*$COPY_JOB" "$WORK/controller.log" || fail "no copy window was granted for $COPY_JOB"
window() { kubectl -n "$BACKUP_NS" get rolebindings,networkpolicies -l dr.botrt.io/component=run-access -o name; }
for _ in $(seq 1 30); do [[ -z "$(window)" ]] && break; sleep 1; done
[[ -z "$(window)" ]] || fail "the copy window was not closed after the copy: $(window)"
! grep -E '^botrt_unexpected_workloads_total\{' <<<"$METRICS" | grep "$BACKUP_NS" >/dev/null ||
  fail "the copy Job was counted as an unexpected workload: $(grep botrt_unexpected <<<"$METRICS")"
[[ -z "$(kubectl -n "$BACKUP_NS" get events --field-selector reason=UnexpectedBackupJob -o name)" ]] ||
  fail "an UnexpectedBackupJob Event was recorded for the controller's own Jobs"
log "   the copy window (RoleBinding, egress) was open during the copy and closed after it"

log "2. a second backup is copied incrementally"
k patch backuppolicy data --type merge -p '{"spec":{"trigger":"b2"}}' >/dev/null
SNAP2="$(wait_snapshot "$SNAP1")"
wait_in_sync dr-gcs "$SNAP2"
replica dr-gcs message | grep "1 snapshot copied, 1 already there" >/dev/null ||
  fail "the second copy was not incremental: $(replica dr-gcs message)"
log "   $(replica dr-gcs message)"

log "3. a replica whose bucket does not exist fails, without touching RPOMet (it does not count)"
k patch backuppolicy data --type json -p "[{\"op\":\"add\",\"path\":\"/spec/replicas/-\",\"value\":
  {\"name\":\"broken\",\"repository\":{\"gcs\":{\"bucket\":\"botrt-no-such-bucket-$$\",\"endpoint\":\"$BOTRT_GCS_ENDPOINT\"}}}}]" >/dev/null
for _ in $(seq 1 120); do [[ "$(replica broken state)" == Failed ]] && break; sleep 1; done
[[ "$(replica broken state)" == Failed ]] || fail "replica broken: state $(replica broken state): $(replica broken message)"
[[ "$(jp '{.status.conditions[?(@.type=="ReplicasInSync")].reason}')" == ReplicaCopyFailed ]] ||
  fail "ReplicasInSync: $(jp '{.status.conditions[?(@.type=="ReplicasInSync")].reason}')"
[[ "$(jp '{.status.conditions[?(@.type=="RPOMet")].status}')" == True ]] || fail "RPOMet changed for a replica that does not count"
[[ "$(replica dr-gcs state)" == InSync ]] || fail "dr-gcs left InSync"
wait_event ReplicaCopyFailed Warning || fail "no ReplicaCopyFailed warning"
log "   $(replica broken message)"

log "4. restore from the replica"
KMS_PRIMARY="vault-transit://${VAULT_ADDR#http://}/transit/$KEY1"
KMS_REPLICA="vault-transit://${VAULT_ADDR#http://}/transit/$KEY2"
"$BOTRT_ENGINE_BIN" restore --repo "s3://$BUCKET/data" --kms "$KMS_PRIMARY" --s3-endpoint "$BOTRT_S3_ENDPOINT" \
  --s3-path-style --vault-token-file "$WORK/vault-token" --quiet --stdout "$SNAP2" >"$WORK/primary.txt" 2>"$WORK/r1.err" ||
  fail "restore from the primary: $(cat "$WORK/r1.err")"
REPLICA_SNAP2="$(replica dr-gcs replicaSnapshot)"
"$BOTRT_ENGINE_BIN" restore --repo "gs://$GCS_BUCKET/data" --kms "$KMS_REPLICA" --vault-token-file "$WORK/vault-token" \
  --quiet --stdout "$REPLICA_SNAP2" >"$WORK/replica.txt" 2>"$WORK/r2.err" || fail "restore from the replica: $(cat "$WORK/r2.err")"
[[ -s "$WORK/replica.txt" ]] && head -n 1 "$WORK/replica.txt" | grep '^payload ' >/dev/null || fail "the replica's restore is not the payload"
cmp -s "$WORK/primary.txt" "$WORK/replica.txt" || fail "the replica's restore differs from the primary's"
if "$BOTRT_ENGINE_BIN" restore --repo "gs://$GCS_BUCKET/data" --kms "$KMS_PRIMARY" --vault-token-file "$WORK/vault-token" \
  --quiet --stdout latest >/dev/null 2>&1; then
  fail "the primary's key opened the replica: it was not re-encrypted"
fi
log "   snapshot $REPLICA_SNAP2 of the replica restored $(wc -c <"$WORK/replica.txt") bytes, identical to the primary's"
# The primary region is down: a RecoveryPlan restores from the replica (restore.replica), by the primary's snapshot
# id, into a command that checks the stream against the primary's bytes.
WANT="$(sha256sum <"$WORK/primary.txt" | cut -c1-64)"
k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: from-replica}
spec:
  tier: critical
  trigger: r1
  procedures:
  - name: failover
    steps:
    - name: restore
      action: restore
      timeout: 5m
      restore:
        policyRef: {name: data}
        replica: dr-gcs
        snapshot: "$SNAP2"
        into:
          command:
            image: $APP_IMAGE
            command: [sh, -c, 'got="\$(sha256sum | cut -c1-64)"; echo "restored \$got"; test "\$got" = "$WANT"']
EOF
phase=""
for _ in $(seq 1 180); do
  phase=""
  [[ "$(k get recoveryplan from-replica -o jsonpath='{.status.lastHandledTrigger}')" == trigger:r1 ]] &&
    phase="$(k get recoveryplan from-replica -o jsonpath='{.status.phase}')"
  [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
  sleep 1
done
[[ "$phase" == Succeeded ]] ||
  fail "the RecoveryPlan from the replica ended '$phase': $(k get recoveryplan from-replica -o jsonpath='{.status.message}')"
job="$(k get recoveryplan from-replica -o jsonpath='{.status.steps[0].jobName}')"
args="$(k get job "$job" -o jsonpath='{.spec.template.spec.containers[*].args} {.spec.template.spec.initContainers[*].args}')"
[[ "$args" == *"gs://$GCS_BUCKET/data"* && "$args" == *"$REPLICA_SNAP2"* ]] ||
  fail "the plan's restore did not read the replica's copy $REPLICA_SNAP2 in gs://$GCS_BUCKET/data: $args"
k delete recoveryplan from-replica --timeout=60s >/dev/null
log "   RecoveryPlan from-replica restored the primary's $SNAP2 as the replica's $REPLICA_SNAP2, bytes as the primary's"

log "5. key rotation reaches the replicas: one with its own key rotates it, one sharing the policy's key follows"
# The failing replica goes; a replica sharing the policy's encryption (no encryption of its own) is added.
k patch backuppolicy data --type json -p "[{\"op\":\"replace\",\"path\":\"/spec/replicas/1\",\"value\":
  {\"name\":\"shared\",\"repository\":{\"gcs\":{\"bucket\":\"$GCS_BUCKET\",\"prefix\":\"shared\",\"endpoint\":\"$BOTRT_GCS_ENDPOINT\"}}}}]" >/dev/null
k patch backuppolicy data --type merge -p '{"spec":{"trigger":"b3"}}' >/dev/null
SNAP3="$(wait_snapshot "$SNAP2")"
wait_in_sync dr-gcs "$SNAP3"
wait_in_sync shared "$SNAP3"
k annotate backuppolicy data dr.botrt.io/rotate-keys-now=r1 >/dev/null
rotated() { [[ -n "$(jp '{.status.lastKeyRotation}')" && -n "$(replica dr-gcs lastKeyRotation)" &&
  -n "$(replica shared lastKeyRotation)" ]]; }
for _ in $(seq 1 120); do rotated && break; sleep 1; done
rotated || fail "not every repository was rotated: primary '$(jp '{.status.lastKeyRotation}')', dr-gcs " \
  "'$(replica dr-gcs keyRotation)', shared '$(replica shared keyRotation)'"
[[ "$(replica shared lastKeyRotation)" > "$(jp '{.status.lastKeyRotation}')" ||
  "$(replica shared lastKeyRotation)" == "$(jp '{.status.lastKeyRotation}')" ]] ||
  fail "the shared replica was rewrapped before the primary rotated"
wait_event ReplicaKeyRotated || fail "no ReplicaKeyRotated event"
# kubectl sees it too: ReplicaKeyRotationDue goes back to False once every replica is rewrapped.
rkd() { jp "{.status.conditions[?(@.type==\"ReplicaKeyRotationDue\")].$1}"; }
for _ in $(seq 1 60); do [[ "$(rkd status)" == False ]] && break; sleep 1; done
[[ "$(rkd status)" == False && "$(rkd reason)" == NotDue ]] ||
  fail "ReplicaKeyRotationDue is $(rkd status)/$(rkd reason): $(rkd message)"
# The old versions are retired: everything must still open with the current versions only.
for key in "$KEY1" "$KEY2"; do
  latest="$(vault "$VAULT_ADDR/v1/transit/keys/$key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["latest_version"])')"
  [[ "$latest" -ge 2 ]] || fail "Transit key $key was not rotated (latest version $latest)"
  vault -X POST -d "{\"min_decryption_version\": $latest}" "$VAULT_ADDR/v1/transit/keys/$key/config" >/dev/null ||
    fail "cannot retire the old versions of $key"
done
k patch backuppolicy data --type merge -p '{"spec":{"trigger":"b4"}}' >/dev/null
SNAP4="$(wait_snapshot "$SNAP3")"
wait_in_sync dr-gcs "$SNAP4"
wait_in_sync shared "$SNAP4"
for r in "gs://$GCS_BUCKET/data $KMS_REPLICA" "gs://$GCS_BUCKET/shared $KMS_PRIMARY"; do
  set -- $r
  "$BOTRT_ENGINE_BIN" restore --repo "$1" --kms "$2" --vault-token-file "$WORK/vault-token" --quiet --stdout latest \
    2>"$WORK/r3.err" | head -n 1 | grep '^payload ' >/dev/null || fail "restore from $1 after the rotation: $(cat "$WORK/r3.err")"
done
log "   primary, dr-gcs (own key) and shared (following) rotated; with the old versions retired, both replicas restore"
k get backuppolicy data -o wide
log PASS
