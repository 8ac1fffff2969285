#!/usr/bin/env bash
# End to end: key rotation and deleteBackupsOnDelete, through botrt-controller, with every Job Pod run by the local
# node (hack/node/lib.sh) in the engine image.
# The same rotation is then run for Vault Transit (a new Transit key version; version 1 is retired with
# min_decryption_version afterwards) and AWS KMS on moto (a new key; the old one is disabled afterwards): each time
# the data restores without the old key. Then Azure Key Vault and Google Cloud KMS on hack/lib/cloudkms-server.py
# (their documented REST formats) on the node's bridge address: the rotation Job makes a new key version, the old
# version is disabled afterwards, the data restores, the next backup runs, and neither the cloud token nor the
# client secret shows in the controller's or the Pods' logs. Deleting the Vault policy (no deleteBackupsOnDelete)
# leaves its objects as they were and restorable.
# A BackupPolicy (dump command -> moto S3, a local master key from a Secret) backs up; a rotation (asked for with the
# dr.botrt.io/rotate-keys-now annotation, as the schedule would after keyRotationDays) runs `botrt-engine rotate-keys`
# as a Job, moving the repository to the next entry of the rotation keys Secret; the data then restores with the new
# key alone, the old key no longer opens it, and the next backup uses the new key. A slow backup (a dump of 30 s)
# shows its progress in status.progress while it runs (bytesDone growing between reads 10 s apart), cleared when it
# ends; a slow restore of it by a RecoveryPlan (through a storage front that paces downloads) shows its progress in
# the step's status.steps[].progress the same way. Deleting the policy
# (deleteBackupsOnDelete: true) runs `botrt-engine delete-repository --confirm` as a Job: the bucket prefix is empty
# afterwards and a BackupsDeleted Event says so.
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... BOTRT_ENGINE_BIN=... hack/node/keyrotation-e2e.sh
#
# The services (S3 and KMS on moto, OpenBao) run on the node's bridge address (started here unless running).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fail() { echo "keyrotation-e2e: FAIL: $*" >&2; exit 1; }
log() { echo "keyrotation-e2e: $*" >&2; }
NODE_FLOW=keyrotation-e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
node_require
node_services_up
[[ -x "${BOTRT_ENGINE_BIN:-}" ]] || fail "BOTRT_ENGINE_BIN is not set to the built botrt-engine (the test reads the stores with it)"

NS="keyrot-$$"
BACKUP_NS="botrt-backup-kr-$$"
BUCKET="keyrot-e2e-$$-$RANDOM"
WORK="$(mktemp -d /tmp/botrt-keyrot-e2e.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  kubectl -n "$NS" delete backuppolicies --all --timeout=90s >/dev/null 2>&1 || true
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  kubectl delete namespace "$NS" "$BACKUP_NS" --wait=false >/dev/null 2>&1 || true
  if [[ $rc -ne 0 ]]; then
    echo "--- controller log"; tail -n 30 "$WORK/controller.log" || true
    node_pods_dump "$NS" "$BACKUP_NS"
  fi >&2
  node_services_down
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT
k() { kubectl -n "$NS" "$@"; }
s3count() { python3 - "$BUCKET" "${1:-db}/" <<'EOF'
import os, sys, boto3
s = boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1")
n = 0
for page in s.get_paginator("list_object_versions").paginate(Bucket=sys.argv[1], Prefix=sys.argv[2]):
    n += len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))
print(n)
EOF
}
engine() {
  "$BOTRT_ENGINE_BIN" "$@" --repo "s3://$BUCKET/${PREFIX:-db}" --s3-endpoint "$BOTRT_S3_ENDPOINT" --s3-path-style --quiet
}
kms() { python3 - "$@" <<'EOF'
import os, sys, boto3
k = boto3.client("kms", endpoint_url=os.environ["BOTRT_AWSKMS_ENDPOINT"], region_name="us-east-1")
if sys.argv[1] == "create":
    print(k.create_key(Description="botrt keyrotation-e2e")["KeyMetadata"]["KeyId"])
elif sys.argv[1] == "disable":
    k.disable_key(KeyId=sys.argv[2])
EOF
}
vault() { curl -sf -H "X-Vault-Token: $VAULT_TOKEN" "$@"; }

kubectl apply -f "$REPO/crds/" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io >/dev/null
python3 -c 'import os, boto3; boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1").create_bucket(Bucket="'"$BUCKET"'")'
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$WORK/key-1"
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$WORK/key-2"

