#!/usr/bin/env bash
# The reliability and security suite (issue 7): builds, starts the local control plane and services (or reuses
# running ones), runs every hack/reliability/*.sh in turn, stops what it started, and prints a summary with the
# figures each part wrote. docs/reliability.md reports the figures and the commands behind them.
#
# Options (environment):
#   BOTRT_RELIABILITY_ONLY     run only the parts whose file name contains this (e.g. controller, engine)
#   BOTRT_RELIABILITY_OUT      where the logs and figures go (default: <repo>/.local/reliability)
#   BOTRT_SCRATCH_PATH         build directory for swift (default: SwiftPM's .build)
#   BOTRT_SKIP_BUILD=1         use the binaries already built
#   BOTRT_CLUSTER_DIR, BOTRT_SERVICES_DIR and the BOTRT_*_PORT variables as for hack/test.sh (docs/testing.md).
# Each part reads its own knobs (see the head of each hack/reliability/*.sh).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then
  export PATH="/opt/swift/usr/bin:$PATH"
fi

OUT="$(realpath -m "${BOTRT_RELIABILITY_OUT:-$REPO/.local/reliability}")"
mkdir -p "$OUT"
export BOTRT_RELIABILITY_OUT="$OUT"
SWIFT_PATH_ARGS=()
if [[ -n "${BOTRT_SCRATCH_PATH:-}" ]]; then SWIFT_PATH_ARGS=(--scratch-path "$BOTRT_SCRATCH_PATH"); fi

STEPS=()
FAILED=0
START=$SECONDS
record() {
  STEPS+=("$(printf '%-24s %-5s %s' "$1" "$2" "$3")")
  [[ "$2" == ok ]] || FAILED=1
}

CLUSTER_STARTED=0
SERVICES_STARTED=0
summary() {
  echo
  echo "=== reliability summary ($((SECONDS - START)) s), logs and figures in $OUT"
  local s f
  for s in "${STEPS[@]}"; do echo "  $s"; done
  for f in "$OUT"/*figures*.txt; do
    [[ -f "$f" ]] || continue
    echo "  --- $(basename "$f")"
    sed 's/^/  /' "$f"
  done
  if ((FAILED)); then echo "hack/reliability.sh: FAILED"; else echo "hack/reliability.sh: all parts passed"; fi
}
cleanup() {
  local rc=$?
  set +e
  if ((SERVICES_STARTED)); then bash hack/services.sh down >>"$OUT/services.log" 2>&1; fi
  if ((CLUSTER_STARTED)); then bash hack/cluster.sh down >>"$OUT/cluster.log" 2>&1; fi
  summary
  if ((FAILED && rc == 0)); then rc=1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Figures of an earlier run would be mistaken for this run's.
rm -f "$OUT"/*figures*.txt "$OUT"/*.md

if [[ "${BOTRT_SKIP_BUILD:-0}" != 1 ]]; then
  t0=$SECONDS
  if swift build "${SWIFT_PATH_ARGS[@]}" --build-tests -Xswiftc -warnings-as-errors >"$OUT/build.log" 2>&1; then
    record build ok "$((SECONDS - t0)) s"
  else
    tail -30 "$OUT/build.log"
    record build FAIL "log: $OUT/build.log"
    exit 1
  fi
fi
BIN_PATH="$(swift build "${SWIFT_PATH_ARGS[@]}" --show-bin-path)"
export BOTRT_ENGINE_BIN="$BIN_PATH/botrt-engine" BOTRT_CONTROLLER_BIN="$BIN_PATH/botrt-controller"

if bash hack/cluster.sh status >/dev/null 2>&1; then
  record cluster-up ok "already running, reused"
else
  CLUSTER_STARTED=1
  bash hack/cluster.sh up >"$OUT/cluster.log" 2>&1 || { record cluster-up FAIL "log: $OUT/cluster.log"; exit 1; }
  record cluster-up ok "started"
fi
if bash hack/services.sh status >/dev/null 2>&1; then
  bash hack/services.sh up >/dev/null 2>&1
  record services-up ok "already running, reused"
else
  SERVICES_STARTED=1
  bash hack/services.sh up >"$OUT/services.log" 2>&1 || { record services-up FAIL "log: $OUT/services.log"; exit 1; }
  record services-up ok "started"
fi
# shellcheck disable=SC1090
source <(bash hack/cluster.sh env)
# shellcheck disable=SC1090
source <(bash hack/services.sh env)

shopt -s nullglob
parts=(hack/reliability/*.sh)
((${#parts[@]})) || { record parts FAIL "no hack/reliability/*.sh"; exit 1; }
for part in "${parts[@]}"; do
  name="$(basename "$part" .sh)"
  if [[ -n "${BOTRT_RELIABILITY_ONLY:-}" && "$name" != *"$BOTRT_RELIABILITY_ONLY"* ]]; then continue; fi
  echo
  echo "=== $name: $part"
  t0=$SECONDS
  rc=0
  bash "$part" 2>&1 | tee "$OUT/$name.log" || rc=$?
  if ((rc == 0)); then
    record "$name" ok "$((SECONDS - t0)) s"
  else
    record "$name" FAIL "exit $rc after $((SECONDS - t0)) s, log: $OUT/$name.log"
  fi
done
