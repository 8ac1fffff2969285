#!/usr/bin/env bash
# The controller half of the reliability suite (issue 7), run by hack/reliability.sh against the local control
# plane, with the built botrt-controller:
#   1. faults and hostile input, as Swift integration tests (Tests/ControllerIntegrationTests/Reliability), with the
#      counts raised over hack/test.sh's: SIGKILL at random points (BOTRT_RELIABILITY_KILLS, default 20),
#      kube-apiserver restarts (BOTRT_RELIABILITY_RESTARTS, default 3), leader failover, the malformed-input table,
#      the canary secret;
#   2. load: BOTRT_LOAD_POLICIES (1000) BackupPolicies and BOTRT_LOAD_DRILLS (100) DRDrills on one controller:
#      seconds until all are Ready, reconcile latency percentiles (botrt_reconcile_duration_seconds), peak RSS
#      (VmHWM), and the controller's requests to the apiserver over BOTRT_LOAD_STEADY_SECONDS (180) at rest, from its
#      own counter botrt_kube_requests_total (the apiserver's total is shown too: it includes the
#      kube-controller-manager). Fails when the controller LISTs anything at rest, or a policy is not Ready.
# Figures go to $BOTRT_RELIABILITY_OUT/controller-figures.txt, the malformed-input table to malformed.md.
#   BOTRT_RELIABILITY_LOAD=0 skips the load part; BOTRT_RELIABILITY_FAULTS=0 skips the tests.
#   BOTRT_LOAD_CONTROLLER_BIN: another build of the controller for the load part (e.g. a release build).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
: "${KUBECONFIG:?source <(hack/cluster.sh env) first (hack/reliability.sh does)}"
: "${BOTRT_CONTROLLER_BIN:?set BOTRT_CONTROLLER_BIN to the built botrt-controller (hack/reliability.sh does)}"
OUT="${BOTRT_RELIABILITY_OUT:-$REPO/.local/reliability}"
mkdir -p "$OUT"
export BOTRT_RELIABILITY_OUT="$OUT"
FIGURES="$OUT/controller-figures.txt"
say() { echo "controller-reliability: $*" >&2; }
figure() {
  echo "reliability: $1=$2"
  echo "reliability: $1=$2" >>"$FIGURES"
}
SWIFT_PATH_ARGS=()
if [[ -n "${BOTRT_SCRATCH_PATH:-}" ]]; then SWIFT_PATH_ARGS=(--scratch-path "$BOTRT_SCRATCH_PATH"); fi
FAIL=0

# 1. Faults and hostile input.
if [[ "${BOTRT_RELIABILITY_FAULTS:-1}" != 0 ]]; then
  export BOTRT_RELIABILITY_KILLS="${BOTRT_RELIABILITY_KILLS:-20}" BOTRT_RELIABILITY_RESTARTS="${BOTRT_RELIABILITY_RESTARTS:-3}"
  say "faults: $BOTRT_RELIABILITY_KILLS SIGKILLs, $BOTRT_RELIABILITY_RESTARTS apiserver restarts, failover, bad input, canary"
  if ! timeout -k 30s 40m swift test "${SWIFT_PATH_ARGS[@]}" --skip-build --no-parallel \
    --filter 'ControllerKillTests|ApiserverRestartTests|LeaderFailoverTests|MalformedInputTests|CanaryTests' \
    2>&1 | tee "$OUT/controller-faults.log" | grep -aE '^(✔|✘)|reliability:|error:|recorded an issue'; then
    :
  fi
  if grep -aqE '^✘ |recorded an issue|error: .*failed' "$OUT/controller-faults.log" ||
    ! grep -aqE '^✔ Test run with [0-9]+ tests? (in [0-9]+ suites? )?passed' "$OUT/controller-faults.log"; then
    say "the fault tests failed; log: $OUT/controller-faults.log"
    FAIL=1
  fi
fi

