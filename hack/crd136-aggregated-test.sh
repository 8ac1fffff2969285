#!/usr/bin/env bash
# One apiserver for kubectl and the controller (issue 20 item 5): the 1.36 CRD server (hack/crd-apiserver.sh, in its
# delegated mode) registered in the aggregation layer of a 1.20.2 kube-apiserver (hack/cluster.sh) with an APIService
# for dr.botrt.io/v1alpha1. The 1.20 apiserver has no dr.botrt.io CRD; every request below goes to the 1.20 endpoint,
# which proxies dr.botrt.io to the 1.36 server (a selector-less Service and an Endpoints object with the address the
# 1.20 apiserver advertises, reached with --enable-aggregator-routing). Checks:
#   1. the APIService is Available; discovery (`kubectl api-resources`) lists the three kinds; no dr.botrt.io CRD in
#      1.20;
#   2. every document of crds/samples/ applies through the 1.20 endpoint (Namespace and Secrets stored by 1.20, the
#      custom resources by 1.36); a custom resource in a missing namespace is refused (1.20's namespaces, delegated
#      admission); `kubectl explain` and an unknown field's refusal (1.20's OpenAPI merges the aggregated server's);
#   3. every case of Tests/CEL/cases.yaml is accepted or refused as the table says, the refusal naming the field: the
#      CEL rules of crds/cel/ at `kubectl apply` through 1.20;
#   4. printer columns (Table) and status through the subresource (SSA and merge patch), through the proxy;
#   5. 1.20's RBAC decides: a user with no grant is refused; with the built-in `view` or `edit` ClusterRole, to which
#      manifests/rbac/aggregate-roles.yaml adds dr.botrt.io, it may read, or read and write; asked directly, the 1.36
#      server authenticates the same token (TokenReview) and applies the same grants (SubjectAccessReview to 1.20);
#   6. watch through the proxy (an ADDED and a DELETED event);
#   7. 1.20's garbage collector knows the aggregated kind: a ConfigMap owned by a BackupPolicy goes with it;
#   8. the real botrt-controller, as its ServiceAccount with manifests/rbac/, against the 1.20 endpoint only:
#      a BackupPolicy served by 1.36 is reconciled into its children in 1.20 (CronJob, ServiceAccount, Role, ...,
#      owned by the policy), its finalizer added and its status written (Ready, observedGeneration); deleting it
#      removes the children and completes.
#
# It starts its own 1.20 control plane (no node: no Pod runs) and its own 1.36 server, on ports of their own, and
# stops both. Settings: BOTRT_AGGR_APISERVER_PORT (6453), BOTRT_AGGR_ETCD_PORT (2389), BOTRT_AGGR_ETCD_PEER_PORT (+1), BOTRT_AGGR_CRD136_PORT
# (7453), BOTRT_AGGR_CRD136_ETCD_PORT (7389), BOTRT_AGGR_CRD136_ETCD_PEER_PORT (+1); BOTRT_CONTROLLER_BIN (default: the debug build; built with
# `swift build --product botrt-controller` when missing); BOTRT_SCRATCH_PATH as for hack/test.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
NS=aggr-test
FAILS=0
PASSES=0
say() { echo "crd136-aggregated: $*"; }
pass() {
  PASSES=$((PASSES + 1))
  say "ok   $*"
}
fail() {
  FAILS=$((FAILS + 1))
  say "FAIL $*"
}

