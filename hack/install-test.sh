#!/usr/bin/env bash
# Installs BotRT on the local control plane as an admin does, and checks what was created and that it works:
#
#  1. manifests/ and manifests/monitoring/ render with kubectl 1.20's kustomize (2.0.3) and the current kubectl's;
#  2. `kubectl apply -k manifests/` (kubectl 1.20, the docs/quickstart.md block) creates the namespace, the CRDs
#     (Established), the ServiceAccount, RBAC without wildcards, the Deployment (2 replicas, leader election,
#     restricted Pod Security Standard, probes, requests and limits), the Service and the NetworkPolicy; the
#     ServiceAccount may do what the controller needs and nothing else it was not given (kubectl auth can-i);
#  3. manifests/monitoring/ (PrometheusRule, ServiceMonitor, the dashboard ConfigMap) and podmonitor.yaml apply where
#     the Prometheus Operator's kinds exist (stand-in CRDs here);
#  4. the Deployment's own Pods run on the local node (hack/node/lib.sh): the kubelet starts them in containerd from
#     the image built from images/controller/Containerfile, tagged in containerd as the name manifests/ ships (no
#     edit of the manifests, no registry); both replicas pass their readiness probe (`kubectl rollout status`), one
#     takes the Lease, each reaches the apiserver through its ServiceAccount token and the `kubernetes` Service (the
#     installed RBAC is what the controller has), and inside the container the securityContext holds: uid/gid 65532,
#     no capabilities, a read-only root filesystem;
#  5. every shell block of docs/quickstart.md runs in order (namespace and Secrets, a BackupPolicy to moto S3 with
#     OpenBao Transit keys backing up a PostgreSQL dump, `kubectl wait --for=condition=Ready bp/...`, a first
#     backup, a DRDrill with `kubectl wait --for=condition=Passed drill/...`, a RecoveryPlan, `kubectl get botrt`),
#     every Job Pod on the node: pg_dump runs in a stock-like PostgreSQL image (botrt.local/postgres:15 answering
#     to postgres:16: none of BotRT's libraries) and streams into the engine's own container;
#  6. `kubectl describe` shows conditions and Events in sentences, `kubectl explain` documents the fields with their
#     tier defaults, the controller's logs are JSON with one `reconciled` line naming each object, contain no
#     Secret value, and show no Forbidden answer (the installed RBAC sufficed); the backup Pod ran on the node, its
#     dump container had none of the storage credentials, its engine container no ServiceAccount token, and the
#     run's result was the engine container's termination message;
#  7. every command the docs mark `<!-- doc-test: install-test -->` (runbooks, upgrading, the README's install) runs
#     against this install, with the names only this install knows filled in (a Job, a snapshot, the URLs);
#  8. the quickstart's uninstall: the finalizers remove each policy's children, then the operator and the CRDs go
#     (the CRDs are applied again for the steps after this one). Tests/DRAPITests/DocCommandsTests.swift checks
#     that every shell block of every doc is run by a test or says why not.
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... hack/install-test.sh
#
# The services the Pods use (S3, OpenBao, PostgreSQL) run on the node's bridge address (started here unless
# running). It installs into the shared control plane (namespace botrt-system, ClusterRole botrt-controller,
# namespaces shop and botrt-backup) and removes all of it but the CRDs when it ends; the operator it installs
# watches every namespace, so nothing else may run a controller meanwhile: hack/test.sh runs it after the other
# flows.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fail() { echo "install-test: FAIL: $*" >&2; exit 1; }
log() { echo "install-test: $*" >&2; }
NODE_FLOW=install-test
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
node_require
node_services_up
[[ -n "${BOTRT_LIMITED_TOKEN:-}" ]] || fail "BOTRT_LIMITED_TOKEN is not set (source <(hack/cluster.sh env))"
# The images manifests/ names, as the node's containerd knows them: the ones hack/images.sh built from the
# repository's Containerfiles (IfNotPresent: the shipped tags are not :latest, so the kubelet pulls nothing).
SHIPPED_CONTROLLER="$(awk '/image: .*botrt-controller:/ {print $2; exit}' "$REPO/manifests/deployment.yaml")"
SHIPPED_ENGINE="$(grep -o -- '--engine-image=[^ ]*' "$REPO/manifests/deployment.yaml" | head -1 | cut -d= -f2)"
[[ -n "$SHIPPED_CONTROLLER" && -n "$SHIPPED_ENGINE" ]] || fail "manifests/deployment.yaml names no controller or engine image"
node_ctr images tag --force botrt.local/botrt-controller:dev "$SHIPPED_CONTROLLER" >/dev/null
node_ctr images tag --force "$ENGINE_IMAGE" "$SHIPPED_ENGINE" >/dev/null

KUBECTL_120="$("$REPO/hack/kubectl-1.20.sh")"
KUBECTL="$(command -v kubectl)"
WORK="$(mktemp -d /tmp/botrt-install-test.XXXXXX)"
chmod 755 "$WORK"
mkdir -p "$WORK/bin"
ln -s "$KUBECTL_120" "$WORK/bin/kubectl" # the quickstart's commands run with the server's kubectl
K120=("$KUBECTL_120")
APP_NS=shop
SYS_NS=botrt-system

dump_state() {
  echo "--- deployment and pods"
  "$KUBECTL" -n "$SYS_NS" get deploy,rs,pods -o wide 2>&1 | head -20
  echo "--- botrt objects in $APP_NS"
  "$KUBECTL" -n "$APP_NS" get botrt -o yaml 2>&1 | grep -E '^\s+(message|reason|type|status|phase):' | head -40
  echo "--- controller logs (last lines of each replica)"
  for p in $("$KUBECTL" -n "$SYS_NS" get pods -l app.kubernetes.io/component=controller -o name 2>/dev/null); do
    echo "[$p]"
    "$KUBECTL" -n "$SYS_NS" logs "$p" --tail=15 2>&1
  done
  node_pods_dump botrt-backup
  echo "--- quickstart output"
  tail -n 30 "$WORK/quickstart.out" 2>/dev/null
} >&2

