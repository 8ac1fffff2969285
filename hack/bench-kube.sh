#!/usr/bin/env bash
# Issue 2's client benchmark: decode throughput of a list of 10,000 ConfigMaps from the local apiserver,
# and the RSS growth of a process that caches them (with and without metadata.managedFields).
#
#   hack/bench-kube.sh            uses the running cluster of `hack/cluster.sh env`, or starts one
#
# Env: BOTRT_BENCH_OBJECTS (default 10000), BOTRT_BENCH_SCRATCH (SwiftPM scratch path, default .build-bench).
# It runs the ClientBenchmark test of Tests/KubeIntegrationTests in a release build; the test creates its own
# namespace, prints one "BENCH key=value ..." line and deletes the namespace.
#
# BOTRT_BENCH_SMOKE=1 checks that the benchmark runs, not its figures (hack/doc-blocks.sh bench): the debug build
# already made in BOTRT_SCRATCH_PATH (default .build) with `--skip-build`, and BOTRT_BENCH_OBJECTS 200 unless set.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if [[ -z "${KUBECONFIG:-}" ]]; then
  if ! hack/cluster.sh env >/dev/null 2>&1; then
    hack/cluster.sh up
  fi
  # shellcheck disable=SC1090
  source <(hack/cluster.sh env)
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
if [[ "${BOTRT_BENCH_SMOKE:-0}" == 1 ]]; then
  export BOTRT_BENCH_OBJECTS="${BOTRT_BENCH_OBJECTS:-200}"
  build=(--skip-build --scratch-path "${BOTRT_SCRATCH_PATH:-.build}")
else
  build=(-c release -Xswiftc -enable-testing --scratch-path "${BOTRT_BENCH_SCRATCH:-.build-bench}")
fi
echo "bench-kube: $(nproc) cores, $(uname -r), objects=${BOTRT_BENCH_OBJECTS:-10000}, apiserver from $KUBECONFIG" >&2
BOTRT_BENCH=1 BOTRT_BENCH_OUT="$out" swift test "${build[@]}" --filter ClientBenchmark >&2
[[ -s "$out" ]] || {
  echo "bench-kube: error: the benchmark wrote no result (see the test output above)" >&2
  exit 1
}
tr ' ' '\n' <"$out" | sed 1d