CLUSTER_DIR="$REPO/.local/aggr-cluster"
CRD_DIR="$REPO/.local/aggr-crd136"
cluster() {
  BOTRT_CLUSTER_DIR="$CLUSTER_DIR" BOTRT_NODE=0 BOTRT_APISERVER_PORT="${BOTRT_AGGR_APISERVER_PORT:-6453}" \
    BOTRT_ETCD_PORT="${BOTRT_AGGR_ETCD_PORT:-2389}" BOTRT_ETCD_PEER_PORT="${BOTRT_AGGR_ETCD_PEER_PORT:-}" bash hack/cluster.sh "$@"
}
crd136() {
  BOTRT_CRD136_DIR="$CRD_DIR" BOTRT_CRD136_PORT="${BOTRT_AGGR_CRD136_PORT:-7453}" \
    BOTRT_CRD136_ETCD_PORT="${BOTRT_AGGR_CRD136_ETCD_PORT:-7389}" BOTRT_CRD136_ETCD_PEER_PORT="${BOTRT_AGGR_CRD136_ETCD_PEER_PORT:-}" bash hack/crd-apiserver.sh "$@"
}
TMP="$(mktemp -d)"
CONTROLLER_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$CONTROLLER_PID" ]]; then kill "$CONTROLLER_PID" 2>/dev/null || true; fi
  if ((FAILS > 0)) && [[ -f "$TMP/controller.log" ]]; then
    say "controller log (last 30 lines):"
    tail -30 "$TMP/controller.log"
  fi
  crd136 down >/dev/null 2>&1 || true
  cluster down >/dev/null 2>&1 || true
  rm -rf "$TMP"
  if ((rc == 0 && FAILS > 0)); then rc=1; fi
  exit "$rc"
}
trap cleanup EXIT

if [[ -z "${BOTRT_CONTROLLER_BIN:-}" ]]; then
  if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then export PATH="/opt/swift/usr/bin:$PATH"; fi
  SWIFT_PATH_ARGS=()
  if [[ -n "${BOTRT_SCRATCH_PATH:-}" ]]; then SWIFT_PATH_ARGS=(--scratch-path "$BOTRT_SCRATCH_PATH"); fi
  BOTRT_CONTROLLER_BIN="$(swift build "${SWIFT_PATH_ARGS[@]}" --show-bin-path)/botrt-controller"
  [[ -x "$BOTRT_CONTROLLER_BIN" ]] || swift build "${SWIFT_PATH_ARGS[@]}" --product botrt-controller
fi

# ---------------------------------------------------------------------------------------------
# Setup: the 1.20 control plane, the 1.36 server delegating to it, the APIService.

cluster up
# shellcheck disable=SC1090
source <(cluster env)
ADMIN_KUBECONFIG="$KUBECONFIG"
# Endpoints refuse loopback addresses: the 1.36 server listens on the address the 1.20 apiserver advertises (the node
# bridge hack/cluster.sh brings up, an address of this machine).
IP="$(kubectl get endpoints kubernetes -n default -o jsonpath='{.subsets[0].addresses[0].ip}')"
[[ -n "$IP" && "$IP" != 127.* ]] || {
  fail "no non-loopback address advertised by the 1.20 apiserver: '$IP'"
  exit 1
}
BOTRT_CRD136_BIND_ADDRESS="$IP" BOTRT_CRD136_SERVER_NAMES=botrt-crd136.kube-system.svc \
  BOTRT_CRD136_CORE_KUBECONFIG="$ADMIN_KUBECONFIG" crd136 up
# shellcheck disable=SC1090
source <(crd136 env)
CRD_PORT="${BOTRT_CRD136_URL##*:}"
KUBECONFIG="$BOTRT_CRD136_KUBECONFIG" kubectl apply --server-side -f crds/cel/ >/dev/null
KUBECONFIG="$BOTRT_CRD136_KUBECONFIG" kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null
# The aggregator reads the server's OpenAPI when the APIService appears, then once a minute: publish the CRDs' first.
for _ in $(seq 100); do
  KUBECONFIG="$BOTRT_CRD136_KUBECONFIG" kubectl get --raw /openapi/v2 2>/dev/null |
    grep -q 'dr.botrt.io/v1alpha1/namespaces/{namespace}/drdrills' && break
  sleep 0.2
done
cat >"$TMP/apiservice.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: botrt-crd136, namespace: kube-system}
spec:
  ports: [{port: 443, targetPort: $CRD_PORT, protocol: TCP}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: botrt-crd136, namespace: kube-system}