cleanup() {
  local rc=$?
  set +e
  if ((rc != 0)); then dump_state; fi
  # Finalizers need the running controller: delete the objects first, then stop it.
  "$KUBECTL" -n "$APP_NS" delete drdrills,recoveryplans,backuppolicies --all --timeout=60s >/dev/null 2>&1
  "$KUBECTL" -n "$SYS_NS" delete deployment botrt-controller --timeout=30s >/dev/null 2>&1
  "$KUBECTL" -n "$SYS_NS" wait --for=delete pod -l app.kubernetes.io/component=controller --timeout=40s \
    >/dev/null 2>&1
  # Everything manifests/ created but the CRDs (other steps and tests use them).
  "$KUBECTL" delete namespace "$APP_NS" "$SYS_NS" botrt-backup --wait=false >/dev/null 2>&1
  "$KUBECTL" delete clusterrole,clusterrolebinding botrt-controller >/dev/null 2>&1
  "$KUBECTL" delete clusterrole botrt-edit botrt-view botrt-hook-executor botrt-objects-reader \
    botrt-objects-reader-standard botrt-objects-restorer botrt-objects-restorer-standard \
    botrt-objects-rbac-restorer >/dev/null 2>&1
  "$KUBECTL" delete namespace -l "dr.botrt.io/drill-namespace=$APP_NS" --wait=false >/dev/null 2>&1
  "$KUBECTL" delete crd prometheusrules.monitoring.coreos.com servicemonitors.monitoring.coreos.com \
    podmonitors.monitoring.coreos.com --ignore-not-found >/dev/null 2>&1
  [[ -n "${TLS_PROXY_PID:-}" ]] && kill "$TLS_PROXY_PID" 2>/dev/null
  node_services_down
  if [[ "${BOTRT_KEEP_WORK:-0}" == 1 ]]; then echo "install-test: kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT # so that a timeout still cleans up

# A fresh start: an earlier run's leftovers (a run killed before its cleanup) would hide what this one creates. Their
# finalizers cannot run (no controller runs yet), so they are removed first.
for o in $("$KUBECTL" -n "$APP_NS" get backuppolicies,recoveryplans,drdrills -o name 2>/dev/null); do
  "$KUBECTL" -n "$APP_NS" patch "$o" --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
done
"$KUBECTL" delete namespace "$APP_NS" "$SYS_NS" --ignore-not-found --timeout=120s >/dev/null 2>&1 ||
  fail "could not remove the namespaces $APP_NS and $SYS_NS left by an earlier run"

# -------------------------------------------------------------------------------------------------------------------
log "1. manifests/ and manifests/monitoring/ render with kubectl $("$KUBECTL_120" version --client --short 2>/dev/null | awk '{print $3}') and $("$KUBECTL" version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')"
"${K120[@]}" kustomize "$REPO/manifests" >"$WORK/render-120.yaml" || fail "kubectl 1.20 cannot render manifests/"
"$KUBECTL" kustomize "$REPO/manifests" >"$WORK/render-new.yaml" 2>"$WORK/render-new.err" ||
  fail "kubectl cannot render manifests/: $(cat "$WORK/render-new.err")"
"${K120[@]}" kustomize "$REPO/manifests/monitoring" >"$WORK/monitoring.yaml" ||
  fail "kubectl 1.20 cannot render manifests/monitoring/"
python3 - "$WORK/render-120.yaml" "$WORK/render-new.yaml" "$WORK/monitoring.yaml" <<'PY' || fail "rendered manifests"
import sys, yaml
def ids(path):
    return sorted((d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
                  for d in yaml.safe_load_all(open(path)) if d)
old, new, mon = ids(sys.argv[1]), ids(sys.argv[2]), ids(sys.argv[3])
assert old == new, f"kustomize versions disagree: {set(old) ^ set(new)}"
want = {("Namespace", "", "botrt-system"), ("ServiceAccount", "botrt-system", "botrt-controller"),
        ("ClusterRole", "", "botrt-controller"), ("ClusterRoleBinding", "", "botrt-controller"),
        ("Role", "botrt-system", "botrt-leader-election"), ("RoleBinding", "botrt-system", "botrt-leader-election"),
        ("ClusterRole", "", "botrt-edit"), ("ClusterRole", "", "botrt-view"),
        ("ClusterRole", "", "botrt-hook-executor"),
        ("ClusterRole", "", "botrt-objects-reader"), ("ClusterRole", "", "botrt-objects-reader-standard"),
        ("ClusterRole", "", "botrt-objects-restorer"), ("ClusterRole", "", "botrt-objects-restorer-standard"),
        ("ClusterRole", "", "botrt-objects-rbac-restorer"),
        ("Deployment", "botrt-system", "botrt-controller"), ("Service", "botrt-system", "botrt-controller-metrics"),
        ("NetworkPolicy", "botrt-system", "botrt-controller"),
        ("CustomResourceDefinition", "", "backuppolicies.dr.botrt.io"),
        ("CustomResourceDefinition", "", "recoveryplans.dr.botrt.io"),
        ("CustomResourceDefinition", "", "drdrills.dr.botrt.io")}
assert set(old) == want, f"manifests/ renders {set(old) ^ want} differently from what is expected"
assert mon == [("ConfigMap", "botrt-system", "botrt-grafana-dashboard"), ("PrometheusRule", "botrt-system", "botrt"),
               ("ServiceMonitor", "botrt-system", "botrt-controller")], mon
(dash,) = [d for d in yaml.safe_load_all(open(sys.argv[3])) if d and d["kind"] == "ConfigMap"]
assert dash["metadata"]["labels"].get("grafana_dashboard") == "1", dash["metadata"]
import json
assert json.loads(dash["data"]["botrt-dashboard.json"])["panels"], "the dashboard ConfigMap has no panels"
PY
"$KUBECTL" kustomize "$REPO/manifests/monitoring" >"$WORK/monitoring-new.yaml" ||
  fail "kubectl cannot render manifests/monitoring/"
python3 - "$WORK/monitoring.yaml" "$WORK/monitoring-new.yaml" <<'PY' || fail "kustomize versions render manifests/monitoring/ differently"
import sys, yaml
old, new = ([d for d in yaml.safe_load_all(open(f)) if d] for f in sys.argv[1:])
key = lambda d: (d["kind"], d["metadata"]["name"])
assert sorted(map(key, old)) == sorted(map(key, new)), (old, new)
PY

# -------------------------------------------------------------------------------------------------------------------
# The quickstart's blocks, in order: tag<TAB>file per block.
python3 - "$REPO/docs/quickstart.md" "$WORK/blocks" <<'PY' || fail "docs/quickstart.md: its tested blocks"
import os, re, sys
text = open(sys.argv[1]).read()
os.makedirs(sys.argv[2])
blocks = re.findall(r"<!-- install-test: (\w+)[^>]*-->\n```sh\n(.*?)```", text, re.S)
tags = [t for t, _ in blocks]
assert tags[:2] == ["replaced", "install"] and tags.count("run") >= 5, tags
for i, (tag, body) in enumerate(blocks):
    with open(os.path.join(sys.argv[2], f"{i:02d}-{tag}.sh"), "w") as f:
        f.write(body)
PY
grep -qx 'kubectl apply -k manifests/' "$WORK"/blocks/01-install.sh || fail "the quickstart's install is not kubectl apply -k"
# The variables of the quickstart's first block, set to the local services.
BUCKET="quickstart-$$-$RANDOM"
SECRET_MARK="s3cr3t-$RANDOM$RANDOM" # in every Secret value below; must never appear in a log
python3 - "$BUCKET" <<'PY' || fail "cannot create the bucket"
import os, sys, boto3
boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1").create_bucket(Bucket=sys.argv[1])
PY
DB_NAME="orders_$$"
"$BOTRT_PG_BIN/psql" -q -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -c "CREATE DATABASE $DB_NAME" >/dev/null
"$BOTRT_PG_BIN/psql" -q -h "$PGHOST" -p "$PGPORT" -U postgres -d "$DB_NAME" \
  -c "CREATE TABLE orders (id int primary key, item text); INSERT INTO orders VALUES (1, 'tea'), (2, 'cake')" >/dev/null
# Vault over TLS, as the quickstart says: a TLS front with a certificate for the node's address from a CA of the
# test's own (a private CA, as many sites have), in front of the services' plain-HTTP Vault. An http:// Vault would be
# refused (TLS by default).
VAULT_TLS_PORT=18211
node_vault_tls "$WORK" "$VAULT_TLS_PORT"
TLS_PROXY_PID=$NODE_VAULT_TLS_PID
QUICKSTART_VAULT_ADDR="$NODE_VAULT_TLS_ADDR"

# controller_pods_settled: waits (up to 90 s) until only the Deployment's 2 controller Pods are left: after a rollout,
# `rollout status` returns while the replaced Pods still terminate, and `kubectl logs deployment/...` may pick one.
controller_pods_settled() {
  local n
  for _ in $(seq 1 90); do
    n="$("$KUBECTL" -n "$SYS_NS" get pods -l app.kubernetes.io/component=controller -o name | wc -l)"
    ((n == 2)) && return 0
    sleep 1
  done
}

run_block() { # FILE: one quickstart block, with kubectl 1.20 and the local values of its variables
  log "   quickstart: $(grep -m1 -v '^\s*$' "$1" | cut -c1-100)"
  (
    cd "$REPO"
    export PATH="$WORK/bin:$PATH" BUCKET S3_ENDPOINT="$BOTRT_S3_ENDPOINT" S3_REGION=us-east-1
    export AWS_ACCESS_KEY_ID="quickstart-key-$SECRET_MARK" AWS_SECRET_ACCESS_KEY="quickstart-secret-$SECRET_MARK"
    export VAULT_ADDR="$QUICKSTART_VAULT_ADDR" VAULT_CACERT="$WORK/pki/ca.pem" VAULT_TOKEN VAULT_KEY=botrt-test
    export DB_HOST="$PGHOST" DB_PORT="$PGPORT" DB_USER=postgres
    export DB_NAME DB_PASSWORD="db-password-$SECRET_MARK" VAULT_EGRESS="$NODE_IP/32:$VAULT_TLS_PORT"
    exec timeout -k 10 600 bash -euo pipefail "$1"
  ) >>"$WORK/quickstart.out" 2>&1 &
  local pid=$! verdict
  # `kubectl wait --for=condition=Passed` waits out its timeout when the drill fails: stop at a failed result.
  while kill -0 "$pid" 2>/dev/null; do
    verdict="$("$KUBECTL" -n "$APP_NS" get drill orders-db-drill -o jsonpath='{.status.lastResult.passed}' 2>/dev/null || true)"
    if [[ "$verdict" == false ]]; then
      kill "$pid" 2>/dev/null || true
      fail "the quickstart's drill failed: $("$KUBECTL" -n "$APP_NS" get drill orders-db-drill -o jsonpath='{.status.lastResult.message}')"
    fi
    sleep 1
  done
  wait "$pid" || fail "docs/quickstart.md block $(basename "$1") failed: $(tail -n 15 "$WORK/quickstart.out")"
}

# -------------------------------------------------------------------------------------------------------------------
log "2. kubectl apply -k manifests/ (the quickstart's install block, kubectl 1.20)"
run_block "$WORK"/blocks/01-install.sh
KUBECTL="$KUBECTL" TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io crd/drdrills.dr.botrt.io >/dev/null || fail "the CRDs are not Established"
for _ in $(seq 1 100); do
  [[ -n "$("$KUBECTL" -n "$SYS_NS" get serviceaccount botrt-controller -o jsonpath='{.secrets[*].name}' 2>/dev/null)" ]] && break
  sleep 0.3
done
"$KUBECTL" get namespace "$SYS_NS" -o json >"$WORK/ns.json"
"$KUBECTL" -n "$SYS_NS" get serviceaccount botrt-controller -o json >"$WORK/sa.json"
"$KUBECTL" get clusterrole botrt-controller -o json >"$WORK/clusterrole.json"
"$KUBECTL" get clusterrolebinding botrt-controller -o json >"$WORK/crb.json"
"$KUBECTL" -n "$SYS_NS" get role botrt-leader-election -o json >"$WORK/role.json"
"$KUBECTL" -n "$SYS_NS" get rolebinding botrt-leader-election -o json >"$WORK/rb.json"
"$KUBECTL" -n "$SYS_NS" get deployment botrt-controller -o json >"$WORK/deploy.json"
"$KUBECTL" -n "$SYS_NS" get service botrt-controller-metrics -o json >"$WORK/svc.json"
"$KUBECTL" -n "$SYS_NS" get networkpolicy botrt-controller -o json >"$WORK/np.json"
python3 - "$WORK" <<'PY' || fail "the installed objects"
import json, os, sys
W = sys.argv[1]
load = lambda n: json.load(open(os.path.join(W, n)))
ns, sa, cr, crb, role, rb = (load(n) for n in ("ns.json", "sa.json", "clusterrole.json", "crb.json", "role.json",
                                               "rb.json"))
dep, svc, np = load("deploy.json"), load("svc.json"), load("np.json")
assert ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "restricted", ns["metadata"]["labels"]
assert any("-token-" in s["name"] for s in sa.get("secrets", [])), "the ServiceAccount got no token Secret"
subject = {"kind": "ServiceAccount", "name": "botrt-controller", "namespace": "botrt-system"}
assert crb["subjects"] == [subject] and crb["roleRef"]["name"] == "botrt-controller", crb
assert rb["subjects"] == [subject] and rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                         "name": "botrt-leader-election"}, rb
for obj in (cr, role):
    for rule in obj["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in v for v in rule.get(field, [])), f"wildcard in {obj['metadata']['name']}: {rule}"
        assert rule["verbs"], rule
# The controller needs no cluster-wide write of Deployments' specs, Nodes, or RBAC cluster objects.
granted = {(g, r, v) for rule in cr["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
for forbidden in [("apps", "deployments", "update"), ("", "nodes", "get"), ("rbac.authorization.k8s.io",
                  "clusterroles", "create"), ("dr.botrt.io", "backuppolicies", "create"), ("", "pods", "create")]:
    assert forbidden not in granted, f"the ClusterRole grants {forbidden}"
assert {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]} == \
    {("leases", "get"), ("leases", "create"), ("leases", "update")}, role["rules"]

spec = dep["spec"]
assert spec["replicas"] == 2, spec["replicas"]
pod = spec["template"]["spec"]
assert pod["serviceAccountName"] == "botrt-controller"
psc = pod.get("securityContext", {})
assert psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, psc
assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", psc
assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), pod
for vol in pod.get("volumes", []):
    assert "hostPath" not in vol, vol
(c,) = pod["containers"]
sc = c.get("securityContext", {})
assert sc.get("allowPrivilegeEscalation") is False, sc
assert sc.get("readOnlyRootFilesystem") is True, sc
assert sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc["capabilities"].get("add"), sc
assert not sc.get("privileged"), sc
assert sc.get("runAsUser", psc.get("runAsUser")) != 0
for p in ("livenessProbe", "readinessProbe"):
    assert c.get(p, {}).get("httpGet", {}).get("path") in ("/healthz", "/readyz"), (p, c.get(p))
for kind in ("requests", "limits"):
    assert {"cpu", "memory"} <= set(c["resources"].get(kind, {})), c["resources"]
args = c.get("args", [])
assert "--leader-elect" in args and "run" in args, args
assert "--log-format=json" in args, args
assert any(a.startswith("--engine-image=") and "botrt-engine" in a for a in args), args
assert "botrt-controller" in c["image"], c["image"]
labels = spec["template"]["metadata"]["labels"]
assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "the Service selects no controller Pod"
assert svc["spec"]["ports"][0]["targetPort"] in [p["name"] for p in c["ports"]], svc["spec"]["ports"]
assert all(labels.get(k) == v for k, v in np["spec"]["podSelector"]["matchLabels"].items()), np["spec"]
assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}, np["spec"]
PY
SA_USER=system:serviceaccount:$SYS_NS:botrt-controller
can() { "$KUBECTL" auth can-i --as="$SA_USER" "$@" 2>/dev/null; }
set -f # the checks below are word-split on purpose, and "*" must stay a word
for a in "watch backuppolicies.dr.botrt.io -A" "patch drdrills.dr.botrt.io/status -n $APP_NS" \
  "create cronjobs.batch -n botrt-backup" "create networkpolicies.networking.k8s.io -n botrt-backup" \
  "patch deployments.apps/scale -n $APP_NS" "update leases.coordination.k8s.io -n $SYS_NS" "create events -n $APP_NS"; do
  # shellcheck disable=SC2086
  [[ "$(can $a)" == yes ]] || fail "the ServiceAccount may not: $a"
done
for a in "create backuppolicies.dr.botrt.io -n $APP_NS" "delete deployments.apps -n $APP_NS" "get nodes" \
  "create clusterroles.rbac.authorization.k8s.io" "update leases.coordination.k8s.io -n kube-system" \
  "create pods -n $APP_NS" "* * -A"; do
  # shellcheck disable=SC2086
  [[ "$(can $a)" == no ]] || fail "the ServiceAccount may: $a (more than the controller needs)"
done
set +f

log "2b. self-service: a namespace's editors manage BotRT objects there and its viewers read them (aggregated roles)"
TEAM_A="team-a-$$"
TEAM_B="team-b-$$"
"$KUBECTL" create namespace "$TEAM_A" >/dev/null
"$KUBECTL" create namespace "$TEAM_B" >/dev/null
# The token user botrt-limited (no rights of its own) becomes an editor of TEAM_A, ns-viewer a viewer, by the built-in
# roles only: nothing BotRT-specific is bound.
"$KUBECTL" -n "$TEAM_A" create rolebinding team-edit --clusterrole=edit --user=botrt-limited >/dev/null
"$KUBECTL" -n "$TEAM_A" create rolebinding team-view --clusterrole=view --user=ns-viewer >/dev/null
as_editor() { "$KUBECTL" --token="$BOTRT_LIMITED_TOKEN" "$@"; }
for _ in $(seq 1 60); do # the aggregation controller fills edit and view within seconds
  [[ "$(as_editor auth can-i create backuppolicies.dr.botrt.io -n "$TEAM_A" 2>/dev/null)" == yes &&
    "$("$KUBECTL" auth can-i get drdrills.dr.botrt.io -n "$TEAM_A" --as=ns-viewer 2>/dev/null)" == yes ]] && break
  sleep 0.5
done
cat >"$WORK/team-policy.yaml" <<'EOF'
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: team-files}
spec:
  tier: standard
  suspend: true
  source: {pvc: {claimName: team-data}}
  repository: {local: {path: /repository/team, claimName: team-backups}}
  encryption: {kms: {localKeySecretRef: {name: team-key}}}
