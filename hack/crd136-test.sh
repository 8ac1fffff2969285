#!/usr/bin/env bash
# The CRDs and the controller's custom-resource path on Kubernetes 1.36 (hack/crd-apiserver.sh: apiextensions-apiserver
# 0.36 standalone, no core API). Checks, with kubectl against that server:
#   1. every CRD in crds/ (the 1.20 rendering) and crds/cel/ (with CEL rules) applies and is Established;
#   2. every custom resource in crds/samples/ applies (Namespaces and Secrets are core kinds this server lacks);
#   3. schema rejections name the field;
#   4. printer columns are served (the Table API through `kubectl get`);
#   5. status is written through the status subresource, and the main resource ignores status;
#   6. server-side apply of custom resources with the controller's field manager (botrt-controller), and a
#      conflict with another manager;
#   7. Tests/CEL/cases.yaml: every case accepted or rejected as the table says, the rejection naming the field
#      (Tests/DRAPITests/CELTableTests.swift runs the same table through the Swift validation);
#   8. the controller's custom-resource path, the 1.36 leg of its matrix: `swift test --filter CustomResourcePath`
#      with BOTRT_CR_SERVERS=1.36 (Tests/ControllerIntegrationTests/CustomResourcePathTests.swift; the 1.20 leg runs
#      in hack/test.sh's swift-test step). Every test of the suite must pass on this server.
#
# Usage: hack/crd136-test.sh            start the server if needed (and stop it afterwards), run the checks
#        BOTRT_CRD136_KUBECONFIG=...    use a server that already runs
#        BOTRT_CRD136_SKIP_BUILD=1      step 8 uses the existing build (hack/test.sh built it); otherwise it runs
#                                       `swift build --build-tests -Xswiftc -warnings-as-errors` as hack/test.sh does
#        BOTRT_SCRATCH_PATH             swift's build directory, as for hack/test.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
NS=crd136-test
MANAGER=botrt-controller
FAILS=0
PASSES=0

say() { echo "crd136-test: $*"; }
pass() {
  PASSES=$((PASSES + 1))
  say "ok   $*"
}
fail() {
  FAILS=$((FAILS + 1))
  say "FAIL $*"
}

STARTED=0
if [[ -z "${BOTRT_CRD136_KUBECONFIG:-}" ]]; then
  if ! bash hack/crd-apiserver.sh status >/dev/null 2>&1; then
    STARTED=1
    bash hack/crd-apiserver.sh up
  fi
  # shellcheck disable=SC1090
  source <(bash hack/crd-apiserver.sh env)
fi
TMP="$(mktemp -d)"
cleanup() {
  local rc=$?
  rm -rf "$TMP"
  if ((STARTED)); then bash hack/crd-apiserver.sh down || true; fi
  if ((rc == 0 && FAILS > 0)); then rc=1; fi
  exit "$rc"
}
trap cleanup EXIT
export KUBECONFIG="$BOTRT_CRD136_KUBECONFIG"

v="$(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])' || true)"
say "server version: ${v:-unknown} (the apiextensions-apiserver build reports its library version)"

# 1. CRDs: both renderings apply; the CEL one last, so the checks below run with the rules.
for dir in crds crds/cel; do
  if out="$(kubectl apply --server-side --field-manager=botrt-crd-tests --force-conflicts -f "$dir/" 2>&1)"; then
    pass "$dir/*.yaml apply ($(echo "$out" | wc -l) CRDs)"
  else
    fail "$dir/*.yaml apply: $out"
  fi
done
for crd in backuppolicies recoveryplans drdrills; do
  if kubectl wait --for=condition=Established --timeout=60s "crd/$crd.dr.botrt.io" >/dev/null 2>&1; then
    pass "crd/$crd.dr.botrt.io Established"
  else
    fail "crd/$crd.dr.botrt.io not Established: $(kubectl get "crd/$crd.dr.botrt.io" -o jsonpath='{.status.conditions}' 2>&1)"
  fi
