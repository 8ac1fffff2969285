#!/usr/bin/env bash
# End to end: every file of crds/samples/ applied, run, and driven to its documented outcome on the local node.
#
# The samples are written for real clouds. This flow rewrites only what points at the outside world to the testbed's
# services, through one table (REWRITES below: endpoints, bucket names, credentials Secret values, the database's
# hostname), prints the diff of each sample against the file as committed, and applies the rewritten files as they are
# otherwise written: the namespace first, then the Secrets, the policies, the plans and the drills. It fails if
# crds/samples/ holds a file this script does not know (SAMPLES), or if a table entry no longer matches its sample.
#
# Outcomes asserted, sample by sample:
#   00-namespace                      the namespace botrt-samples exists with its label.
#   secrets-example                   every Secret exists (the values the table rewrites are the testbed's).
#   backuppolicy-archive-local        Ready; triggered (spec.trigger), its backup of the claim audit-logs into the
#                                     local repository on claim airgap-backups (the policy's namespace, where a pvc
#                                     source's Jobs run) succeeds, keys from
#                                     Vault Transit over TLS (hack/lib/tls-proxy.py in front of OpenBao) with the sample's private CA; the engine lists the snapshot.
#   backuppolicy-critical-s3-vault    Ready; rpoSource compliance:sox,pci-dss and a schedule of every minute; a
#                                     triggered pg_dump backup to S3 with Object Lock (COMPLIANCE) and Vault over TLS
#                                     succeeds and the engine lists it (the objects carry COMPLIANCE retention).
#                                     NOT REACHED: its GCS replica in sync. The replica's keys are in Google Cloud KMS,
#                                     which the testbed does not serve to Pods (Tests/EngineIntegrationTests/
#                                     CloudKMSServer.swift is a per-test loopback server): with a key made for the
#                                     run, the copy fails at Google's token endpoint, and the
#                                     replica's status names oauth2.googleapis.com; ReplicasInSync is False.
#   backuppolicy-important-gcs-awskms Ready; rpoSource compliance:gdpr; a triggered backup of the claim's subPath
#                                     media to GCS (fake-gcs-server) with AWS KMS (moto, alias in eu-west-1) succeeds;
#                                     the engine lists it.
#   backuppolicy-replicated-cross-region  Ready; a triggered backup to S3 succeeds; both replicas (S3 + AWS KMS, GCS +
#                                     a second Transit key) reach InSync on that snapshot, RPOMet True names the counted
#                                     replica second-region; the engine lists the snapshot in the second region.
#   backuppolicy-s3-minio-suspended   Ready, ScheduleActive False (Suspended), no next run, and no Job of it ever
#                                     created. Its MinIO, database and Azure Key Vault are not rewritten: nothing runs.
#   backuppolicy-storefront-objects   Ready; a triggered backup of the claim storefront-data with the namespace's objects
#                                     labelled app.kubernetes.io/name=storefront (the application this flow puts beside
#                                     the claim: ServiceAccount, Secret, ConfigMap, Service, Deployment) to S3 succeeds,
#                                     its Event counts the exported objects, and the engine's listing of the snapshot
#                                     holds the claim's file and the entry _kubernetes with those objects and none of the
#                                     namespace's others (the selector: not the Deployment payments-api, not the example
#                                     Secrets).
#   backuppolicy-standard-azure-localkey  Ready, ScheduleActive True on "30 1 * * *"; its trigger manual-run-1 starts a
#                                     backup at once. NOT REACHED: a stored backup. The testbed has no Azure Blob
#                                     service (Azurite is an npm package; TESTBED.md), so the Job fails and
#                                     LastBackupSucceeded False names botrtbackups.blob.core.windows.net.
#   recoveryplan-database             triggered, both procedures (8 steps) succeed in order against the node's PostgreSQL (via a
#                                     Service payments-db in namespace payments, what DNS would give): connectivity,
#                                     integrity of the newest backup, damage assessment, scale-down, pg_restore of
#                                     latest, the row-count check, scale-up, wait for readiness; Succeeded, RTOMet.
#   recoveryplan-application          NOT REACHED: its end. Its first step's image ghcr.io/example/image-verifier:1.0 is
#                                     an example name that no registry serves (the node has no registry at all): after
#                                     the namespace bot-recovery allows the plan (the header's annotation), the
#                                     triggered run is Running at step validate-images and that step's Pod waits in
#                                     ErrImagePull/ImagePullBackOff naming the image; the run is then deleted.
#   recoveryplan-from-replica         after a file of the claim uploads is deleted, the triggered plan restores the
#                                     second region's newest copy into it and verifies that replica: Succeeded, the file
#                                     is back with its content.
#   recoveryplan-into-namespace       refused until bot-restore allows it, then claim bot-uploads is created there
#                                     (storage class standard, 50Gi, managed-by label, no owner) and the restore as root
#                                     succeeds; the files are on the volume that claim bound.
#   recoveryplan-clone-into-staging   after storefront-staging allows it, Succeeded (3 steps): claim storefront-data is
#                                     created there from the recorded claim and holds the backed-up file (not the
#                                     snapshot's _kubernetes); the objects step creates the 5 objects of its kinds (the
#                                     claim is not among them): the Secret and the ConfigMap hold the source's values of
#                                     this run, the Service has a clusterIP of its own; the Deployment there becomes
#                                     available (readyReplicas 1: its readiness probe passes only with the claim's file,
#                                     the Secret's and the ConfigMap's values).
#   drdrill-quarterly-suspended       runs at once (its run-now annotation and trigger) although suspended: the scratch
#                                     claim drill-scratch is created sized like uploads (it binds the volume left for
#                                     it), the restore verifies, the result passes.
#   drdrill-weekly-policy             triggered: restores payments into drill_scratch, runs the row-count query, and
#                                     records its result: data integrity true, measured RTO and RPO, the score. Passed
#                                     is asserted to agree with the documented thresholds (minComplianceScore 95).
#   drdrill-cron-plan                 triggered: rehearses telegram-bot-recovery's restore step, whose beforeTime
#                                     2024-03-01T12:00:00Z predates every snapshot: the run fails and its result says
#                                     so. (A drill of a plan runs only the plan's first restore and verify steps,
#                                     issue 13 item 5; the plan's job, scale and waitReady steps are not rehearsed.)
#
# Needs the node (hack/cluster.sh up, hack/images.sh, hack/cluster.sh node-images), BOTRT_CONTROLLER_BIN and
# BOTRT_ENGINE_BIN (the host reads the repositories with it). About 2-3 minutes.
#
#   BOTRT_CONTROLLER_BIN=... BOTRT_ENGINE_BIN=... hack/node/samples-e2e.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_FLOW=samples-e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
fail() { node_fail "$@"; }
log() { echo "samples-e2e: $(date -u +%H:%M:%S) $*" >&2; }
node_require
node_services_up
[[ -x "${BOTRT_ENGINE_BIN:-}" ]] || fail "BOTRT_ENGINE_BIN is not set to the built botrt-engine (the test reads the repositories with it)"

