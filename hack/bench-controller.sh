#!/usr/bin/env bash
# Benchmark of botrt-controller (issue 4): apply N BackupPolicies at once and report the seconds until all are
# Ready, the controller's peak RSS, and the requests it makes at steady state (from the apiserver's
# apiserver_request_total, by verb and resource, over a window in which only the controller talks to it). Then the
# controller is killed (SIGKILL, as a crash or an evicted Pod) and started again: the seconds until its work queue
# has reconciled every policy and drained, and the writes it made doing so (issue 18: 0 to unchanged objects).
#
#   BOTRT_BENCH_POLICIES (1000)  BOTRT_BENCH_STEADY_SECONDS (300)  BOTRT_CONTROLLER_BIN (required: the binary)
#   BOTRT_BENCH_WORKERS (the controller's --workers; its default when unset)
#   KUBECONFIG must point at the local control plane (source <(hack/cluster.sh env)).
#
# The reference, measured in the same run before the controller starts: the apiserver's write floor
# (hack/lib/apiserver-floor.py: sequential ConfigMap creations on 1 and on 4 connections). The floor for N policies
# is N × the controller's writes per policy ÷ the faster of those rates; the last line reports the ratio.
set -euo pipefail

N="${BOTRT_BENCH_POLICIES:-1000}"
STEADY="${BOTRT_BENCH_STEADY_SECONDS:-300}"
BIN="${BOTRT_CONTROLLER_BIN:?set BOTRT_CONTROLLER_BIN to the botrt-controller binary}"
: "${KUBECONFIG:?set KUBECONFIG (source <(hack/cluster.sh env))}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d)"
NS="botrt-bench-$RANDOM"
say() { echo "bench: $*" >&2; }

CONTROLLER_PID=""
cleanup() {
  set +e
  # The policies carry the controller's finalizer: delete them while it still runs, or the namespace never goes.
  if [[ -n "$CONTROLLER_PID" ]] && kill -0 "$CONTROLLER_PID" 2>/dev/null; then
    say "deleting the policies (the controller removes its finalizers)"
    kubectl -n "$NS" delete backuppolicies --all --wait=true --timeout=600s >/dev/null 2>&1
  fi
  [[ -n "$CONTROLLER_PID" ]] && kill -TERM "$CONTROLLER_PID" 2>/dev/null && wait "$CONTROLLER_PID" 2>/dev/null
  kubectl delete namespace "$NS" "$NS-backup" --wait=false >/dev/null 2>&1
  [[ -n "${BOTRT_BENCH_LOG:-}" ]] && cp "$WORK/controller.log" "$BOTRT_BENCH_LOG"
  rm -rf "$WORK"
}
trap cleanup EXIT

kubectl apply -f "$REPO/crds/" >/dev/null
kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" create secret generic s3-creds --from-literal=AWS_ACCESS_KEY_ID=bench \
  --from-literal=AWS_SECRET_ACCESS_KEY=bench >/dev/null
kubectl -n "$NS" create secret generic vault-token --from-literal=token=bench >/dev/null

# The apiserver's floor, before anything else loads it.
kubectl create namespace "$NS-floor" >/dev/null
server="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')"
token="$(kubectl config view --raw --minify -o jsonpath='{.users[0].user.token}')"
[[ -n "$token" ]] || { echo "bench: the kubeconfig's user has no bearer token (the floor needs one)" >&2; exit 1; }
BOTRT_FLOOR_SERVER="$server" BOTRT_FLOOR_CA="$ca" BOTRT_FLOOR_TOKEN="$token" \
  python3 "$REPO/hack/lib/apiserver-floor.py" "$NS-floor" 2000 1 4 >"$WORK/floor.txt"
kubectl delete namespace "$NS-floor" --wait=false >/dev/null
sed 's/^/bench: apiserver floor: /' "$WORK/floor.txt" >&2
floor_wps=$(sed -E 's/.*writes_per_second=([0-9]+).*/\1/' "$WORK/floor.txt" | sort -n | tail -1)
floor_wps1=$(sed -n 1p "$WORK/floor.txt" | sed -E 's/.*writes_per_second=([0-9]+).*/\1/')

say "generating $N policies"
for i in $(seq 1 "$N"); do
  cat <<EOF
---
apiVersion: dr.botrt.io/v1alpha1
kind: BackupPolicy
metadata: {name: p$i, namespace: $NS}
spec:
  tier: standard
  dataType: files
  source: {command: {image: "busybox:1", command: [cat], args: [/etc/hostname]}}
  repository: {s3: {bucket: bench, prefix: "p$i", region: us-east-1, endpoint: "http://10.0.0.9:9000", credentialsSecretRef: {name: s3-creds}}}
  encryption: {kms: {vaultTransit: {address: "https://vault.vault.svc:8200", key: bench, authSecretRef: {name: vault-token}}}}