done
# Discovery lags the Established condition by a moment.
for _ in $(seq 50); do kubectl get bp -A >/dev/null 2>&1 && break || sleep 0.2; done

# 2. Samples: the dr.botrt.io documents, into namespace botrt-samples (this server does not check namespaces).
python3 - "$TMP/samples.yaml" <<'EOF'
import glob, sys, yaml
docs = []
for f in sorted(glob.glob("crds/samples/*.yaml")):
    for d in yaml.safe_load_all(open(f)):
        if d and d.get("apiVersion", "").startswith("dr.botrt.io/"):
            docs.append(d)
yaml.safe_dump_all(docs, open(sys.argv[1], "w"))
EOF
if out="$(kubectl apply --server-side --field-manager=botrt-crd-tests -f "$TMP/samples.yaml" 2>&1)"; then
  pass "crds/samples: $(echo "$out" | wc -l) custom resources apply"
else
  fail "crds/samples apply: $out"
fi

# 3. Schema rejections name the field.
reject() { # NAME FIELD MANIFEST
  local out
  if out="$(echo "$3" | kubectl apply --dry-run=server -f - 2>&1)"; then
    fail "$1: accepted"
  elif [[ "$out" == *"$2"* ]]; then
    pass "$1: rejected naming $2"
  else
    fail "$1: rejected without naming $2: $out"
  fi
}
BP_HEAD="apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: invalid, namespace: $NS}"
BP_OK='source: {pvc: {claimName: data}}
  repository: {local: {path: /repo, claimName: repo}}
  encryption: {kms: {localKeySecretRef: {name: key}}}'
reject "tier enum" spec.tier "$BP_HEAD
spec:
  tier: gold
  $BP_OK"
reject "cron words" spec.schedule "$BP_HEAD
spec:
  tier: critical
  schedule: every 5 minutes
  $BP_OK"
reject "negative retention" spec.retention.keepDaily "$BP_HEAD
spec:
  tier: critical
  retention: {keepDaily: -1}
  $BP_OK"
reject "rotation over 90 days" spec.encryption.keyRotationDays "$BP_HEAD
spec:
  tier: critical
  source: {pvc: {claimName: data}}
  repository: {local: {path: /repo, claimName: repo}}
  encryption: {kms: {localKeySecretRef: {name: key}}, keyRotationDays: 120}"
reject "step action enum (1.36 names the index)" 'spec.procedures[0].steps[0].action' "apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: invalid, namespace: $NS}
spec: {tier: critical, procedures: [{name: p, steps: [{name: s, action: reboot}]}]}"
reject "drill schedule" spec.schedule "apiVersion: dr.botrt.io/v1alpha1
kind: DRDrill
metadata: {name: invalid, namespace: $NS}
spec: {schedule: fortnightly, target: {backupPolicyRef: {name: p}}}"
reject "unknown field (strict field validation)" 'unknown field "spec.repository.ftp"' "$BP_HEAD
spec:
  tier: critical
  source: {pvc: {claimName: data}}
  repository: {local: {path: /repo, claimName: repo}, ftp: {host: example}}
  encryption: {kms: {localKeySecretRef: {name: key}}}"

# 4. Printer columns through the Table API.
cols="$(kubectl get bp -n botrt-samples 2>&1 | sed -n 1p | tr -s ' ')"
if [[ "$cols" == "NAME TIER SCHEDULE LAST BACKUP RPO MET READY AGE" ]]; then
  pass "kubectl get bp columns: $cols"
else
  fail "kubectl get bp columns: '$cols'"
fi
wide="$(kubectl get bp -n botrt-samples -o wide 2>&1 | sed -n 1p | tr -s ' ')"
[[ "$wide" == *"RPO TARGET RPO SOURCE SNAPSHOT PROGRESS" ]] && pass "-o wide adds the priority-1 columns" || fail "-o wide: '$wide'"
for kind in rp drill; do
  n="$(kubectl get "$kind" -n botrt-samples --no-headers 2>/dev/null | wc -l)"
  ((n > 0)) && pass "kubectl get $kind lists $n" || fail "kubectl get $kind lists nothing"