EOF
as_editor -n "$TEAM_A" apply -f "$WORK/team-policy.yaml" >"$WORK/selfservice.out" 2>&1 ||
  fail "a namespace editor cannot create a BackupPolicy: $(cat "$WORK/selfservice.out")"
"$KUBECTL" -n "$TEAM_A" get bp team-files --as=ns-viewer -o name >/dev/null || fail "a namespace viewer cannot read a BackupPolicy"
set -f
for a in "create recoveryplans.dr.botrt.io -n $TEAM_A" "delete drdrills.dr.botrt.io -n $TEAM_A" \
  "patch backuppolicies.dr.botrt.io -n $TEAM_A"; do
  # shellcheck disable=SC2086
  [[ "$(as_editor auth can-i $a 2>/dev/null)" == yes ]] || fail "a namespace editor may not: $a"
done
for a in "create backuppolicies.dr.botrt.io -n $TEAM_B" "patch backuppolicies.dr.botrt.io --subresource=status -n $TEAM_A" \
  "create clusterroles.rbac.authorization.k8s.io"; do
  # shellcheck disable=SC2086
  [[ "$(as_editor auth can-i $a 2>/dev/null)" == no ]] || fail "a namespace editor may: $a"
done
for a in "get backuppolicies.dr.botrt.io --subresource=status -n $TEAM_A" "watch recoveryplans.dr.botrt.io -n $TEAM_A"; do
  # shellcheck disable=SC2086
  [[ "$("$KUBECTL" auth can-i $a --as=ns-viewer 2>/dev/null)" == yes ]] || fail "a namespace viewer may not: $a"