EOF
done >"$WORK/policies.yaml"

# Port 0: the kernel picks a free port (a fixed one can be taken, by an outgoing connection too); the controller
# logs the address it bound.
start_controller() {
  "$BIN" run --namespace "$NS" --backup-namespace "$NS-backup" ${BOTRT_BENCH_WORKERS:+--workers "$BOTRT_BENCH_WORKERS"} \
    --metrics-address "127.0.0.1:${BOTRT_BENCH_METRICS_PORT:-0}" >>"$WORK/controller.log" 2>&1 &
  CONTROLLER_PID=$!
  METRICS=""
  for _ in $(seq 1 200); do
    METRICS="$(grep 'serving /metrics' "$WORK/controller.log" 2>/dev/null | tail -n 1 | grep -o '127\.0\.0\.1:[0-9]*' || true)"
    [[ -n "$METRICS" ]] && curl -fsS "http://$METRICS/metrics" >/dev/null 2>&1 && break
    METRICS=""
    kill -0 "$CONTROLLER_PID" 2>/dev/null || { cat "$WORK/controller.log" >&2; exit 1; }
    sleep 0.05
  done
  [[ -n "$METRICS" ]] || { echo "the controller did not report its metrics address" >&2; exit 1; }
}
start_controller

peak_rss() { awk '/VmHWM/ {print $2}' "/proc/$CONTROLLER_PID/status"; }
ready_count() {
  kubectl -n "$NS" get backuppolicies -o \
    jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true
}

requests() {
  kubectl get --raw /metrics | grep '^apiserver_request_total{' |
    sed -E 's/.*[{,]resource="([^"]*)".*[{,]subresource="([^"]*)".*[{,]verb="([^"]*)".*\} ([0-9.e+]+)$/\3 \1\/\2 \4/' |
    awk '{a[$1" "$2]+=$3} END {for (k in a) print k, a[k]}' | sort
}
say "applying $N policies"
requests >"$WORK/apiserver-before-create.txt"
start=$(date +%s.%N)
kubectl apply -f "$WORK/policies.yaml" >/dev/null
while :; do
  n=$(ready_count)
  [[ "$n" -ge "$N" ]] && break
  kill -0 "$CONTROLLER_PID" || { tail -20 "$WORK/controller.log"; exit 1; }
  sleep 2
done
end=$(date +%s.%N)
ready_seconds=$(echo "$end - $start" | bc)
say "all $N Ready after $ready_seconds s; peak RSS $(peak_rss) KiB"

controller_metrics() { curl -fsS "http://$METRICS/metrics" | grep -E '^botrt_(watcher_lists_total|reconcile_total|watcher_)' || true; }
# The controller's own requests by verb and resource (botrt_kube_requests_total): the apiserver's counter also
# counts kube-controller-manager and kubectl.
own_requests() {
  curl -fsS "http://$METRICS/metrics" | grep '^botrt_kube_requests_total{' |
    sed -E 's/.*verb="([^"]*)".*resource="([^"]*)".*\} ([0-9.e+]+)$/\1 \2 \3/' |
    awk '{a[$1" "$2]+=$3} END {for (k in a) print k, a[k]}' | sort
}
# Ready comes before the queue drains (each status write brings one more reconcile): wait until reconciles stop.
reconciles() { controller_metrics | awk '/^botrt_reconcile_total\{controller="backuppolicy"/ {n+=$2} END {print n+0}'; }
prev=-1
while :; do
  cur=$(reconciles)
  [[ "$cur" == "$prev" ]] && break
  prev=$cur
  sleep 10
done
settled=$(date +%s.%N)
say "the work queue drained after $(echo "$settled - $start" | bc) s ($prev reconciles)"
# What creating N policies cost: the controller's own requests from its start to the drained queue, per policy.
own_requests >"$WORK/own-created.txt"
create_total=$(awk '{n += $3} END {print n + 0}' "$WORK/own-created.txt")
say "the controller's requests until the queue drained, per policy (verb resource count/policy):"
awk -v n="$N" '$1 != "watch" {printf "  %s %s %.2f\n", $1, $2, $3 / n}' "$WORK/own-created.txt" >&2
create_writes=$(awk '$1 ~ /^(patch|create|update|delete)$/ {n += $3} END {print n + 0}' "$WORK/own-created.txt")
writes_per_policy=$(echo "scale=2; $create_writes / $N" | bc)
floor_seconds=$(echo "scale=2; $create_writes / $floor_wps" | bc)
floor_seconds1=$(echo "scale=2; $create_writes / $floor_wps1" | bc)
say "the apiserver's requests from the apply to the drained queue, every client (verb resource count):"
join -j1 <(awk '{print $1"/"$2, $3}' "$WORK/apiserver-before-create.txt" | sort) \
  <(requests | awk '{print $1"/"$2, $3}' | sort) | awk '{d=$3-$2; if (d>0) printf "  %s %d\n", $1, d}' >&2
