#!/usr/bin/env bash
# Prints the path of the current restic (Debian sid's package, 0.19.x: what users run), fetching it once into
# $BOTRT_CACHE_DIR/restic-sid (default ~/.cache/botrt) with `apt-get download` through a private apt
# configuration (sid, the mirror of /etc/apt/sources.list.d/debian.sources; the system's apt is not touched) and
# `dpkg-deb -x`. restic is a Go binary that needs only libc. Debian 12's own package is 0.14.
#
#   RESTIC="$(hack/bench/restic-current.sh)"
set -euo pipefail
CACHE="${BOTRT_CACHE_DIR:-$HOME/.cache/botrt}/restic-sid"
BIN="$CACHE/root/usr/bin/restic"
die() { echo "restic-current: $*" >&2; exit 1; }
if [[ ! -x "$BIN" ]]; then
  mkdir -p "$CACHE"
  (
    flock -w 600 9 || die "timed out waiting for another fetch ($CACHE.lock)"
    [[ -x "$BIN" ]] && exit 0
    rm -rf "$CACHE/apt" "$CACHE/root" "$CACHE/debs"
    mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial" "$CACHE/debs" "$CACHE/root"
    uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
    [[ -n "$uri" ]] || die "no URIs: line in /etc/apt/sources.list.d/debian.sources"
    printf 'Types: deb\nURIs: %s\nSuites: sid\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" >"$CACHE/apt/sid.sources"
    sid_apt() {
      "$@" -o APT::Sandbox::User=root -o Dir::Etc::sourcelist="$CACHE/apt/sid.sources" -o Dir::Etc::sourceparts=/nonexistent \
        -o Dir::State::Lists="$CACHE/apt/lists" -o Dir::Cache="$CACHE/apt/cache" -o Dir::State::status=/var/lib/dpkg/status
    }
    sid_apt apt-get update -qq >&2 || die "apt-get update of sid failed"
    (cd "$CACHE/debs" && sid_apt apt-get download -qq restic >&2) || die "apt-get download restic failed"
    dpkg-deb -x "$CACHE"/debs/restic_*.deb "$CACHE/root"
    rm -rf "$CACHE/apt" "$CACHE/debs"
  ) 9>"$CACHE.lock"
fi
[[ -x "$BIN" ]] || die "restic is not at $BIN after the fetch"
"$BIN" version >/dev/null || die "$BIN does not run"
echo "$BIN"
