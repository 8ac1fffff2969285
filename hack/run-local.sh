#!/usr/bin/env bash
# Runs the operator against the local control plane: brings the cluster up, builds, installs the
# CRDs, starts botrt-controller in the background, applies the samples and shows `kubectl get`.
# Stays in the foreground until Ctrl-C (or until the controller exits), then stops what it started.
#
# Options (environment):
#   BOTRT_SCRATCH_PATH     build directory for swift (default: SwiftPM's .build)
#   BOTRT_CONTROLLER_ARGS  extra arguments for botrt-controller (split on spaces)
#   BOTRT_RUN_DIR          where the controller's log and pid go (default: <repo>/.local/run)
#   BOTRT_CLUSTER_DIR and the BOTRT_*_PORT variables are honoured by hack/cluster.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then
  export PATH="/opt/swift/usr/bin:$PATH"
fi
RUN_DIR="$(realpath -m "${BOTRT_RUN_DIR:-$REPO/.local/run}")"
mkdir -p "$RUN_DIR"
SWIFT_PATH_ARGS=()
if [[ -n "${BOTRT_SCRATCH_PATH:-}" ]]; then SWIFT_PATH_ARGS=(--scratch-path "$BOTRT_SCRATCH_PATH"); fi

say() { echo "run-local: $*" >&2; }

CLUSTER_STARTED=0
CONTROLLER_PID=""
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [[ -n "$CONTROLLER_PID" ]] && kill -0 "$CONTROLLER_PID" 2>/dev/null; then
    say "stopping botrt-controller (pid $CONTROLLER_PID)"
    kill -TERM "$CONTROLLER_PID" 2>/dev/null
    for _ in $(seq 1 100); do
      kill -0 "$CONTROLLER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$CONTROLLER_PID" 2>/dev/null && kill -KILL "$CONTROLLER_PID" 2>/dev/null
  fi
  rm -f "$RUN_DIR/controller.pid"
  if ((CLUSTER_STARTED)); then
    say "stopping the local control plane"
    bash hack/cluster.sh down
  else
    say "the control plane was already running before; left running (hack/cluster.sh down stops it)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. Control plane.
if bash hack/cluster.sh status >/dev/null 2>&1; then
  say "control plane already running; using it"
else
  CLUSTER_STARTED=1
  bash hack/cluster.sh up
fi
# shellcheck disable=SC1090
source <(bash hack/cluster.sh env)

# 2. Build.
say "building botrt-controller"
swift build "${SWIFT_PATH_ARGS[@]}" --product botrt-controller
CONTROLLER_BIN="$(swift build "${SWIFT_PATH_ARGS[@]}" --show-bin-path)/botrt-controller"

# 3. CRDs and the backup namespace.
shopt -s nullglob
crds=(crds/*.yaml)
if ((${#crds[@]})); then
  say "installing ${#crds[@]} CRDs"
  crd_names="$(kubectl apply -f crds/ -o name)"
  echo "$crd_names"
  # shellcheck disable=SC2086
  kubectl wait --for condition=established --timeout=60s $crd_names
else
  say "no CRDs in crds/ yet"
fi
if [[ -f manifests/namespace.yaml ]]; then kubectl apply -f manifests/namespace.yaml; fi

# 4. The controller, in the background, with its log in the run dir.
say "starting $CONTROLLER_BIN (log: $RUN_DIR/controller.log)"
read -r -a extra_args <<<"${BOTRT_CONTROLLER_ARGS:-}"
"$CONTROLLER_BIN" "${extra_args[@]}" >"$RUN_DIR/controller.log" 2>&1 &
CONTROLLER_PID=$!
echo "$CONTROLLER_PID" >"$RUN_DIR/controller.pid"
sleep 3

# 5. Samples (their namespaces first).
samples=(crds/samples/*.yaml)
if ((${#samples[@]})); then
  for ns in $(grep -h '^  namespace:' "${samples[@]}" | awk '{print $2}' | sort -u); do
    kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
  done
  say "applying ${#samples[@]} samples"
  kubectl apply -f crds/samples/
fi

# 6. What there is to see.
show() {
  echo
  if ((${#crds[@]})); then
    kubectl get botrt -A
  else
    kubectl get namespaces
  fi
  echo
  echo "--- botrt-controller log (last 20 lines of $RUN_DIR/controller.log)"
  tail -n 20 "$RUN_DIR/controller.log"
}
show
echo
say "KUBECONFIG=$KUBECONFIG; Ctrl-C stops the controller$( ((CLUSTER_STARTED)) && echo " and the control plane")"

# 7. Stay until Ctrl-C or until the controller exits; refresh the view every 30 s.
while kill -0 "$CONTROLLER_PID" 2>/dev/null; do
  for _ in $(seq 1 300); do
    kill -0 "$CONTROLLER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$CONTROLLER_PID" 2>/dev/null && show
done
rc=0
wait "$CONTROLLER_PID" || rc=$?
CONTROLLER_PID=""
say "botrt-controller exited with status $rc; its log:"
tail -n 40 "$RUN_DIR/controller.log"
exit "$rc"