done
for a in "create drdrills.dr.botrt.io -n $TEAM_A" "get backuppolicies.dr.botrt.io -n $TEAM_B"; do
  # shellcheck disable=SC2086
  [[ "$("$KUBECTL" auth can-i $a --as=ns-viewer 2>/dev/null)" == no ]] || fail "a namespace viewer may: $a"
done
set +f
"$KUBECTL" -n "$TEAM_A" patch bp team-files --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
# Gone before the controller starts (step 4): it would reconcile the policy in a terminating namespace.
"$KUBECTL" delete namespace "$TEAM_A" "$TEAM_B" --timeout=120s >/dev/null

# -------------------------------------------------------------------------------------------------------------------
log "3. manifests/monitoring/ where the Prometheus Operator's kinds exist (stand-in CRDs of PrometheusRule, ServiceMonitor, PodMonitor)"
for kind in PrometheusRule ServiceMonitor PodMonitor; do
  plural="$(tr '[:upper:]' '[:lower:]' <<<"$kind")s"
  "$KUBECTL" apply -f - >/dev/null <<EOF
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: $plural.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  names: {kind: $kind, plural: $plural, listKind: ${kind}List}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
EOF
  "$KUBECTL" wait --for condition=established --timeout=30s "crd/$plural.monitoring.coreos.com" >/dev/null