kubectl create namespace "$NS" >/dev/null
for _ in $(seq 1 100); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
k create secret generic s3-creds --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" >/dev/null
k create secret generic master-key --from-file=key="$WORK/key-1" >/dev/null
k create secret generic rotation-keys --from-file=key-2="$WORK/key-2" >/dev/null
printf '%s' "$VAULT_TOKEN" >"$WORK/vault-token"
k create secret generic vault-token --from-file=token="$WORK/vault-token" >/dev/null
node_controller "$WORK/controller.log" --metrics-address off --namespace "$NS" --backup-namespace "$BACKUP_NS"
PIDS+=("$NODE_CONTROLLER_PID")

log "1. a backup under the local master key"
k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: db}
spec:
  tier: critical
  # Every backup here is a triggered one: the critical tier's schedule (every 2 minutes) would start backups in the
  # middle of the steps, which count the snapshots and follow one run's progress to its end.
  schedule: "0 0 1 1 *"
  trigger: b1
  deleteBackupsOnDelete: true
  source:
    command: {image: $APP_IMAGE, command: ["sh", "-c", "echo row-1; echo row-2"], fileName: db.dump}
  repository:
    s3: {bucket: "$BUCKET", prefix: db, endpoint: "$BOTRT_S3_ENDPOINT", region: us-east-1, forcePathStyle: true,
         credentialsSecretRef: {name: s3-creds}}
  encryption:
    kms: {localKeySecretRef: {name: master-key}}
    keyRotationDays: 30
    rotationKeysSecretRef: {name: rotation-keys}
EOF
st() { k get backuppolicy db -o jsonpath="{.status.$1}"; }
cond() { k get backuppolicy db -o jsonpath="{.status.conditions[?(@.type==\"$1\")].$2}"; }
for _ in $(seq 1 90); do [[ -n "$(st lastSnapshot)" ]] && break; sleep 1; done
first="$(st lastSnapshot)"
[[ -n "$first" ]] || fail "no backup: $(k get backuppolicy db -o jsonpath='{.status.conditions[*].message}')"
[[ "$(cond KeyRotationDue status)" == False && "$(cond KeyRotationDue reason)" == NotDue ]] ||
  fail "KeyRotationDue: $(cond KeyRotationDue reason): $(cond KeyRotationDue message)"
[[ -n "$(st nextKeyRotation)" ]] || fail "no status.nextKeyRotation"

log "2. a rotation Job moves the repository to the next key"
k annotate backuppolicy db dr.botrt.io/rotate-keys-now=r1 >/dev/null
for _ in $(seq 1 90); do [[ "$(st currentKey)" == key-2 ]] && break; sleep 1; done
[[ "$(st currentKey)" == key-2 ]] ||
  fail "no rotation: $(cond KeyRotationDue reason): $(cond KeyRotationDue message)"
[[ -n "$(st lastKeyRotation)" && "$(cond KeyRotationDue status)" == False ]] ||
  fail "after the rotation: lastKeyRotation '$(st lastKeyRotation)', due $(cond KeyRotationDue status)"
[[ "$(st lastHandledKeyRotationRequest)" == request:r1 ]] || fail "request not recorded"
k get events --field-selector involvedObject.name=db,reason=KeyRotated -o jsonpath='{.items[*].message}' |
  grep "rewrapped" >/dev/null || fail "no KeyRotated Event"

log "3. the data restores with the new key alone; the old key no longer opens the repository"
engine restore latest --stdout --kms "file://$WORK/key-2" 2>/dev/null | grep row-2 >/dev/null ||
  fail "restore with the new key failed"
if engine snapshots --kms "file://$WORK/key-1" >/dev/null 2>&1; then fail "the old key still opens the repository"; fi

log "4. the next backup uses the new key"
k patch backuppolicy db --type merge -p '{"spec":{"trigger":"b2"}}' >/dev/null
for _ in $(seq 1 90); do [[ -n "$(st lastSnapshot)" && "$(st lastSnapshot)" != "$first" ]] && break; sleep 1; done
[[ "$(st lastSnapshot)" != "$first" ]] ||
  fail "no backup after the rotation: $(cond LastBackupSucceeded message)"
