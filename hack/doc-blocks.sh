#!/usr/bin/env bash
# Runs the shell blocks of the docs that hack/install-test.sh does not, each marked
# `<!-- doc-test: ci hack/doc-blocks.sh NAME -->` (Tests/DRAPITests/DocCommandsTests.swift checks the markers). The
# commands are read from the doc when this runs, so an edit of the doc is what gets tested; a block may have a few
# values filled in (a registry address, a build directory), and each such substitution must still match the block or
# the run fails. Long runs are run with the small counts their own scripts take (a smoke run: it checks that the
# documented command works and prints what it should, not its figures).
#
#   hack/doc-blocks.sh GROUP...
#
# Groups (hack/test.sh runs `select private-ports bench fuzz reliability` after swift-test, and `registry` after hack/images.sh):
#   select         docs/repository-format.md: the file-selection examples, against a scratch repository
#   private-ports  docs/testing.md: a second control plane and service set on private ports (a test suite against
#                  them), and the `stop-apiserver`/`start-apiserver` pair on that control plane
#   bench          docs/benchmarks.md: hack/bench-kube.sh with BOTRT_BENCH_SMOKE=1 (200 objects, the debug build)
#   fuzz           docs/testing.md: the fuzzing commands with BOTRT_FUZZ_MAX_SECONDS=1
#   reliability    docs/reliability.md, docs/reliability-engine.md: hack/reliability.sh and hack/reliability/engine.sh
#                  as smoke runs (small load, BOTRT_REL_SMOKE=1)
#   registry       README.md: podman build and push, to a local distribution registry (Debian's docker-registry);
#                  after hack/images.sh, whose podman store and prebuilt products it uses
#
# Environment: BOTRT_SCRATCH_PATH (the build of hack/test.sh, default .build; nothing is rebuilt).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then export PATH="/opt/swift/usr/bin:$PATH"; fi
SCRATCH="${BOTRT_SCRATCH_PATH:-.build}"
export USER="${USER:-$(id -un)}"
WORK="$(mktemp -d)"
CLEANUP=()
cleanup() {
  local c
  for c in "${CLEANUP[@]}"; do eval "$c" || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "doc-blocks: $*" >&2; }
die() {
  echo "doc-blocks: error: $*" >&2
  exit 1
}

# doc_block NAME [FROM TO]...: the body of the ```sh block after `<!-- doc-test: ci hack/doc-blocks.sh NAME -->`
# (exactly one in README.md and docs/*.md), with each FROM replaced by TO (FROM must occur in it).
doc_block() {
  python3 - "$@" <<'PY'
import glob, re, sys
name, subs = sys.argv[1], sys.argv[2:]
marker = f"<!-- doc-test: ci hack/doc-blocks.sh {name} -->"
found = []
for path in ["README.md"] + sorted(glob.glob("docs/*.md")):
    text = open(path).read()
    found += [(path, b) for b in re.findall(re.escape(marker) + r"\n[ \t]*```(?:sh|bash)\n(.*?)\n[ \t]*```", text, re.S)]
if len(found) != 1:
    sys.exit(f"doc-blocks: {len(found)} blocks are marked {marker}, not one")
path, body = found[0]
for old, new in zip(subs[::2], subs[1::2]):
    if old not in body:
        sys.exit(f"doc-blocks: {path}: the block marked {name} no longer contains {old!r}")
    body = body.replace(old, new)
print(f"# {path}, the block marked {name}")
print(body)
PY
}

# run_script NAME FILE: runs FILE with bash (errexit, pipefail), its output shown and kept in $WORK/NAME.out.
run_script() {
  local name="$1" file="$2" t0=$SECONDS rc=0
  log "$name: running"
  sed 's/^/  | /' "$file" >&2
  bash -eo pipefail "$file" 2>&1 | tee "$WORK/$name.out" || rc=$?
  ((rc == 0)) || die "$name: the commands failed (exit $rc)"
  log "$name: ok in $((SECONDS - t0)) s"
}
# expect NAME REGEX...: every REGEX matches a line of NAME's output.
expect() {
  local name="$1" re
  shift
  for re in "$@"; do
    grep -Eq -- "$re" "$WORK/$name.out" || die "$name: no line of the output matches /$re/"
  done
}

group_select() {
  # botrt-engine as the doc calls it: the build's.
  local bin
  bin="$(swift build --scratch-path "$SCRATCH" --show-bin-path)"
  {
    echo "export PATH=$(printf %q "$bin"):\$PATH"
    doc_block select
  } >"$WORK/select.sh"
  # (its scratch directory, made with mktemp, is under $WORK)
  TMPDIR="$WORK" run_script select "$WORK/select.sh"
  # Files backed up and left out by each backup: app (main.conf; run.tmp and cache/blob out), home (alice/notes;
  # bob and alice/old.bak out), the list (a.wal, b.wal); `ls latest` shows the last one's files and not `db`.
  python3 - "$WORK/select.out" <<'PY' || die "select: the backups did not keep and leave out what the doc says"
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"') and '"command":"backup"' in l]
got = [(r["files"], r.get("excluded")) for r in runs]
print("select: (files, excluded) of the backups:", got)
sys.exit(0 if got == [(1, 2), (1, 2), (2, 0)] else 1)
PY
  expect select '^/a\.wal$' '^/b\.wal$'
  ! grep -Eq '(^|/)db$' "$WORK/select.out" || die "select: db was backed up though it is not in the list"
}

