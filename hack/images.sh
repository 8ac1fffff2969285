#!/usr/bin/env bash
# Builds the images the local node runs, from the repository's own recipes and without any registry, and saves each
# as an OCI archive that hack/cluster.sh imports into the node's containerd:
#
#   botrt.local/pause:1.20.2         Kubernetes' pause (build/pause of the source tree), the pods' sandbox
#   debian:bookworm-slim             the Containerfiles' base: a Debian bookworm minbase from mmdebstrap (cached)
#   botrt.local/botrt-engine:dev     images/engine/Containerfile, PRODUCTS=prebuilt (botrt-engine and, beside it,
#                                    botrt-objects)
#   botrt.local/botrt-controller:dev images/controller/Containerfile, PRODUCTS=prebuilt
#   botrt.local/postgres:15          hack/images/postgres/Containerfile: Debian's PostgreSQL on the same base, the
#                                    stand-in for a stock database image (no libcurl, libyaml or zstd of its own)
#
# The products are built on the host with `swift build -c release --static-swift-stdlib` (the toolchain image the
# Containerfiles' `build` stage uses cannot be pulled here); every other step of the recipes runs as written, with
# podman (runc; crun fails on this machine's hybrid cgroups) and the Debian mirror the host's apt uses.
#
#   hack/images.sh            build what changed, write $BOTRT_IMAGES_DIR/*.oci.tar (default <repo>/.local/images)
#
# Environment: BOTRT_CACHE_DIR (~/.cache/botrt: base rootfs, podman's layer store), BOTRT_IMAGES_SCRATCH (the release
# build's scratch path, default <repo>/.build-images).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
K8S_VERSION=1.20.2
CACHE="${BOTRT_CACHE_DIR:-$HOME/.cache/botrt}"
OUT="$(realpath -m "${BOTRT_IMAGES_DIR:-$REPO/.local/images}")"
SCRATCH="$(realpath -m "${BOTRT_IMAGES_SCRATCH:-$REPO/.build-images}")"
TAG=dev
log() { echo "images: $*" >&2; }
die() {
  echo "images: error: $*" >&2
  exit 1
}

if ! command -v swift >/dev/null && [[ -x /opt/swift/usr/bin/swift ]]; then export PATH="/opt/swift/usr/bin:$PATH"; fi
for tool in podman mmdebstrap swift gcc; do command -v "$tool" >/dev/null || die "$tool is missing; run hack/install-deps.sh"; done
PAUSE_C="$CACHE/src/kubernetes-$K8S_VERSION/build/pause/linux/pause.c"
[[ -f "$PAUSE_C" ]] || die "$PAUSE_C is missing; hack/cluster.sh build unpacks the Kubernetes source"

# podman with its own store (layers cached between runs), cgroupfs and runc.
PM_DIR="$CACHE/podman"
mkdir -p "$PM_DIR" "$OUT"
cat >"$PM_DIR/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
events_logfile_path = "$PM_DIR/events.log"
[containers]
netns = "host"
EOF
pm() {
  CONTAINERS_CONF="$PM_DIR/containers.conf" podman --root "$PM_DIR/root" --runroot "/run/botrt-podman" \
    --storage-driver overlay --cgroup-manager cgroupfs "$@"
}
# One build at a time on a machine (the store is shared between checkouts).
exec 9>"$PM_DIR/lock"
flock -w 1800 9 || die "timed out waiting for another hack/images.sh"

have_image() { pm image exists "$1"; }

# 1. Bases: pause, and the Debian minbase as debian:bookworm-slim (mmdebstrap once, about 40 s).
if ! have_image "botrt.local/pause:$K8S_VERSION"; then
  # Kubernetes' own pause, static, so that it runs on an empty root.
  d="$(mktemp -d)"
  gcc -Os -static -DVERSION="$K8S_VERSION-botrt" -o "$d/pause" "$PAUSE_C"
  strip "$d/pause"
  tar -C "$d" -cf "$d/pause.tar" pause
  pm import --change 'ENTRYPOINT ["/pause"]' "$d/pause.tar" "botrt.local/pause:$K8S_VERSION" >/dev/null
  rm -rf "$d"
fi
BASE_TAR="$CACHE/images-base/debian-bookworm.tar"
if [[ ! -f "$BASE_TAR" ]]; then
  mkdir -p "$(dirname "$BASE_TAR")"
  # The mirror the host's apt uses (no host is written in this repository).
  mirror="$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2; exit}' || true)"
  [[ -n "$mirror" ]] || mirror="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
  [[ -n "$mirror" ]] || die "found no Debian mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
  log "building the Debian bookworm base with mmdebstrap (about 40 s)"
  mmdebstrap --quiet --variant=minbase --format=tar bookworm "$BASE_TAR.partial" "deb $mirror bookworm main"
  mv "$BASE_TAR.partial" "$BASE_TAR"
fi
if ! have_image localhost/debian:bookworm-slim; then
  pm import --change 'CMD ["/bin/bash"]' "$BASE_TAR" debian:bookworm-slim >/dev/null
fi

# 2. The products, release and with Swift's runtime linked in, as the Containerfiles' build stage makes them.
log "building botrt-engine, botrt-objects and botrt-controller (release, --static-swift-stdlib) in $SCRATCH"
swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --product botrt-engine
swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --product botrt-objects
swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --product botrt-controller
bin="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)"
mkdir -p .local/images/products
install -m 0755 "$bin/botrt-engine" "$bin/botrt-objects" "$bin/botrt-controller" .local/images/products/

# 3. The recipes. --network=host: their RUN steps install Debian's packages from the mirror.
build() { # TAG FILE [ARGS]
  local tag="$1" file="$2"
  shift 2
  log "podman build -f $file -t $tag"
  pm build --quiet --pull=never --network=host --build-arg PRODUCTS=prebuilt "$@" -f "$file" -t "$tag" . >/dev/null
}
build "botrt.local/botrt-engine:$TAG" images/engine/Containerfile
build "botrt.local/botrt-controller:$TAG" images/controller/Containerfile
build "botrt.local/postgres:15" hack/images/postgres/Containerfile

# 4. OCI archives for containerd.
save() { # IMAGE FILE
  rm -f "$OUT/$2"
  pm save --quiet --format oci-archive -o "$OUT/$2" "$1"
}
save "botrt.local/pause:$K8S_VERSION" pause.oci.tar
save "botrt.local/botrt-engine:$TAG" botrt-engine.oci.tar
save "botrt.local/botrt-controller:$TAG" botrt-controller.oci.tar
save "botrt.local/postgres:15" postgres.oci.tar
# Old layers of earlier builds of the products.
pm image prune -f >/dev/null 2>&1 || true
log "ok: $(cd "$OUT" && ls -1 ./*.oci.tar | tr '\n' ' ')"