subsets:
- addresses: [{ip: "$IP"}]
  ports: [{port: $CRD_PORT, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1alpha1.dr.botrt.io}
spec:
  group: dr.botrt.io
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  service: {name: botrt-crd136, namespace: kube-system, port: 443}
  caBundle: $(base64 -w0 <"$BOTRT_CRD136_CA")
EOF
kubectl apply -f "$TMP/apiservice.yaml" >/dev/null

# 1. Availability and discovery.
if kubectl wait --for=condition=Available --timeout=60s apiservice/v1alpha1.dr.botrt.io >/dev/null 2>&1; then
  pass "APIService v1alpha1.dr.botrt.io Available"
else
  fail "APIService not Available: $(kubectl get apiservice v1alpha1.dr.botrt.io -o jsonpath='{.status.conditions}')"
fi
v="$(kubectl version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
[[ "$v" == v1.20.* ]] && pass "the endpoint is kube-apiserver $v" || fail "server version '$v'"
crds="$(kubectl get crd -o name 2>&1)"
[[ "$crds" != *dr.botrt.io* ]] && pass "no dr.botrt.io CRD in 1.20" || fail "1.20 has dr.botrt.io CRDs: $crds"
for _ in $(seq 50); do # 1.20's discovery cache follows the APIService a moment later
  res="$(kubectl api-resources --api-group=dr.botrt.io --no-headers 2>&1 | awk '{print $1}' | sort | paste -sd, || true)"
  [[ "$res" == backuppolicies,drdrills,recoveryplans ]] && break
  sleep 0.2
done
[[ "$res" == backuppolicies,drdrills,recoveryplans ]] && pass "api-resources through 1.20: $res" || fail "api-resources: $res"

# 2. The samples, and 1.20's namespaces checked by the 1.36 server's admission.
# The samples' custom resources, counted from the files (each document's kind is at the start of a line).
SAMPLE_CRS="$(cat crds/samples/*.yaml | grep -cE '^kind: (BackupPolicy|RecoveryPlan|DRDrill)$')"
SAMPLE_BPS="$(cat crds/samples/*.yaml | grep -cE '^kind: BackupPolicy$')"
if out="$(kubectl apply -f crds/samples/ 2>&1)"; then
  n="$(grep -c 'dr.botrt.io/' <<<"$out" || true)"
  ((n == SAMPLE_CRS)) && pass "crds/samples apply through 1.20 ($n custom resources)" || fail "samples: $n custom resources: $out"
else
  fail "crds/samples apply: $out"
fi
out="$(kubectl apply --dry-run=server -f - 2>&1 <<'EOF' || true
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: p, namespace: no-such-namespace}
spec:
  tier: standard
  source: {pvc: {claimName: data}}
  repository: {local: {path: /repo, claimName: repo}}
  encryption: {kms: {localKeySecretRef: {name: key}}}
EOF
)"
[[ "$out" == *'namespaces "no-such-namespace" not found'* ]] && pass "a missing namespace is refused" ||
  fail "missing namespace: $out"

# The schema reaches kubectl through 1.20's OpenAPI, which merges the aggregated server's: explain and client-side
# validation of an unknown field (1.20 predates server-side field validation).
for _ in $(seq 70); do # the aggregator merges the APIService's OpenAPI asynchronously (again once a minute)
  out="$(kubectl explain backuppolicy.spec.repository 2>&1 || true)"
  [[ "$out" == *FIELDS:* ]] && break
  sleep 1
done
[[ "$out" == *FIELDS:* && "$out" == *local* && "$out" == *s3* ]] && pass "kubectl explain through 1.20's OpenAPI" ||
  fail "kubectl explain: ${out:0:300}"
out="$(kubectl apply --dry-run=server -f - 2>&1 <<'EOF' || true
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: p, namespace: botrt-samples}
spec:
  tier: standard
  source: {pvc: {claimName: data}}
  repository: {local: {path: /repo, claimName: repo}, ftp: {host: example}}
  encryption: {kms: {localKeySecretRef: {name: key}}}
EOF
)"
[[ "$out" == *'unknown field'* && "$out" == *ftp* ]] && pass "an unknown field is refused: ${out//$'\n'/ }" ||
  fail "unknown field: $out"

# 3. The CEL table through 1.20.
kubectl create namespace "$NS" >/dev/null
python3 - "$TMP/cases" "$NS" <<'EOF'
import json, os, sys, yaml
out, ns = sys.argv[1], sys.argv[2]
os.makedirs(out)
for c in yaml.safe_load(open("Tests/CEL/cases.yaml"))["cases"]:
    doc = {"apiVersion": "dr.botrt.io/v1alpha1", "kind": c["kind"],
           "metadata": {"name": c["name"], "namespace": ns}, "spec": c["spec"]}
    json.dump(doc, open(os.path.join(out, c["name"] + ".json"), "w"))
    open(os.path.join(out, c["name"] + ".expect"), "w").write(
        ("valid" if c["valid"] else "invalid") + "\n" + (c.get("field") or "") + "\n")
