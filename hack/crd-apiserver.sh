#!/usr/bin/env bash
# A current Kubernetes API surface for the CRDs: apiextensions-apiserver 0.36 (Kubernetes 1.36) run standalone with its
# own etcd 3.5, both built/fetched from Debian's sid suite. It serves CustomResourceDefinitions and custom resources
# only (no core API: no Namespaces, Secrets, Events, garbage collector); see docs/testing.md.
#
#   hack/crd-apiserver.sh build   build (once, cached) the server and fetch etcd 3.5
#   hack/crd-apiserver.sh up      build if needed, start etcd and the server; idempotent
#   hack/crd-apiserver.sh env     print the exports (source <(hack/crd-apiserver.sh env))
#   hack/crd-apiserver.sh status  show which processes run
#   hack/crd-apiserver.sh down    stop only the processes this script started, remove the state dir
#
# State dir: BOTRT_CRD136_DIR (default <repo>/.local/crd136). Ports, all on 127.0.0.1: BOTRT_CRD136_PORT (7443, the
# server), BOTRT_CRD136_ETCD_PORT (7379), BOTRT_CRD136_ETCD_PEER_PORT (etcd port + 1). The ports chosen at `up` are
# saved in the state dir. The kubeconfig (client certificate, group system:masters) is <state dir>/kubeconfig.
#
# Delegated mode, for the aggregation layer of a 1.20 kube-apiserver (hack/crd136-aggregated-test.sh), chosen at `up`:
#   BOTRT_CRD136_CORE_KUBECONFIG  a kubeconfig of that kube-apiserver: namespaces and webhooks (admission), TokenReview
#                                 and SubjectAccessReview (authentication and authorization) come from it, and the
#                                 requestheader (front proxy) CA from its kube-system/extension-apiserver-authentication
#   BOTRT_CRD136_BIND_ADDRESS     the address served (default 127.0.0.1; an aggregator's Endpoints need another one)
#   BOTRT_CRD136_SERVER_NAMES     extra DNS names of the serving certificate, comma-separated (an APIService's
#                                 Service is dialled as <service>.<namespace>.svc)
#
# Build: Debian sid's golang-k8s-apiextensions-apiserver-dev and its golang-*-dev closure, golang-1.26-go and
# etcd-server are fetched with `apt-get download` through a private apt configuration (sid, with the mirror taken
# from /etc/apt/sources.list.d/debian.sources; the system's apt configuration is not touched), extracted with
# dpkg-deb -x (nothing is installed) and hack/crd-apiserver/main.go is built in GOPATH mode. Everything lives in
# BOTRT_CACHE_DIR/crd-apiserver-1.36 (default ~/.cache/botrt), built under a lock: about 4 minutes on a fresh machine
# (about 4 GB of disk with the Go build cache), then only the wrapper is rebuilt when main.go changes.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_MINOR=1.36
API_PKG=golang-k8s-apiextensions-apiserver-dev
GO_PKG=golang-1.26
CACHE="${BOTRT_CACHE_DIR:-$HOME/.cache/botrt}"
BUILD="$CACHE/crd-apiserver-$K8S_MINOR"
DIR="$(realpath -m "${BOTRT_CRD136_DIR:-$REPO/.local/crd136}")"
MARKER=".botrt-crd136"
MAIN_GO="$REPO/hack/crd-apiserver/main.go"

LOG_PREFIX=crd-apiserver
# shellcheck source=hack/lib/proc.sh
source "$REPO/hack/lib/proc.sh"

# The wrapper binary is keyed by the hash of main.go: editing it rebuilds only the wrapper.
server_bin() { echo "$BUILD/bin/botrt-crd-apiserver-$(sha256sum "$MAIN_GO" | cut -c1-16)"; }
ETCD_BIN="$BUILD/root/usr/bin/etcd"

env_ports() {
  PORT="${BOTRT_CRD136_PORT:-7443}"
  ETCD_PORT="${BOTRT_CRD136_ETCD_PORT:-7379}"
  ETCD_PEER_PORT="${BOTRT_CRD136_ETCD_PEER_PORT:-$((ETCD_PORT + 1))}"
  BIND="${BOTRT_CRD136_BIND_ADDRESS:-127.0.0.1}"
  CORE_KUBECONFIG="${BOTRT_CRD136_CORE_KUBECONFIG:+$(realpath "$BOTRT_CRD136_CORE_KUBECONFIG")}"
  SERVER_NAMES="${BOTRT_CRD136_SERVER_NAMES:-}"
}