[[ "$(engine snapshots --json --kms "file://$WORK/key-2" 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["snapshots"]))')" == 2 ]] ||
  fail "the repository does not hold both snapshots"

log "4b. a running backup's progress is in status (read from the engine's progress lines), then cleared"
# A dump of 30 x 512 KiB, one a second (about 15 chunks, a progress report each): the backup runs for about 30 s.
slow='for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do head -c 524288 /dev/urandom; sleep 1; done'
before="$(st lastSnapshot)"
k patch backuppolicy db --type merge \
  -p "{\"spec\":{\"trigger\":\"b3\",\"source\":{\"command\":{\"command\":[\"sh\",\"-c\",\"$slow\"]}}}}" >/dev/null
b1=0
for _ in $(seq 1 60); do
  b1="$(st progress.bytesDone)"
  [[ -n "$b1" && "$b1" -gt 0 ]] && break
  sleep 1
done
[[ -n "$b1" && "$b1" -gt 0 ]] || fail "no progress while the backup ran: '$(st progress)'"
job="$(st progress.job)"
t1="$(st progress.updateTime)"
[[ "$(st progress.phase)" == backup && -n "$(st progress.filesDone)" && -n "$(st progress.startTime)" ]] ||
  fail "progress: $(st progress)"
[[ "$(kubectl -n "$BACKUP_NS" get job "$job" -o jsonpath='{.status.active}')" == 1 ]] ||
  fail "status.progress names $job, which is not running"
# The next read is at most 10 s (plus a reconcile) later, and not sooner: more bytes, a newer time.
sleep 12
b2="$(st progress.bytesDone)"
t2="$(st progress.updateTime)"
[[ "$(st progress.job)" == "$job" && -n "$b2" && "$b2" -gt "$b1" ]] ||
  fail "progress did not grow: $b1 then '$b2' ($(st progress))"
gap=$(($(date -d "$t2" +%s) - $(date -d "$t1" +%s)))
[[ "$gap" -ge 10 && "$gap" -le 20 ]] || fail "progress read $gap s apart ($t1, $t2): not every 10 s"
log "   $job: $b1 then $b2 bytes, read $gap s apart"
for _ in $(seq 1 90); do [[ "$(st lastSnapshot)" != "$before" ]] && break; sleep 1; done
[[ "$(st lastSnapshot)" != "$before" ]] || fail "the slow backup did not finish: $(cond LastBackupSucceeded message)"
for _ in $(seq 1 10); do [[ -z "$(st progress)" ]] && break; sleep 1; done
[[ -z "$(st progress)" ]] || fail "progress stayed after the run: $(st progress)"
[[ "$(st lastBackupBytes)" == $((30 * 524288)) ]] || fail "lastBackupBytes $(st lastBackupBytes)"

log "4c. a running restore step's progress is in the RecoveryPlan's status (read from the engine's progress lines), then cleared"
# The 15 MiB snapshot of 4b, restored by a RecoveryPlan through a front of the storage that paces its answers to
# 480 KiB/s (hack/lib/slow-proxy.py): the restore runs for about 32 s. The front is reached through a restore-only
# policy of the same repository (what a DR cluster has), under the current key.
s3hostport="${BOTRT_S3_ENDPOINT#*://}"
s3hostport="${s3hostport%%/*}"
slowport="$(python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$NODE_IP")"
python3 "$REPO/hack/lib/slow-proxy.py" "$NODE_IP:$slowport" "$s3hostport" 491520 >"$WORK/slow-proxy.log" 2>&1 &
slow_pid=$!
PIDS+=("$slow_pid")
k create secret generic slow-key --from-file=key="$WORK/key-2" >/dev/null
k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: db-slow}
spec:
  tier: standard
  mode: RestoreOnly
  source:
    command: {image: $APP_IMAGE, command: ["true"], fileName: db.dump}
  repository:
    s3: {bucket: "$BUCKET", prefix: db, endpoint: "http://$NODE_IP:$slowport", region: us-east-1, forcePathStyle: true,
         credentialsSecretRef: {name: s3-creds}}
  encryption:
    kms: {localKeySecretRef: {name: slow-key}}
---
apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: restore-slow}
spec:
  tier: standard
  trigger: r1
  procedures:
  - name: restore
    steps:
    - name: load
      action: restore
      timeout: 5m
      restore:
        policyRef: {name: db-slow}
        snapshot: latest
        into: {command: {image: $APP_IMAGE, command: ["wc", "-c"]}}
EOF
rs() { k get recoveryplan restore-slow -o jsonpath="{.status.steps[0].$1}"; }
r1=0
for _ in $(seq 1 90); do
  r1="$(rs progress.bytesDone)"
  [[ -n "$r1" && "$r1" -gt 0 ]] && break
  [[ "$(rs state)" == Running || -z "$(rs state)" ]] || break
  sleep 1
