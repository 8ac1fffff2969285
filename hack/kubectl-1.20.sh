#!/usr/bin/env bash
# Prints the path of kubectl 1.20.2 (Debian's kubernetes-client, the version of the local control plane), fetching
# it once into the cache: `apt-get download` and `dpkg-deb -x`, nothing installed system-wide (a newer kubectl on
# PATH stays as it is). hack/install-test.sh applies manifests/ with it, because kubectl 1.20 embeds kustomize 2.0.3,
# which is stricter than newer ones (e.g. `resources` must be files, directories go under `bases`).
#
#   "$(hack/kubectl-1.20.sh)" version --client
#
# Cache: BOTRT_CACHE_DIR (default ~/.cache/botrt), shared with hack/cluster.sh.
set -euo pipefail
CACHE="${BOTRT_CACHE_DIR:-$HOME/.cache/botrt}"
BIN="$CACHE/kubernetes-1.20.2/bin/kubectl"
die() { echo "kubectl-1.20: $*" >&2; exit 1; }

if [[ ! -x "$BIN" ]]; then
  mkdir -p "$CACHE" "$(dirname "$BIN")"
  (
    flock -w 600 9 || die "timed out waiting for $CACHE/kubectl-fetch.lock"
    [[ -x "$BIN" ]] && exit 0
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    cd "$tmp"
    chmod 755 "$tmp" # apt's download sandbox user must be able to write here
    if ! apt-get download kubernetes-client >download.log 2>&1; then
      apt-get update -qq >/dev/null 2>&1 || true
      apt-get download kubernetes-client >download.log 2>&1 ||
        die "apt-get download kubernetes-client failed: $(tail -n 3 download.log)"
    fi
    dpkg-deb -x kubernetes-client_*.deb x
    ver="$(./x/usr/bin/kubectl version --client --short 2>/dev/null || true)"
    [[ "$ver" == *v1.20.* ]] || die "Debian's kubernetes-client is not kubectl 1.20 (got '$ver')"
    cp x/usr/bin/kubectl "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
  ) 9>"$CACHE/kubectl-fetch.lock"
fi
[[ -x "$BIN" ]] || die "$BIN is missing after the fetch"
echo "$BIN"