group_private_ports() {
  # The restart pair runs on the private control plane, before its `down`: the apiserver goes (a request fails),
  # comes back on the same data (an object made before is still there).
  local pair
  pair="$(doc_block apiserver-restart | grep -v '^#')"
  [[ "$(grep -c . <<<"$pair")" == 2 ]] || die "apiserver-restart: expected two commands, got: $pair"
  {
    echo 'kubectl create configmap doc-blocks-restart -n default --from-literal=k=v >/dev/null'
    sed -n 1p <<<"$pair"
    echo 'if kubectl get --request-timeout=3s namespaces >/dev/null 2>&1; then echo "the apiserver still answers" >&2; exit 1; fi'
    echo 'echo "apiserver down"'
    sed -n 2p <<<"$pair"
    echo 'kubectl get configmap doc-blocks-restart -n default -o jsonpath="restarted, kept {.data.k}{\"\n\"}"'
  } >"$WORK/restart.sh"
  {
    # Whatever happens, what the block started is stopped (its state dirs are in the environment it exported).
    echo 'trap '\''set +e; hack/services.sh down >/dev/null 2>&1; hack/cluster.sh down >/dev/null 2>&1'\'' EXIT'
    doc_block private-ports \
      'swift test --scratch-path .build-$USER' "swift test --skip-build --scratch-path $(printf %q "$SCRATCH")" \
      'swift build --scratch-path .build-$USER' "swift build --scratch-path $(printf %q "$SCRATCH")" \
      'hack/services.sh down && hack/cluster.sh down' \
      "source $WORK/restart.sh
echo \"private ports: \$BOTRT_APISERVER_URL \$BOTRT_S3_ENDPOINT \$VAULT_ADDR\"
hack/services.sh down && hack/cluster.sh down"
  } >"$WORK/private-ports.sh"
  # Also when this script is stopped (a timeout): the block's exports (its lines before `hack/cluster.sh up`), then down.
  doc_block private-ports | sed '/^hack\/cluster.sh up/,$d' >"$WORK/private-ports-env.sh"
  CLEANUP+=("bash -c 'source $WORK/private-ports-env.sh; hack/services.sh down; hack/cluster.sh down' >/dev/null 2>&1")
  run_script private-ports "$WORK/private-ports.sh"
  # The suite passed against the private services, and they were on the documented ports.
  expect private-ports '^✔ Test run with [0-9]+ tests? .*passed' 'apiserver down' 'restarted, kept v' \
    '^private ports: https://127\.0\.0\.1:16443 http://127\.0\.0\.1:25000 http://127\.0\.0\.1:28200$'
}

group_bench() {
  doc_block bench-kube >"$WORK/bench.sh"
  BOTRT_BENCH_SMOKE=1 BOTRT_BENCH_OBJECTS=200 run_script bench "$WORK/bench.sh"
  expect bench '^objects=200$' '^listall_objs_per_s=[0-9]*[1-9]' '^decode_stripped_objs_per_s=[0-9]*[1-9]' \
    '^rss_stripped_cache_delta_kib=[0-9]+$'
}

group_fuzz() {
  doc_block fuzz >"$WORK/fuzz.sh"
  BOTRT_FUZZ_MAX_SECONDS=1 run_script fuzz "$WORK/fuzz.sh"
  # Three runs of the fuzzer (every target, two targets, every target), each target with some executions.
  [[ "$(grep -c '^fuzz: .* in all$' "$WORK/fuzz.out")" == 3 ]] || die "fuzz: expected three fuzzing runs"
  [[ "$(grep -cE '^  ok: [0-9]+ executions' "$WORK/fuzz.out")" -ge 26 ]] || die "fuzz: fewer than 26 target runs"
}