done
[[ -n "$r1" && "$r1" -gt 0 ]] || fail "no progress while the restore ran: '$(rs progress)' ($(rs state): $(rs message))"
rjob="$(rs progress.job)"
u1="$(rs progress.updateTime)"
[[ "$rjob" == "$(rs jobName)" && "$(rs progress.phase)" == restore && "$(rs progress.totalBytesSource)" == Engine &&
  "$(rs progress.totalBytes)" -ge $((30 * 524288)) && -n "$(rs progress.percent)" ]] || fail "restore progress: $(rs progress)"
[[ "$(k get job "$rjob" -o jsonpath='{.status.active}')" == 1 ]] || fail "progress names $rjob, which is not running"
# The next read is at most 10 s (plus a reconcile) later, and not sooner: more bytes, a newer time.
sleep 12
r2="$(rs progress.bytesDone)"
u2="$(rs progress.updateTime)"
[[ "$(rs progress.job)" == "$rjob" && -n "$r2" && "$r2" -gt "$r1" ]] ||
  fail "restore progress did not grow: $r1 then '$r2' ($(rs progress); $(rs state): $(rs message))"
gap=$(($(date -d "$u2" +%s) - $(date -d "$u1" +%s)))
[[ "$gap" -ge 10 && "$gap" -le 20 ]] || fail "restore progress read $gap s apart ($u1, $u2): not every 10 s"
log "   $rjob: $r1 then $r2 of $(rs progress.totalBytes) bytes ($(rs progress.percent)%), read $gap s apart"
for _ in $(seq 1 90); do [[ "$(rs state)" == Running ]] || break; sleep 1; done
[[ "$(rs state)" == Succeeded ]] || fail "the slow restore ended $(rs state): $(rs message)"
[[ -z "$(rs progress)" ]] || fail "progress stayed after the restore step ended: $(rs progress)"
k delete recoveryplan restore-slow >/dev/null
k delete backuppolicy db-slow >/dev/null
kill -TERM "$slow_pid" 2>/dev/null || true

# A policy NAME with KMS (inline YAML): its first backup is awaited, then a rotation is asked for and awaited.
jp() { k get backuppolicy "$1" -o jsonpath="{$2}"; }
backup_and_rotate() {
  local name="$1" kms="$2"
  k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: $name}
spec:
  tier: standard
  trigger: b1
  source:
    command: {image: $APP_IMAGE, command: ["sh", "-c", "echo $name-row"], fileName: db.dump}
  repository:
    s3: {bucket: "$BUCKET", prefix: $name, endpoint: "$BOTRT_S3_ENDPOINT", region: us-east-1, forcePathStyle: true,
         credentialsSecretRef: {name: s3-creds}}
  encryption:
    kms: $kms
EOF
  for _ in $(seq 1 90); do [[ -n "$(jp "$name" .status.lastSnapshot)" ]] && break; sleep 1; done
  [[ -n "$(jp "$name" .status.lastSnapshot)" ]] || fail "$name: no backup: $(jp "$name" '.status.conditions[*].message')"
  k annotate backuppolicy "$name" dr.botrt.io/rotate-keys-now=r1 >/dev/null
  for _ in $(seq 1 90); do [[ "$(jp "$name" .status.lastHandledKeyRotationRequest)" == request:r1 ]] && break; sleep 1; done
  [[ "$(jp "$name" .status.lastHandledKeyRotationRequest)" == request:r1 ]] ||
    fail "$name: no rotation: $(jp "$name" '.status.conditions[?(@.type=="KeyRotationDue")].message')"
  [[ "$(jp "$name" '.status.conditions[?(@.type=="KeyRotationDue")].status')" == False &&
    -n "$(jp "$name" .status.lastKeyRotation)" ]] ||
    fail "$name after the rotation: $(jp "$name" '.status.conditions[?(@.type=="KeyRotationDue")].message')"
}
# A further backup of policy NAME (a new trigger), awaited.
next_backup() {
  local name="$1" before
  before="$(jp "$name" .status.lastSnapshot)"
  k patch backuppolicy "$name" --type merge -p '{"spec":{"trigger":"b2"}}' >/dev/null
  for _ in $(seq 1 90); do [[ "$(jp "$name" .status.lastSnapshot)" != "$before" ]] && break; sleep 1; done
  [[ "$(jp "$name" .status.lastSnapshot)" != "$before" ]] ||
    fail "$name: no backup after the rotation: $(jp "$name" '.status.conditions[?(@.type=="LastBackupSucceeded")].message')"
}