# Every file of crds/samples/, in the order applied. A sample added without a line here fails the flow.
SAMPLES=(
  00-namespace.yaml secrets-example.yaml
  backuppolicy-archive-local.yaml backuppolicy-critical-s3-vault.yaml backuppolicy-important-gcs-awskms.yaml
  backuppolicy-replicated-cross-region.yaml backuppolicy-s3-minio-suspended.yaml
  backuppolicy-standard-azure-localkey.yaml backuppolicy-storefront-objects.yaml
  recoveryplan-database.yaml recoveryplan-application.yaml recoveryplan-from-replica.yaml
  recoveryplan-into-namespace.yaml recoveryplan-clone-into-staging.yaml
  drdrill-quarterly-suspended.yaml drdrill-weekly-policy.yaml drdrill-cron-plan.yaml
)
diff <(printf '%s\n' "${SAMPLES[@]}" | sort) <(cd "$REPO/crds/samples" && ls | sort) >&2 ||
  fail "crds/samples/ and SAMPLES differ (< known here, > in crds/samples/): give every sample its outcome here"

NS=botrt-samples
BACKUP_NS=botrt-backup
RUN="$(date +%s | tail -c 6)$$"
WORK="$(mktemp -d /tmp/botrt-samples-e2e.XXXXXX)"
# The claims' volumes on the node (0755 dirs owned by the engine's user 65532, so backups read and restores write).
VOL="$(mktemp -d /var/tmp/botrt-samples-e2e.XXXXXX)"
chmod 0755 "$VOL"
PVS=(samples-audit-logs samples-airgap samples-bot-uploads samples-uploads samples-reporting samples-scratch
  samples-bot-restore samples-bot-recovery samples-storefront samples-storefront-staging)
NAMESPACES=("$NS" "$BACKUP_NS" payments bot-recovery bot-restore storefront-staging)
NODE_CONTROLLER_PID=""
NODE_VAULT_TLS_PID=""
cleanup() {
  local rc=$?
  set +e
  trap - EXIT
  if [[ $rc -ne 0 ]]; then
    echo "--- status"
    kubectl -n "$NS" get backuppolicies,recoveryplans,drdrills -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}: {.status}{"\n"}{end}' | cut -c1-1500
    node_pods_dump "$NS" "$BACKUP_NS"
    node_pods_dump storefront-staging
  fi >&2
  # Deleted while the controller still runs, so it removes its finalizers and what it made.
  kubectl -n "$NS" delete drdrills,recoveryplans,backuppolicies --all --timeout=90s >/dev/null 2>&1
  if [[ -n "$NODE_CONTROLLER_PID" ]]; then
    kill -TERM "$NODE_CONTROLLER_PID"
    wait "$NODE_CONTROLLER_PID"
  fi
  if [[ $rc -ne 0 ]]; then
    echo "--- controller log"
    tail -n 40 "$WORK/controller.log"
  fi >&2
  # What the controller did not finish (it is stopped now) must not hold the namespace's deletion.
  local o
  for o in $(kubectl -n "$NS" get drdrills,recoveryplans,backuppolicies -o name 2>/dev/null); do
    kubectl -n "$NS" patch "$o" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
  done
  kubectl delete namespace "${NAMESPACES[@]}" --timeout=120s >/dev/null 2>&1
  kubectl delete pv "${PVS[@]}" --wait=false >/dev/null 2>&1
  kubectl -n "$NS" get namespaces -l "dr.botrt.io/scratch=true" -o name 2>/dev/null | xargs -r kubectl delete --wait=false >/dev/null 2>&1
  [[ -n "$NODE_VAULT_TLS_PID" ]] && kill "$NODE_VAULT_TLS_PID" && wait "$NODE_VAULT_TLS_PID"
  node_services_down
  rm -rf "$WORK" "$VOL"
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT
k() { kubectl -n "$NS" "$@"; }
jp() { k get "$1" "$2" -o jsonpath="$3"; }
cond() { jp "$1" "$2" "{.status.conditions[?(@.type==\"$3\")].${4:-status}}"; }
# until_ok SECONDS WHAT CMD...: runs CMD every second until it succeeds; fails naming WHAT after SECONDS.
until_ok() {
  local t="$1" what="$2"
  shift 2
  for _ in $(seq 1 "$t"); do
    "$@" && return 0
    sleep 1
  done
  fail "$what (not within $t s)"
}
trigger() { k patch "$1" "$2" --type merge -p "{\"spec\":{\"trigger\":\"samples-e2e-$RUN\"}}" >/dev/null; }

# Leftovers of an earlier run (fixed names: the samples name their namespaces) must be gone first.
kubectl wait --for=delete namespace "${NAMESPACES[@]}" --timeout=180s >/dev/null 2>&1 || true
for ns in "${NAMESPACES[@]}"; do
  ! kubectl get namespace "$ns" >/dev/null 2>&1 || fail "namespace $ns exists from an earlier run and is not going away"
done
kubectl delete pv "${PVS[@]}" --ignore-not-found >/dev/null
# With the ClusterRoles of the objects' backup and restore (backuppolicy-storefront-objects, an install applies them).
kubectl apply -f "$REPO/crds/" -f "$REPO/manifests/rbac/objects.yaml" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io crd/drdrills.dr.botrt.io >/dev/null