load_ports() {
  if [[ -f "$DIR/ports.env" ]]; then
    # shellcheck disable=SC1091
    source "$DIR/ports.env"
    BIND="${BIND:-127.0.0.1}" CORE_KUBECONFIG="${CORE_KUBECONFIG:-}" SERVER_NAMES="${SERVER_NAMES:-}"
  else
    env_ports
  fi
}

# ---------------------------------------------------------------------------------------------
# Build

built() { [[ -x "$(server_bin)" && -x "$ETCD_BIN" ]]; }

ensure_built() {
  built && return 0
  mkdir -p "$CACHE"
  log "the $K8S_MINOR CRD apiserver is not cached in $BUILD; building it, or waiting for a build already running (about 4 minutes)"
  (
    flock -w 3600 9 || die "timed out waiting for another build holding $BUILD.lock"
    built && exit 0
    build_server
  ) 9>"$BUILD.lock"
  built || die "the build finished but $(server_bin) or $ETCD_BIN is missing; see the output above"
}

# apt with a private configuration: sid only, mirror from the machine's own sources.
sid_apt() {
  local tool="$1"
  shift
  "$tool" -o Dir::Etc::sourcelist="$BUILD/apt/sid.sources" -o Dir::Etc::sourceparts=/nonexistent \
    -o Dir::State::Lists="$BUILD/apt/lists" -o Dir::Cache="$BUILD/apt/cache" \
    -o Dir::State::status=/var/lib/dpkg/status "$@"
}