log "5. Vault Transit: the rotation Job makes a new key version; version 1 is then retired"
VKEY="keyrot-e2e-$$-$RANDOM"
vault -X POST -d '{}' "$VAULT_ADDR/v1/transit/keys/$VKEY" >/dev/null || fail "cannot create the Transit key"
backup_and_rotate vaultdb "{vaultTransit: {address: \"$VAULT_ADDR\", key: $VKEY, authSecretRef: {name: vault-token}}, allowPlaintextHTTP: true}"
latest="$(vault "$VAULT_ADDR/v1/transit/keys/$VKEY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["latest_version"])')"
[[ "$latest" == 2 ]] || fail "the Transit key is at version $latest, not 2"
vault -X POST -d '{"min_decryption_version": 2}' "$VAULT_ADDR/v1/transit/keys/$VKEY/config" >/dev/null ||
  fail "cannot retire version 1"
PREFIX=vaultdb engine restore latest --stdout --kms "vault-transit://${VAULT_ADDR#http://}/transit/$VKEY" 2>/dev/null |
  grep vaultdb-row >/dev/null || fail "restore after retiring Transit key version 1 failed"

log "6. AWS KMS: the rotation Job creates a new key; the old one is then disabled, and backups go on"
AKEY="$(kms create)"
backup_and_rotate awsdb "{awsKms: {keyId: \"$AKEY\", region: us-east-1, endpoint: \"$BOTRT_AWSKMS_ENDPOINT\", credentialsSecretRef: {name: s3-creds}}, allowPlaintextHTTP: true}"
NEWKEY="$(jp awsdb .status.currentKey)"
[[ -n "$NEWKEY" && "$NEWKEY" != "$AKEY" ]] || fail "status.currentKey '$NEWKEY' is not a new key"
kms disable "$AKEY"
PREFIX=awsdb engine restore latest --stdout --kms "awskms://$NEWKEY?region=us-east-1" \
  --kms-endpoint "$BOTRT_AWSKMS_ENDPOINT" 2>/dev/null | grep awsdb-row >/dev/null || fail "restore with the new AWS key failed"
next_backup awsdb

# The cloud key services' server, on the bridge address so the Pods reach it (http: allowPlaintextHTTP below).
KTOKEN="tok-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
KSECRET="sec-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
python3 "$REPO/hack/lib/cloudkms-server.py" "$KTOKEN" "$WORK/kms-requests.jsonl" "$KSECRET" "$WORK/sa.json" \
  --host "$NODE_IP" >"$WORK/kms.port" 2>"$WORK/kms.log" &
PIDS+=("$!")
for _ in $(seq 1 100); do [[ -s "$WORK/kms.port" ]] && break; sleep 0.1; done
KPORT="$(head -n 1 "$WORK/kms.port")"
[[ "$KPORT" =~ ^[0-9]+$ ]] || fail "the cloud KMS server did not start: $(cat "$WORK/kms.log")"
KURL="http://$NODE_IP:$KPORT"
ckms() { curl -sf -X "$1" -H "Authorization: Bearer $KTOKEN" -H 'Content-Type: application/json' --data "$3" "$KURL$2"; }
# METHOD PATH: how many requests the server logged (the Pods' and ours).
kreqs() { python3 - "$WORK/kms-requests.jsonl" "$1" "$2" <<'EOF'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
print(sum(1 for r in rs if r["method"] == sys.argv[2] and r["path"] == sys.argv[3]))
EOF
}
k create secret generic azure-creds --from-literal=AZURE_TENANT_ID=t1 --from-literal=AZURE_CLIENT_ID=botrt-client \
  --from-literal=AZURE_CLIENT_SECRET="$KSECRET" >/dev/null
k create secret generic gcp-sa --from-file=service-account.json="$WORK/sa.json" >/dev/null

log "6b. Azure Key Vault: the rotation Job makes a new key version; the old one is then disabled, and backups go on"
AZKEY="keyrot-$$"
AZV1="$(ckms POST "/keys/$AZKEY/rotate?api-version=7.4" '{}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"]["kid"].rsplit("/", 1)[1])')"
[[ -n "$AZV1" ]] || fail "cannot create the Azure key"
backup_and_rotate azuredb "{azureKeyVault: {vaultURL: \"$KURL\", keyName: $AZKEY, authorityHost: \"$KURL\", credentialsSecretRef: {name: azure-creds}}, allowPlaintextHTTP: true}"
[[ "$(kreqs POST "/keys/$AZKEY/rotate")" == 2 ]] ||
  fail "the rotation Job did not rotate the Azure key (rotate requests: $(kreqs POST "/keys/$AZKEY/rotate"))"