# 2. Load.
if [[ "${BOTRT_RELIABILITY_LOAD:-1}" != 0 ]]; then
  N="${BOTRT_LOAD_POLICIES:-1000}"
  D="${BOTRT_LOAD_DRILLS:-100}"
  STEADY="${BOTRT_LOAD_STEADY_SECONDS:-180}"
  BIN="${BOTRT_LOAD_CONTROLLER_BIN:-$BOTRT_CONTROLLER_BIN}"
  NS="rel-load-$RANDOM"
  PORT="${BOTRT_BENCH_METRICS_PORT:-48090}"
  WORK="$(mktemp -d)"
  CONTROLLER_PID=""
  load_cleanup() {
    set +e
    [[ -n "$CONTROLLER_PID" ]] && kill -KILL "$CONTROLLER_PID" 2>/dev/null && wait "$CONTROLLER_PID" 2>/dev/null
    kubectl -n "$NS" get backuppolicies,drdrills -o name 2>/dev/null |
      xargs -r -n 100 -P 4 kubectl -n "$NS" patch --type merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1
    kubectl delete namespace "$NS" "$NS-backup" --wait=false >/dev/null 2>&1
    rm -rf "$WORK"
  }
  trap load_cleanup EXIT
  # (kubectl warns about a missing last-applied annotation when the tests applied the CRDs first: not an error.)
  kubectl apply -f "$REPO/crds/" >/dev/null 2>"$WORK/crds.err" || { cat "$WORK/crds.err"; exit 1; }
  kubectl create namespace "$NS" >/dev/null
  kubectl -n "$NS" create secret generic s3-creds --from-literal=AWS_ACCESS_KEY_ID=load \
    --from-literal=AWS_SECRET_ACCESS_KEY=load >/dev/null
  kubectl -n "$NS" create secret generic vault-token --from-literal=token=load >/dev/null
  say "load: generating $N policies and $D drills"
  # Every backup is scheduled 12 hours from now: a CronJob firing creates a Job, and each Job event rightly brings a
  # reconcile (with its LISTs of the policy's Jobs and Pods); the steady window must see none of that, so that any
  # request in it is polling.
  HOUR=$((($(date -u +%-H) + 12) % 24))
  {
    for i in $(seq 1 "$N"); do
      cat <<EOF
---
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: p$i, namespace: $NS}
spec:
  tier: standard
  schedule: "$((i % 60)) $HOUR * * *"
  dataType: files
  source: {command: {image: "busybox:1", command: [cat], args: [/etc/hostname]}}
  repository: {s3: {bucket: load, prefix: "p$i", region: us-east-1, endpoint: "http://10.0.0.9:9000", credentialsSecretRef: {name: s3-creds}}}
  encryption: {kms: {vaultTransit: {address: "https://vault.vault.svc:8200", key: load, authSecretRef: {name: vault-token}}}}
EOF
    done
    for i in $(seq 1 "$D"); do
      cat <<EOF
---
apiVersion: dr.botrt.io/v1alpha1
kind: DRDrill
metadata: {name: d$i, namespace: $NS}
spec:
  schedule: weekly
  target: {backupPolicyRef: {name: p$i}}
  restore: {command: {image: "busybox:1.36", command: [sh, -c, "cat >/dev/null"]}}
EOF
    done
  } >"$WORK/objects.yaml"

  "$BIN" run --namespace "$NS" --backup-namespace "$NS-backup" --metrics-address "127.0.0.1:$PORT" \
    --engine-image botrt/botrt-engine:load >"$OUT/load-controller.log" 2>&1 &
  CONTROLLER_PID=$!
  for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$PORT/metrics" >/dev/null 2>&1 && break; sleep 1; done
  metrics() { curl -fsS "http://127.0.0.1:$PORT/metrics"; }
  apiserver_requests() { kubectl get --raw /metrics | awk '/^apiserver_request_total\{/ {n+=$NF} END {printf "%d\n", n}'; }
  ready_policies() {
    kubectl -n "$NS" get backuppolicies -o \
      jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true
  }
  observed_drills() {
    kubectl -n "$NS" get drdrills -o \
      jsonpath='{range .items[*]}{.metadata.generation}={.status.observedGeneration}{"\n"}{end}' |
      awk -F= '$1==$2 {n++} END {print n+0}'
  }
  say "load: applying"
  start=$(date +%s.%N)
  kubectl apply -f "$WORK/objects.yaml" >/dev/null
  while :; do
    np=$(ready_policies)
    nd=$(observed_drills)
    [[ "$np" -ge "$N" && "$nd" -ge "$D" ]] && break
    kill -0 "$CONTROLLER_PID" || { tail -20 "$OUT/load-controller.log"; exit 1; }
    if (($(echo "$(date +%s.%N) - $start > 1800" | bc))); then
      say "load: only $np/$N policies Ready and $nd/$D drills observed after 30 min"
      exit 1
    fi
    sleep 3
  done
  # printf: bc writes a value under 1 as ".708", which is no number to the readers of the figure (doc-blocks.sh).
  ready_s=$(printf '%.3f' "$(echo "$(date +%s.%N) - $start" | bc)")
  say "load: all Ready after $ready_s s; waiting for the queues to drain"
  reconciles() { metrics | awk '/^botrt_reconcile_total\{/ {n+=$NF} END {printf "%d\n", n}'; }
  prev=-1
  while :; do
    cur=$(reconciles)
    [[ "$cur" == "$prev" ]] && break
    prev=$cur
    sleep 10
  done
  metrics >"$WORK/m1.txt"
  a1=$(apiserver_requests)
  say "load: steady state, counting requests for $STEADY s"
  sleep "$STEADY"
  metrics >"$WORK/m2.txt"
  a2=$(apiserver_requests)
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$CONTROLLER_PID/status")
  python3 - "$WORK/m1.txt" "$WORK/m2.txt" "$STEADY" "$FIGURES" <<'PY' || FAIL=1