done
rpcols="$(kubectl get rp -n botrt-samples 2>&1 | sed -n 1p | tr -s ' ')"
[[ "$rpcols" == "NAME TIER PHASE RTO TARGET RTO ACHIEVED AGE" ]] && pass "kubectl get rp columns" || fail "rp columns: '$rpcols'"
drcols="$(kubectl get drill -n botrt-samples 2>&1 | sed -n 1p | tr -s ' ')"
[[ "$drcols" == "NAME TARGET SCHEDULE LAST RUN PASSED SCORE AGE" ]] && pass "kubectl get drill columns" || fail "drill columns: '$drcols'"

# 5 and 6. The controller's path: SSA of a spec with its field manager, status through the subresource.
POLICY="apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: ssa, namespace: $NS}
spec:
  tier: standard
  $BP_OK"
if echo "$POLICY" | kubectl apply --server-side --field-manager=$MANAGER -f - >/dev/null 2>&1; then
  mgrs="$(kubectl get bp ssa -n $NS --show-managed-fields -o jsonpath='{.metadata.managedFields[*].manager}')"
  [[ "$mgrs" == *"$MANAGER"* ]] && pass "SSA with field manager $MANAGER (managers: $mgrs)" || fail "managedFields: $mgrs"
else
  fail "SSA create with $MANAGER: $(echo "$POLICY" | kubectl apply --server-side --field-manager=$MANAGER -f - 2>&1)"
fi
# A second manager changing an owned field conflicts; the controller's value stays.
out="$(echo "${POLICY/tier: standard/tier: archive}" | kubectl apply --server-side --field-manager=someone-else -f - 2>&1 || true)"
[[ "$out" == *"conflict"* && "$out" == *"$MANAGER"* && "$out" == *".spec.tier"* ]] &&
  pass "SSA conflict names $MANAGER and .spec.tier" || fail "SSA conflict: $out"
# Status: SSA on the status subresource (as the controller writes conditions), then a main-resource write of status
# is ignored.
STATUS="apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: ssa, namespace: $NS}
status:
  observedGeneration: 1
  effectiveSchedule: '0 */4 * * *'
  conditions:
  - {type: Ready, status: 'True', reason: Reconciled, lastTransitionTime: '2026-01-02T03:04:05Z'}"
if out="$(echo "$STATUS" | kubectl apply --server-side --subresource=status --field-manager=$MANAGER -f - 2>&1)"; then
  got="$(kubectl get bp ssa -n $NS -o jsonpath='{.status.conditions[0].type}={.status.conditions[0].status}')"
  [[ "$got" == "Ready=True" ]] && pass "status SSA through the subresource" || fail "status after SSA: '$got'"
else
  fail "status SSA: $out"
fi
cols="$(kubectl get bp ssa -n $NS --no-headers | tr -s ' ')"
[[ "$cols" == "ssa standard 0 */4 * * * True "* ]] && pass "columns show the status: $cols" || fail "columns: '$cols'"
kubectl patch bp ssa -n $NS --type=merge --subresource=status -p '{"status":{"lastSnapshot":"0123abcd"}}' >/dev/null 2>&1 &&
  [[ "$(kubectl get bp ssa -n $NS -o jsonpath='{.status.lastSnapshot}')" == 0123abcd ]] &&
  pass "status merge patch through the subresource" || fail "status merge patch"
gen0="$(kubectl get bp ssa -n $NS -o jsonpath='{.metadata.generation}')"
kubectl patch bp ssa -n $NS --type=merge -p '{"status":{"lastSnapshot":"ffffffff"}}' >/dev/null 2>&1 || true
[[ "$(kubectl get bp ssa -n $NS -o jsonpath='{.status.lastSnapshot}')" == 0123abcd ]] &&
  pass "the main resource ignores status" || fail "a main-resource patch changed status"