log "0. testbed stand-ins for the samples' outside world"
# PostgreSQL: the node services' server, under the name the samples use. No cluster DNS here, so the table maps the
# hostname to the ClusterIP of this selectorless Service (what DNS would answer), on the port the samples use (5432).
kubectl create namespace payments >/dev/null
kubectl -n payments apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: payments-db}
spec: {ports: [{name: pg, port: 5432, targetPort: $PGPORT}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: payments-db}
subsets: [{addresses: [{ip: "$NODE_IP"}], ports: [{name: pg, port: $PGPORT}]}]
EOF
PG_IP="$(kubectl -n payments get service payments-db -o jsonpath='{.spec.clusterIP}')"
psql_() { "$BOTRT_PG_BIN/psql" -v ON_ERROR_STOP=1 -q -h "$PGHOST" -p "$PGPORT" -U postgres "$@"; }
psql_ -d postgres >/dev/null <<'SQL'
DROP DATABASE IF EXISTS payments;
DROP DATABASE IF EXISTS drill_scratch;
DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'backup') THEN CREATE ROLE backup LOGIN CREATEDB; END IF; END $$;
CREATE DATABASE payments OWNER backup;
SQL
psql_ -d payments >/dev/null <<'SQL'
SET ROLE backup;
CREATE TABLE ledger_entries (id serial PRIMARY KEY, amount numeric NOT NULL);
INSERT INTO ledger_entries (amount) SELECT g * 1.5 FROM generate_series(1, 100) g;
SQL
# Vault over TLS with a private CA (the samples name a CA Secret), in front of the node services' OpenBao.
node_vault_tls "$WORK" 18212
# Buckets (a name per run: repositories with Object Lock cannot be removed), Transit keys, AWS KMS aliases.
python3 - "$RUN" <<'PY' || fail "could not create the S3 buckets and AWS KMS keys on moto"
import os, sys, boto3
run, ep = sys.argv[1], os.environ["BOTRT_S3_ENDPOINT"]
for bucket, region, lock in [("botrt-payments-backups", "eu-central-1", True), ("botrt-uploads-backups", "eu-central-1", False),
                             ("botrt-uploads-backups-dr", "eu-west-1", False), ("botrt-storefront-backups", "eu-central-1", False)]:
    s3 = boto3.client("s3", endpoint_url=ep, region_name=region)
    s3.create_bucket(Bucket=f"{bucket}-{run}", CreateBucketConfiguration={"LocationConstraint": region},
                     ObjectLockEnabledForBucket=lock)
kms = boto3.client("kms", endpoint_url=os.environ["BOTRT_AWSKMS_ENDPOINT"], region_name="eu-west-1")
have = {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
for alias in ["alias/backup-files-key", "alias/botrt-backup-files-dr"]:
    if alias not in have:
        kms.create_alias(AliasName=alias, TargetKeyId=kms.create_key(Description="botrt samples-e2e")["KeyMetadata"]["KeyId"])
PY
for b in botrt-bot-uploads botrt-payments-backups-dr botrt-uploads-backups-gcs; do
  curl -fsS -X POST "$BOTRT_GCS_ENDPOINT/storage/v1/b?project=botrt" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$b-$RUN\"}" >/dev/null || fail "cannot create the GCS bucket $b-$RUN on $BOTRT_GCS_ENDPOINT"
done
for key in backup-logs-key backup-database-key backup-files-key backup-files-key-gcs backup-storefront-key; do
  curl -fsS --cacert "$NODE_VAULT_CA" -H "X-Vault-Token: $VAULT_TOKEN" -X POST \
    "$NODE_VAULT_TLS_ADDR/v1/transit/keys/$key" >/dev/null || fail "cannot create Transit key $key on $NODE_VAULT_TLS_ADDR"
done

# The rewrite table: FILE (or * for every sample) <TAB> TEXT <TAB> REPLACEMENT <TAB> WHY. TEXT must occur in FILE (in
# at least one sample for *); \n in TEXT and REPLACEMENT is a newline. Nothing else of a sample is changed.
# A well-formed service-account key for the Cloud KMS replica (the sample's is a placeholder the engine cannot sign
# with), made for this run and of no account anywhere: the copy then gets as far as Google's token endpoint.
# Newlines as JSON's \u000a, since the value sits in a one-line single-quoted YAML string.
GCP_SA_KEY="$(openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null |
  python3 -c 'import sys; print(sys.stdin.read().replace("\n", "\\u000a"), end="")')"
