#!/usr/bin/env bash
# End to end: a PVC-source BackupPolicy on the local node, with an application's private files.
#   1. a claim bound to a hostPath PersistentVolume of the node is written by application Pods as two other users
#      (uid 1001 and 1002): 0600 and 0640 files, a 0700 directory, a symlink, an empty file, 1 MiB of random bytes,
#      fixed modification times;
#   2. a BackupPolicy that reads the claim as the engine's own user (65532, the default) cannot read them: the run
#      does not succeed and the policy says why, naming the file;
#   3. with `source.pvc.runAsUser: 0` (root with DAC_READ_SEARCH only; checked inside the running backup Pod's
#      container: CapEff is exactly that capability) the backup succeeds;
#   4. the files are deleted (the application's disaster), and a RecoveryPlan restores the snapshot into the claim
#      with `into.pvc.runAsUser: 0`: every path comes back with its content, owner, group, mode, type, link target
#      and modification time, compared with a listing taken on the node before the backup; and a tree of every kind
#      of file made on the node (hack/node/filetree.py: set-id bits, a sparse file, hard links, a dangling symlink,
#      250-byte, newline and Latin-1 names, a fifo, xattrs, an ACL, foreign owners, old times) comes back byte for
#      byte and stat for stat, but its device node, which the restore (no CAP_MKNOD) names instead of making;
#   5. a second RecoveryPlan restores the same snapshot into another namespace that has no claim: refused until that
#      namespace's admin allows recoveries from the plan's namespace; then the controller creates the claim there from
#      the policy's recorded claim (status.sourceClaim), labelled as restored and without an owner, runs the restore
#      Job in that namespace with copies of the Secrets, and every path comes back as in step 4; a second run into
#      the now-existing claim leaves the claim as it is, and deleting the plan leaves the claim.
# Every Pod is started by the kubelet (hack/node/lib.sh); the controller runs on the host for this namespace.
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... hack/node/pvc-e2e.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_FLOW=pvc-e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
node_require
node_services_up

NS="pvc-e2e-$$"
DST="pvc-e2e-dst-$$"
BACKUP_NS="botrt-backup-pvc-$$"
BUCKET="botrt-pvc-e2e-$$-$RANDOM"
PV="botrt-pvc-e2e-$$"
PV2="botrt-pvc-e2e-dst-$$"
WORK="$(mktemp -d /tmp/botrt-pvc-e2e.XXXXXX)"
# The volume's directory on the node (the kubelet mounts it into the Pods); 0755 so the other users can reach it.
VOL="$(mktemp -d /var/tmp/botrt-pvc-e2e.XXXXXX)"
chmod 0755 "$VOL"
VOL2="$(mktemp -d /var/tmp/botrt-pvc-e2e-dst.XXXXXX)"
chmod 0755 "$VOL2"
NODE_FLOW_WORK="$WORK"
NODE_FLOW_NAMESPACES+=("$NS" "$DST" "$BACKUP_NS")
NODE_FLOW_PVS+=("$PV" "$PV2")
NODE_FLOW_PATHS+=("$WORK" "$VOL" "$VOL2")
cleanup() {
  local rc=$?
  node_flow_cleanup "$rc" "$NS"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
k() { kubectl -n "$NS" "$@"; }
# listing DIR: every path under DIR with type, owner, group, mode, size, whole-second mtime, link target and the
# SHA-256 of a regular file's content, sorted.
# types/ (every kind of file, hack/node/filetree.py) is compared by types_listing: its names hold newlines.
listing() {
  (cd "$1" && find . -mindepth 1 -path ./types -prune -o -printf '%p %y %U:%G %m %s %TY-%Tm-%Td_%TH:%TM:%.2TS %l\n' |
    sort) |
    while read -r path type owner mode size mtime link; do
      sum=-
      [[ "$type" == f ]] && sum="$(sha256sum "$1/$path" | cut -c1-16)"
      [[ "$type" == d ]] && size=-
      echo "$path $type $owner $mode $size $mtime ${link:--} $sum"
    done
}

# types_listing DIR: every path of DIR/types byte for byte and stat for stat, but the device node, which a restore
# without CAP_MKNOD cannot make (it is named in the restore's warnings instead).
types_listing() { python3 "$REPO/hack/node/filetree.py" list "$1/types" | grep -v '^6e756c6c '; }
kubectl apply -f "$REPO/crds/" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io  >/dev/null
node_flow_bucket "$BUCKET"
node_flow_namespace "$NS"
node_flow_secrets "$NS"
node_controller "$WORK/controller.log" --metrics-address off --namespace "$NS" --backup-namespace "$BACKUP_NS"

log "1. application Pods write private files as uid 1001 and 1002 on a hostPath claim"
node_hostpath_pv "$PV" "$NS" data "$VOL"
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: $NS}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: $PV
  resources: {requests: {storage: 1Gi}}
