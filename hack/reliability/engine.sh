#!/usr/bin/env bash
# The engine half of the reliability and security suite (issue 7). Runnable on its own; exits non-zero
# when any promise breaks. docs/reliability-engine.md explains each part and reports its figures.
#
#   hack/reliability/engine.sh          the whole suite (about 25-35 minutes on the 2-core machine)
#   hack/reliability/engine.sh --fast   the fast parts, as hack/test.sh runs them (about 2-3 minutes)
#
# Parts (BOTRT_REL_ENGINE_PARTS narrows them, e.g. "kills canary"):
#   kills       SIGKILL at random points during backup, local and moto S3; verify, resume, reuse
#   faults      a fault-injecting proxy in front of moto: 500/503/resets/truncation/slow reads and writes
#   kms         OpenBao stopped, unreachable, 503 or resetting: exit 13 and no plaintext anywhere
#   canary      a canary Vault token and S3 secret never appear in outputs, results or objects
#   objectlock  COMPLIANCE Object Lock on moto: prune refused and said so, retention extended
#   stream      a 10 GiB --stdin backup and restore with RSS sampled (full mode only)
#   corruption  the Swift corruption table and path-traversal tests (full mode; in hack/test.sh they run
#               with the other Swift tests)
#
# The engine: the full suite builds and uses a release botrt-engine (a debug build is about 100 times
# slower at chunking and encrypting) unless BOTRT_REL_ENGINE_BIN names one; --fast uses BOTRT_ENGINE_BIN
# (hack/test.sh's debug build; else a debug build here) with smaller data.
#
# Environment: the services' variables (else hack/services.sh is
# started with the BOTRT_*_PORT variables and stopped on exit), BOTRT_REL_ENGINE_OUT (figures and logs,
# default .local/reliability/engine), BOTRT_REL_KILLS_LOCAL / BOTRT_REL_KILLS_S3 (run counts),
# BOTRT_REL_STREAM_GIB (default 10), BOTRT_REL_STREAM_BOUND_MIB (default 256), BOTRT_REL_SEED.
#
# BOTRT_REL_SMOKE=1 checks that a command line runs, not the promises' figures (hack/doc-blocks.sh reliability runs
# the documented commands so): the part "kills" unless BOTRT_REL_ENGINE_PARTS is set, at most one kill run per
# store, of 1 MiB, the smaller data of --fast, and BOTRT_ENGINE_BIN (the debug build) instead of a release build.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then
  export PATH="/opt/swift/usr/bin:$PATH"
fi

FAST=0
[[ "${1:-}" == "--fast" ]] && FAST=1
OUT="$(realpath -m "${BOTRT_REL_ENGINE_OUT:-$REPO/.local/reliability/engine}")"
mkdir -p "$OUT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/botrt-rel-engine.XXXXXX")"

if ((FAST)); then
  PARTS="${BOTRT_REL_ENGINE_PARTS:-kills faults kms canary objectlock}"
  KILLS_LOCAL="${BOTRT_REL_KILLS_LOCAL:-3}" KILLS_S3="${BOTRT_REL_KILLS_S3:-2}" KILL_MIB=10
  QUICK=(--quick)
else
  PARTS="${BOTRT_REL_ENGINE_PARTS:-corruption kills faults kms canary objectlock stream}"
  KILLS_LOCAL="${BOTRT_REL_KILLS_LOCAL:-50}" KILLS_S3="${BOTRT_REL_KILLS_S3:-50}" KILL_MIB=40
  QUICK=()
fi
SMOKE=0
if [[ "${BOTRT_REL_SMOKE:-0}" == 1 ]]; then
  SMOKE=1
  PARTS="${BOTRT_REL_ENGINE_PARTS:-kills}"
  ((KILLS_LOCAL <= 1)) || KILLS_LOCAL=1
  ((KILLS_S3 <= 1)) || KILLS_S3=1
  KILL_MIB=1
  QUICK=(--quick)
fi
SEED="${BOTRT_REL_SEED:-$(date +%s)}"