say "floor: $create_writes writes at $floor_wps/s = $floor_seconds s (one connection: $floor_seconds1 s)"
controller_metrics >"$WORK/metrics-before.txt"
requests >"$WORK/before.txt"
own_requests >"$WORK/own-before.txt"
say "steady state: counting requests for $STEADY s"
sleep "$STEADY"
requests >"$WORK/after.txt"
own_requests >"$WORK/own-after.txt"
say "the controller's own requests during the steady window (verb resource count):"
own_delta="$(join -j1 -a2 <(awk '{print $1"/"$2, $3}' "$WORK/own-before.txt" | sort) \
  <(awk '{print $1"/"$2, $3}' "$WORK/own-after.txt" | sort) |
  awk 'NF == 2 {d = $2} NF == 3 {d = $3 - $2} d > 0 {printf "%s=%d ", $1, d}')"
say "  ${own_delta:-none}"
own_total=$(tr ' ' '\n' <<<"$own_delta" | awk -F= 'NF == 2 {n += $2} END {print n + 0}')
own_lists=$(tr ' ' '\n' <<<"$own_delta" | awk -F= '/^list\// {n += $2} END {print n + 0}')
say "requests during the steady window (verb resource count), non-zero only:"
join -j1 <(awk '{print $1"/"$2, $3}' "$WORK/before.txt" | sort) <(awk '{print $1"/"$2, $3}' "$WORK/after.txt" | sort) |
  awk '{d=$3-$2; if (d>0) printf "  %s %d\n", $1, d}'
say "controller metrics before and after the steady window:"
paste "$WORK/metrics-before.txt" <(controller_metrics) | sed 's/^/  /'
grep -iE 'warn|error' "$WORK/controller.log" | tail -5 || true
steady_rss=$(peak_rss)

# Restart: kill the controller and start it again; the clock runs from the new process's start until every policy
# was reconciled and the queue drained (reconciles stop growing), polled every 0.2 s.
say "restart: killing the controller (SIGKILL) and starting it again"
kill -KILL "$CONTROLLER_PID"
wait "$CONTROLLER_PID" 2>/dev/null || true
: >"$WORK/controller.log"
rstart=$(date +%s.%N)
start_controller
last=-1
last_change=$(date +%s.%N)
while :; do
  cur=$(reconciles)
  now=$(date +%s.%N)
  if [[ "$cur" != "$last" ]]; then
    last=$cur
    last_change=$now
  elif [[ "$cur" -ge "$N" ]] && (($(echo "$now - $last_change > 3" | bc))); then
    break
  fi
  (($(echo "$now - $rstart > 600" | bc))) && { say "restart: the queue did not drain in 600 s"; break; }
  sleep 0.2
done
restart_seconds=$(echo "$last_change - $rstart" | bc)
own_requests >"$WORK/own-restart.txt"
restart_writes=$(awk '$1 ~ /^(patch|create|update|delete)$/ {n += $3} END {print n + 0}' "$WORK/own-restart.txt")
restart_reads=$(awk '$1 ~ /^(get|list)$/ {n += $3} END {print n + 0}' "$WORK/own-restart.txt")
say "restart: $last reconciles, the queue drained $restart_seconds s after the start; $restart_writes writes," \
  "$restart_reads gets and lists (informers' first lists included):"
awk '$1 != "watch" {printf "  %s %s %d\n", $1, $2, $3}' "$WORK/own-restart.txt" >&2
echo "policies=$N workers=${BOTRT_BENCH_WORKERS:-default} ready_seconds=$ready_seconds floor_seconds=$floor_seconds" \
  "ratio=$(echo "scale=2; $ready_seconds / $floor_seconds" | bc) floor_writes_per_second=$floor_wps" \
  "floor_writes_per_second_one_connection=$floor_wps1 peak_rss_kib=$steady_rss reconciles=$prev" \
  "create_requests_per_policy=$(echo "scale=2; $create_total / $N" | bc) writes_per_policy=$writes_per_policy" \
  "steady_seconds=$STEADY" \
  "steady_requests=${own_total:-0} steady_lists=${own_lists:-0} steady_by_verb=${own_delta// /,}" \
  "restart_seconds=$restart_seconds restart_writes=$restart_writes restart_reads=$restart_reads" \
  "restart_peak_rss_kib=$(peak_rss)"