build_server() {
  for tool in apt-get apt-cache dpkg-deb sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is missing"
  done
  if [[ ! -f "$BUILD/root/.complete" ]]; then
    rm -rf "$BUILD/root" "$BUILD/debs"
    mkdir -p "$BUILD/apt/lists/partial" "$BUILD/apt/cache/archives/partial" "$BUILD/debs" "$BUILD/root"
    local uri
    uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
    [[ -n "$uri" ]] || die "no URIs: line in /etc/apt/sources.list.d/debian.sources"
    printf 'Types: deb\nURIs: %s\nSuites: sid\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" >"$BUILD/apt/sid.sources"
    log "apt-get update (sid, private lists in $BUILD/apt)"
    sid_apt apt-get update -qq
    local ver
    ver="$(sid_apt apt-cache policy "$API_PKG" | awk '/Candidate:/ {print $2}')"
    [[ "$ver" == 0.${K8S_MINOR#1.}.* ]] ||
      die "sid's $API_PKG is '$ver', not 0.${K8S_MINOR#1.}.x; pin K8S_MINOR in $0 to what sid has"
    sid_apt apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "$API_PKG" | grep -vE '^\s' | grep -E '^golang-.*-dev$' | sort -u >"$BUILD/devdeps.txt"
    log "downloading $(wc -l <"$BUILD/devdeps.txt") golang-*-dev packages, $GO_PKG-go and etcd-server"
    chmod 755 "$BUILD/debs" # apt's download sandbox user writes here when it can reach it
    # shellcheck disable=SC2046
    (cd "$BUILD/debs" && sid_apt apt-get download -qq $(cat "$BUILD/devdeps.txt") "$GO_PKG-go" "$GO_PKG-src" etcd-server)
    log "extracting into $BUILD/root"
    local f
    for f in "$BUILD"/debs/*.deb; do dpkg-deb -x "$f" "$BUILD/root"; done
    for f in "$BUILD"/debs/*.deb; do dpkg-deb -W --showformat='${Package} ${Version}\n' "$f"; done >"$BUILD/versions.txt"
    rm -rf "$BUILD/debs" "$BUILD/apt/cache"
    touch "$BUILD/root/.complete"
  fi
  local gopath="$BUILD/gopath"
  mkdir -p "$gopath/src/botrt/crd-apiserver" "$BUILD/bin"
  cp "$MAIN_GO" "$gopath/src/botrt/crd-apiserver/main.go"
  log "go build (GOPATH mode, offline; about 2.5 minutes the first time)"
  local out
  out="$(server_bin)"
  (
    export GOROOT="$BUILD/root/usr/lib/go-${GO_PKG#golang-}" GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local GOFLAGS=
    export GOCACHE="$BUILD/gocache" GOPATH="$gopath:$BUILD/root/usr/share/gocode" CGO_ENABLED=0
    "$GOROOT/bin/go" build -o "$out.tmp" botrt/crd-apiserver
  )
  mv "$out.tmp" "$out"
  log "built $out ($(grep -E "^($API_PKG|$GO_PKG-go|etcd-server) " "$BUILD/versions.txt" | paste -sd,))"
}

# ---------------------------------------------------------------------------------------------
# Certificates: a serving CA and certificate for 127.0.0.1, a client CA and an admin client certificate.

gen_certs() {
  local c="$DIR/pki"
  [[ -f "$c/.complete" ]] && return 0
  rm -rf "$c"
  mkdir -p "$c"
  (
    cd "$c"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=botrt-crd136-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=botrt-crd136" 2>/dev/null
    local san="IP:127.0.0.1,DNS:localhost" name
    [[ "$BIND" == 127.0.0.1 ]] || san="$san,IP:$BIND"
    for name in ${SERVER_NAMES//,/ }; do san="$san,DNS:$name"; done
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
      "$san" >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 3650 \
      -extfile server.ext 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -keyout client-ca.key -out client-ca.crt -days 3650 \
      -subj "/CN=botrt-crd136-client-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in admin.csr -CA client-ca.crt -CAkey client-ca.key -CAcreateserial -out admin.crt \
      -days 3650 -extfile client.ext 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
    touch .complete
  )
}

write_kubeconfig() {
  local c="$DIR/pki"
  cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: botrt-crd136
  cluster:
    server: https://$BIND:$PORT
    certificate-authority: $c/ca.crt
users:
- name: admin
  user:
    client-certificate: $c/admin.crt
    client-key: $c/admin.key
contexts:
- name: botrt-crd136
  context: {cluster: botrt-crd136, user: admin, namespace: default}
current-context: botrt-crd136
EOF
  chmod 600 "$DIR/kubeconfig"
  cat >"$DIR/crd136.env" <<EOF
export BOTRT_CRD136_KUBECONFIG=$DIR/kubeconfig
export BOTRT_CRD136_URL=https://$BIND:$PORT
export BOTRT_CRD136_CA=$c/ca.crt
EOF
}

# ---------------------------------------------------------------------------------------------
# Processes

start_etcd() {
  alive etcd "$ETCD_BIN" && return 0
  mkdir -p "$DIR/etcd"
  chmod 700 "$DIR/etcd"
  start_bg etcd "$ETCD_BIN" --name botrt-crd136 --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "botrt-crd136=http://127.0.0.1:$ETCD_PEER_PORT"
  local i
  for ((i = 0; i < 100; i++)); do
    if curl -fsS "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep '"health":"true"' >/dev/null; then return 0; fi
    alive etcd "$ETCD_BIN" || die_with_log etcd "etcd exited; see $DIR/logs/etcd.log"
    sleep 0.2
  done
  die_with_log etcd "etcd did not become healthy on 127.0.0.1:$ETCD_PORT within 20 s"
}

start_server() {
  local bin c="$DIR/pki"
  bin="$(server_bin)"
  alive server botrt-crd-apiserver && return 0
  local delegated=()
  if [[ -n "$CORE_KUBECONFIG" ]]; then
    # Delegated: the core kube-apiserver checks namespaces, tokens and RBAC, and its front-proxy CA (read from
    # extension-apiserver-authentication, so no in-cluster lookup skipping) vouches for an aggregator's X-Remote-*
    # headers. Its admission policies (ValidatingAdmissionPolicy, MutatingAdmissionPolicy) are newer than 1.20.
    delegated=(--kubeconfig="$CORE_KUBECONFIG" --authentication-kubeconfig="$CORE_KUBECONFIG"
      --authorization-kubeconfig="$CORE_KUBECONFIG" --authentication-skip-lookup=false
      --disable-admission-plugins=ValidatingAdmissionPolicy,MutatingAdmissionPolicy)
  fi
  start_bg server "$bin" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" --etcd-prefix=/botrt-crd136 \
    --bind-address="$BIND" --secure-port="$PORT" \
    --tls-cert-file="$c/server.crt" --tls-private-key-file="$c/server.key" \
    --client-ca-file="$c/client-ca.crt" "${delegated[@]}"
  local i out=""
  for ((i = 0; i < 300; i++)); do
    out="$(curl -sS --max-time 2 --cacert "$c/ca.crt" --cert "$c/admin.crt" --key "$c/admin.key" \
      "https://$BIND:$PORT/readyz" 2>/dev/null || true)"
    [[ "$out" == "ok" ]] && return 0
    alive server botrt-crd-apiserver || die_with_log server "the server exited; see $DIR/logs/server.log"
    sleep 0.2
  done
  die_with_log server "the server did not answer /readyz with ok within 60 s (last: ${out:0:200})"
}

cmd_up() {
  mkdir -p "$DIR"
  touch "$DIR/$MARKER"
  load_ports
  if alive etcd "$ETCD_BIN" && alive server botrt-crd-apiserver; then
    log "already running (https://$BIND:$PORT, state $DIR)"
    return 0
  fi
  if ! alive etcd "$ETCD_BIN" && ! alive server botrt-crd-apiserver; then env_ports; fi
  for tool in openssl curl ss setsid flock; do
    command -v "$tool" >/dev/null || die "$tool is missing; run hack/install-deps.sh"
  done
  alive etcd "$ETCD_BIN" || {
    check_port_free "$ETCD_PORT" BOTRT_CRD136_ETCD_PORT
    check_port_free "$ETCD_PEER_PORT" BOTRT_CRD136_ETCD_PEER_PORT
  }
  alive server botrt-crd-apiserver || check_port_free "$PORT" BOTRT_CRD136_PORT
  [[ -z "$CORE_KUBECONFIG" || -r "$CORE_KUBECONFIG" ]] || die "BOTRT_CRD136_CORE_KUBECONFIG: $CORE_KUBECONFIG is not readable"
  ensure_built
  printf 'PORT=%s\nETCD_PORT=%s\nETCD_PEER_PORT=%s\nBIND=%q\nCORE_KUBECONFIG=%q\nSERVER_NAMES=%q\n' "$PORT" "$ETCD_PORT" \
    "$ETCD_PEER_PORT" "$BIND" "$CORE_KUBECONFIG" "$SERVER_NAMES" >"$DIR/ports.env"
  gen_certs
  write_kubeconfig
  start_etcd
  start_server
  log "up: https://$BIND:$PORT (Kubernetes $K8S_MINOR CRD apiserver${CORE_KUBECONFIG:+, delegating to $CORE_KUBECONFIG}), etcd 127.0.0.1:$ETCD_PORT, state $DIR"
  log "use it with: source <($0 env)"
}

cmd_status() {
  load_ports
  local rc=0
  if alive etcd "$ETCD_BIN"; then echo "etcd: running (pid $(pid_of etcd))"; else echo "etcd: stopped" && rc=1; fi
  if alive server botrt-crd-apiserver; then echo "server: running (pid $(pid_of server))"; else echo "server: stopped" && rc=1; fi
  echo "state: $DIR  server: https://$BIND:$PORT  etcd: 127.0.0.1:$ETCD_PORT"
  return $rc
}

cmd_down() {
  if [[ ! -d "$DIR" ]]; then
    log "nothing to stop: $DIR does not exist"
    return 0
  fi
  [[ -f "$DIR/$MARKER" ]] || die "$DIR was not created by this script (no $MARKER); refusing to remove it"
  stop_proc server botrt-crd-apiserver
  stop_proc etcd "$ETCD_BIN"
  rm -rf "$DIR"
  log "down: stopped and removed $DIR"
}

case "${1:-}" in
  build) ensure_built ;;
  up) cmd_up ;;
  env)
    [[ -f "$DIR/crd136.env" ]] || die "no server in $DIR; run: $0 up"
    cat "$DIR/crd136.env"
    ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *)
    echo "usage: $0 build|up|env|status|down" >&2
    exit 2
    ;;
esac