EOF
cel_ok=0
cel_total=0
for f in "$TMP"/cases/*.json; do
  name="$(basename "$f" .json)"
  cel_total=$((cel_total + 1))
  { read -r want; read -r field; } <"$TMP/cases/$name.expect"
  if out="$(kubectl apply --dry-run=server -f "$f" 2>&1)"; then
    [[ "$want" == valid ]] && cel_ok=$((cel_ok + 1)) || fail "cel $name: accepted, the table says invalid ($field)"
  elif [[ "$want" == valid ]]; then
    fail "cel $name: refused, the table says valid: $out"
  elif [[ "$out" == *"$field"* ]]; then
    cel_ok=$((cel_ok + 1))
    if [[ "$name" == bp-source-both ]]; then say "     e.g. $name: $out"; fi
  else
    fail "cel $name: refused without naming $field: $out"
  fi
done
((cel_ok == cel_total && cel_total > 0)) && pass "Tests/CEL/cases.yaml: $cel_ok of $cel_total cases as the table says"

# 4. Columns and status through the proxy.
cols="$(kubectl get bp -n botrt-samples 2>&1 | sed -n 1p | tr -s ' ')"
[[ "$cols" == "NAME TIER SCHEDULE LAST BACKUP RPO MET READY AGE" ]] && pass "kubectl get bp columns: $cols" ||
  fail "kubectl get bp columns: '$cols'"
STATUS="apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: payments-db, namespace: botrt-samples}
status:
  observedGeneration: 1
  effectiveSchedule: '0 */4 * * *'
  conditions:
  - {type: Ready, status: 'True', reason: Reconciled, lastTransitionTime: '2026-01-02T03:04:05Z'}"
if out="$(kubectl apply --server-side --subresource=status --field-manager=botrt-controller -f - <<<"$STATUS" 2>&1)"; then
  row="$(kubectl get bp payments-db -n botrt-samples --no-headers | tr -s ' ')"
  [[ "$row" == "payments-db critical 0 */4 * * * True "* ]] && pass "status SSA through the subresource: $row" ||
    fail "row after status SSA: '$row'"
else
  fail "status SSA: $out"
fi
kubectl patch bp payments-db -n botrt-samples --type=merge --subresource=status \
  -p '{"status":{"lastSnapshot":"0123abcd"}}' >/dev/null 2>&1 &&
  [[ "$(kubectl get bp payments-db -n botrt-samples -o jsonpath='{.status.lastSnapshot}')" == 0123abcd ]] &&
  pass "status merge patch through the subresource" || fail "status merge patch"

# 5. RBAC of 1.20. The limited user (hack/cluster.sh's token user botrt-limited) has no grant at first.
limited() { kubectl --token="$BOTRT_LIMITED_TOKEN" "$@"; }
out="$(limited get bp -n botrt-samples 2>&1 || true)"
[[ "$out" == *Forbidden* && "$out" == *'"botrt-limited"'* ]] && pass "no grant: list refused" || fail "no grant: $out"
kubectl apply -f manifests/rbac/aggregate-roles.yaml >/dev/null
kubectl create rolebinding limited-view -n botrt-samples --clusterrole=view --user=botrt-limited >/dev/null
for _ in $(seq 50); do limited get bp -n botrt-samples >/dev/null 2>&1 && break || sleep 0.2; done
n="$(limited get bp -n botrt-samples --no-headers 2>/dev/null | wc -l)"
((n == SAMPLE_BPS)) && pass "view (aggregated): lists $n BackupPolicies" || fail "view: $(limited get bp -n botrt-samples 2>&1)"
out="$(limited delete bp payments-db -n botrt-samples --dry-run=server 2>&1 || true)"
[[ "$out" == *Forbidden* ]] && pass "view: delete refused" || fail "view: delete: $out"
kubectl create rolebinding limited-edit -n botrt-samples --clusterrole=edit --user=botrt-limited >/dev/null
ok=0
for _ in $(seq 50); do
  if limited delete bp payments-db -n botrt-samples --dry-run=server >/dev/null 2>&1; then
    ok=1
    break
  fi
  sleep 0.2
