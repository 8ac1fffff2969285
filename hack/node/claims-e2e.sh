#!/usr/bin/env bash
# End to end: a multi-claim BackupPolicy (spec.source.claims, issue 15 §1) on the local node.
#   1. three claims on hostPath PersistentVolumes of the node: alpha and beta labelled backup=yes, gamma not;
#   2. a BackupPolicy with `source.claims.selector: {matchLabels: {backup: "yes"}}`, include paths, exclude
#      patterns, each claim's own exclude file (excludeFile), excludeIfPresent and oneFileSystem, and a trigger:
#      an on-demand backup Job per labelled claim (none for gamma), each a snapshot
#      tagged claim=NAME; status.claims shows both Succeeded;
#   3. beta's files are deleted; a RecoveryPlan restores `claim: beta` (latest among beta's snapshots only, though
#      alpha's is as new) into claim beta: every path comes back with its content, none the policy excluded (a
#      `*.tmp` file, an anchored `/dir/cache`, a directory marked `.nobackup`, what no include names), and alpha is
#      untouched.
# Every Pod is started by the kubelet (hack/node/lib.sh); the controller runs on the host for this namespace.
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... hack/node/claims-e2e.sh
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_FLOW=claims-e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
node_require
node_services_up

NS="claims-e2e-$$"
BACKUP_NS="botrt-backup-claims-$$"
BUCKET="botrt-claims-e2e-$$-$RANDOM"
WORK="$(mktemp -d /tmp/botrt-claims-e2e.XXXXXX)"
declare -A VOL
for c in alpha beta gamma; do
  VOL[$c]="$(mktemp -d "/var/tmp/botrt-claims-e2e-$c.XXXXXX")"
  # The engine's user (65532) reads the backups and writes the restore.
  chown 65532:65532 "${VOL[$c]}"
done
NODE_FLOW_WORK="$WORK"
NODE_FLOW_NAMESPACES+=("$NS" "$BACKUP_NS")
NODE_FLOW_PVS+=("botrt-claims-e2e-$$-alpha" "botrt-claims-e2e-$$-beta" "botrt-claims-e2e-$$-gamma")
NODE_FLOW_PATHS+=("$WORK" "${VOL[@]}")
cleanup() {
  local rc=$?
  node_flow_cleanup "$rc" "$NS"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
k() { kubectl -n "$NS" "$@"; }
# listing DIR: every path under DIR with its type and the SHA-256 of a regular file's content, sorted.
listing() {
  (cd "$1" && find . -mindepth 1 -printf '%p %y\n' | sort) | while read -r path type; do
    sum=-
    [[ "$type" == f ]] && sum="$(sha256sum "$1/$path" | cut -c1-16)"
    echo "$path $type $sum"
  done
}

kubectl apply -f "$REPO/crds/" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io  >/dev/null
node_flow_bucket "$BUCKET"
node_flow_namespace "$NS"
node_flow_secrets "$NS"
node_controller "$WORK/controller.log" --metrics-address off --namespace "$NS" --backup-namespace "$BACKUP_NS"

log "1. claims alpha and beta labelled backup=yes, gamma not, each with files of its own"
for c in alpha beta gamma; do
  node_hostpath_pv "botrt-claims-e2e-$$-$c" "$NS" "$c" "${VOL[$c]}"
  label='{}'
  [[ $c != gamma ]] && label='{backup: "yes"}'
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $c, namespace: $NS, labels: $label}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: botrt-claims-e2e-$$-$c
  resources: {requests: {storage: 1Gi}}
EOF
  mkdir -p "${VOL[$c]}/dir"
  echo "notes of $c" >"${VOL[$c]}/notes.txt"
  head -c 262144 /dev/urandom >"${VOL[$c]}/dir/blob.bin"
  : >"${VOL[$c]}/dir/empty"
  chown -R 65532:65532 "${VOL[$c]}"
done
# alpha's exclude file (excludeFile: /.backupignore is read in every selected claim): only a comment.
printf '# nothing to leave out\n' >"${VOL[alpha]}/.backupignore"
chown 65532:65532 "${VOL[alpha]}/.backupignore"
listing "${VOL[alpha]}" >"$WORK/alpha-before.txt"
listing "${VOL[beta]}" >"$WORK/beta-before.txt"
# What the policy's selection leaves out of beta's backup (not in the listing above, so not expected back): a file
# matching `*.tmp` anywhere, the anchored `/dir/cache` and what is below it (a `cache` elsewhere is kept), and the
# rest of a directory holding `.nobackup` (the directory and the marker are kept, as restic keeps them).
mkdir -p "${VOL[beta]}/dir/cache" "${VOL[beta]}/skipped" "${VOL[beta]}/keep/cache"
echo scratch >"${VOL[beta]}/dir/work.tmp"
echo cached >"${VOL[beta]}/dir/cache/page"
: >"${VOL[beta]}/skipped/.nobackup"
echo private >"${VOL[beta]}/skipped/data"
echo kept >"${VOL[beta]}/keep/cache/page"
# What the claims' own exclude files (excludeFile: /.backupignore, read in each claim) leave out: beta's lists
# /dir/*.draft. Neither claim's file is backed up: no include names it.
printf '# the app keeps this list\n/dir/*.draft\n' >"${VOL[beta]}/.backupignore"
echo draft >"${VOL[beta]}/dir/notes.draft"
# What the policy's include leaves out: everything at the top but dir, keep, skipped and notes.txt.
mkdir -p "${VOL[beta]}/outside"
echo other >"${VOL[beta]}/outside/file"
echo other >"${VOL[beta]}/outside.txt"
chown -R 65532:65532 "${VOL[beta]}"
listing "${VOL[beta]}" | grep -E '^\./keep|^\./skipped d |^\./skipped/\.nobackup ' >>"$WORK/beta-before.txt"
sort -o "$WORK/beta-before.txt" "$WORK/beta-before.txt"