group_reliability() {
  # Smoke runs with the scripts' own knobs: the build of hack/test.sh's step 3, no fault tests (the swift-test step
  # runs them with small counts), a load of 5 policies and 2 drills, 2 s at rest, the engine half with BOTRT_REL_SMOKE=1.
  doc_block reliability >"$WORK/reliability.sh"
  doc_block reliability-engine >"$WORK/reliability-engine.sh"
  local bin
  bin="$(swift build --scratch-path "$SCRATCH" --show-bin-path)"
  BOTRT_SKIP_BUILD=1 BOTRT_SCRATCH_PATH="$SCRATCH" BOTRT_RELIABILITY_FAULTS=0 BOTRT_LOAD_POLICIES=5 \
    BOTRT_LOAD_DRILLS=2 BOTRT_LOAD_STEADY_SECONDS=2 BOTRT_REL_SMOKE=1 BOTRT_RELIABILITY_OUT="$WORK/reliability" \
    run_script reliability "$WORK/reliability.sh"
  [[ "$(grep -c '^hack/reliability.sh: all parts passed$' "$WORK/reliability.out")" == 2 ]] ||
    die "reliability: expected two runs of hack/reliability.sh that passed"
  expect reliability '^  engine +ok' '^  controller +ok' '^reliability: load_all_ready_seconds=[0-9]' 'engine reliability: [1-9][0-9]* passed, 0 failed'
  BOTRT_ENGINE_BIN="$bin/botrt-engine" BOTRT_REL_SMOKE=1 BOTRT_REL_ENGINE_OUT="$WORK/reliability-engine" \
    run_script reliability-engine "$WORK/reliability-engine.sh"
  [[ "$(grep -cE '^engine reliability: [1-9][0-9]* passed, 0 failed$' "$WORK/reliability-engine.out")" == 3 ]] ||
    die "reliability-engine: expected three runs of hack/reliability/engine.sh that passed"
}

group_registry() {
  command -v docker-registry >/dev/null || die "docker-registry is missing; run hack/install-deps.sh"
  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  mkdir -p "$WORK/registry"
  cat >"$WORK/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$port
log:
  level: warn
EOF
  docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
  local pid=$!
  CLEANUP+=("kill $pid; wait $pid 2>/dev/null")
  for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null || die "the registry did not start: $(cat "$WORK/registry.log")"
  # podman as hack/images.sh runs it (its store, runc), and what this machine needs: the Containerfiles' toolchain
  # image cannot be pulled here, so the build stage is the products hack/images.sh built (PRODUCTS=prebuilt);
  # the local registry speaks plain HTTP.
  local cache="${BOTRT_CACHE_DIR:-$HOME/.cache/botrt}"
  [[ -f "$cache/podman/containers.conf" && -f .local/images/products/botrt-engine ]] ||
    die "run hack/images.sh first (no podman store in $cache/podman or no products in .local/images/products)"
  cat >"$WORK/podman.sh" <<EOF
podman() {
  local sub="\$1"
  shift
  local extra=()
  case "\$sub" in
    build) extra=(--pull=never --network=host --build-arg PRODUCTS=prebuilt) ;;
    push) extra=(--tls-verify=false) ;;
  esac
  CONTAINERS_CONF=$cache/podman/containers.conf command podman --root $cache/podman/root \\
    --runroot /run/botrt-podman --storage-driver overlay --cgroup-manager cgroupfs "\$sub" "\${extra[@]}" "\$@"
}
EOF
  {
    echo "source $WORK/podman.sh"
    doc_block registry 'REG=registry.example.com/botrt' "REG=127.0.0.1:$port/botrt"
  } >"$WORK/registry.sh"
  exec 9>"$cache/podman/lock"
  flock -w 1800 9 || die "timed out waiting for hack/images.sh"
  run_script registry "$WORK/registry.sh"
  # The registry serves both manifests, and their config is the image podman built.
  local img tag id digest
  tag="$(sed -n 's/^REG=[^ ]* TAG=\([^ ]*\).*/\1/p' "$WORK/registry.sh")"
  [[ -n "$tag" ]] || die "registry: found no TAG= in the block"
  for img in botrt-controller botrt-engine; do
    curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
      -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://127.0.0.1:$port/v2/botrt/$img/manifests/$tag" >"$WORK/$img.manifest" ||
      die "registry: no manifest for botrt/$img:$tag"
    digest="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["config"]["digest"])' "$WORK/$img.manifest")"
    id="$(bash -c "source $WORK/podman.sh; podman image inspect --format '{{.Id}}' 127.0.0.1:$port/botrt/$img:$tag")"
    [[ "$digest" == "sha256:$id" ]] || die "registry: botrt/$img:$tag has config $digest, podman built sha256:$id"
    log "registry: botrt/$img:$tag is in the registry (config $digest)"
    bash -c "source $WORK/podman.sh; podman rmi 127.0.0.1:$port/botrt/$img:$tag" >/dev/null
  done
}

(($#)) || die "usage: hack/doc-blocks.sh GROUP... (select private-ports bench fuzz registry)"
for g in "$@"; do
  case "$g" in
    select) group_select ;;
    private-ports) group_private_ports ;;
    bench) group_bench ;;
    fuzz) group_fuzz ;;
    reliability) group_reliability ;;
    registry) group_registry ;;
    *) die "unknown group $g" ;;
  esac
done
log "ok: $*"
