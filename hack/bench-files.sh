#!/usr/bin/env bash
# Benchmarks botrt-engine against the current restic (0.19.x, hack/bench/restic-current.sh) on a million small files,
# the shape of a mail spool or an object cache (issue 18), in the same run (a script, not a test):
#
#   hack/bench-files.sh [ENGINE_BIN]        # FILES (default 1000000) files of 0.5-8 KiB in DIRS (1000) directories
#
# ENGINE_BIN defaults to $BOTRT_ENGINE_BIN or .build/release/botrt-engine. The tree is made by
# hack/bench/make-files.py in $BENCH_DIR (default /tmp/botrt-bench-files) and kept between runs. Measured for each
# tool, to local repositories on the same disk: the first backup, a no-change re-backup, a re-backup after 1 % of the
# files changed, a restore into tmpfs (/dev/shm), the peak RSS of each, and the index's memory per blob (the peak RSS
# of backing up one small file into the full repository, less the same into an empty one, over the blob count).
# Writes the table with ratios to docs/benchmarks.md (section files-bench) unless BENCH_OUT=/dev/null.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE="${1:-${BOTRT_ENGINE_BIN:-$REPO_ROOT/.build/release/botrt-engine}}"
FILES="${FILES:-1000000}"
DIRS="${DIRS:-1000}"
BENCH_DIR="${BENCH_DIR:-/tmp/botrt-bench-files}"
SHM="${BENCH_SHM:-/dev/shm/botrt-bench-files}"
OUT="${BENCH_OUT:-$REPO_ROOT/docs/benchmarks.md}"
DATA="$BENCH_DIR/data"
RESTIC="$("$REPO_ROOT/hack/bench/restic-current.sh")"
[[ -x "$ENGINE" ]] || { echo "botrt-engine not found at $ENGINE" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$BENCH_DIR"

# 1. The tree, made again when its shape changed or a change run left it modified.
if [[ "$(cat "$BENCH_DIR/.data-ok" 2>/dev/null)" != "$FILES/$DIRS" ]]; then
  rm -rf "$DATA" "$BENCH_DIR/.data-ok"
  python3 "$REPO_ROOT/hack/bench/make-files.py" "$DATA" --files "$FILES" --dirs "$DIRS"
  echo "$FILES/$DIRS" >"$BENCH_DIR/.data-ok"
fi
DATA_BYTES=$(du -sb --apparent-size "$DATA" | cut -f1)
echo "dataset: $FILES files, $DATA_BYTES bytes, $DIRS directories"
find "$DATA" -type f -print0 | xargs -0 cat >/dev/null   # into the page cache, for both tools alike

export RESTIC_PASSWORD=bench
head -c 32 /dev/urandom >"$BENCH_DIR/kek"
KMS="file://$BENCH_DIR/kek"
rm -rf "$BENCH_DIR/restic-repo" "$BENCH_DIR/botrt-repo" "$BENCH_DIR/restic-empty" "$BENCH_DIR/botrt-empty" "$SHM"
mkdir -p "$BENCH_DIR/one" && echo one >"$BENCH_DIR/one/file"

# run NAME CMD...: under /usr/bin/time -v; sets SECS (wall), CPU (user + system s) and RSS_KB; fails on a non-zero exit.
run() {
  local name="$1"
  shift
  sync
  if ! /usr/bin/time -v -o "$BENCH_DIR/$name.time" "$@" >"$BENCH_DIR/$name.out" 2>"$BENCH_DIR/$name.err"; then
    echo "$name failed:" >&2
    tail -n 5 "$BENCH_DIR/$name.err" >&2
    exit 1
  fi
  SECS=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$BENCH_DIR/$name.time")
  CPU=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$BENCH_DIR/$name.time")
  RSS_KB=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$BENCH_DIR/$name.time")
  echo "$name: ${SECS}s wall, ${CPU}s CPU, peak RSS ${RSS_KB} KB"
  declare -g "${name//-/_}_S=$SECS" "${name//-/_}_CPU=$CPU" "${name//-/_}_RSS=$RSS_KB"
}

"$RESTIC" init --repo "$BENCH_DIR/restic-repo" >/dev/null
"$RESTIC" init --repo "$BENCH_DIR/restic-empty" >/dev/null
"$ENGINE" init --repo "file://$BENCH_DIR/botrt-repo" --kms "$KMS" --quiet >/dev/null 2>&1
"$ENGINE" init --repo "file://$BENCH_DIR/botrt-empty" --kms "$KMS" --quiet >/dev/null 2>&1

# 2. First backup, no-change re-backup: restic, then botrt-engine.
run r-backup "$RESTIC" --quiet --repo "$BENCH_DIR/restic-repo" backup "$DATA"
run b-backup "$ENGINE" backup --quiet --kms "$KMS" --repo "file://$BENCH_DIR/botrt-repo" "$DATA"
run r-nochange "$RESTIC" --quiet --repo "$BENCH_DIR/restic-repo" backup "$DATA"
run b-nochange "$ENGINE" backup --quiet --kms "$KMS" --repo "file://$BENCH_DIR/botrt-repo" "$DATA"
# 3. 1 % of the files change; both back up again.
python3 "$REPO_ROOT/hack/bench/make-files.py" "$DATA" --files "$FILES" --dirs "$DIRS" --change 1
rm -f "$BENCH_DIR/.data-ok" # the tree is no longer the pristine one
run r-changed "$RESTIC" --quiet --repo "$BENCH_DIR/restic-repo" backup "$DATA"
run b-changed "$ENGINE" backup --quiet --kms "$KMS" --repo "file://$BENCH_DIR/botrt-repo" "$DATA"
# 4. Restore into tmpfs, each tree deleted before the other tool's restore.
run r-restore "$RESTIC" --quiet --repo "$BENCH_DIR/restic-repo" restore latest --target "$SHM/restic"
R_RESTORED=$(find "$SHM/restic" -type f | wc -l)
rm -rf "$SHM/restic"
run b-restore "$ENGINE" restore --quiet --kms "$KMS" --repo "file://$BENCH_DIR/botrt-repo" latest --target "$SHM/botrt"
B_RESTORED=$(find "$SHM/botrt" -type f | wc -l)
rm -rf "$SHM"
((R_RESTORED == FILES && B_RESTORED == FILES)) ||
  { echo "restored $R_RESTORED (restic) and $B_RESTORED (botrt-engine) files, not $FILES" >&2; exit 1; }
# 5. The index's memory: one small file into the full repository, and into an empty one.
run r-one-full "$RESTIC" --quiet --repo "$BENCH_DIR/restic-repo" backup "$BENCH_DIR/one"
run r-one-empty "$RESTIC" --quiet --repo "$BENCH_DIR/restic-empty" backup "$BENCH_DIR/one"
run b-one-full "$ENGINE" backup --quiet --kms "$KMS" --repo "file://$BENCH_DIR/botrt-repo" "$BENCH_DIR/one"
run b-one-empty "$ENGINE" backup --quiet --kms "$KMS" --repo "file://$BENCH_DIR/botrt-empty" "$BENCH_DIR/one"
R_BLOBS=$("$RESTIC" --repo "$BENCH_DIR/restic-repo" --quiet stats --mode raw-data --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["total_blob_count"])')
B_BLOBS=$("$ENGINE" stats --repo "file://$BENCH_DIR/botrt-repo" --kms "$KMS" --quiet --json |
  python3 -c 'import json,sys
r = json.loads(sys.stdin.read().splitlines()[0])  # read everything: the engine must not hit a closed pipe
print(r["uniqueDataBlobs"] + r["uniqueTreeBlobs"])')
R_SIZE=$(du -sb "$BENCH_DIR/restic-repo" | cut -f1)
B_SIZE=$(du -sb "$BENCH_DIR/botrt-repo" | cut -f1)
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
per_blob() { awk -v f="$1" -v e="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.0f", (f - e) * 1024 / n; else print "n/a" }'; }
row() { # LABEL NAME: time, CPU and peak RSS of restic and botrt-engine, the time ratio
  local r="r_$2" b="b_$2"
  local rs="${r}_S" rc="${r}_CPU" rr="${r}_RSS" bs="${b}_S" bc="${b}_CPU" br="${b}_RSS"
  echo "| $1 | ${!rs} s, CPU ${!rc} s, $(( ${!rr} / 1024 )) MiB | ${!bs} s, CPU ${!bc} s, $(( ${!br} / 1024 )) MiB | time x$(ratio "${!bs}" "${!rs}"); RSS x$(ratio "${!br}" "${!rr}") | ≤ 0.5x time, ≤ 1x RSS |"
}
TABLE=$(cat <<TBL
## Engine: a million small files, botrt-engine vs restic $("$RESTIC" version | awk '{print $2}') (same data, same run)

Dataset: $FILES files of 0.5 to 8 KiB ($((DATA_BYTES / 1000000)) MB) in $DIRS directories, made by
\`hack/bench/make-files.py\`; local repositories on the same disk; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ).
Produced by \`hack/bench-files.sh\`. Load average before: $LOAD_BEFORE; after: $LOAD_AFTER.

| | restic | botrt-engine | botrt/restic | target |
|---|---|---|---|---|
$(row "first backup" backup)
$(row "no-change re-backup" nochange)
$(row "re-backup after 1 % changed" changed)
$(row "restore to tmpfs" restore)
| repository size | $((R_SIZE / 1000000)) MB | $((B_SIZE / 1000000)) MB | x$(ratio "$B_SIZE" "$R_SIZE") | |
| index memory per blob (one file into the full repository, less into an empty one) | $(per_blob "$r_one_full_RSS" "$r_one_empty_RSS" "$R_BLOBS") bytes ($R_BLOBS blobs) | $(per_blob "$b_one_full_RSS" "$b_one_empty_RSS" "$B_BLOBS") bytes ($B_BLOBS blobs) | | |
TBL
)
echo "$TABLE"
[[ "$OUT" == /dev/null ]] && exit 0
python3 "$REPO_ROOT/hack/bench/write-section.py" "$OUT" files-bench "$TABLE"
echo "wrote $OUT"