done
((ok)) && pass "edit (aggregated): delete allowed" || fail "edit: $(limited delete bp payments-db -n botrt-samples --dry-run=server 2>&1)"
out="$(limited get bp -n "$NS" 2>&1 || true)"
[[ "$out" == *Forbidden* ]] && pass "the grant is per namespace: $NS refused" || fail "other namespace: $out"
# The 1.36 server decides too (1.20 refuses before proxying, so this asks it directly): the same token, checked by
# TokenReview, and the same grants, by SubjectAccessReview against 1.20.
direct() {
  kubectl --kubeconfig=/dev/null --server="$BOTRT_CRD136_URL" --certificate-authority="$BOTRT_CRD136_CA" \
    --token="$BOTRT_LIMITED_TOKEN" "$@"
}
n="$(direct get bp -n botrt-samples --no-headers 2>/dev/null | wc -l)"
out="$(direct get bp -n "$NS" 2>&1 || true)"
((n == SAMPLE_BPS)) && [[ "$out" == *Forbidden* && "$out" == *'"botrt-limited"'* ]] &&
  pass "the 1.36 server itself: botrt-limited may list in botrt-samples, not in $NS (delegated authn and authz)" ||
  fail "the 1.36 server itself: $n listed in botrt-samples; $NS: $out"

# 6. Watch through the proxy.
kubectl get --raw "/apis/dr.botrt.io/v1alpha1/namespaces/$NS/backuppolicies?watch=true&timeoutSeconds=20" \
  >"$TMP/watch.out" 2>&1 &
wpid=$!
sleep 2
kubectl apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: watched, namespace: $NS}
spec:
  tier: standard
  source: {pvc: {claimName: data}}
  repository: {local: {path: /repo, claimName: repo}}
  encryption: {kms: {localKeySecretRef: {name: key}}}
EOF
kubectl delete bp watched -n "$NS" >/dev/null
for _ in $(seq 50); do grep -q '"DELETED"' "$TMP/watch.out" && break || sleep 0.2; done
kill "$wpid" 2>/dev/null || true
wait "$wpid" 2>/dev/null || true
events="$(python3 -c 'import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    print(e["type"], e["object"]["metadata"]["name"])' "$TMP/watch.out" 2>&1 | paste -sd, || true)"
[[ "$events" == "ADDED watched,"*"DELETED watched" ]] && pass "watch through the proxy: $events" ||
  fail "watch: '$events': $(head -c 600 "$TMP/watch.out")"

# 7. 1.20's garbage collector with an owner served by the aggregated server.
kubectl apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: gc-owner, namespace: $NS}
spec:
  tier: standard
  source: {pvc: {claimName: data}}
  repository: {local: {path: /repo, claimName: repo}}
  encryption: {kms: {localKeySecretRef: {name: key}}}
EOF
uid="$(kubectl get bp gc-owner -n "$NS" -o jsonpath='{.metadata.uid}')"
kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: gc-child
  namespace: $NS
  ownerReferences: [{apiVersion: dr.botrt.io/v1alpha1, kind: BackupPolicy, name: gc-owner, uid: "$uid"}]
EOF
sleep 3
if kubectl get configmap gc-child -n "$NS" >/dev/null 2>&1; then
  pass "the owned ConfigMap stays while its BackupPolicy exists"
else
  fail "the owned ConfigMap went while its owner exists"
fi
kubectl delete bp gc-owner -n "$NS" >/dev/null
gone=0
for _ in $(seq 60); do # the garbage collector rediscovers resources every 30 s
  if ! kubectl get configmap gc-child -n "$NS" >/dev/null 2>&1; then
    gone=1
    break
  fi
  sleep 1
done
((gone)) && pass "1.20's garbage collector deleted the ConfigMap of the deleted BackupPolicy" ||
  fail "the ConfigMap owned by the deleted BackupPolicy is still there after 60 s"

