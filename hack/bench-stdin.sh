#!/usr/bin/env bash
# Streams a large generated input through `botrt-engine backup --stdin` and records its RSS over time
# (a script, not a test): the memory of a stdin backup must stay flat however long the stream is.
#
#   hack/bench-stdin.sh [ENGINE_BIN]
#
# BENCH_STDIN_GB (default 10) gigabytes are piped into a backup to a local repository under $BENCH_DIR
# (default /tmp/botrt-bench-stdin). BENCH_STDIN_DATA=counter (default) streams consecutive 12-digit numbers, one
# per line: no two chunks are equal, so every byte goes through chunking, hashing, compression, encryption and
# storage, but it compresses about 30x, so the repository stays well under 1 GB on a shared disk.
# BENCH_STDIN_DATA=random streams an AES-CTR keystream (incompressible: the repository is as big as the stream;
# the script refuses to start without that much free space plus 5 GB). VmRSS is sampled every second; the
# script prints the samples' summary and writes them to $BENCH_DIR/rss.tsv. Then it restores the stream with
# --stdout and checks it against the input's SHA-256.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE="${1:-${BOTRT_ENGINE_BIN:-$REPO_ROOT/.build/release/botrt-engine}}"
BENCH_DIR="${BENCH_DIR:-/tmp/botrt-bench-stdin}"
GB="${BENCH_STDIN_GB:-10}"
[[ -x "$ENGINE" ]] || { echo "botrt-engine not found at $ENGINE" >&2; exit 1; }

rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
head -c 32 /dev/urandom >"$BENCH_DIR/kek"
KMS="file://$BENCH_DIR/kek"
REPO="file://$BENCH_DIR/repo"
"$ENGINE" init --repo "$REPO" --kms "$KMS" --quiet >/dev/null

KIND="${BENCH_STDIN_DATA:-counter}"
free_gb=$(($(df -Pk "$BENCH_DIR" | awk 'NR == 2 { print $4 }') >> 20))
[[ "$KIND" == random ]] && need=$((GB + 5)) || need=$((GB / 10 + 2))
((free_gb >= need)) || { echo "only ${free_gb} GB free under $BENCH_DIR; $KIND data needs ${need} GB" >&2; exit 1; }
if [[ "$KIND" == random ]]; then
  gen() { openssl enc -aes-128-ctr -nosalt -pass pass:botrt-bench-stdin </dev/zero 2>/dev/null | head -c "$((GB << 30))"; }
else
  gen() { seq 100000000000 999999999999 | head -c "$((GB << 30))"; }
fi

# sample PID FILE: appends "seconds rss_kib" every second while PID lives.
sample() {
  local pid=$1 out=$2 t=0
  while kill -0 "$pid" 2>/dev/null; do
    awk -v t="$t" '/^VmRSS/ { print t "\t" $2 }' "/proc/$pid/status" 2>/dev/null >>"$out" || true
    sleep 1
    t=$((t + 1))
  done
}

echo "load before: $(uptime)"
start=$(date +%s)
: >"$BENCH_DIR/rss.tsv"
gen | tee >(sha256sum >"$BENCH_DIR/input.sha256") |
  "$ENGINE" backup --repo "$REPO" --kms "$KMS" --quiet --stdin --stdin-name stream.bin \
    --result-file "$BENCH_DIR/backup.json" >/dev/null &
BPID=$!
# The engine is the last process of the pipeline: find it by its parent shell's job.
sleep 1
EPID=$(pgrep -n -f "^$ENGINE backup --repo $REPO" || true)
[[ -n "$EPID" ]] || { echo "cannot find the engine process" >&2; exit 1; }
sample "$EPID" "$BENCH_DIR/rss.tsv" &
SPID=$!
# The pipeline's status includes openssl's SIGPIPE when head stops reading: judge the engine by its result.
wait "$BPID" || true
wait "$SPID" || true
grep -q '"ok":true' "$BENCH_DIR/backup.json" || { echo "backup failed: $(cat "$BENCH_DIR/backup.json")" >&2; exit 1; }
secs=$(($(date +%s) - start))
echo "load after: $(uptime)"

python3 - "$BENCH_DIR/rss.tsv" "$GB" "$secs" "$KIND" <<'PY'
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
gb, secs = int(sys.argv[2]), int(sys.argv[3])
rss = [r for _, r in rows]
n = len(rss)
def mib(k): return k / 1024
warm = rss[min(10, n - 1):]  # after the first 10 s
q = sorted(warm)
print(f"stream {gb} GiB ({sys.argv[4]} data) in {secs} s ({gb * 1024 / max(secs, 1):.0f} MiB/s), {n} RSS samples")
print(f"RSS MiB: first 10 s max {mib(max(rss[:10])):.0f}; after 10 s min {mib(q[0]):.0f}, "
      f"median {mib(q[len(q)//2]):.0f}, p95 {mib(q[int(len(q)*0.95)]):.0f}, max {mib(q[-1]):.0f}")
for part in range(4):
    seg = warm[part * len(warm) // 4:(part + 1) * len(warm) // 4] or [0]
    print(f"  quarter {part + 1}: max {mib(max(seg)):.0f} MiB, mean {mib(sum(seg) / len(seg)):.0f} MiB")
PY
echo "repository: $(du -sh "$BENCH_DIR/repo" | cut -f1)"
# Restore the stream and compare hashes.
/usr/bin/time -f "restore --stdout: %e s wall, %U+%S s CPU, peak RSS %M KiB" \
  "$ENGINE" restore latest --repo "$REPO" --kms "$KMS" --quiet --stdout 2>"$BENCH_DIR/restore.time" |
  sha256sum >"$BENCH_DIR/output.sha256"
cat "$BENCH_DIR/restore.time"
if cmp -s <(cut -d' ' -f1 "$BENCH_DIR/input.sha256") <(cut -d' ' -f1 "$BENCH_DIR/output.sha256"); then
  echo "restored stream matches the input (sha256)"
else
  echo "RESTORED STREAM DIFFERS" >&2
  exit 1
fi
[[ -n "${BENCH_KEEP:-}" ]] || rm -rf "$BENCH_DIR/repo"