[[ "$GCP_SA_KEY" == -----BEGIN* ]] || fail "could not make an RSA key for the Cloud KMS credentials"
VAULT_CA_YAML="$(sed 's/^/    /' "$NODE_VAULT_CA" | awk '{printf "%s\\n", $0}')"
S3="$BOTRT_S3_ENDPOINT"
AWSKMS="$BOTRT_AWSKMS_ENDPOINT"
GCS="$BOTRT_GCS_ENDPOINT"
REWRITES="$(cat <<EOF
*	https://vault.vault.svc:8200	$NODE_VAULT_TLS_ADDR	Vault: a TLS front on the node services' OpenBao (its private CA goes into backup-vault-ca)
*	payments-db.payments.svc	$PG_IP	the database: ClusterIP of Service payments/payments-db, which leads to the node services' PostgreSQL (no cluster DNS here)
secrets-example.yaml	AWS_ACCESS_KEY_ID: EXAMPLE-NOT-A-REAL-KEY-ID	AWS_ACCESS_KEY_ID: $AWS_ACCESS_KEY_ID	moto's credentials (S3 and AWS KMS)
secrets-example.yaml	AWS_SECRET_ACCESS_KEY: example-not-a-real-secret-access-key	AWS_SECRET_ACCESS_KEY: $AWS_SECRET_ACCESS_KEY	moto's credentials
secrets-example.yaml	"private_key": "EXAMPLE-NOT-A-REAL-KEY", "client_email": "kms@	"private_key": "$GCP_SA_KEY", "client_email": "kms@	Cloud KMS: a key made for this run (no account has it), so the engine can sign its token request
secrets-example.yaml	token: example-not-a-real-vault-token	token: $VAULT_TOKEN	OpenBao's dev root token
secrets-example.yaml	    -----BEGIN CERTIFICATE-----\n    EXAMPLE-NOT-A-REAL-CERTIFICATE\n    -----END CERTIFICATE-----\n	$VAULT_CA_YAML	the CA of OpenBao's TLS listener
backuppolicy-critical-s3-vault.yaml	      bucket: botrt-payments-backups\n	      bucket: botrt-payments-backups-$RUN\n      endpoint: $S3\n      forcePathStyle: true\n	S3: moto (a bucket per run: Object Lock keeps its objects)
backuppolicy-critical-s3-vault.yaml	          bucket: botrt-payments-backups-dr\n	          bucket: botrt-payments-backups-dr-$RUN\n          endpoint: $GCS\n	GCS: fake-gcs-server
backuppolicy-important-gcs-awskms.yaml	      bucket: botrt-bot-uploads\n	      bucket: botrt-bot-uploads-$RUN\n      endpoint: $GCS\n	GCS: fake-gcs-server
backuppolicy-important-gcs-awskms.yaml	      awsKms:\n	      allowPlaintextHTTP: true\n      awsKms:\n	moto's AWS KMS speaks plain HTTP
backuppolicy-important-gcs-awskms.yaml	        region: eu-west-1\n	        region: eu-west-1\n        endpoint: $AWSKMS\n	AWS KMS: moto
backuppolicy-replicated-cross-region.yaml	      bucket: botrt-uploads-backups\n	      bucket: botrt-uploads-backups-$RUN\n      endpoint: $S3\n      forcePathStyle: true\n	S3: moto
backuppolicy-replicated-cross-region.yaml	          bucket: botrt-uploads-backups-dr\n	          bucket: botrt-uploads-backups-dr-$RUN\n          endpoint: $S3\n          forcePathStyle: true\n	the second region's S3: moto
backuppolicy-replicated-cross-region.yaml	          awsKms:\n	          allowPlaintextHTTP: true\n          awsKms:\n	moto's AWS KMS speaks plain HTTP
backuppolicy-replicated-cross-region.yaml	            region: eu-west-1\n	            region: eu-west-1\n            endpoint: $AWSKMS\n	AWS KMS: moto
backuppolicy-storefront-objects.yaml	      bucket: botrt-storefront-backups\n	      bucket: botrt-storefront-backups-$RUN\n      endpoint: $S3\n      forcePathStyle: true\n	S3: moto
backuppolicy-replicated-cross-region.yaml	          bucket: botrt-uploads-backups-gcs\n	          bucket: botrt-uploads-backups-gcs-$RUN\n          endpoint: $GCS\n	GCS: fake-gcs-server
EOF
)"
mkdir -p "$WORK/samples"
printf '%s\n' "$REWRITES" >"$WORK/rewrites.tsv"
python3 - "$REPO/crds/samples" "$WORK/samples" "$WORK/rewrites.tsv" <<'PY' || fail "the rewrite table does not match the samples"
import fnmatch, os, sys
src, dst, table = sys.argv[1:4]
rows = [l.rstrip("\n").split("\t") for l in open(table) if l.strip()]
used = [0] * len(rows)
for name in sorted(os.listdir(src)):
    text = open(os.path.join(src, name)).read()
    for i, (pattern, old, new, why) in enumerate(rows):
        old, new = old.replace("\\n", "\n"), new.replace("\\n", "\n")
        if fnmatch.fnmatch(name, pattern):
            n = text.count(old)
            if n == 0 and pattern != "*":
                sys.exit(f"rewrite row {i + 1} ({why}): {old!r} is not in {name}")
            used[i] += n
            text = text.replace(old, new)
    open(os.path.join(dst, name), "w").write(text)
for i, n in enumerate(used):
    if n == 0:
        sys.exit(f"rewrite row {i + 1} ({rows[i][3]}) matched no sample")
PY
for f in "${SAMPLES[@]}"; do
  if diff -u --label "crds/samples/$f" --label "applied $f" "$REPO/crds/samples/$f" "$WORK/samples/$f" >"$WORK/$f.diff"; then
    echo "--- $f: applied as written" >&2
  else
    cat "$WORK/$f.diff" >&2
  fi
done
apply() { kubectl apply -f "$WORK/samples/$1" >/dev/null || fail "kubectl apply of $1 failed"; }

log "1. 00-namespace.yaml, secrets-example.yaml"
apply 00-namespace.yaml
[[ "$(kubectl get namespace "$NS" -o jsonpath='{.metadata.labels.app\.kubernetes\.io/part-of}')" == botrt ]] ||
  fail "namespace $NS without its label"
apply secrets-example.yaml
[[ "$(k get secrets -l botrt.io/example=true -o name | wc -l)" == 12 ]] || fail "not all 12 example Secrets exist"
for _ in $(seq 1 100); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done

log "   the samples' claims and workloads (what the samples assume exists)"
for d in audit-logs airgap bot-uploads/media uploads reporting-data scratch bot-restore bot-recovery storefront \
  storefront-staging; do mkdir -p "$VOL/$d"; done
for i in 1 2 3; do echo "audit record $i $RUN" >"$VOL/audit-logs/audit-$i.log"; done
echo "photo $RUN" >"$VOL/bot-uploads/media/photo.jpg"
echo "not part of the backup (outside subPath media)" >"$VOL/bot-uploads/outside.txt"
echo "upload $RUN" >"$VOL/uploads/upload.bin"
head -c 65536 /dev/urandom >"$VOL/uploads/random.bin"
echo "report $RUN" >"$VOL/reporting-data/report.csv"
echo "<h1>storefront $RUN</h1>" >"$VOL/storefront/index.html"
chown -R 65532:65532 "$VOL"
kubectl create namespace "$BACKUP_NS" >/dev/null
node_hostpath_pv samples-audit-logs "$NS" audit-logs "$VOL/audit-logs"
node_hostpath_pv samples-airgap "$NS" airgap-backups "$VOL/airgap"
node_hostpath_pv samples-bot-uploads "$NS" bot-uploads "$VOL/bot-uploads"
node_hostpath_pv samples-uploads "$NS" uploads "$VOL/uploads"
node_hostpath_pv samples-reporting "$NS" reporting-data "$VOL/reporting-data"
claim() { # NAMESPACE NAME PV
  kubectl -n "$1" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $2}