EOF
# The volume's root belongs to the application (a provisioner or fsGroup would do this on a real volume); uid 1002
# gets a directory of its own.
mkdir -p "$VOL/shared"
chown 1001:1001 "$VOL"
chown 1002:1002 "$VOL/shared"
chmod 0700 "$VOL/shared"
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  initContainers:
  - name: other-user
    image: $APP_IMAGE
    securityContext: {runAsUser: 1002, runAsGroup: 1002, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
                      capabilities: {drop: [ALL]}}
    command: [sh, -ec, 'umask 077; echo "token of user 1002" > /data/shared/other.key; touch -d "2024-02-29 12:00:00" /data/shared/other.key']
    volumeMounts: [{name: data, mountPath: /data}]
  containers:
  - name: app
    image: $APP_IMAGE
    securityContext: {runAsUser: 1001, runAsGroup: 1001, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
                      capabilities: {drop: [ALL]}}
    command:
    - sh
    - -ec
    - |
      cd /data
      umask 077
      echo "db password: hunter2" > secret.txt
      mkdir private
      echo "row 1" > private/table.dat
      head -c 1048576 /dev/urandom > private/blob.bin
      : > private/empty
      chmod 0640 private/table.dat
      echo "public notes" > notes.txt
      chmod 0644 notes.txt
      ln -s private/table.dat current
      touch -d "2025-01-02 03:04:05" secret.txt private/table.dat private/blob.bin notes.txt
      touch -h -d "2025-01-02 03:04:05" current
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: data}}
EOF
for _ in $(seq 1 120); do [[ "$(k get pod writer -o jsonpath='{.status.phase}')" == Succeeded ]] && break; sleep 1; done
[[ "$(k get pod writer -o jsonpath='{.status.phase}')" == Succeeded ]] || fail "the writer Pod did not succeed"
# Every kind of file (issue 15), made on the node as root: set-id bits, a sparse file, hard links, a dangling
# symlink, 250-byte, newline and Latin-1 names, a fifo, a device node, xattrs, an ACL, foreign owners, 1980's times.
python3 "$REPO/hack/node/filetree.py" make "$VOL" || fail "cannot make the tree of every kind of file"
types_listing "$VOL" >"$WORK/types-before.txt"
grep -q ' sparse$' "$WORK/types-before.txt" || fail "the source's sparse file is not sparse on this filesystem"
listing "$VOL" >"$WORK/before.txt"
grep -q '^./secret.txt f 1001:1001 600 ' "$WORK/before.txt" && grep -q '^./shared/other.key f 1002:1002 600 ' \
  "$WORK/before.txt" || fail "the application did not write its private files: $(cat "$WORK/before.txt")"
log "   $(wc -l <"$WORK/before.txt") paths, owned by 1001 and 1002, private files 0600"

policy() { # NAME RUN_AS_USER (empty: the default)
  local as=""
  [[ -n "$2" ]] && as=", runAsUser: $2"
  k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: $1}
spec:
  tier: standard
  dataType: files
  suspend: true
  trigger: t1
  source:
    pvc: {claimName: data$as}
$(node_flow_store "$1")
EOF
}
jp() { k get backuppolicy "$1" -o jsonpath="$2"; }

log "2. read as the engine's own user (the default), the private files cannot be read"
policy as-engine ""
# Status and message in one read: two reads could pair the old message ("No backup has finished yet") with the new
# status False.
msg=""
for _ in $(seq 1 120); do
  c="$(jp as-engine '{range .status.conditions[?(@.type=="LastBackupSucceeded")]}{.status}{"|"}{.message}{end}')"
  if [[ "${c%%|*}" == False && -n "${c#*|}" ]]; then
    msg="${c#*|}"
    break
  fi
  sleep 1
done
[[ "$(jp as-engine '{.status.conditions[?(@.type=="LastBackupSucceeded")].status}')" == False ]] ||
  fail "a backup as uid 65532 of 0600 files of other users did not fail: $(jp as-engine '{.status.conditions}')"