[[ "$(kubectl get bp ssa -n $NS -o jsonpath='{.metadata.generation}')" == "$gen0" ]] &&
  pass "status writes leave metadata.generation at $gen0" || fail "generation moved"

# 7. The CEL table.
python3 - "$TMP/cases" "$NS" <<'EOF'
import json, os, sys, yaml
out, ns = sys.argv[1], sys.argv[2]
os.makedirs(out)
table = yaml.safe_load(open("Tests/CEL/cases.yaml"))
for c in table["cases"]:
    doc = {"apiVersion": "dr.botrt.io/v1alpha1", "kind": c["kind"],
           "metadata": {"name": c["name"], "namespace": ns}, "spec": c["spec"]}
    with open(os.path.join(out, c["name"] + ".json"), "w") as f:
        json.dump(doc, f)
    with open(os.path.join(out, c["name"] + ".expect"), "w") as f:
        f.write(("valid" if c["valid"] else "invalid") + "\n" + (c.get("field") or "") + "\n")
EOF
for f in "$TMP"/cases/*.json; do
  name="$(basename "$f" .json)"
  { read -r want; read -r field; } <"$TMP/cases/$name.expect"
  if out="$(kubectl apply --dry-run=server -f "$f" 2>&1)"; then
    [[ "$want" == valid ]] && pass "cel $name: accepted" || fail "cel $name: accepted, the table says invalid ($field)"
  else
    if [[ "$want" == valid ]]; then
      fail "cel $name: rejected, the table says valid: $out"
    elif [[ "$out" == *"$field"* ]]; then
      pass "cel $name: rejected naming $field"
    else
      fail "cel $name: rejected without naming $field: $out"
    fi
  fi
done

# 8. The custom-resource-path matrix, 1.36 leg: the controller's own client, watcher, controller, finalizer and status
# writers against this server. The suite's every test must have run here and passed.
if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then export PATH="/opt/swift/usr/bin:$PATH"; fi
SWIFT_PATH_ARGS=()
if [[ -n "${BOTRT_SCRATCH_PATH:-}" ]]; then SWIFT_PATH_ARGS=(--scratch-path "$BOTRT_SCRATCH_PATH"); fi
SUITE=Tests/ControllerIntegrationTests/CustomResourcePathTests.swift
want="$(grep -c '@Test(arguments: CRMatrix.servers)' "$SUITE")"
built=1
if [[ "${BOTRT_CRD136_SKIP_BUILD:-0}" != 1 ]]; then
  say "building the tests for step 8 (swift build --build-tests -Xswiftc -warnings-as-errors)"
  swift build "${SWIFT_PATH_ARGS[@]}" --build-tests -Xswiftc -warnings-as-errors >"$TMP/build.log" 2>&1 || built=0
fi
if ((built == 0)); then
  fail "custom-resource path: the build failed: $(tail -20 "$TMP/build.log")"
else
  rc=0
  BOTRT_CR_SERVERS=1.36 swift test "${SWIFT_PATH_ARGS[@]}" --skip-build --no-parallel --filter CustomResourcePath \
    2>&1 | tee "$TMP/swift-test.log" || rc=$?
  # Swift Testing's total, e.g. "Test run with 9 tests in 1 suite passed after 40 seconds."
  ran="$(grep -aoE 'Test run with [0-9]+ tests? (in [0-9]+ suites? )?passed' "$TMP/swift-test.log" |
    grep -oE '[0-9]+' | head -1 || true)"
  if ((rc == 0)) && [[ "${ran:-0}" == "$want" ]]; then
    pass "custom-resource path on 1.36: $ran tests of $SUITE passed"
  else
    fail "custom-resource path on 1.36: swift test exit $rc, ${ran:-no} tests passed of $want (log above)"
  fi
fi

say "$PASSES passed, $FAILS failed"
((FAILS == 0))
