#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers of untrusted bytes (the engine's and the controller's) with libFuzzer
# (swiftc -sanitize=fuzzer).
#
#   hack/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s; every target of Fuzz/corpus)
#   hack/fuzz.sh --ci                               (the smoke run of hack/test.sh's fuzz step: every target for
#                                                    BOTRT_FUZZ_CI_SECONDS, default 8 s)
#
# Targets (Sources/botrt-fuzz): index tree framed packheader manifest config keyfile result watchframe wsframe
# kubeconfig cron duration; docs/testing.md says what each one parses.
#
# Builds Sources/botrt-fuzz with -sanitize=fuzzer,address into .build/fuzz (not part of the default build or test
# run: built normally, botrt-fuzz only replays files). Each target starts from its committed seed corpus in
# Fuzz/corpus/TARGET (copied, so new inputs stay in .build/fuzz/corpus), with a 64 MiB allocation limit (an input
# that makes a parser allocate more is a finding) and a 2 s per-input timeout. A crash, leak, timeout or oversized
# allocation fails the script and leaves the input in .build/fuzz/artifacts/TARGET; add it to the target's corpus
# once fixed (`swift test --filter FuzzCorpusTests` replays every committed input). Replay by hand with a normal
# build: .build/debug/botrt-fuzz TARGET Fuzz/corpus/TARGET.
#
# BOTRT_FUZZ_MAX_SECONDS caps the seconds per target of any run (hack/doc-blocks.sh fuzz runs docs/testing.md's
# fuzzing commands with 1).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then export PATH=/opt/swift/usr/bin:$PATH; fi
if [[ "${1:-}" == "--ci" ]]; then
  shift
  seconds=${BOTRT_FUZZ_CI_SECONDS:-8}
else
  seconds=${1:-60}
  shift || true
fi
if [[ -n "${BOTRT_FUZZ_MAX_SECONDS:-}" ]] && ((seconds > BOTRT_FUZZ_MAX_SECONDS)); then seconds=$BOTRT_FUZZ_MAX_SECONDS; fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for d in Fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi

t0=$SECONDS
build_log=.build/fuzz-build.log
mkdir -p .build
if ! swift build --build-path .build/fuzz --product botrt-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DBOTRT_FUZZ -Xswiftc -use-ld=lld >"$build_log" 2>&1; then
  grep -E "error:" "$build_log" | head -20 >&2 || true
  echo "fuzz build failed (log: $build_log)" >&2
  exit 1
fi
bin=.build/fuzz/debug/botrt-fuzz
echo "fuzz build: $((SECONDS - t0)) s"

status=0
for t in "${targets[@]}"; do
  [ -d Fuzz/corpus/"$t" ] || { echo "no corpus Fuzz/corpus/$t (unknown target?)" >&2; status=1; continue; }
  corpus=.build/fuzz/corpus/$t
  artifacts=.build/fuzz/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  cp -n Fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  log=.build/fuzz/$t.log
  echo "fuzz $t for ${seconds}s"
  if BOTRT_FUZZ_TARGET=$t "$bin" -max_total_time="$seconds" -malloc_limit_mb=64 -rss_limit_mb=1024 -timeout=2 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1; then
    echo "  ok: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') executions," \
      "$(find "$corpus" -type f | wc -l) corpus inputs"
  else
    status=1
    echo "  FAILED: see $log and $artifacts"
    grep -E "ERROR|==[0-9]+==|Fatal error|malloc\(|Test unit written" "$log" | head -8 || true
  fi
done
echo "fuzz: $((SECONDS - t0)) s in all"
if ((status != 0)); then
  echo "FUZZ FINDING: a target crashed, hung, leaked or allocated more than 64 MiB; the inputs are in" \
    ".build/fuzz/artifacts (fix the parser, add the input to Fuzz/corpus/TARGET with a unit test)" >&2
fi
exit $status