# 8. The controller against the 1.20 endpoint alone.
kubectl apply -f manifests/namespace.yaml -f manifests/rbac/serviceaccount.yaml -f manifests/rbac/clusterrole.yaml \
  -f manifests/rbac/clusterrolebinding.yaml -f manifests/rbac/leader-election-role.yaml >/dev/null
token="$(kubectl create --raw /api/v1/namespaces/botrt-system/serviceaccounts/botrt-controller/token -f - <<<'{
  "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["status"]["token"])')"
(
  umask 077
  cat >"$TMP/controller.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$BOTRT_APISERVER_URL", certificate-authority: "$BOTRT_CLUSTER_DIR/ca.crt"}}]
users: [{name: botrt-controller, user: {token: "$token"}}]
contexts: [{name: botrt-controller, context: {cluster: local, user: botrt-controller}}]
current-context: botrt-controller
EOF
)
kubectl create secret generic s3-creds -n "$NS" --from-literal=AWS_ACCESS_KEY_ID=aggr-test \
  --from-literal=AWS_SECRET_ACCESS_KEY="$(head -c 12 /dev/urandom | base64)" >/dev/null
kubectl create secret generic master-key -n "$NS" --from-literal=key="$(head -c 32 /dev/urandom | base64)" >/dev/null
KUBECONFIG="$TMP/controller.kubeconfig" "$BOTRT_CONTROLLER_BIN" run --engine-image botrt-engine:aggr-test \
  --metrics-address off --namespace "$NS" --backup-namespace "$NS" >"$TMP/controller.log" 2>&1 &
CONTROLLER_PID=$!
kubectl apply -f - >/dev/null <<EOF
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: db, namespace: $NS}
spec:
  tier: standard
  source:
    command: {image: busybox:aggr-test, command: ["sh", "-c", "echo row"], fileName: db.dump}
  repository:
    s3: {bucket: aggr, prefix: db, endpoint: "http://$IP:1", region: us-east-1, forcePathStyle: true,
         credentialsSecretRef: {name: s3-creds}}
  encryption:
    kms: {localKeySecretRef: {name: master-key}}
EOF
ready=""
for _ in $(seq 90); do
  ready="$(kubectl get bp db -n "$NS" -o jsonpath='{.status.observedGeneration}/{.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}' 2>/dev/null || true)"
  [[ "$ready" == 1/* ]] && break
  sleep 1
done
[[ "$ready" == 1/* ]] && pass "controller: status written through the proxy (observedGeneration/Ready/reason: $ready)" ||
  fail "controller: no status on BackupPolicy db: '$ready'"
fin="$(kubectl get bp db -n "$NS" -o jsonpath='{.metadata.finalizers}')"
[[ "$fin" == *dr.botrt.io/cleanup* ]] && pass "controller: finalizer added" || fail "controller: finalizers '$fin'"
owned() {
  kubectl get cronjobs,serviceaccounts,roles,rolebindings,networkpolicies -n "$NS" -o json |
    python3 -c 'import json,sys; print(" ".join(sorted(i["kind"] + "/" + i["metadata"]["name"] for i in json.load(sys.stdin)["items"] if any(o.get("kind") == "BackupPolicy" and o.get("name") == "db" for o in i["metadata"].get("ownerReferences", [])))))'
}
children="$(owned)"
[[ "$children" == *CronJob/* ]] && pass "controller: children in 1.20 owned by the policy: $children" ||
  fail "controller: no CronJob owned by the policy: '$children'"
kubectl delete bp db -n "$NS" --wait=false >/dev/null
gone=0
for _ in $(seq 60); do
  if ! kubectl get bp db -n "$NS" >/dev/null 2>&1 && [[ -z "$(owned)" ]]; then
    gone=1
    break
  fi
  sleep 1
done
((gone)) && pass "controller: the deletion completed and the children went" ||
  fail "controller: after delete, policy: $(kubectl get bp db -n "$NS" -o jsonpath='{.metadata.finalizers}' 2>&1), children: $(owned)"
denied="$(grep -ci 'forbidden' "$TMP/controller.log" || true)"
((denied == 0)) && pass "controller: no request refused" || fail "controller: $denied refused requests in its log"

say "$PASSES passed, $FAILS failed"
((FAILS == 0))