done
"${K120[@]}" apply -k "$REPO/manifests/monitoring" >/dev/null || fail "kubectl apply -k manifests/monitoring/"
alerts="$("$KUBECTL" -n "$SYS_NS" get prometheusrule botrt -o jsonpath='{.spec.groups[*].rules[*].alert}')"
for a in BackupRPOViolation BackupFailed DrillFailed DrillOverdue ReplicaLagAboveRPO ControllerAbsent NoLeader; do
  [[ " $alerts " == *" $a "* ]] || fail "PrometheusRule alerts: $alerts (no $a)"
done
[[ "$("$KUBECTL" -n "$SYS_NS" get servicemonitor botrt-controller -o jsonpath='{.spec.endpoints[0].port}')" == metrics ]] ||
  fail "the ServiceMonitor botrt-controller was not created with the port metrics"
[[ "$("$KUBECTL" -n "$SYS_NS" get configmap botrt-grafana-dashboard -o jsonpath='{.metadata.labels.grafana_dashboard}')" == 1 ]] ||
  fail "the dashboard ConfigMap was not created with the label grafana_dashboard=1"
# The PodMonitor, the ServiceMonitor's alternative, applies on its own.
"${K120[@]}" apply -f "$REPO/manifests/monitoring/podmonitor.yaml" >/dev/null || fail "kubectl apply podmonitor.yaml"
[[ "$("$KUBECTL" -n "$SYS_NS" get podmonitor botrt-controller -o jsonpath='{.spec.podMetricsEndpoints[0].port}')" == metrics ]] ||
  fail "the PodMonitor botrt-controller was not created with the port metrics"
# The stand-in CRDs stay until the cleanup: the runbooks' and the README's commands of step 7 use them.

# -------------------------------------------------------------------------------------------------------------------
log "4. the Deployment's Pods run on the node (in-cluster configuration); one replica leads"
run_block "$WORK"/blocks/02-run.sh # the egress destination of Vault (--egress), a rollout
run_block "$WORK"/blocks/03-run.sh # rollout status, pods, api-resources
"$KUBECTL" -n "$SYS_NS" get deployment botrt-controller -o jsonpath='{.spec.template.spec.containers[0].args}' |
  grep -qF -- "--egress=vault=$NODE_IP/32:$VAULT_TLS_PORT" || fail "the quickstart's --egress is not in the Deployment"