ckms PATCH "/keys/$AZKEY/$AZV1?api-version=7.4" '{"attributes":{"enabled":false}}' >/dev/null ||
  fail "cannot disable Azure key version 1"
AZURE_ACCESS_TOKEN="$KTOKEN" PREFIX=azuredb engine restore latest --stdout --kms "azurekv://$NODE_IP/keys/$AZKEY" \
  --kms-endpoint "$KURL" 2>/dev/null | grep azuredb-row >/dev/null || fail "restore after disabling Azure key version 1 failed"
next_backup azuredb

log "6c. Google Cloud KMS: the rotation Job makes a new primary version; version 1 is then disabled, and backups go on"
GKEY="projects/p1/locations/global/keyRings/botrt/cryptoKeys/keyrot-$$"
backup_and_rotate gcpdb "{gcpKms: {keyName: \"$GKEY\", endpoint: \"$KURL\", credentialsSecretRef: {name: gcp-sa}}, allowPlaintextHTTP: true}"
[[ "$(kreqs POST "/v1/$GKEY/cryptoKeyVersions")" == 1 && "$(kreqs POST "/v1/$GKEY:updatePrimaryVersion")" == 1 ]] ||
  fail "the rotation Job did not make a new primary version of the Google Cloud KMS key"
ckms PATCH "/v1/$GKEY/cryptoKeyVersions/1?updateMask=state" '{"state":"DISABLED"}' >/dev/null ||
  fail "cannot disable Google Cloud KMS key version 1"
GOOGLE_OAUTH_ACCESS_TOKEN="$KTOKEN" PREFIX=gcpdb engine restore latest --stdout --kms "gcpkms://$GKEY" \
  --kms-endpoint "$KURL" 2>/dev/null | grep gcpdb-row >/dev/null || fail "restore after disabling GCP key version 1 failed"
next_backup gcpdb
for p in $(kubectl -n "$BACKUP_NS" get pods -o name); do kubectl -n "$BACKUP_NS" logs "$p" --all-containers 2>/dev/null; done \
  >"$WORK/pod-logs"
[[ -s "$WORK/pod-logs" ]] || fail "no Pod logs to check for the cloud credentials"
! grep -q -e "$KTOKEN" -e "$KSECRET" "$WORK/controller.log" "$WORK/pod-logs" ||
  fail "the cloud token or client secret appears in the controller's or the Pods' logs"

log "7. deleting a policy without deleteBackupsOnDelete leaves its backups alone"
kept="$(s3count vaultdb)"
(( kept > 0 )) || fail "nothing stored under vaultdb/"
k delete backuppolicy vaultdb --timeout=60s >/dev/null || fail "the policy vaultdb was not deleted"
[[ "$(s3count vaultdb)" == "$kept" ]] || fail "deleting vaultdb changed its stored backups: $kept -> $(s3count vaultdb)"
PREFIX=vaultdb engine restore latest --stdout --kms "vault-transit://${VAULT_ADDR#http://}/transit/$VKEY" 2>/dev/null |
  grep vaultdb-row >/dev/null || fail "the backups of the deleted policy vaultdb no longer restore"
k get events --field-selector involvedObject.name=vaultdb,reason=BackupsKept -o jsonpath='{.items[*].message}' |
  grep "were kept" >/dev/null || fail "no BackupsKept Event"

log "8. deleting the policy deletes the stored backups (deleteBackupsOnDelete)"
(( $(s3count) > 0 )) || fail "nothing stored before the deletion"
k delete backuppolicy db --wait=false >/dev/null
for _ in $(seq 1 120); do k get backuppolicy db >/dev/null 2>&1 || break; sleep 1; done
! k get backuppolicy db >/dev/null 2>&1 || fail "the policy is still there: $(cond BackupsDeleted message)"
[[ "$(s3count)" == 0 ]] || fail "$(s3count) objects are left under db/"
k get events --field-selector involvedObject.name=db,reason=BackupsDeleted -o jsonpath='{.items[*].message}' |
  grep "deleted the repository" >/dev/null || fail "no BackupsDeleted Event"
log PASS