import re, sys
m1, m2, steady, figures = open(sys.argv[1]).read(), open(sys.argv[2]).read(), float(sys.argv[3]), sys.argv[4]
def series(text, name):
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out
def fig(k, v):
    line = f"reliability: {k}={v}"
    print(line)
    open(figures, "a").write(line + "\n")
# Reconcile latency from the histogram (whole run), per controller, interpolated within buckets as
# Prometheus' histogram_quantile does.
buckets = series(m2, "botrt_reconcile_duration_seconds_bucket")
per = {}
for key, count in buckets.items():
    ctl = re.search(r'controller="([^"]*)"', key).group(1)
    le = re.search(r'le="([^"]*)"', key).group(1)
    per.setdefault(ctl, []).append((float("inf") if le == "+Inf" else float(le), count))
for ctl, bs in sorted(per.items()):
    bs.sort()
    total = bs[-1][1]
    def q(p):
        rank, prev_le, prev_c = p * total, 0.0, 0.0
        for le, c in bs:
            if c >= rank:
                if le == float("inf"):
                    return prev_le
                return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0)
            prev_le, prev_c = le, c
        return prev_le
    fig(f"load_reconcile_seconds_{ctl}", f"n={int(total)} p50={q(.5):.3f} p90={q(.9):.3f} p99={q(.99):.3f}")
r1, r2 = series(m1, "botrt_kube_requests_total"), series(m2, "botrt_kube_requests_total")
diff = {k: r2[k] - r1.get(k, 0) for k in r2 if r2[k] - r1.get(k, 0) > 0}
total = sum(diff.values())
fig("load_steady_requests_per_second", f"{total / steady:.3f} ({int(total)} in {int(steady)} s)")
by = {}
for k, v in diff.items():
    verb = re.search(r'verb="([^"]*)"', k).group(1)
    res = re.search(r'resource="([^"]*)"', k).group(1)
    by[f"{verb} {res}"] = by.get(f"{verb} {res}", 0) + v
fig("load_steady_requests_by_verb", "; ".join(f"{k}: {int(v)}" for k, v in sorted(by.items())) or "none")
lists = sum(v for k, v in by.items() if k.startswith("list "))
fig("load_steady_lists", int(lists))
rec1, rec2 = series(m1, "botrt_reconcile_total"), series(m2, "botrt_reconcile_total")
fig("load_steady_reconciles", int(sum(rec2.values()) - sum(rec1.values())))
if lists > 0:
    print("controller-reliability: the controller LISTed at rest (polling)", file=sys.stderr)
    sys.exit(1)
PY
  figure load_objects "policies=$N drills=$D"
  figure load_all_ready_seconds "$ready_s"
  figure load_peak_rss_kib "$rss"
  figure load_apiserver_requests_per_second_all_clients "$(printf '%.2f' "$(echo "scale=2; ($a2 - $a1) / $STEADY" | bc)")"
  figure load_controller_binary "$BIN"
  kill -0 "$CONTROLLER_PID" || { say "the controller died under load"; FAIL=1; }
  [[ "$(ready_policies)" -ge "$N" ]] || { say "policies lost Ready at rest"; FAIL=1; }
fi
exit "$FAIL"