log "2. a BackupPolicy selecting backup=yes backs up alpha and beta, each as its own snapshot"
k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: files}
spec:
  tier: standard
  dataType: files
  suspend: true
  trigger: t1
  source:
    claims:
      selector: {matchLabels: {backup: "yes"}}
      include: ["/dir", "/notes.txt", "/keep", "/skip*"]
      exclude: ["*.tmp", "/dir/cache"]
      excludeFile: [/.backupignore]
      excludeIfPresent: [".nobackup"]
      oneFileSystem: true
$(node_flow_store files)
EOF
jp() { k get backuppolicy files -o jsonpath="$1"; }
results=""
for _ in $(seq 1 120); do
  results="$(jp '{range .status.claims[*]}{.name}={.result} {end}')"
  [[ "$results" == "alpha=Succeeded beta=Succeeded " ]] && break
  [[ "$results" == *Failed* ]] && break
  sleep 1
done
[[ "$results" == "alpha=Succeeded beta=Succeeded " ]] || fail "status.claims: '$results'"
SNAP_A="$(jp '{.status.claims[?(@.name=="alpha")].lastSnapshotId}')"
SNAP_B="$(jp '{.status.claims[?(@.name=="beta")].lastSnapshotId}')"
[[ -n "$SNAP_A" && -n "$SNAP_B" && "$SNAP_A" != "$SNAP_B" ]] || fail "the claims' snapshots: '$SNAP_A' '$SNAP_B'"
jobs="$(k get jobs -l dr.botrt.io/component=on-demand -o jsonpath='{range .items[*]}{.metadata.annotations.dr\.botrt\.io/claim}{"\n"}{end}' | sort | xargs)"
[[ "$jobs" == "alpha beta" ]] || fail "on-demand Jobs of claims '$jobs' (gamma is not labelled)"
[[ "$(jp '{.status.claims[?(@.name=="beta")].claim.storage}')" == 1Gi ]] || fail "beta's recorded claim"
log "   alpha ${SNAP_A:0:12}, beta ${SNAP_B:0:12}; no Job for gamma"

log "3. beta's files are deleted; a RecoveryPlan restores claim beta's latest into beta"
find "${VOL[beta]}" -mindepth 1 -delete
k apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: restore-beta}
spec:
  tier: standard
  trigger: r1
  procedures:
  - name: restore
    steps:
    - name: beta
      action: restore
      timeout: 5m
      restore:
        policyRef: {name: files}
        claim: beta
        into:
          pvc: {claimName: beta}
EOF
phase=""
for _ in $(seq 1 120); do
  phase="$(k get recoveryplan restore-beta -o jsonpath='{.status.phase}')"
  [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
  sleep 1
done
[[ "$phase" == Succeeded ]] ||
  fail "the RecoveryPlan ended '$phase': $(k get recoveryplan restore-beta -o jsonpath='{.status.message}')"
job="$(k get jobs -l dr.botrt.io/plan-name=restore-beta -o jsonpath='{.items[0].metadata.name}')"
k get job "$job" -o jsonpath='{.spec.template.spec.containers[*].args}' | grep -q 'claim=beta' ||
  fail "the restore Job does not pick among beta's snapshots"
listing "${VOL[beta]}" | sort >"$WORK/beta-after.txt"
diff -u "$WORK/beta-before.txt" "$WORK/beta-after.txt" >"$WORK/diff.txt" ||
  fail "the restored claim beta differs from what was backed up:
$(cat "$WORK/diff.txt")"
listing "${VOL[alpha]}" | diff -u "$WORK/alpha-before.txt" - >/dev/null || fail "the restore of beta changed alpha"
for gone in ./dir/work.tmp ./dir/cache ./dir/notes.draft ./skipped/data ./outside ./outside.txt ./.backupignore; do
  grep -q "^$gone " "$WORK/beta-after.txt" && fail "$gone was restored though the policy excludes it"
done
log "   all $(wc -l <"$WORK/beta-after.txt") paths of beta restored from its own snapshot, none it excludes; alpha untouched"
log PASS
