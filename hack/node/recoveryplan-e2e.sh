#!/usr/bin/env bash
# End to end: botrt-controller runs RecoveryPlans on the real control plane, and the local node runs their Pods.
#
#   hack/cluster.sh up; hack/images.sh; BOTRT_CONTROLLER_BIN=... hack/node/recoveryplan-e2e.sh
#
# Needs a running cluster with its node (hack/node/lib.sh) and the built botrt-controller (BOTRT_CONTROLLER_BIN).
# Starts the controller for a namespace of its own and checks:
#   1. a plan (scaleDown, job, scaleUp, waitReady) succeeds: steps Succeeded in order, the Deployment (two real Pods
#      behind a readiness probe) is back at its remembered replicas and ready, rtoAchieved is set, Succeeded and
#      RTOMet are True, Events name the steps; the job step's Pod ran on the node and wrote its termination message;
#   2. a plan whose job step fails twice (retries: 1) fails: phase Failed, failedStep named, later steps Skipped,
#      Succeeded False, a Warning event.
# Everything it started or created is removed at the end.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_FLOW=recoveryplan-e2e
# shellcheck source=hack/node/lib.sh
source "$REPO/hack/node/lib.sh"
fail() { node_fail "$@"; }
log() { echo "recoveryplan-e2e: $(date -u +%H:%M:%S) $*" >&2; }
node_require

NS="rpe2e-$(date +%s)-$$"
WORK="$(mktemp -d /tmp/botrt-rpe2e.XXXXXX)"
NODE_CONTROLLER_PID=""
cleanup() {
  local rc=$?
  set +e
  if [[ -n "$NODE_CONTROLLER_PID" ]]; then
    kill -TERM "$NODE_CONTROLLER_PID"
    wait "$NODE_CONTROLLER_PID"
  fi
  if [[ $rc -ne 0 ]]; then
    echo "--- controller log"
    tail -n 30 "$WORK/controller.log"
    node_pods_dump "$NS"
  fi >&2
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 143' TERM INT
k() { kubectl -n "$NS" "$@"; }

kubectl apply -f "$REPO/crds/" >/dev/null
TIMEOUT=60 bash "$REPO/hack/crds-established.sh" crd/recoveryplans.dr.botrt.io >/dev/null
kubectl create namespace "$NS" >/dev/null
for _ in $(seq 1 100); do k get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
node_controller "$WORK/controller.log" --metrics-address off --namespace "$NS"

k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: $APP_IMAGE
        command: ["sleep", "3600"]
        readinessProbe: {exec: {command: ["test", "-e", "/proc/1/cmdline"]}, periodSeconds: 1}
EOF
k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: $APP_IMAGE
        command: ["sleep", "3600"]
        readinessProbe: {exec: {command: ["test", "-e", "/proc/1/cmdline"]}, periodSeconds: 1}
EOF
k rollout status deployment/web --timeout=90s >/dev/null || fail "the Deployment did not become ready on the node"
k rollout status statefulset/db --timeout=90s >/dev/null || fail "the StatefulSet did not become ready on the node"

wait_phase() { # PLAN TIMEOUT-S
  local p=""
  for _ in $(seq 1 "$2"); do
    p="$(k get recoveryplan "$1" -o jsonpath='{.status.phase}')"
    [[ "$p" == Succeeded || "$p" == Failed ]] && { echo "$p"; return 0; }
    sleep 1
  done
  echo "$p"
}
jp() { k get recoveryplan "$1" -o jsonpath="$2"; }

log "1. scaleDown, job, scaleUp, waitReady (a Deployment and a StatefulSet)"
k apply -f - >/dev/null <<'EOF'
apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: good}
spec:
  tier: critical
  trigger: run-1
  procedures:
  - name: restore-from-backup
    steps:
    - {name: stop-web, action: scaleDown, targets: [{kind: Deployment, name: web}, {kind: StatefulSet, name: db}]}
    - name: fix-data
      action: job
      timeout: 1m
      job: {image: botrt.local/postgres:15, command: ["sh", "-c", "echo '{\"ok\":true}' > /dev/termination-log"]}
    - {name: start-web, action: scaleUp, targets: [{kind: Deployment, name: web}, {kind: StatefulSet, name: db}]}
    - name: web-ready
      action: waitReady
      timeout: 2m
      targets: [{kind: Deployment, name: web}, {kind: StatefulSet, name: db}]