spec: {accessModes: [ReadWriteOnce], storageClassName: "", volumeName: $3, resources: {requests: {storage: 1Gi}}}
EOF
}
claim "$NS" audit-logs samples-audit-logs
claim "$NS" airgap-backups samples-airgap
claim "$NS" bot-uploads samples-bot-uploads
claim "$NS" uploads samples-uploads
claim "$NS" reporting-data samples-reporting
# The drill's scratch claim (class "" and 1Gi, like uploads) binds this unreserved volume; bot-restore's claim
# (class standard, 50Gi) the reserved one.
node_hostpath_pv samples-scratch - - "$VOL/scratch"
kubectl create namespace bot-restore >/dev/null
node_hostpath_pv samples-bot-restore bot-restore bot-uploads "$VOL/bot-restore" 50Gi standard
kubectl create namespace bot-recovery >/dev/null
node_hostpath_pv samples-bot-recovery bot-recovery bot-uploads "$VOL/bot-recovery"
claim bot-recovery bot-uploads samples-bot-recovery
deployment() { # NAMESPACE NAME [KIND]
  kubectl -n "$1" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: ${3:-Deployment}
metadata: {name: $2}
spec:
  replicas: 1
  $([[ "${3:-}" == StatefulSet ]] && echo "serviceName: $2")
  selector: {matchLabels: {app: $2}}
  template:
    metadata: {labels: {app: $2}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: app, image: $APP_IMAGE, command: [sleep, "3600"], readinessProbe: {exec: {command: [test, -e, /proc/1/cmdline]}, periodSeconds: 1}}
EOF
}
deployment "$NS" payments-api
deployment "$NS" payments-worker
deployment bot-recovery telegram-bot
deployment bot-recovery bot-queue StatefulSet
# The storefront (backuppolicy-storefront-objects.yaml): claim storefront-data and the objects of the application, all
# labelled app.kubernetes.io/name=storefront. Its readiness probe passes only when the claim's page, the Secret's key and
# the ConfigMap's name of this run are there, so the clone in storefront-staging is available only if all three came
# back. The clone's claim binds the volume reserved for it there.
node_hostpath_pv samples-storefront "$NS" storefront-data "$VOL/storefront"
kubectl create namespace storefront-staging >/dev/null
node_hostpath_pv samples-storefront-staging storefront-staging storefront-data "$VOL/storefront-staging"
STOREFRONT_KEY="sk-$RUN-$RANDOM$RANDOM"
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: storefront-data, labels: {app.kubernetes.io/name: storefront}}
spec: {accessModes: [ReadWriteOnce], storageClassName: "", volumeName: samples-storefront, resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: storefront, labels: {app.kubernetes.io/name: storefront}}
automountServiceAccountToken: false
---
apiVersion: v1
kind: Secret
metadata: {name: storefront-credentials, labels: {app.kubernetes.io/name: storefront}}
stringData: {payment-api-key: "$STOREFRONT_KEY"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: storefront-config, labels: {app.kubernetes.io/name: storefront}}
data: {store-name: "storefront $RUN"}
---
apiVersion: v1
kind: Service
metadata: {name: storefront, labels: {app.kubernetes.io/name: storefront}}
spec:
  selector: {app.kubernetes.io/name: storefront}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: storefront, labels: {app.kubernetes.io/name: storefront}}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: storefront}}
  template:
    metadata: {labels: {app.kubernetes.io/name: storefront}}
    spec:
      serviceAccountName: storefront
      terminationGracePeriodSeconds: 1
      securityContext: {runAsUser: 65532, runAsGroup: 65532}
      containers:
      - name: web
        image: $APP_IMAGE
        command: [sleep, "3600"]
        env:
        - name: PAYMENT_API_KEY
          valueFrom: {secretKeyRef: {name: storefront-credentials, key: payment-api-key}}
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: config, mountPath: /config}
        readinessProbe:
          exec:
            command: [sh, -c, 'grep -q "storefront $RUN" /data/index.html && test "\$PAYMENT_API_KEY" = "$STOREFRONT_KEY" && grep -qx "storefront $RUN" /config/store-name']
          periodSeconds: 1
      volumes:
      - {name: data, persistentVolumeClaim: {claimName: storefront-data}}
      - {name: config, configMap: {name: storefront-config}}
EOF

node_controller "$WORK/controller.log" --metrics-address off --namespace "$NS" --backup-namespace "$BACKUP_NS"

log "2. the BackupPolicies"
POLICIES=(audit-logs-archive payments-db telegram-bot-uploads uploads-replicated notifications-db reporting-data storefront)
for f in backuppolicy-archive-local.yaml backuppolicy-critical-s3-vault.yaml backuppolicy-important-gcs-awskms.yaml \
  backuppolicy-replicated-cross-region.yaml backuppolicy-s3-minio-suspended.yaml backuppolicy-standard-azure-localkey.yaml \
  backuppolicy-storefront-objects.yaml; do
  apply "$f"
done
ready() { [[ "$(cond backuppolicy "$1" Ready)" == True ]]; }
for p in "${POLICIES[@]}"; do
  until_ok 60 "policy $p Ready: $(cond backuppolicy "$p" Ready message)" ready "$p"
done
log "   all seven Ready"
# The storefront is up (its probe passed on the claim's page, the Secret and the ConfigMap) before it is backed up.
k wait --for=condition=available deployment/storefront --timeout=120s >/dev/null || fail "the storefront is not available"
for p in audit-logs-archive payments-db telegram-bot-uploads uploads-replicated storefront; do trigger backuppolicy "$p"; done
succeeded() { [[ "$(cond backuppolicy "$1" LastBackupSucceeded)" == True ]]; }
failed() { [[ "$(cond backuppolicy "$1" LastBackupSucceeded)" == False ]]; }
for p in audit-logs-archive payments-db telegram-bot-uploads uploads-replicated storefront; do
  until_ok 180 "a backup of $p: $(cond backuppolicy "$p" LastBackupSucceeded message)" succeeded "$p"
  log "   $p: $(cond backuppolicy "$p" LastBackupSucceeded message)"
done

# engine_lists POLICY SNAPSHOT ENV... -- ENGINE-ARGS...: the engine on the host lists SNAPSHOT (an id or its prefix) in
# the repository ENGINE-ARGS name.
engine_lists() {
  local p="$1" snap="$2" envs=()
  shift 2
  while [[ "$1" != -- ]]; do envs+=("$1"); shift; done
  shift
  [[ -n "$snap" ]] || fail "$p has no snapshot to look for"
  env "${envs[@]}" "$BOTRT_ENGINE_BIN" snapshots --json "$@" >"$WORK/list.json" 2>"$WORK/list.err" ||
    fail "the engine cannot list $p's repository: $(tail -3 "$WORK/list.err")"
  python3 - "$WORK/list.json" "$snap" <<'PY2' || fail "the engine's listing of $p lacks snapshot $snap: $(cut -c1-400 "$WORK/list.json")"
import json, sys
ids = [s.get("id", "") for s in json.load(open(sys.argv[1]))["snapshots"]]
assert any(i.startswith(sys.argv[2]) or sys.argv[2].startswith(i) for i in ids if i), ids
PY2
  log "   the engine lists $p's snapshot ${snap:0:12}"
}
last() { jp backuppolicy "$1" '{.status.lastSnapshot}'; }
VAULT_ENV=(VAULT_ADDR="$NODE_VAULT_TLS_ADDR" VAULT_TOKEN="$VAULT_TOKEN" VAULT_CACERT="$NODE_VAULT_CA")
# The Jobs mount the claim at spec.repository.local.path: the repository is the claim's root, the volume's directory.
engine_lists audit-logs-archive "$(last audit-logs-archive)" "${VAULT_ENV[@]}" -- --repo "file://$VOL/airgap" \
  --kms vault-transit:///transit/backup-logs-key