[[ -z "$(jp as-engine '{.status.lastSnapshot}')" ]] || fail "a backup that could not read the files recorded a snapshot"
log "   LastBackupSucceeded False: $(cut -c1-300 <<<"$msg")"
grep -qE "secret.txt|other.key|private|shared|permission" <<<"$msg" ||
  fail "the failure does not say what could not be read: $msg"

log "3. read as root with DAC_READ_SEARCH (source.pvc.runAsUser: 0), the backup succeeds"
policy as-root 0
for _ in $(seq 1 90); do
  pod="$(kubectl -n "$NS" get pods -l app=backup-service -o jsonpath='{range .items[?(@.status.phase=="Running")]}{.metadata.name}{"\n"}{end}' 2>/dev/null | head -1)"
  caps="$( [[ -n "$pod" ]] && kubectl -n "$NS" exec "$pod" -c backup -- sh -c 'id -u; grep ^CapEff /proc/self/status' 2>/dev/null || true)"
  [[ -n "$caps" || -n "$(jp as-root '{.status.lastSnapshot}')" ]] && break
  sleep 0.5
done
SNAP="$(jp as-root '{.status.lastSnapshot}')"
for _ in $(seq 1 120); do
  [[ -n "$SNAP" ]] && break
  sleep 1
  SNAP="$(jp as-root '{.status.lastSnapshot}')"