ready="$("$KUBECTL" -n "$SYS_NS" get deployment botrt-controller -o jsonpath='{.status.readyReplicas}/{.status.replicas}')"
[[ "$ready" == 2/2 ]] || fail "the Deployment has $ready ready replicas"
# The --egress patch rolled the Deployment: the replaced replicas' Pods terminate (a grace period) before the count.
controller_pods_settled
pods=($("$KUBECTL" -n "$SYS_NS" get pods -l app.kubernetes.io/component=controller -o jsonpath='{.items[*].metadata.name}'))
((${#pods[@]} == 2)) || fail "expected 2 controller Pods, found ${#pods[@]}"
for p in "${pods[@]}"; do
  node="$("$KUBECTL" -n "$SYS_NS" get pod "$p" -o jsonpath='{.spec.nodeName} {.spec.containers[0].image}')"
  [[ "$node" == "botrt-node $SHIPPED_CONTROLLER" ]] || fail "controller Pod $p: node and image '$node'"
done
holder=""
for _ in $(seq 1 60); do
  holder="$("$KUBECTL" -n "$SYS_NS" get lease botrt-controller -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
  [[ -n "$holder" ]] && break
  sleep 0.5
done
[[ -n "$holder" ]] || fail "no replica took the Lease botrt-system/botrt-controller"
leaders=0
for p in "${pods[@]}"; do
  "$KUBECTL" -n "$SYS_NS" logs "$p" >"$WORK/controller-$p.log" || fail "kubectl logs $p"
  grep -q '"msg":"acquired the lease"' "$WORK/controller-$p.log" && leaders=$((leaders + 1))
  grep '"msg":"connected"' "$WORK/controller-$p.log" | head -1 | grep 'https://10.96.0.1:443' >/dev/null ||
    fail "controller $p did not connect through the kubernetes Service (in-cluster): $(head -c 600 "$WORK/controller-$p.log")"
done
((leaders == 1)) || fail "$leaders replicas say they acquired the lease (want 1)"
# The securityContext, as the kernel sees it inside the container.
out="$("$KUBECTL" -n "$SYS_NS" exec "${pods[0]}" -- sh -c \
  'id -u; id -g; grep ^CapEff /proc/self/status; if touch /probe 2>/dev/null; then echo writable; else echo read-only; fi;
   ls /var/run/secrets/kubernetes.io/serviceaccount/token' 2>&1)" || fail "kubectl exec: $out"
want="65532
65532
CapEff:	0000000000000000
read-only
/var/run/secrets/kubernetes.io/serviceaccount/token"
[[ "$out" == "$want" ]] || fail "inside the controller's container: got
$out
want
$want"

# -------------------------------------------------------------------------------------------------------------------
log "5. the quickstart: Secrets, a policy, a first backup, a drill, a plan, the status"
for f in "$WORK"/blocks/0[4-9]-run.sh "$WORK"/blocks/[1-9]?-run.sh; do
  [[ -f "$f" ]] && run_block "$f"
done
q() { "$KUBECTL" -n "$APP_NS" "$@"; }
[[ -n "$(q get bp orders-db -o jsonpath='{.status.lastSnapshot}')" ]] || fail "the policy has no lastSnapshot"
[[ "$(q get drill orders-db-drill -o jsonpath='{.status.lastResult.passed}')" == true ]] || fail "the drill did not pass"
# The quickstart's --egress reached the backup namespace's shared egress policy: Vault's address and port.
"$KUBECTL" -n botrt-backup get networkpolicy botrt-allow-egress-vault-dns -o json |
  python3 -c 'import json, sys
np, want = json.load(sys.stdin), sys.argv[1:]
rules = [(p.get("ipBlock", {}).get("cidr"), q.get("port")) for r in np["spec"]["egress"] for p in r.get("to", [])
         for q in r.get("ports", [])]
assert (want[0], int(want[1])) in rules, rules' "$NODE_IP/32" "$VAULT_TLS_PORT" ||
  fail "the backup namespace's egress policy does not open the declared Vault $NODE_IP:$VAULT_TLS_PORT"

# -------------------------------------------------------------------------------------------------------------------
log "6. the kubectl experience, the logs"
get="$(q get botrt 2>&1)"
for kind in backuppolicy.dr.botrt.io/orders-db drdrill.dr.botrt.io/orders-db-drill \
  recoveryplan.dr.botrt.io/orders-db-recovery; do
  grep -q "$kind" <<<"$get" || fail "kubectl get botrt does not list $kind: $get"
done
for k in "$KUBECTL" "$KUBECTL_120"; do
  d="$("$k" -n "$APP_NS" describe bp orders-db)"
  grep -q "Conditions:" <<<"$d" || grep -q "Type:\s*Ready" <<<"$d" || fail "describe bp shows no conditions"
  grep -qE "Events:" <<<"$d" && grep -qE "Normal +[A-Za-z]+ +.*[a-z].*\." <<<"$d" ||
    fail "describe bp shows no Event in a sentence: $d"
  d="$("$k" -n "$APP_NS" describe drill orders-db-drill)"
  grep -q "The drill passed" <<<"$d" || fail "describe drill does not say the drill passed: $d"
  e="$("$k" explain backuppolicy.spec)"
  for field in tier schedule rpo retention repository encryption compliance; do
    grep -qE "^   $field\s" <<<"$e" || fail "kubectl explain backuppolicy.spec has no field $field"
  done
  "$k" explain backuppolicy.spec.tier | grep "critical = every 5 min" >/dev/null ||
    fail "kubectl explain backuppolicy.spec.tier has no tier defaults"
  "$k" explain backuppolicy.spec.retention.keepDaily >/dev/null || fail "kubectl explain ...retention.keepDaily"
  "$k" explain drdrill.spec.verification.minComplianceScore | grep "Default: 95" >/dev/null ||
    fail "kubectl explain drdrill.spec.verification.minComplianceScore has no default"
done
for p in "${pods[@]}"; do "$KUBECTL" -n "$SYS_NS" logs "$p" >"$WORK/controller-$p.log" || fail "kubectl logs $p"; done
python3 - "$SECRET_MARK" "$WORK"/controller-*.log <<'PY' || fail "the controller's logs"
import json, sys
mark, files = sys.argv[1], sys.argv[2:]
reconciled, lines = set(), 0
for path in files:
    for n, line in enumerate(open(path, errors="replace"), 1):
        assert mark not in line, f"{path}:{n}: a Secret value is in the log"
        o = json.loads(line)  # every line is one JSON object
        lines += 1
        assert {"time", "level", "msg", "logger"} <= set(o), o
        assert "forbidden" not in line.lower(), f"{path}:{n}: the installed RBAC refused a call: {line}"
        if o["msg"] == "reconciled":
            reconciled.add((o.get("kind"), o.get("namespace"), o.get("name")))
for want in [("BackupPolicy", "shop", "orders-db"), ("DRDrill", "shop", "orders-db-drill"),
             ("RecoveryPlan", "shop", "orders-db-recovery")]:
    assert want in reconciled, f"no 'reconciled' line names {want}; named: {sorted(reconciled)[:10]}"
print(f"install-test: {lines} JSON log lines, {len(reconciled)} objects with a 'reconciled' line, no Secret value")
PY
# The backup Pod: on the node, credentials only in the engine's container, the result its termination message.
"$KUBECTL" -n botrt-backup get pods -o json >"$WORK/backup-pods.json"
python3 - "$WORK/backup-pods.json" "$SECRET_MARK" <<'PY' || fail "the backup Pod"
import json, sys
pods = [p for p in json.load(open(sys.argv[1]))["items"]
        if p["metadata"]["labels"].get("app") == "backup-service"
        and {c["name"] for c in p["spec"]["containers"]} == {"dump", "backup"}]
assert pods, "no backup Pod with a dump and a backup container in botrt-backup"
ok = [p for p in pods if p["status"].get("phase") == "Succeeded"]
assert ok, [(p["metadata"]["name"], p["status"].get("phase")) for p in pods]
p = ok[0]
assert p["spec"]["nodeName"] == "botrt-node", p["spec"].get("nodeName")
assert p["spec"]["automountServiceAccountToken"] is False
cs = {c["name"]: c for c in p["spec"]["containers"]}
credential = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
dump_env = {e["name"] for e in cs["dump"].get("env", [])}
assert not (dump_env & credential), dump_env
assert not any(m["mountPath"].startswith("/var/run/botrt/secrets") for m in cs["dump"].get("volumeMounts", []))
assert {e["name"] for e in cs["backup"].get("env", [])} & credential
assert cs["dump"]["image"].endswith("postgres:16") and "botrt-engine" in cs["backup"]["image"]
st = {c["name"]: c["state"]["terminated"] for c in p["status"]["containerStatuses"]}
assert st["dump"]["exitCode"] == 0 and st["backup"]["exitCode"] == 0, st
res = json.loads(st["backup"]["message"])
assert res["command"] == "backup" and res["ok"] and res["snapshotId"], res
assert sys.argv[2] not in json.dumps(p["status"]), "a Secret value is in the Pod's status"
print(f"install-test: backup Pod {p['metadata']['name']}: snapshot {res['snapshotId'][:12]}, {res['bytesRead']} bytes read")
json.dump(p, open(sys.argv[1] + ".ok", "w"))
PY
# What the kubelet enforced, seen from inside: the backup Pod again, exactly as the controller built it (security
# contexts, volumes, env, no token), with each container's command replaced by a probe.
python3 - "$WORK/backup-pods.json.ok" >"$WORK/probe-pod.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
probe = r"""echo "uid=$(id -u) gid=$(id -g)"; grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status;
if touch /probe 2>/dev/null; then echo root=writable; else echo root=read-only; fi
if [ -e /var/run/secrets/kubernetes.io/serviceaccount/token ]; then echo token=present; else echo token=absent; fi
echo "env=$(env | cut -d= -f1 | grep -E '^(AWS_|VAULT_|BOTRT_)' | sort | tr '\n' ',')"
echo "files=$(find /var/run/botrt/secrets -type f 2>/dev/null | sort | tr '\n' ',')"
"""
spec = p["spec"]
for c in spec["containers"]:
    c["command"], c["args"] = ["sh", "-c", probe], []
spec.pop("nodeName", None)
meta = {"name": "botrt-probe-" + p["metadata"]["name"][-5:], "namespace": p["metadata"]["namespace"],
        "labels": {"botrt-install-test": "probe"}}
print(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}))
PY
probe_pod="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metadata"]["name"])' "$WORK/probe-pod.json")"
"$KUBECTL" create -f "$WORK/probe-pod.json" >/dev/null || fail "cannot create the probe Pod"
for _ in $(seq 1 90); do
  phase="$("$KUBECTL" -n botrt-backup get pod "$probe_pod" -o jsonpath='{.status.phase}')"
  [[ "$phase" == Succeeded || "$phase" == Failed ]] && break
  sleep 1