engine_lists payments-db "$(last payments-db)" "${VAULT_ENV[@]}" -- --repo "s3://botrt-payments-backups-$RUN/payments-db" --s3-endpoint "$S3" \
  --s3-path-style --s3-region eu-central-1 --kms vault-transit:///transit/backup-database-key
engine_lists telegram-bot-uploads "$(last telegram-bot-uploads)" BOTRT_GCS_ENDPOINT="$GCS" -- --repo "gs://botrt-bot-uploads-$RUN/uploads" \
  --kms "awskms://alias/backup-files-key?region=eu-west-1" --kms-endpoint "$AWSKMS"
engine_lists uploads-replicated "$(last uploads-replicated)" "${VAULT_ENV[@]}" -- --repo "s3://botrt-uploads-backups-$RUN/uploads" --s3-endpoint "$S3" \
  --s3-path-style --s3-region eu-central-1 --kms vault-transit:///transit/backup-files-key

engine_lists storefront "$(last storefront)" "${VAULT_ENV[@]}" -- --repo "s3://botrt-storefront-backups-$RUN/storefront" \
  --s3-endpoint "$S3" --s3-path-style --s3-region eu-central-1 --kms vault-transit:///transit/backup-storefront-key

log "   storefront: the claim's files and the storefront's objects, in one snapshot"
env "${VAULT_ENV[@]}" "$BOTRT_ENGINE_BIN" ls "$(last storefront)" --repo "s3://botrt-storefront-backups-$RUN/storefront" \
  --s3-endpoint "$S3" --s3-path-style --s3-region eu-central-1 --kms vault-transit:///transit/backup-storefront-key \
  >"$WORK/storefront-ls.txt" 2>&1 || fail "engine ls of storefront: $(tail -3 "$WORK/storefront-ls.txt")"
for entry in index.html _kubernetes/index.json _kubernetes/core/ServiceAccount/storefront.json \
  _kubernetes/core/Secret/storefront-credentials.json _kubernetes/core/ConfigMap/storefront-config.json \
  _kubernetes/core/Service/storefront.json _kubernetes/core/PersistentVolumeClaim/storefront-data.json \
  _kubernetes/apps/Deployment/storefront.json; do
  grep -q "$entry\$" "$WORK/storefront-ls.txt" || fail "storefront's snapshot lacks $entry: $(cat "$WORK/storefront-ls.txt")"
done
# The selector: nothing of the namespace's other applications or its backup credentials.
! grep -E '_kubernetes/.*(payments-api|backup-s3-credentials|audit-logs)' "$WORK/storefront-ls.txt" >&2 ||
  fail "storefront's snapshot holds objects its selector does not match"
# The Event counts what the export wrote: the claim, ServiceAccount, Secret, ConfigMap, Service and Deployment.
backup_events() { k get events --field-selector involvedObject.name=storefront,reason=BackupSucceeded -o jsonpath='{.items[*].message}'; }
counted() { backup_events | grep -q "with 6 Kubernetes objects"; }
until_ok 20 "storefront's BackupSucceeded Event to count its 6 objects: $(backup_events)" counted
log "   storefront: $(grep -c _kubernetes/ "$WORK/storefront-ls.txt") entries under _kubernetes"

log "   payments-db: compliance tightens RPO and schedule; Object Lock COMPLIANCE on its objects"
[[ "$(jp backuppolicy payments-db '{.status.rpoSource}')" == "compliance:sox,pci-dss" ]] ||
  fail "payments-db rpoSource: $(jp backuppolicy payments-db '{.status.rpoSource}')"
[[ "$(jp backuppolicy payments-db '{.status.rpoTargetSeconds}')" == 60 ]] || fail "payments-db RPO is not 1 minute"
python3 - "botrt-payments-backups-$RUN" <<'PY' || fail "payments-db's objects are not under COMPLIANCE retention"
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="eu-central-1")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=sys.argv[1], Prefix="payments-db/data/").get("Contents", [])]
assert keys, "no data objects"
# The lock as HeadObject shows it (moto answers GetObjectRetention of these objects with a 500).
import datetime
h = s3.head_object(Bucket=sys.argv[1], Key=keys[0])
until = h.get("ObjectLockRetainUntilDate")
assert h.get("ObjectLockMode") == "COMPLIANCE", h.get("ObjectLockMode")
assert until and until > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=29), until  # days: 30
PY
replica() { jp backuppolicy "$1" "{.status.replicas[?(@.name==\"$2\")].$3}"; }
gcp_failed() { [[ "$(replica payments-db second-region state)" == Failed ]]; }
until_ok 120 "payments-db's Cloud KMS replica to fail: $(replica payments-db second-region state): $(replica payments-db second-region message)" gcp_failed
replica payments-db second-region message | grep -q 'unreachable: token endpoint https://oauth2.googleapis.com/token' ||
  fail "the replica's failure does not name Google's token endpoint: $(replica payments-db second-region message)"
[[ "$(cond backuppolicy payments-db ReplicasInSync)" == False ]] || fail "ReplicasInSync is not False"
log "   NOT REACHED (no Cloud KMS here): second-region $(replica payments-db second-region message | cut -c1-220)"

log "   telegram-bot-uploads: GDPR RPO; only subPath media was read"
[[ "$(jp backuppolicy telegram-bot-uploads '{.status.rpoSource}')" == "compliance:gdpr" ]] ||
  fail "telegram-bot-uploads rpoSource: $(jp backuppolicy telegram-bot-uploads '{.status.rpoSource}')"
BOTRT_GCS_ENDPOINT="$GCS" "$BOTRT_ENGINE_BIN" ls latest --repo "gs://botrt-bot-uploads-$RUN/uploads" \
  --kms "awskms://alias/backup-files-key?region=eu-west-1" --kms-endpoint "$AWSKMS" >"$WORK/ls.txt" 2>&1 ||
  fail "engine ls of telegram-bot-uploads: $(tail -3 "$WORK/ls.txt")"