SERVICES_STARTED=0
RESULTS=()
PASSED=0
FAILED=0
START=$SECONDS
cleanup() {
  local rc=$?
  set +e
  if ((SERVICES_STARTED)); then bash hack/services.sh down >>"$OUT/services.log" 2>&1; fi
  rm -rf "$WORK"
  echo
  echo "=== engine reliability summary ($((SECONDS - START)) s, figures in $OUT)"
  local r
  for r in "${RESULTS[@]}"; do echo "  $r"; done
  echo "engine reliability: $PASSED passed, $FAILED failed"
  if ((FAILED && rc == 0)); then rc=1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The engine binary.
if ((FAST)); then
  if [[ -z "${BOTRT_ENGINE_BIN:-}" ]]; then
    swift build --product botrt-engine >"$OUT/build.log" 2>&1 || {
      echo "engine.sh: building botrt-engine failed, see $OUT/build.log"
      exit 1
    }
    BOTRT_ENGINE_BIN="$(swift build --show-bin-path)/botrt-engine"
  fi
elif [[ -n "${BOTRT_REL_ENGINE_BIN:-}" ]]; then
  BOTRT_ENGINE_BIN="$BOTRT_REL_ENGINE_BIN"
elif ((SMOKE)) && [[ -n "${BOTRT_ENGINE_BIN:-}" ]]; then
  echo "engine.sh: smoke run with the debug engine"
else
  echo "engine.sh: building a release botrt-engine (log: $OUT/build-release.log)"
  swift build -c release --product botrt-engine >"$OUT/build-release.log" 2>&1 || {
    echo "engine.sh: building botrt-engine failed, see $OUT/build-release.log"
    exit 1
  }
  BOTRT_ENGINE_BIN="$(swift build -c release --show-bin-path)/botrt-engine"
fi
export BOTRT_ENGINE_BIN
echo "engine.sh: botrt-engine is $BOTRT_ENGINE_BIN; parts: $PARTS; kills: $KILLS_LOCAL local, $KILLS_S3 S3 of $KILL_MIB MiB"
[[ -x "$BOTRT_ENGINE_BIN" ]] || {
  echo "engine.sh: BOTRT_ENGINE_BIN=$BOTRT_ENGINE_BIN is not executable"
  exit 1
}

# The services (moto S3/KMS, OpenBao): reuse the running ones, else start and later stop them.
if [[ -z "${BOTRT_S3_ENDPOINT:-}" || -z "${VAULT_ADDR:-}" ]]; then
  if ! bash hack/services.sh status >/dev/null 2>&1; then
    SERVICES_STARTED=1
    bash hack/services.sh up >"$OUT/services.log" 2>&1 || {
      echo "engine.sh: hack/services.sh up failed, see $OUT/services.log"
      exit 1
    }
  fi
  # shellcheck disable=SC1090
  source <(bash hack/services.sh env)
fi

# part NAME COMMAND...: runs one part with its log in $OUT/NAME.log.
part() {
  local name="$1" t0=$SECONDS rc=0
  shift
  echo
  echo "=== engine reliability: $name"
  "$@" 2>&1 | tee "$OUT/$name.log" || rc=$?
  if ((rc == 0)); then
    RESULTS+=("$(printf '%-12s ok    %4d s' "$name" $((SECONDS - t0)))")
    PASSED=$((PASSED + 1))
  else
    RESULTS+=("$(printf '%-12s FAIL  %4d s  exit %d, log %s' "$name" $((SECONDS - t0)) "$rc" "$OUT/$name.log")")
    FAILED=$((FAILED + 1))
  fi
}

PY=(python3 hack/reliability/engine.py)
for p in $PARTS; do
  case "$p" in
    kills)
      part kills "${PY[@]}" kills --local "$KILLS_LOCAL" --s3 "$KILLS_S3" --seed "$SEED" --mib "$KILL_MIB" \
        --work "$WORK" --out "$OUT/kills.json"
      ;;
    faults)
      if ((FAST || SMOKE)); then
        part faults "${PY[@]}" faults --quick --work "$WORK" --out "$OUT/faults.json"
      else
        part faults "${PY[@]}" faults --stall --work "$WORK" --out "$OUT/faults.json"
      fi
      ;;
    kms | canary | objectlock)
      part "$p" "${PY[@]}" "$p" "${QUICK[@]}" --work "$WORK" --out "$OUT/$p.json"
      ;;
    stream)
      part stream "${PY[@]}" stream --gib "${BOTRT_REL_STREAM_GIB:-10}" \
        --bound-mib "${BOTRT_REL_STREAM_BOUND_MIB:-256}" --work "$WORK" --out "$OUT/stream.json"
      ;;
    corruption)
      # The Swift tests need the test build; an up-to-date build returns at once.
      part corruption bash -c '
        set -euo pipefail
        swift build --build-tests -Xswiftc -warnings-as-errors >"$0/build-tests.log" 2>&1 ||
          { echo "swift build --build-tests failed, see $0/build-tests.log"; exit 1; }
        BOTRT_CORRUPTION_TABLE="$0/corruption-table.md" swift test --skip-build --no-parallel \
          --filter "CorruptionTableTests|CLIBadInputTests" 2>&1 | tee "$0/corruption-swift-test.log"
        echo; cat "$0/corruption-table.md"' "$OUT"
      ;;
    *)
      echo "engine.sh: unknown part $p"
      FAILED=$((FAILED + 1))
      ;;
  esac
done
