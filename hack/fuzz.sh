#!/usr/bin/env bash
# Coverage-guided fuzzing of the engine's parsers of untrusted bytes with libFuzzer (swiftc -sanitize=fuzzer).
#
#   hack/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s; targets: index tree framed packheader)
#
# Builds Sources/botrt-fuzz with -sanitize=fuzzer,address into .build/fuzz (not part of the default build or test
# run: built normally, botrt-fuzz only replays files). Each target starts from its committed seed corpus in
# Fuzz/corpus/TARGET (copied, so new inputs stay in .build/fuzz/corpus), with a 64 MiB allocation limit (an input
# that makes a parser allocate more is a finding) and a 2 s per-input timeout. A crash, leak, timeout or oversized
# allocation fails the script and leaves the input in .build/fuzz/artifacts/TARGET; add it to the target's corpus
# once fixed. Replay the committed corpus with a normal build: .build/debug/botrt-fuzz TARGET Fuzz/corpus/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(index tree framed packheader)

swift build --build-path .build/fuzz --product botrt-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DBOTRT_FUZZ -Xswiftc -use-ld=lld 2>&1 | grep -v "^\[" || true
[ -x .build/fuzz/debug/botrt-fuzz ] || { echo "fuzz build failed" >&2; exit 1; }
bin=.build/fuzz/debug/botrt-fuzz

status=0
for t in "${targets[@]}"; do
  corpus=.build/fuzz/corpus/$t
  artifacts=.build/fuzz/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  cp -n Fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  log=.build/fuzz/$t.log
  echo "fuzz $t for ${seconds}s"
  if BOTRT_FUZZ_TARGET=$t "$bin" -max_total_time="$seconds" -malloc_limit_mb=64 -rss_limit_mb=1024 -timeout=2 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1; then
    echo "  ok: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') executions," \
      "$(ls "$corpus" | wc -l) corpus inputs"
  else
    status=1
    echo "  FAILED: see $log and $artifacts"
    grep -E "ERROR|==[0-9]+==|Fatal error|malloc\(" "$log" | head -5 || true
  fi
done
exit $status