grep -q photo.jpg "$WORK/ls.txt" && ! grep -q outside.txt "$WORK/ls.txt" ||
  fail "telegram-bot-uploads' snapshot is not subPath media: $(cat "$WORK/ls.txt")"

log "   uploads-replicated: both replicas in sync"
SNAP_UP="$(jp backuppolicy uploads-replicated '{.status.lastSnapshot}')"
in_sync() { [[ "$(replica uploads-replicated "$1" state)/$(replica uploads-replicated "$1" lastCopiedSnapshot)" == "InSync/$SNAP_UP" ]]; }
for r in second-region second-provider; do
  until_ok 150 "replica $r in sync: $(replica uploads-replicated "$r" state): $(replica uploads-replicated "$r" message)" in_sync "$r"
done
[[ "$(cond backuppolicy uploads-replicated RPOMet)" == True ]] && cond backuppolicy uploads-replicated RPOMet message |
  grep -q second-region || fail "uploads-replicated RPOMet: $(cond backuppolicy uploads-replicated RPOMet message)"
engine_lists "uploads-replicated (second region)" "$(replica uploads-replicated second-region replicaSnapshot)" \
  AWS_REGION=eu-west-1 -- --repo "s3://botrt-uploads-backups-dr-$RUN/uploads" --s3-endpoint "$S3" --s3-path-style \
  --s3-region eu-west-1 --kms "awskms://alias/botrt-backup-files-dr?region=eu-west-1" --kms-endpoint "$AWSKMS"
log "   uploads-replicated: $(cond backuppolicy uploads-replicated ReplicasInSync message | cut -c1-200)"

log "   reporting-data: its trigger runs at once; no Azure here"
until_ok 120 "reporting-data's backup to end: $(cond backuppolicy reporting-data LastBackupSucceeded message)" failed reporting-data
cond backuppolicy reporting-data LastBackupSucceeded message | grep -q botrtbackups.blob.core.windows.net ||
  fail "reporting-data's failure does not name the Azure endpoint: $(cond backuppolicy reporting-data LastBackupSucceeded message)"
[[ "$(cond backuppolicy reporting-data ScheduleActive message)" == *"30 1 * * *"* ]] ||
  fail "reporting-data's schedule: $(cond backuppolicy reporting-data ScheduleActive message)"
log "   NOT REACHED (no Azure Blob here): $(cond backuppolicy reporting-data LastBackupSucceeded message | cut -c1-240)"

log "   notifications-db: suspended, nothing runs"
[[ "$(cond backuppolicy notifications-db ScheduleActive reason)" == Suspended ]] ||
  fail "notifications-db ScheduleActive: $(cond backuppolicy notifications-db ScheduleActive reason)"
[[ -z "$(jp backuppolicy notifications-db '{.status.nextScheduledRun}{.status.lastBackupAttempt}')" ]] ||
  fail "notifications-db has a next run or an attempt"

log "3. the RecoveryPlans"
for f in recoveryplan-database.yaml recoveryplan-application.yaml recoveryplan-from-replica.yaml \
  recoveryplan-into-namespace.yaml recoveryplan-clone-into-staging.yaml; do
  apply "$f"
done
plan_ended() { local ph; ph="$(jp recoveryplan "$1" '{.status.phase}')"; [[ "$ph" == Succeeded || "$ph" == Failed ]]; }
rm -f "$VOL/uploads/upload.bin"
kubectl annotate namespace bot-restore dr.botrt.io/recovery-allowed-from="$NS" >/dev/null
kubectl annotate namespace bot-recovery dr.botrt.io/recovery-allowed-from="$NS" >/dev/null
kubectl annotate namespace storefront-staging dr.botrt.io/recovery-allowed-from="$NS" >/dev/null
for p in payments-db-recovery uploads-from-second-region uploads-into-bot-restore telegram-bot-recovery \
  storefront-clone-to-staging; do
  trigger recoveryplan "$p"
done
for p in payments-db-recovery uploads-from-second-region uploads-into-bot-restore storefront-clone-to-staging; do
  until_ok 240 "plan $p to end: $(jp recoveryplan "$p" '{.status.phase}: {.status.message}')" plan_ended "$p"
  [[ "$(jp recoveryplan "$p" '{.status.phase}')" == Succeeded ]] ||
    fail "plan $p: $(jp recoveryplan "$p" '{.status.phase}: {.status.failedStep}: {.status.message}')"
  log "   $p Succeeded: steps $(jp recoveryplan "$p" '{.status.steps[*].state}' | wc -w), RTO $(jp recoveryplan "$p" '{.status.rtoAchievedSeconds}') s"
done
[[ "$(cond recoveryplan payments-db-recovery RTOMet)" == True ]] || fail "payments-db-recovery RTOMet"
[[ "$(jp recoveryplan payments-db-recovery '{.status.steps[*].state}')" == "$(printf 'Succeeded %.0s' {1..8} | xargs)" ]] ||
  fail "payments-db-recovery step states: $(jp recoveryplan payments-db-recovery '{.status.steps[*].state}')"
[[ "$(psql_ -d payments -tAc 'SELECT count(*) FROM ledger_entries')" == 100 ]] || fail "payments has not its 100 rows back"
[[ "$(cat "$VOL/uploads/upload.bin" 2>/dev/null)" == "upload $RUN" ]] || fail "the second region's copy did not bring upload.bin back"
claim_json="$(kubectl -n bot-restore get pvc bot-uploads -o jsonpath='{.spec.storageClassName} {.spec.resources.requests.storage} {.metadata.labels.app\.kubernetes\.io/managed-by} {.metadata.ownerReferences}')"
[[ "$claim_json" == "standard 50Gi botrt-controller " ]] || fail "the claim created in bot-restore: $claim_json"
[[ "$(cat "$VOL/bot-restore/photo.jpg" 2>/dev/null)" == "photo $RUN" ]] || fail "bot-restore's claim lacks the restored photo.jpg"
log "   storefront-clone-to-staging: the storefront runs in storefront-staging on the restored claim and objects"
[[ "$(jp recoveryplan storefront-clone-to-staging '{.status.steps[*].state}')" == "Succeeded Succeeded Succeeded" ]] ||
  fail "storefront-clone-to-staging step states: $(jp recoveryplan storefront-clone-to-staging '{.status.steps[*].state}')"
ks() { kubectl -n storefront-staging "$@"; }
[[ "$(cat "$VOL/storefront-staging/index.html" 2>/dev/null)" == "<h1>storefront $RUN</h1>" ]] ||
  fail "storefront-staging's claim lacks the restored index.html"