done
[[ "$phase" == Succeeded ]] || fail "the probe Pod ended '$phase'"
for c in dump backup; do
  "$KUBECTL" -n botrt-backup logs "$probe_pod" -c "$c" >"$WORK/probe-$c.txt" || fail "kubectl logs $probe_pod -c $c"
done
"$KUBECTL" -n botrt-backup delete pod "$probe_pod" --wait=false >/dev/null
python3 - "$WORK/probe-dump.txt" "$WORK/probe-backup.txt" <<'PY' || fail "the backup Pod's settings, seen from inside"
import sys
def read(path):
    return dict(line.split("=", 1) if "=" in line else line.split(":\t", 1) for line in open(path).read().splitlines())
dump, backup = read(sys.argv[1]), read(sys.argv[2])
for name, c in (("dump", dump), ("backup", backup)):
    assert c["uid"].startswith("65532") and c["uid"].endswith("gid=65532"), (name, c)
    assert c["CapEff"] == "0000000000000000" and c["CapPrm"] == "0000000000000000", (name, c)
    assert c["NoNewPrivs"] == "1", (name, c)  # allowPrivilegeEscalation: false
    assert c["root"] == "read-only" and c["token"] == "absent", (name, c)
# Credentials only where the builder put them: the engine's container has the storage keys in its environment and
# the Vault token as a file; the dump container has neither.
assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(backup["env"].strip(",").split(",")), backup["env"]
assert any("vault" in f for f in backup["files"].split(",")), backup["files"]
assert not any(v.startswith("AWS_") for v in dump["env"].split(",")), dump["env"]
assert dump["files"] == "", dump["files"]
print("install-test: inside the backup Pod: uid/gid 65532, no capabilities, no new privileges, read-only root, "
      "no token; storage and KMS credentials in the engine's container only")
PY
# -------------------------------------------------------------------------------------------------------------------
log "7. every command the docs mark <!-- doc-test: install-test --> (docs/runbooks.md, docs/upgrading.md, docs/backup-policy-controller.md, README.md), run against this install"
# The docs' example names are the quickstart's (shop, orders-db, orders-db-drill); what they cannot know (a Job's name,
# a snapshot id, the repository and key service URLs) is filled in from this install, through the table below. The
# engine runs on this machine with the quickstart's credentials, as an admin checking the repository would.
job="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["metadata"]["labels"]["job-name"])' "$WORK/backup-pods.json.ok")"
eval "$(python3 - "$WORK/backup-pods.json.ok" <<'PY'
import json, shlex, sys
p = json.load(open(sys.argv[1]))
c = next(c for c in p["spec"]["containers"] if c["name"] == "backup")
args, out = c.get("command", []) + c.get("args", []), {}
for i, a in enumerate(args):
    for flag in ("--repo", "--kms", "--s3-endpoint", "--s3-region"):
        if a == flag and i + 1 < len(args):
            out[flag] = args[i + 1]
        elif a.startswith(flag + "="):
            out[flag] = a.split("=", 1)[1]
assert "--repo" in out and "--kms" in out, args
print(f"ENGINE_REPO={shlex.quote(out['--repo'])} ENGINE_KMS={shlex.quote(out['--kms'])}")
print(f"ENGINE_S3_ENDPOINT={shlex.quote(out.get('--s3-endpoint', ''))} ENGINE_S3_REGION={shlex.quote(out.get('--s3-region', 'us-east-1'))}")
print(f"ENGINE_PATH_STYLE={'1' if '--s3-path-style' in args else ''}")
PY
)" || fail "the backup Pod's engine arguments"
snapshot="$(q get bp orders-db -o jsonpath='{.status.lastSnapshot}')"
engine_env=(env AWS_ACCESS_KEY_ID="quickstart-key-$SECRET_MARK" AWS_SECRET_ACCESS_KEY="quickstart-secret-$SECRET_MARK"
  BOTRT_S3_ENDPOINT="$ENGINE_S3_ENDPOINT" BOTRT_S3_PATH_STYLE="$ENGINE_PATH_STYLE" VAULT_TOKEN="$VAULT_TOKEN"
  VAULT_CACERT="$WORK/pki/ca.pem")
mkdir -p "$WORK/doc-cwd" && ln -sfn "$REPO/crds" "$WORK/doc-cwd/crds" && ln -sfn "$REPO/manifests" "$WORK/doc-cwd/manifests"
# Each command becomes a file: its doc, the command as documented, the command with this install's values.
python3 - "$WORK/doc-commands" "$job" "$snapshot" "$REPO/docs/runbooks.md" "$REPO/docs/upgrading.md" \
  "$REPO/docs/backup-policy-controller.md" "$REPO/README.md" <<'PY' || fail "the docs' commands"