EOF
[[ "$(wait_phase good 90)" == Succeeded ]] || fail "plan good: phase $(jp good '{.status.phase}'): $(jp good '{.status.message}')"
[[ "$(jp good '{.status.steps[*].state}')" == "Succeeded Succeeded Succeeded Succeeded" ]] || fail "plan good: step states"
[[ "$(jp good '{.status.scaledWorkloads[?(@.kind=="Deployment")].replicas}/{.status.scaledWorkloads[?(@.kind=="StatefulSet")].replicas}')" == 2/1 ]] ||
  fail "plan good: remembered replicas $(jp good '{.status.scaledWorkloads}')"
[[ "$(k get deployment web -o jsonpath='{.spec.replicas}/{.status.readyReplicas}')" == 2/2 ]] || fail "web not back at 2/2"
[[ "$(k get statefulset db -o jsonpath='{.spec.replicas}/{.status.readyReplicas}')" == 1/1 ]] || fail "db not back at 1/1"
[[ -n "$(jp good '{.status.rtoAchievedSeconds}')" ]] || fail "plan good: no rtoAchieved"
[[ "$(jp good '{.status.conditions[?(@.type=="Succeeded")].status}')" == True ]] || fail "plan good: Succeeded"
[[ "$(jp good '{.status.conditions[?(@.type=="RTOMet")].status}')" == True ]] || fail "plan good: RTOMet"
k get events --field-selector involvedObject.name=good -o jsonpath='{.items[*].reason}' | grep StepSucceeded >/dev/null ||
  fail "plan good: no StepSucceeded event"
# The job step's Pod ran in containerd on the node, and the kubelet read its termination message.
pods="$(k get pods -o jsonpath='{range .items[?(@.status.phase=="Succeeded")]}{.spec.nodeName}{" "}{.status.containerStatuses[0].state.terminated.message}{"\n"}{end}')"
grep -F 'botrt-node {"ok":true}' <<<"$pods" >/dev/null ||
  fail "plan good: no succeeded job Pod on botrt-node with its termination message: $pods"

log "2. a failing job step with one retry stops the plan"
k apply -f - >/dev/null <<'EOF'
apiVersion: dr.botrt.io/v1alpha1
kind: RecoveryPlan
metadata: {name: bad}
spec:
  tier: important
  trigger: run-1
  procedures:
  - name: restore-from-backup
    steps:
    - name: broken
      action: job
      retries: 1
      job: {image: botrt.local/postgres:15, command: ["sh", "-c", "echo 'the restore source is gone' >&2; exit 3"]}
    - {name: start-web, action: scaleUp, targets: [{kind: Deployment, name: web}]}
EOF
[[ "$(wait_phase bad 90)" == Failed ]] || fail "plan bad: phase $(jp bad '{.status.phase}')"
[[ "$(jp bad '{.status.failedStep}')" == "restore-from-backup/broken" ]] || fail "plan bad: failedStep"
[[ "$(jp bad '{.status.steps[0].attempts}')" == 2 ]] || fail "plan bad: attempts $(jp bad '{.status.steps[0].attempts}')"
[[ "$(jp bad '{.status.steps[1].state}')" == Skipped ]] || fail "plan bad: later step not Skipped"
jp bad '{.status.message}' | grep "exited with code 3" >/dev/null || fail "plan bad: message $(jp bad '{.status.message}')"
[[ "$(jp bad '{.status.conditions[?(@.type=="Succeeded")].status}')" == False ]] || fail "plan bad: Succeeded"
k get events --field-selector involvedObject.name=bad,type=Warning -o jsonpath='{.items[*].reason}' | grep StepFailed >/dev/null ||
  fail "plan bad: no StepFailed warning"
kubectl get recoveryplans -n "$NS" -o wide
log PASS
