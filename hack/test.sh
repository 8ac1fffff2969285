#!/usr/bin/env bash
# The project's test command: installs what the tests need, builds with warnings as errors, checks
# formatting, starts the local control plane and services, runs `swift test`, stops what it
# started, prints a summary, and exits non-zero on any failure.
#
# Options (environment):
#   BOTRT_SCRATCH_PATH   build directory for swift (default: SwiftPM's .build)
#   BOTRT_TEST_FILTER    passed to `swift test --filter` (default: all tests)
#   BOTRT_TEST_LOG_DIR   where the step logs go (default: <repo>/.local/test-logs)
#   BOTRT_SKIP_INSTALL=1 skip hack/install-deps.sh (for machines already set up)
#   BOTRT_CLUSTER_DIR, BOTRT_SERVICES_DIR and the BOTRT_*_PORT variables are honoured by the
#   cluster and services scripts (see docs/testing.md).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then
  export PATH="/opt/swift/usr/bin:$PATH"
fi

LOGDIR="$(realpath -m "${BOTRT_TEST_LOG_DIR:-$REPO/.local/test-logs}")"
mkdir -p "$LOGDIR"
# Logs of an earlier run would be mistaken for this run's in the summary.
rm -f "$LOGDIR"/*.log
SWIFT_PATH_ARGS=()
if [[ -n "${BOTRT_SCRATCH_PATH:-}" ]]; then SWIFT_PATH_ARGS=(--scratch-path "$BOTRT_SCRATCH_PATH"); fi

STEPS=()
FAILED=0
START=$SECONDS

# record NAME STATUS DETAIL
record() {
  STEPS+=("$(printf '%-28s %-5s %s' "$1" "$2" "$3")")
  [[ "$2" == "ok" || "$2" == "skip" ]] || FAILED=1
}

# step NAME LOGFILE COMMAND...: runs COMMAND with its output shown and saved; returns its status.
step() {
  local name="$1" logfile="$LOGDIR/$2" t0=$SECONDS rc=0
  shift 2
  echo
  echo "=== $name: $*"
  # With pipefail the pipeline fails with the command's status (tee itself does not fail).
  "$@" 2>&1 | tee "$logfile" || rc=$?
  if ((rc == 0)); then
    record "$name" ok "$((SECONDS - t0)) s"
  else
    record "$name" FAIL "exit $rc after $((SECONDS - t0)) s, log: $logfile"
  fi
  return "$rc"
}

# bg_step NAME LOGFILE COMMAND...: starts COMMAND in the background, in a process group of its own, at the lowest CPU and
# I/O priority (nice 19, idle I/O class): it takes only what the foreground steps leave idle, so their timing is
# what it would be without it. bg_join NAME waits for it, shows its log and records it like a step.
declare -A BG_PID BG_T0 BG_LOG
bg_step() {
  local name="$1" logfile="$LOGDIR/$2"
  shift 2
  echo
  echo "=== $name (in the background, lowest priority): $*"
  BG_T0[$name]=$SECONDS
  BG_LOG[$name]="$logfile"
  setsid nice -n 19 ionice -c 3 "$@" >"$logfile" 2>&1 </dev/null &
  BG_PID[$name]=$!
}
bg_join() {
  local name="$1" rc=0
  [[ -n "${BG_PID[$name]:-}" ]] || return 1
  wait "${BG_PID[$name]}" || rc=$?
  unset "BG_PID[$name]"
  echo
  echo "=== $name (joined after $((SECONDS - BG_T0[$name])) s):"
  cat "${BG_LOG[$name]}"
  if ((rc == 0)); then
    record "$name" ok "$((SECONDS - BG_T0[$name])) s, in the background"
  else
    record "$name" FAIL "exit $rc after $((SECONDS - BG_T0[$name])) s, log: ${BG_LOG[$name]}"
  fi
  return "$rc"
}

summary() {
  echo
  echo "=== summary ($((SECONDS - START)) s)"
  local s
  for s in "${STEPS[@]}"; do echo "  $s"; done
  if [[ -f "$LOGDIR/swift-test.log" ]]; then
    # Swift Testing's and XCTest's own totals, and every failed test.
    grep -aE '(Test run with [0-9]+ test|Executed [0-9]+ tests?, with)|(✘ Test .*(failed|recorded an issue))|(error: .*: failed)' \
      "$LOGDIR/swift-test.log" | sort -u | head -60 | sed 's/^/  /' || true
  fi
  if ((FAILED)); then echo "hack/test.sh: FAILED"; else echo "hack/test.sh: all steps passed"; fi
  # One plain closing line: the Swift tests, plus each end-to-end script step as one test.
  local passed=0 failed=0 name status
  if [[ -f "$LOGDIR/swift-test.log" ]]; then
    passed=$(grep -acE '^✔ Test .* passed' "$LOGDIR/swift-test.log" || true)
    failed=$(grep -aE '^✘ Test .* (failed|recorded an issue)' "$LOGDIR/swift-test.log" | awk '{print $3}' | sort -u | wc -l)
  fi
  for s in "${STEPS[@]}"; do
    read -r name status _ <<<"$s"
    case "$name" in
      swift-test) if [[ "$status" == FAIL ]] && ((failed == 0)); then failed=1; fi ;;
      *-e2e | e2e | install-test | check-images) if [[ "$status" == ok ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi ;;
    esac
  done
  echo "hack/test.sh: $passed passed, $failed failed"
}

CLUSTER_STARTED=0
SERVICES_STARTED=0
NODE_SERVICES_STARTED=0
cleanup() {
  local rc=$?
  set +e
  local bg
  for bg in "${!BG_PID[@]}"; do kill -TERM -- "-${BG_PID[$bg]}" 2>/dev/null; done
  if ((NODE_SERVICES_STARTED)); then
    BOTRT_SERVICES_DIR="$REPO/.local/node-services" bash hack/services.sh down >>"$LOGDIR/node-services.log" 2>&1
  fi
  if ((SERVICES_STARTED)); then bash hack/services.sh down >>"$LOGDIR/services.log" 2>&1; fi
  if ((CLUSTER_STARTED)); then bash hack/cluster.sh down >>"$LOGDIR/cluster.log" 2>&1; fi
  summary
  if ((FAILED && rc == 0)); then rc=1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Dependencies.
if [[ "${BOTRT_SKIP_INSTALL:-0}" == 1 ]]; then
  record install-deps skip "BOTRT_SKIP_INSTALL=1"
else
  step install-deps install-deps.log bash hack/install-deps.sh || exit 1
fi
command -v swift >/dev/null || {
  record toolchain FAIL "swift is not on PATH (nor at /opt/swift/usr/bin)"
  exit 1
}

# 2. Formatting (a violation fails the run, but the tests still run so every problem shows).
if swift format --version >/dev/null 2>&1; then
  step swift-format-lint swift-format.log swift format lint --strict -r Sources Tests || true
else
  record swift-format-lint skip "swift format is not in this toolchain"
fi

# 3. Build, tests included, warnings as errors.
step build build.log swift build "${SWIFT_PATH_ARGS[@]}" --build-tests -Xswiftc -warnings-as-errors || exit 1
BIN_PATH="$(swift build "${SWIFT_PATH_ARGS[@]}" --show-bin-path)"
# The container recipes, without a container engine: they parse, their entrypoints are the built products, the
# runtime stage has the built products' shared libraries, the user is numeric and not root.
step check-images check-images.log python3 hack/check-images.py --bin-path "$BIN_PATH" || true

# 4. Services. Whatever this run starts, it stops on exit; a cluster or service set that was
# already running in the same state dir is used and left running.
if bash hack/cluster.sh status >/dev/null 2>&1; then
  record cluster-up ok "already running, reused"
else
  CLUSTER_STARTED=1
  # The control plane first; the node (kubelet, containerd) joins in step 6, after `swift test`: its integration
  # tests create Jobs and Pods whose status they write themselves, which a kubelet would race.
  step cluster-up cluster.log env BOTRT_NODE=0 bash hack/cluster.sh up || exit 1
fi
# The images of step 6 (hack/images.sh: the release build of the products in .build-images, its own scratch path,
# then podman), built from here on in the background at the lowest priority, on what the steps up to 6 leave idle.
# Not before the control plane is up: on a fresh machine `cluster.sh up` unpacks and builds the Kubernetes source,
# whose pause.c the pause image is compiled from (an images build started during the unpacking found no pause.c).
bg_step images images.log timeout -k 10s 45m bash hack/images.sh
if bash hack/services.sh status >/dev/null 2>&1; then
  bash hack/services.sh up >/dev/null 2>&1
  record services-up ok "already running, reused"
else
  SERVICES_STARTED=1
  step services-up services.log bash hack/services.sh up || exit 1
fi
# shellcheck disable=SC1090
source <(bash hack/cluster.sh env)
# shellcheck disable=SC1090
source <(bash hack/services.sh env)
export BOTRT_ENGINE_BIN="$BIN_PATH/botrt-engine"
[[ -x "$BOTRT_ENGINE_BIN" ]] || record engine-binary FAIL "$BOTRT_ENGINE_BIN was not built"
# The controller integration tests run `botrt-controller report`; the node's flows run the controller on the host.
# The controller's reliability tests (Tests/ControllerIntegrationTests/Reliability) run the built process; here with
# small counts (3 SIGKILLs, 1 apiserver restart), hack/reliability.sh raises them.
export BOTRT_CONTROLLER_BIN="$BIN_PATH/botrt-controller"
# The objects CLI's integration tests (Tests/ObjectsCLITests) run the built botrt-objects against the control plane.
export BOTRT_OBJECTS_BIN="$BIN_PATH/botrt-objects"
[[ -x "$BOTRT_OBJECTS_BIN" ]] || record objects-binary FAIL "$BOTRT_OBJECTS_BIN was not built"

# 5. Tests, serially: integration tests share one apiserver, and one of them restarts it.
# The custom-resource-path matrix (Tests/ControllerIntegrationTests/CustomResourcePathTests.swift) runs its 1.20 leg
# here; its 1.36 leg runs in step 5a, where the 1.36 CRD server is up.
export BOTRT_CR_SERVERS=1.20
# PodExecNodeTests (Tests/NodeTests) need a kubelet: they run in step 6, after node-up.
TEST_ARGS=(--skip-build --no-parallel --skip PodExecNodeTests)
if [[ -n "${BOTRT_TEST_FILTER:-}" ]]; then TEST_ARGS+=(--filter "$BOTRT_TEST_FILTER"); fi
# A hung test must fail the run, not stall CI: the whole suite gets a hard limit.
step swift-test swift-test.log timeout -k 30s "${BOTRT_TEST_TIMEOUT:-50m}" \
  swift test "${SWIFT_PATH_ARGS[@]}" "${TEST_ARGS[@]}" || true

# 5'. Fuzzing smoke run (hack/fuzz.sh --ci; docs/testing.md, "Fuzzing"): Sources/botrt-fuzz built with libFuzzer and
# ASan into .build/fuzz (its own build directory, so later runs build incrementally), then every target (the engine's
# formats, manifests, config, key files, engine results, watch frames, kubeconfig, cron, durations) for 8 s from its
# committed corpus. A crash, hang, leak or allocation over 64 MiB fails the step; the input is left in
# .build/fuzz/artifacts. (swift-test above already replayed every committed input through the normal build.)
step fuzz-smoke fuzz.log timeout -k 10s 20m bash hack/fuzz.sh --ci || true

# 5''. The docs' blocks no other step runs (hack/doc-blocks.sh; <!-- doc-test: ci hack/doc-blocks.sh NAME -->), read
# from the docs and run with small counts: the file-selection examples, a second control plane and service set on
# private ports with the apiserver restart pair, the client benchmark (200 objects), the fuzzing commands (1 s each),
# hack/reliability.sh and hack/reliability/engine.sh (a small load, BOTRT_REL_SMOKE=1).
step doc-blocks-e2e doc-blocks.log timeout -k 10s 15m bash hack/doc-blocks.sh select private-ports bench fuzz reliability || true

# 5a. The CRDs and the custom-resource path on Kubernetes 1.36 (hack/crd-apiserver.sh: apiextensions-apiserver 0.36
# built from Debian sid once and cached, about 4 minutes the first time; its own etcd and ports): crds/ and crds/cel/
# apply, the samples apply, rejections name the field, printer columns, status subresource, SSA with the controller's
# field manager, Tests/CEL/cases.yaml against the CEL rules, and the 1.36 leg of the custom-resource-path matrix
# (`swift test --filter CustomResourcePath` on the build of step 3).
step crd136-e2e crd136-e2e.log env BOTRT_CRD136_SKIP_BUILD=1 timeout -k 10s 20m bash hack/crd136-test.sh || true
# 5a'. One apiserver (issue 20 item 5): the 1.36 server registered in the aggregation layer of a 1.20 control plane of
# its own (no node, own ports and state), kubectl and the built botrt-controller talking to the 1.20 endpoint only.
step crd136-aggregated-e2e crd136-aggregated.log timeout -k 10s 10m bash hack/crd136-aggregated-test.sh || true

# 5b. The engine's fast reliability checks (docs/reliability-engine.md): SIGKILLed backups, storage faults,
# KMS down, canary secrets, Object Lock; the corruption table and traversal tests ran with swift test.
step engine-reliability-e2e engine-reliability.log env BOTRT_REL_ENGINE_OUT="$LOGDIR/reliability-engine" \
  timeout -k 10s 10m bash hack/reliability/engine.sh --fast || true

# 6. A real node, and every end-to-end flow with its Pods run by the kubelet: the images built from
# images/*/Containerfile (hack/images.sh: no registry; the products built on the host, release), kubelet + containerd
# + kube-proxy joined to the control plane (hack/cluster.sh node-up), and one set of services on the bridge address
# for the Pods (hack/node/lib.sh). The flows' controllers run on the host, each scoped to its own namespace; the
# install test installs the operator cluster-wide and so runs after them.
#  - recoveryplan-e2e: a RecoveryPlan's ordered steps (scale, job, wait for readiness);
#  - replication-e2e: snapshots copied from S3 to GCS under another key, restores from the replica, key rotation;
#  - dr-e2e: a restore-only DR "cluster" (a second namespace and controller) restores and drills the primary's
#    snapshots and writes nothing into its repository (every object version and delete marker compared); a drill's
#    slow restore shows its progress in status.currentRun.progress;
#  - e2e: a PostgreSQL database backed up by a BackupPolicy, restored by a RecoveryPlan, rehearsed by DRDrills that
#    pass and, on a tampered pack, fail;
#  - keyrotation-e2e: key rotation Jobs (local key, Vault Transit, AWS KMS, Azure Key Vault and Google Cloud KMS on
#    hack/lib/cloudkms-server.py) and deleting a policy's backups;
#  - pvc-e2e: files of another uid (0600) on a claim, backed up, deleted, restored with owners and modes; then
#    restored into another namespace, whose claim is created from the policy's recorded claim;
#  - hooks-e2e: pre and post hooks exec'd in an application Pod around a claim's backup (the marker in the snapshot),
#    post hooks after a failed backup and after an aborted gate, and the refusal in a namespace that did not opt in;
#  - claims-e2e: a label-selected set of claims backed up claim by claim (spec.source.claims), with exclude patterns
#    and excludeIfPresent; one claim's files deleted and restored from that claim's latest snapshot, without what
#    the policy excludes;
#  - objects-e2e: a namespace's Kubernetes objects backed up with its claim (spec.objects), and the claim and the
#    objects re-created in an empty namespace (into.pvc, into.objects), where the restored Deployment becomes
#    available; a second run creates nothing; a policy of the objects alone (source.objects) stores only
#    _kubernetes, and its ConfigMap and Secret are re-created in a third namespace;
#  - rwo-e2e: RWO placement on two real nodes (a second kubelet and containerd, tainted): the backup pods of a claim
#    mounted by a pod on the second node run there with its toleration, an unmounted claim's on the first, and the
#    placement follows the pod when it moves;
#  - samples-e2e: every file of crds/samples/ applied, its outside world rewritten to the testbed's services through one
#    table, and driven to its documented outcome (or, for Azure Blob, Cloud KMS and a registry-only image, as far as
#    the testbed allows, asserted and said);
#  - install-test: `kubectl apply -k manifests/` as an admin does, the Deployment's two replicas Ready on the node,
#    docs/quickstart.md's commands in real Pods;
#  - rbac-audit-e2e: the controllers above all ran as the shipped ServiceAccount; the apiserver's audit log shows no
#    denied request and a use (or a stated reason) for every grant of manifests/rbac/ (hack/rbac-audit.py);
#  - run-local-e2e: the README's second command, as a new user runs it, in its checking mode.
if bg_join images; then
  # The README's podman build and push, to a local registry (Debian's docker-registry), with the store just built.
  step doc-registry-e2e doc-registry.log timeout -k 10s 10m bash hack/doc-blocks.sh registry || true
  if step node-up node-up.log bash hack/cluster.sh node-up; then
    BOTRT_SERVICES_DIR="$REPO/.local/node-services" bash hack/services.sh status >/dev/null 2>&1 || NODE_SERVICES_STARTED=1
    if step node-services-up node-services.log \
      bash -c 'source hack/node/lib.sh && node_require && node_services_up && echo "services on $BOTRT_S3_ENDPOINT"'; then
      # pods/exec over a WebSocket against the real kubelet and containerd (Tests/NodeTests): output and exit codes,
      # 1 MiB intact, the kept tail, a timeout, a missing Pod and container, a ServiceAccount without pods/exec.
      step podexec-node-e2e podexec-node.log timeout -k 10s 5m \
        swift test "${SWIFT_PATH_ARGS[@]}" --skip-build --filter PodExecNodeTests || true
      # The second node for rwo-e2e (hack/lib/node2.sh), started while the first flows run: tainted, so no other
      # flow's pod goes there.
      bg_step node2-up node2-up.log bash hack/cluster.sh node2-up
      step recoveryplan-e2e recoveryplan-e2e.log timeout -k 10s 10m bash hack/node/recoveryplan-e2e.sh || true
      step replication-e2e replication-e2e.log timeout -k 10s 10m bash hack/node/replication-e2e.sh || true
      step dr-e2e dr-e2e.log timeout -k 10s 8m bash hack/node/dr-e2e.sh || true
      step e2e e2e.log timeout -k 10s 15m bash hack/e2e.sh || true
      step keyrotation-e2e keyrotation-e2e.log timeout -k 10s 10m bash hack/node/keyrotation-e2e.sh || true
      step pvc-e2e pvc-e2e.log timeout -k 10s 10m bash hack/node/pvc-e2e.sh || true
      step hooks-e2e hooks-e2e.log timeout -k 10s 8m bash hack/node/hooks-e2e.sh || true
      step claims-e2e claims-e2e.log timeout -k 10s 8m bash hack/node/claims-e2e.sh || true
      step objects-e2e objects-e2e.log timeout -k 10s 8m bash hack/node/objects-e2e.sh || true
      if bg_join node2-up; then
        step rwo-e2e rwo-e2e.log timeout -k 10s 8m bash hack/node/rwo-e2e.sh || true
      fi
      bash hack/cluster.sh node2-down >>"$LOGDIR/node2-up.log" 2>&1 || true
      step samples-e2e samples-e2e.log timeout -k 10s 12m bash hack/node/samples-e2e.sh || true
      step install-test install-test.log timeout -k 10s 15m bash hack/install-test.sh || true
      # Every flow's controller ran as the shipped ServiceAccount: what its grants were used for, from the audit log.
      step rbac-audit-e2e rbac-audit.log python3 hack/rbac-audit.py "$BOTRT_CLUSTER_DIR/audit.log" \
        manifests/rbac/clusterrole.yaml manifests/rbac/leader-election-role.yaml manifests/rbac/hook-executor.yaml || true
      if ((NODE_SERVICES_STARTED)); then
        BOTRT_SERVICES_DIR="$REPO/.local/node-services" bash hack/services.sh down >>"$LOGDIR/node-services.log" 2>&1
        NODE_SERVICES_STARTED=0
      fi
    fi
    step run-local-e2e run-local.log env BOTRT_RUN_LOCAL_CHECK=1 timeout -k 10s 15m bash hack/run-local.sh || true
  else
    record node-e2e FAIL "the node did not come up"
  fi
else
  record node-e2e FAIL "the images were not built"
fi