done
[[ -n "$SNAP" ]] || fail "the root backup made no snapshot: $(jp as-root '{.status.conditions}')"
# The container's powers as the kernel sees them, when the run was still going when looked at (a fast run can end
# before exec reaches it; the Pod spec is then checked instead).
if [[ -n "$caps" ]]; then
  [[ "$caps" == "0
CapEff:	0000000000000004" ]] || fail "the root backup container's effective capabilities are not DAC_READ_SEARCH alone: $caps"
  log "   inside the backup container: uid 0, CapEff 0x4 (DAC_READ_SEARCH) only"
fi
k get pods -l app=backup-service -o json >"$WORK/backup-pods.json"
python3 - "$WORK/backup-pods.json" <<'PY' || fail "the root backup Pod's spec"
import json, sys
pods = [p for p in json.load(open(sys.argv[1]))["items"] if "-as-root-" in p["metadata"]["name"]]
assert pods, "no backup Pod of the policy as-root"
p = pods[-1]
c = p["spec"]["containers"][0]["securityContext"]
assert c["runAsUser"] == 0 and c["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}, c
assert c["readOnlyRootFilesystem"] and not c["allowPrivilegeEscalation"], c
assert p["spec"]["nodeName"] == "botrt-node" and p["status"]["phase"] == "Succeeded", p["status"]
PY
log "   snapshot ${SNAP:0:12}"

log "4. the files are deleted; a RecoveryPlan restores them into the claim as root"
k delete pod writer --wait=true --timeout=60s >/dev/null
find "$VOL" -mindepth 1 -delete
[[ -z "$(ls -A "$VOL")" ]] || fail "the volume is not empty after the deletion"
# restore_plan NAME PVC [TARGET_NAMESPACE]: a RecoveryPlan (trigger r1) whose one step restores policy as-root's latest
# snapshot into the claim `into.pvc` = PVC.
restore_plan() {
  k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: $1}
spec:
  tier: standard
  trigger: r1
  ${3:+targetNamespace: $3}
  procedures:
  - name: restore
    steps:
    - name: files
      action: restore
      timeout: 5m
      restore:
        policyRef: {name: as-root}
        into:
          pvc: $2
EOF
}
# plan_run NAME [TOKEN]: waits up to 180 s for plan NAME's run (of trigger TOKEN, when given) to end; prints its phase.
plan_run() {
  local phase=""
  for _ in $(seq 1 180); do
    phase=""
    [[ -z "${2:-}" || "$(k get recoveryplan "$1" -o jsonpath='{.status.lastHandledTrigger}')" == "trigger:$2" ]] &&
      phase="$(k get recoveryplan "$1" -o jsonpath='{.status.phase}')"
    [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
    sleep 1
  done
  echo "$phase"
}
restore_plan restore-data "{claimName: data, runAsUser: 0}"
phase="$(plan_run restore-data)"
[[ "$phase" == Succeeded ]] || fail "the RecoveryPlan ended '$phase': $(k get recoveryplan restore-data -o jsonpath='{.status.message}')"
listing "$VOL" >"$WORK/after.txt"
diff -u "$WORK/before.txt" "$WORK/after.txt" >"$WORK/diff.txt" ||
  fail "the restored claim differs from what was backed up:
$(cat "$WORK/diff.txt")"
log "   all $(wc -l <"$WORK/after.txt") paths restored with content, owner, group, mode, type, link and mtime:"
sed 's/^/     /' "$WORK/after.txt" >&2
# Every kind of file: the same bytes and stat (set-id bits, sparse, hard links, xattrs, the ACL, fifo, names as bytes);
# the device node is not made without CAP_MKNOD, and the restore names it.
types_listing "$VOL" >"$WORK/types-after.txt"
diff -u "$WORK/types-before.txt" "$WORK/types-after.txt" >"$WORK/types-diff.txt" ||
  fail "the tree of every kind of file was not restored exactly (names in hex):
$(cat "$WORK/types-diff.txt")"
[[ ! -e "$VOL/types/null" ]] || fail "a device node was made without CAP_MKNOD"
rjob="$(k get jobs -l dr.botrt.io/plan-name=restore-data -o jsonpath='{.items[0].metadata.name}')"
k get pods -l job-name="$rjob" -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.message}' |
  grep -q 'types/null' || fail "the restore did not name the device node it could not make"
log "   and all $(wc -l <"$WORK/types-after.txt") paths of every kind of file, byte for byte and stat for stat"
# expect_isolation NAMESPACE JOB: the restore Job's own NetworkPolicy (RestoreIsolation), owned by the Job in the end.
expect_isolation() {
  kubectl -n "$1" get networkpolicy "$2-isolation" -o json >"$WORK/np.json" ||
    fail "the restore Job $1/$2 has no NetworkPolicy $2-isolation"
  python3 - "$WORK/np.json" "$2" <<'PY' || fail "the restore Job's NetworkPolicy $1/$2-isolation"
import json, sys
np, job = json.load(open(sys.argv[1])), sys.argv[2]
assert np["spec"]["podSelector"] == {"matchLabels": {"job-name": job}}, np["spec"]
assert sorted(np["spec"]["policyTypes"]) == ["Egress", "Ingress"], np["spec"]
assert not np["spec"].get("ingress"), np["spec"]
assert np["spec"].get("egress"), np["spec"]
refs = np["metadata"].get("ownerReferences", [])
assert [(r["kind"], r["name"]) for r in refs] == [("Job", job)], refs
PY
}
expect_isolation "$NS" "$(k get jobs -l dr.botrt.io/plan-name=restore-data -o jsonpath='{.items[0].metadata.name}')"

log "5. restore into namespace $DST, which has no claim: created from the policy's recorded claim"
rec="$(jp as-root '{.status.sourceClaim.name} {.status.sourceClaim.namespace} {.status.sourceClaim.accessModes} {.status.sourceClaim.storage}')"
[[ "$rec" == "data $NS [\"ReadWriteOnce\"] 1Gi" ]] || fail "the policy's recorded claim: '$rec'"
node_flow_namespace "$DST"
# The volume the created claim will bind (it records the empty class: no provisioner, a reserved volume).
node_hostpath_pv "$PV2" "$DST" data "$VOL2"
chown 1001:1001 "$VOL2"
restore_plan into-dst "{claimName: data, runAsUser: 0, create: {}}" "$DST"
rp() { k get recoveryplan into-dst -o jsonpath="$1"; }
reason=""
for _ in $(seq 1 60); do
  reason="$(rp '{.status.conditions[?(@.type=="Ready")].reason}')"
  [[ "$reason" == TargetNamespaceNotAllowed ]] && break
  sleep 0.5
done
[[ "$reason" == TargetNamespaceNotAllowed ]] ||
  fail "a plan into a namespace that does not allow it is not refused: $(rp '{.status.conditions}')"
[[ -z "$(kubectl -n "$DST" get jobs,pvc -o name)" ]] || fail "a refused plan created objects in $DST"
log "   refused until allowed: $(rp '{.status.conditions[?(@.type=="Ready")].message}' | cut -c1-160)"
kubectl annotate namespace "$DST" "dr.botrt.io/recovery-allowed-from=$NS" >/dev/null
job=""
for _ in $(seq 1 90); do
  job="$(kubectl -n "$DST" get jobs -l "dr.botrt.io/plan-name=into-dst" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)"
  [[ -n "$job" ]] && break
  sleep 0.5
done
[[ -n "$job" ]] || fail "no restore Job in $DST: $(rp '{.status}')"
kubectl -n "$DST" get pvc data -o json >"$WORK/claim.json"
kubectl -n "$DST" get job "$job" -o json >"$WORK/job.json"
kubectl -n "$DST" get secrets -o json >"$WORK/secrets.json"
# ttlSecondsAfterFinished is alpha (off) before Kubernetes 1.21: the apiserver drops it, so it is checked from 1.21.
minor="$(kubectl version -o json | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["serverVersion"]["minor"].rstrip("+")))')"
python3 - "$WORK/claim.json" "$WORK/job.json" "$WORK/secrets.json" "$NS" "$minor" <<'PY' || fail "the created claim, the Job or the Secret copies in $DST"
import json, sys
claim, job, secrets = (json.load(open(p)) for p in sys.argv[1:4])
ns, minor = sys.argv[4], int(sys.argv[5])
labels = claim["metadata"].get("labels", {})
assert labels.get("app.kubernetes.io/managed-by") == "botrt-controller", labels
assert labels.get("dr.botrt.io/restored-by") == f"{ns}.into-dst", labels
assert not claim["metadata"].get("ownerReferences"), claim["metadata"]
assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], claim["spec"]
assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi", claim["spec"]
assert claim["spec"].get("storageClassName", "") == "", claim["spec"]
assert job["metadata"]["labels"].get("dr.botrt.io/plan-namespace") == ns, job["metadata"]["labels"]
assert not job["metadata"].get("ownerReferences"), job["metadata"]
assert minor < 21 or job["spec"].get("ttlSecondsAfterFinished") == 3600, job["spec"]
vols = [v["persistentVolumeClaim"]["claimName"] for v in job["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v]
assert vols == ["data"], vols
copies = [s for s in secrets["items"] if s["metadata"]["name"].startswith(job["metadata"]["name"] + "-")]
assert copies, "no Secret copies for the Job"
for s in copies:
    refs = s["metadata"].get("ownerReferences", [])
    assert [r["name"] for r in refs] == [job["metadata"]["name"]], s["metadata"]
PY
[[ -z "$(k get jobs -l dr.botrt.io/plan-name=into-dst -o name)" ]] || fail "a restore Job of into-dst ran in $NS"
expect_isolation "$DST" "$job"
k get events --field-selector involvedObject.name=into-dst -o jsonpath='{.items[*].reason}' | grep -qw ClaimCreated ||
  fail "no ClaimCreated Event on the plan"
phase="$(plan_run into-dst)"
[[ "$phase" == Succeeded ]] || fail "the plan into $DST ended '$phase': $(rp '{.status.message}')"
listing "$VOL2" >"$WORK/dst.txt"
diff -u "$WORK/before.txt" "$WORK/dst.txt" >"$WORK/diff2.txt" ||
  fail "the claim restored into $DST differs from what was backed up:
$(cat "$WORK/diff2.txt")"
types_listing "$VOL2" | diff -u "$WORK/types-before.txt" - >"$WORK/types-diff2.txt" ||
  fail "the tree of every kind of file restored into $DST differs:
$(cat "$WORK/types-diff2.txt")"
log "   claim $DST/data created from the record and all $(wc -l <"$WORK/dst.txt") paths restored exactly"

log "   a second run restores into the existing claim and leaves it as it is; deleting the plan leaves the claim"
rv="$(kubectl -n "$DST" get pvc data -o jsonpath='{.metadata.resourceVersion}')"
rm -f "$VOL2/notes.txt"
k patch recoveryplan into-dst --type merge -p '{"spec":{"trigger":"r2"}}' >/dev/null
phase="$(plan_run into-dst r2)"
[[ "$phase" == Succeeded ]] || fail "the second run into $DST ended '$phase': $(rp '{.status}')"
[[ -f "$VOL2/notes.txt" ]] || fail "the second run did not restore notes.txt"
[[ "$(kubectl -n "$DST" get pvc data -o jsonpath='{.metadata.resourceVersion}')" == "$rv" ]] ||
  fail "the second run changed the existing claim"
k delete recoveryplan into-dst --timeout=60s >/dev/null
sleep 2
kubectl -n "$DST" get pvc data >/dev/null || fail "deleting the plan deleted the restored claim"
log PASS