import os, re, shlex, sys
out, job, snapshot, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
table = [
    (r"<the [^>]*job[^>]*>", job),                               # runbooks: <the failed job>, <the newest copy job>
    (r"\bget job JOB\b", f"get job {job}"),
    (r"s3://acme-shop-backups/shop/orders-db --s3-region eu-west-1", '"$ENGINE_REPO" --s3-region "$ENGINE_S3_REGION"'),
    (r"'vault-transit://vault\.example\.com:8200/transit/botrt-shop\?tls=true'", '"$ENGINE_KMS"'),
    (r"--repo \.\.\. --kms \.\.\.", '--repo "$ENGINE_REPO" --kms "$ENGINE_KMS" --s3-region "$ENGINE_S3_REGION"'),
    (r"\b3f2a9c1b77\b", snapshot),                               # runbooks: a snapshot id
    (r"latest /backup/uploads", "latest /"),                     # runbooks: a directory (the dump is at the root)
    (r"^botrt-engine ", '"${ENGINE_ENV[@]}" "$BOTRT_ENGINE_BIN" '),
    (r"^botrt-controller ", '"$BOTRT_CONTROLLER_BIN" '),
    (r"\bkubectl ", '"$KUBECTL" '),
]
os.makedirs(out)
n = 0
for path in files:
    text = open(path).read()
    blocks = re.findall(r"<!-- doc-test: install-test -->\n([ \t]*)```sh\n(.*?)\n[ \t]*```", text, re.S)
    assert blocks, f"{path}: no block is marked <!-- doc-test: install-test -->"
    for indent, body in blocks:
        lines = [l[len(indent):] if l.startswith(indent) else l for l in body.split("\n")]
        # One command per line; a line ending in a backslash, or inside an open quote, goes on on the next one.
        commands, pending = [], ""
        for line in "\n".join(lines).replace("\\\n", " ").split("\n"):
            pending = f"{pending}\n{line}" if pending else line
            try:
                shlex.split(pending, comments=True)
            except ValueError:
                continue
            commands.append(pending)
            pending = ""
        assert not pending, f"{path}: a command never closes its quote: {pending}"
        for cmd in commands:
            if not cmd.strip() or cmd.lstrip().startswith("#"):
                continue
            n += 1
            filled = cmd
            for pattern, value in table:
                filled = re.sub(pattern, lambda m: value, filled)
            with open(os.path.join(out, f"{n:03d}.sh"), "w") as f:
                f.write(f"# {os.path.basename(path)}\n{cmd.replace(chr(10), ' ')}\n{filled.replace(chr(10), ' ')}\n")
print(f"install-test: {n} documented commands to run")
PY
ran=0
for f in "$WORK"/doc-commands/*.sh; do
  shown="$(sed -n 2p "$f")"
  cmd="$(sed -n 3p "$f")"
  set +e
  (cd "$WORK/doc-cwd" && ENGINE_ENV=("${engine_env[@]}") && export ENGINE_REPO ENGINE_KMS ENGINE_S3_REGION KUBECTL \
    BOTRT_ENGINE_BIN BOTRT_CONTROLLER_BIN VAULT_EGRESS="$NODE_IP/32:$VAULT_TLS_PORT" &&
    eval "set -o pipefail; $cmd") >"$WORK/doc-out" 2>"$WORK/doc-err"
  rc=$?
  set -e
  # The upgrade's rollout: the commands after it read the controller's logs, as an admin would once it settled.
  if [[ "$shown" == *"rollout status"* ]]; then controller_pods_settled; fi
  if ((rc != 0)); then
    if ((rc == 1)) && [[ "$shown" =~ \|[[:space:]]*grep[^|]*$ ]] && [[ ! -s "$WORK/doc-err" ]]; then
      : # a filter that found nothing to show (no warning lines, no refused access): what a healthy install prints
    elif [[ "$shown" == *"Calico only"* ]] && grep -q "the server doesn't have a resource type" "$WORK/doc-err"; then
      log "   (Calico is not installed here: the documented answer for a cluster without it)"
    else
      fail "$(head -1 "$f" | cut -c3-): exit $rc: $shown
$(head -c 1500 "$WORK/doc-err")"
    fi
  fi
  log "   ok: $(cut -c1-110 <<<"$shown") -> $(head -c 300 "$WORK/doc-out" | head -2 | tr '\n' ' ' | cut -c1-100)"
  cat "$WORK/doc-out" "$WORK/doc-err" >>"$WORK/doc-all"
  ran=$((ran + 1))
done
((ran > 40)) || fail "only $ran documented commands ran"
if grep -q "$SECRET_MARK" "$WORK/doc-all"; then fail "a Secret value is in a documented command's output"; fi

# -------------------------------------------------------------------------------------------------------------------
log "8. the quickstart's uninstall (<!-- doc-test: install-test uninstall -->): the finalizers remove the children, then the operator and the CRDs go"
python3 - "$REPO/docs/quickstart.md" >"$WORK/uninstall.sh" <<'PY' || fail "docs/quickstart.md: the uninstall block"
import re, sys
blocks = re.findall(r"<!-- doc-test: install-test uninstall -->\n```sh\n(.*?)```", open(sys.argv[1]).read(), re.S)
assert len(blocks) == 1, blocks
print(blocks[0])
PY
# The uninstall deletes the controller's RBAC while its Pods still run: their last requests are denied, which
# hack/rbac-audit.py then expects (its teardown windows).
teardown_start="$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"
while IFS= read -r cmd; do
  [[ -z "$cmd" ]] && continue
  log "   $cmd"
  (cd "$WORK/doc-cwd" && eval "timeout -k 10 240 ${cmd/#kubectl /\"\$KUBECTL\" }") >>"$WORK/uninstall.out" 2>&1 ||
    fail "the quickstart's uninstall: $cmd: $(tail -n 15 "$WORK/uninstall.out")"
  if [[ "$cmd" == "kubectl delete botrt --all -A" ]]; then
    left="$("$KUBECTL" get cronjobs,networkpolicies,secrets -A -l "dr.botrt.io/policy-namespace=$APP_NS" -o name)"
    [[ -z "$left" ]] || fail "after kubectl delete botrt --all -A, children of $APP_NS's policies remain: $left"
  fi
done <"$WORK/uninstall.sh"
for _ in $(seq 1 60); do
  "$KUBECTL" get crd backuppolicies.dr.botrt.io >/dev/null 2>&1 || break
  sleep 1
done
! "$KUBECTL" get crd backuppolicies.dr.botrt.io >/dev/null 2>&1 || fail "kubectl delete -k manifests/ left the CRDs"
"$KUBECTL" -n "$SYS_NS" get deployment botrt-controller >/dev/null 2>&1 && fail "the Deployment is still there"
# The window ends when the controller's Pods are gone (their grace period), plus the audit log's own lag.
"$KUBECTL" -n "$SYS_NS" wait --for=delete pod -l app.kubernetes.io/component=controller --timeout=60s >/dev/null 2>&1 || true
sleep 2
echo "$teardown_start $(date -u +%Y-%m-%dT%H:%M:%S.%6NZ) install-test step 8, the quickstart's uninstall" \
  >>"${BOTRT_CLUSTER_DIR:?}/rbac-audit-teardown"
# The steps after this one use the CRDs: they come back as upgrading.md installs them.
"$KUBECTL" apply -k "$REPO/crds" >/dev/null || fail "cannot apply the CRDs again"
KUBECTL="$KUBECTL" TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/backuppolicies.dr.botrt.io crd/recoveryplans.dr.botrt.io crd/drdrills.dr.botrt.io >/dev/null || fail "the CRDs are not Established again"

log PASS