[[ ! -e "$VOL/storefront-staging/_kubernetes" ]] || fail "the claim's restore wrote the snapshot's objects into the claim"
[[ "$(ks get pvc storefront-data -o jsonpath='{.status.phase} {.spec.volumeName} {.metadata.labels.app\.kubernetes\.io/managed-by}')" == \
  "Bound samples-storefront-staging botrt-controller" ]] ||
  fail "the claim created in storefront-staging: $(ks get pvc storefront-data -o jsonpath='{.status.phase} {.spec.volumeName} {.metadata.labels}')"
[[ "$(ks get secret storefront-credentials -o jsonpath='{.data.payment-api-key}' | base64 -d)" == "$STOREFRONT_KEY" ]] ||
  fail "the restored Secret storefront-credentials does not hold the source's key"
[[ "$(ks get configmap storefront-config -o jsonpath='{.data.store-name}')" == "storefront $RUN" ]] ||
  fail "the restored ConfigMap storefront-config: $(ks get configmap storefront-config -o jsonpath='{.data}')"
ks get serviceaccount storefront >/dev/null || fail "the ServiceAccount storefront was not restored"
staging_ip="$(ks get service storefront -o jsonpath='{.spec.clusterIP}')"
[[ -n "$staging_ip" && "$staging_ip" != "$(k get service storefront -o jsonpath='{.spec.clusterIP}')" ]] ||
  fail "the restored Service's clusterIP '$staging_ip'"
[[ "$(ks get deployment storefront -o jsonpath='{.status.readyReplicas}')" == 1 ]] ||
  fail "the cloned Deployment storefront is not available: $(ks get deployment storefront -o jsonpath='{.status}')"
job="$(jp recoveryplan storefront-clone-to-staging '{.status.steps[?(@.name=="restore-objects")].jobName}')"
apply_result="$(ks get pods -l job-name="$job" \
  -o jsonpath='{.items[0].status.containerStatuses[?(@.name=="objects")].state.terminated.message}')"
python3 - "$apply_result" <<'PY' || fail "the objects step's result: $apply_result"
import json, sys
r = json.loads(sys.argv[1].strip().splitlines()[-1])
# ServiceAccount, Secret, ConfigMap, Service and Deployment created; the claim is not among the plan's kinds.
assert r["command"] == "apply" and r["objects"] == 5 and r["existing"] == 0 and not r["failures"], r
PY
log "   storefront available in storefront-staging; objects step: $(echo "$apply_result" | tail -1 | cut -c1-200)"
app_pull() {
  kubectl get pods -A -o jsonpath='{range .items[*]}{.spec.containers[0].image} {.status.containerStatuses[0].state.waiting.reason}{"\n"}{end}' |
    grep -Eq '^ghcr.io/example/image-verifier:1.0 (ErrImagePull|ImagePullBackOff)$'
}
until_ok 90 "telegram-bot-recovery's first step to wait on its image: $(jp recoveryplan telegram-bot-recovery '{.status.phase} {.status.steps[0]}')" app_pull
[[ "$(jp recoveryplan telegram-bot-recovery '{.status.phase}/{.status.steps[0].name}/{.status.steps[0].state}')" == Running/validate-images/Running ]] ||
  fail "telegram-bot-recovery: $(jp recoveryplan telegram-bot-recovery '{.status.phase} {.status.steps[0]}')"
log "   NOT REACHED (no registry, example image): telegram-bot-recovery Running at validate-images, Pod in image pull back-off"

log "4. the DRDrills"
for f in drdrill-quarterly-suspended.yaml drdrill-weekly-policy.yaml drdrill-cron-plan.yaml; do apply "$f"; done
trigger drdrill payments-db-weekly
trigger drdrill telegram-bot-plan-rehearsal
has_result() { [[ -n "$(jp drdrill "$1" '{.status.lastResult.completionTime}')" ]]; }
result() { jp drdrill "$1" "{.status.lastResult.$2}"; }
for d in uploads-quarterly payments-db-weekly telegram-bot-plan-rehearsal; do
  until_ok 240 "drill $d to record a result: $(jp drdrill "$d" '{.status.phase} {.status.conditions}')" has_result "$d"
  log "   $d: passed=$(result "$d" passed) dataIntegrity=$(result "$d" dataIntegrity) score=$(result "$d" complianceScore) rto=$(result "$d" rtoAchievedSeconds)s: $(result "$d" message | cut -c1-200)"
done
[[ "$(result uploads-quarterly passed)/$(result uploads-quarterly dataIntegrity)" == true/true ]] ||
  fail "uploads-quarterly: $(result uploads-quarterly message) $(result uploads-quarterly failures)"
[[ "$(kubectl get pv samples-scratch -o jsonpath='{.spec.claimRef.name}')" == drill-scratch ]] ||
  fail "the drill's scratch claim drill-scratch did not bind the volume left for it"
[[ -z "$(jp drdrill uploads-quarterly '{.status.nextScheduledRun}')" ]] ||
  fail "uploads-quarterly is suspended yet has a next run: $(jp drdrill uploads-quarterly '{.status.nextScheduledRun}')"
[[ "$(result payments-db-weekly dataIntegrity)" == true && -n "$(result payments-db-weekly rtoAchievedSeconds)" &&
  -n "$(result payments-db-weekly rpoAchievedSeconds)" ]] || fail "payments-db-weekly: $(result payments-db-weekly message)"
score="$(result payments-db-weekly complianceScore)"
expect=false
[[ -n "$score" && "$score" -ge 95 && "$(result payments-db-weekly failures)" == "" ]] && expect=true
[[ "$(result payments-db-weekly passed)" == "$expect" ]] ||
  fail "payments-db-weekly passed=$(result payments-db-weekly passed) with score $score (min 95) and failures $(result payments-db-weekly failures)"
[[ "$(result telegram-bot-plan-rehearsal passed)" == false ]] &&
  result telegram-bot-plan-rehearsal message | grep -q 2024-03-01 ||
  fail "telegram-bot-plan-rehearsal: $(result telegram-bot-plan-rehearsal passed): $(result telegram-bot-plan-rehearsal message)"

log "5. nothing of the suspended policy ran"
[[ -z "$(kubectl get jobs -A -l dr.botrt.io/policy-name=notifications-db -o name)" ]] || fail "notifications-db created Jobs"
kubectl get botrt -n "$NS" >&2 || true
log PASS
