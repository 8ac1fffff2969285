#!/usr/bin/env bash
# A real local Kubernetes: etcd + kube-apiserver + kube-controller-manager, and a real node (containerd, runc, a
# CNI bridge, kubelet, kube-scheduler, kube-proxy; hack/lib/node.sh).
#
#   hack/cluster.sh up               build (once, cached) and start the control plane and the node; idempotent.
#                                    BOTRT_NODE=0: the control plane only (no node, no scheduler: Pods stay Pending)
#   hack/cluster.sh node-up          start the node on a running control plane (needs hack/images.sh's images)
#   hack/cluster.sh node-down        stop the node and undo its host changes (bridge, iptables, sysctls, mounts)
#   hack/cluster.sh node-images      import hack/images.sh's images again into the running node
#   hack/cluster.sh node2-up         start a second node, botrt-node2, tainted NoSchedule (hack/lib/node2.sh)
#   hack/cluster.sh node2-down       stop the second node and remove its Node
#   hack/cluster.sh build            only build (or find cached) the Kubernetes binaries
#   hack/cluster.sh env              print the exports (source <(hack/cluster.sh env))
#   hack/cluster.sh status           show which processes run
#   hack/cluster.sh down             stop only the processes this script started, remove the state dir
#   hack/cluster.sh stop-apiserver   stop only kube-apiserver (data kept), for restart tests
#   hack/cluster.sh start-apiserver  start kube-apiserver again on the same data
#
# State dir: BOTRT_CLUSTER_DIR (default <repo>/.local/cluster). Ports: BOTRT_APISERVER_PORT (6443, on 127.0.0.1 and
# the node's bridge address), BOTRT_ETCD_PORT (2379), BOTRT_ETCD_PEER_PORT (etcd port + 1), on 127.0.0.1; the node's
# settings are in hack/lib/node.sh.
# The ports chosen at `up` are saved in the state dir; later commands use the saved ones.
# Kubernetes 1.20.2 is built from Debian's source package as docs/testing.md describes and cached
# in BOTRT_CACHE_DIR (default ~/.cache/botrt), so only the first run on a machine builds it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION=1.20.2
CACHE="${BOTRT_CACHE_DIR:-$HOME/.cache/botrt}"
BIN="$CACHE/kubernetes-$K8S_VERSION/bin"
DIR="$(realpath -m "${BOTRT_CLUSTER_DIR:-$REPO/.local/cluster}")"
MARKER=".botrt-cluster"

LOG_PREFIX=cluster
# shellcheck source=hack/lib/proc.sh
source "$REPO/hack/lib/proc.sh"
# shellcheck source=hack/lib/node.sh
source "$REPO/hack/lib/node.sh"
# shellcheck source=hack/lib/node2.sh
source "$REPO/hack/lib/node2.sh"

# ---------------------------------------------------------------------------------------------
# Ports: saved at `up`, read back by every later command.

env_ports() {
  APISERVER_PORT="${BOTRT_APISERVER_PORT:-6443}"
  ETCD_PORT="${BOTRT_ETCD_PORT:-2379}"
  ETCD_PEER_PORT="${BOTRT_ETCD_PEER_PORT:-$((ETCD_PORT + 1))}"
}

load_ports() {
  if [[ -f "$DIR/ports.env" ]]; then
    # shellcheck disable=SC1091
    source "$DIR/ports.env"
  else
    env_ports
  fi
}

save_ports() {
  cat >"$DIR/ports.env" <<EOF
APISERVER_PORT=$APISERVER_PORT
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
EOF
}

# ---------------------------------------------------------------------------------------------
# Binaries: built once from Debian's kubernetes source package, under a lock.

ensure_binaries() {
  if [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" ]]; then return 0; fi
  mkdir -p "$CACHE/src"
  log "kube-apiserver $K8S_VERSION not cached in $BIN; building it, or waiting for a build already running (about 5-10 minutes)"
  (
    flock -w 3600 9 || die "timed out waiting for another build holding $CACHE/k8s-build.lock"
    if [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" ]]; then exit 0; fi
    build_kubernetes
  ) 9>"$CACHE/k8s-build.lock"
  [[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" ]] ||
    die "the build finished but $BIN has no kube-apiserver/kube-controller-manager; see the output above"
}

build_kubernetes() {
  set -x
  command -v go >/dev/null || die "go is missing; run hack/install-deps.sh"
  [[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]] ||
    die "golang-github-modern-go-reflect2-dev is missing; run hack/install-deps.sh"
  cd "$CACHE/src"
  if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
    if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
      # Derive source lists from the binary lists, so no host is written anywhere.
      sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
        >/etc/apt/sources.list.d/debian-src.sources
      apt-get update -qq
    fi
    apt-get source --download-only kubernetes
  fi
  rm -rf "kubernetes-$K8S_VERSION"
  tar xzf kubernetes_*.orig.tar.gz
  cd "kubernetes-$K8S_VERSION"
  # Go >= 1.18 crashes the vendored reflect2 v1.0.1; use Debian's v1.0.2.
  rm -rf vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/
  rm -f vendor/github.com/modern-go/reflect2/go.mod
  mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
  GOPATH=$PWD/.go CGO_ENABLED=0 make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"
  mkdir -p "$BIN"
  cp _output/local/bin/linux/amd64/kube-apiserver _output/local/bin/linux/amd64/kube-controller-manager "$BIN/"
  set +x
}

# ---------------------------------------------------------------------------------------------
# Certificates and credentials (generated once per state dir).

gen_certs() {
  local c="$DIR/pki"
  [[ -f "$c/.complete" ]] && return 0
  log "generating certificates in $c"
  rm -rf "$c"
  mkdir -p "$c"
  (
    cd "$c"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=botrt-local-ca" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -keyout client-ca.key -out client-ca.crt -days 3650 \
      -subj "/CN=botrt-local-client-ca" 2>/dev/null
    # apiserver serving certificate
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    cat >apiserver.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:$NODE_IP,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt \
      -days 3650 -extfile apiserver.ext 2>/dev/null
    # admin client certificate (group system:masters), signed by the client CA
    openssl req -newkey rsa:2048 -nodes -keyout admin-cert.key -out admin-cert.csr \
      -subj "/O=system:masters/CN=admin-cert" 2>/dev/null
    cat >client.ext <<EOF
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
    openssl x509 -req -in admin-cert.csr -CA client-ca.crt -CAkey client-ca.key -CAcreateserial \
      -out admin-cert.crt -days 3650 -extfile client.ext 2>/dev/null
    # service-account signing key pair
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
    chmod 644 ca.crt client-ca.crt apiserver.crt admin-cert.crt sa.pub
    touch .complete
  )
  cp "$c/ca.crt" "$DIR/ca.crt"
  # token,user,uid,"groups"
  cat >"$DIR/tokens.csv" <<EOF
admintoken,admin,admin-uid,"system:masters"
limitedtoken,botrt-limited,botrt-limited-uid
EOF
  chmod 600 "$DIR/tokens.csv"
}

write_kubeconfig() {
  local c="$DIR/pki" url="https://127.0.0.1:$APISERVER_PORT"
  cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: botrt-local
  cluster:
    server: $url
    certificate-authority: $c/ca.crt
users:
- name: admin-token
  user:
    token: admintoken
- name: admin-cert
  user:
    client-certificate: $c/admin-cert.crt
    client-key: $c/admin-cert.key
contexts:
- name: botrt-token
  context:
    cluster: botrt-local
    user: admin-token
    namespace: default
- name: botrt-cert
  context:
    cluster: botrt-local
    user: admin-cert
    namespace: default
current-context: botrt-token
EOF
  chmod 600 "$DIR/kubeconfig"
  cat >"$DIR/cluster.env" <<EOF
export KUBECONFIG=$DIR/kubeconfig
export BOTRT_CLUSTER_DIR=$DIR
export BOTRT_APISERVER_URL=$url
export BOTRT_LIMITED_TOKEN=limitedtoken
EOF
}

# ---------------------------------------------------------------------------------------------
# Components

start_etcd() {
  if alive etcd "etcd"; then return 0; fi
  check_port_free "$ETCD_PORT" BOTRT_ETCD_PORT
  check_port_free "$ETCD_PEER_PORT" BOTRT_ETCD_PEER_PORT
  mkdir -p "$DIR/etcd"
  chmod 700 "$DIR/etcd"
  start_bg etcd etcd --name botrt --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "botrt=http://127.0.0.1:$ETCD_PEER_PORT"
  local i
  for ((i = 0; i < 100; i++)); do
    if curl -fsS "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep '"health":"true"' >/dev/null; then return 0; fi
    alive etcd etcd || die_with_log etcd "etcd exited; see $DIR/logs/etcd.log"
    sleep 0.2
  done
  die_with_log etcd "etcd did not become healthy on 127.0.0.1:$ETCD_PORT within 20 s; see $DIR/logs/etcd.log"
}

# The aggregation layer's front proxy (as kubeadm sets it up): the CA extension apiservers trust for the requestheader
# identity (published in kube-system/extension-apiserver-authentication) and the client certificate the apiserver
# presents when it proxies to an APIService. Generated apart from gen_certs so a state dir from before has them too.
gen_front_proxy_certs() {
  local c="$DIR/pki"
  [[ -f "$c/front-proxy.complete" ]] && return 0
  (
    cd "$c"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout front-proxy-ca.key -out front-proxy-ca.crt -days 3650 \
      -subj "/CN=botrt-front-proxy-ca" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout front-proxy-client.key -out front-proxy-client.csr \
      -subj "/CN=front-proxy-client" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
      >front-proxy-client.ext
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key -CAcreateserial \
      -out front-proxy-client.crt -days 3650 -extfile front-proxy-client.ext 2>/dev/null
    rm -f front-proxy-client.csr front-proxy-client.ext front-proxy-ca.srl
    chmod 644 front-proxy-ca.crt front-proxy-client.crt
    touch front-proxy.complete
  )
}

start_apiserver() {
  if alive apiserver kube-apiserver; then return 0; fi
  check_port_free "$APISERVER_PORT" BOTRT_APISERVER_PORT
  local c="$DIR/pki"
  gen_front_proxy_certs
  # Bound on every local address: 127.0.0.1 for the host's clients, the bridge address for the node and its pods
  # (it is also the address the `kubernetes` Service leads to). Pods have no route off this machine.
  node_bridge_up
  # The audit log records every request of the controller's ServiceAccount (and nothing else): hack/rbac-audit.py
  # compares what it used with what manifests/rbac/ grants (issue 14 item 4).
  cat >"$DIR/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["system:serviceaccount:botrt-system:botrt-controller"]
  - level: None
EOF
  # The aggregation layer as on a kubeadm cluster (requestheader, front-proxy client); --enable-aggregator-routing
  # because this apiserver runs on the host, where no kube-proxy routes a Service's ClusterIP: it proxies to an
  # APIService's Endpoints instead (hack/crd136-aggregated-test.sh).
  start_bg apiserver "$BIN/kube-apiserver" \
    --audit-policy-file="$DIR/audit-policy.yaml" --audit-log-path="$DIR/audit.log" --audit-log-maxsize=500 \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port="$APISERVER_PORT" --insecure-port=0 \
    --tls-cert-file="$c/apiserver.crt" --tls-private-key-file="$c/apiserver.key" \
    --client-ca-file="$c/client-ca.crt" --token-auth-file="$DIR/tokens.csv" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true \
    --kubelet-client-certificate="$c/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$c/apiserver-kubelet-client.key" --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$c/sa.pub" --service-account-signing-key-file="$c/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --requestheader-client-ca-file="$c/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$c/front-proxy-client.crt" --proxy-client-key-file="$c/front-proxy-client.key" \
    --enable-aggregator-routing=true \
    --cert-dir="$DIR/apiserver-certs"
  wait_ready
}

wait_ready() {
  local i out=""
  for ((i = 0; i < 300; i++)); do
    out="$(curl -sS --max-time 2 --cacert "$DIR/pki/ca.crt" -H "Authorization: Bearer admintoken" \
      "https://127.0.0.1:$APISERVER_PORT/readyz" 2>/dev/null || true)"
    [[ "$out" == "ok" ]] && return 0
    alive apiserver kube-apiserver || die_with_log apiserver "kube-apiserver exited; see $DIR/logs/apiserver.log"
    sleep 0.2
  done
  die_with_log apiserver "kube-apiserver did not answer /readyz with ok on https://127.0.0.1:$APISERVER_PORT within 60 s" \
    "(last answer: ${out:0:200}); see $DIR/logs/apiserver.log"
}

start_controller_manager() {
  if alive controller-manager kube-controller-manager; then return 0; fi
  local c="$DIR/pki"
  # Its own kubeconfig with the admin client certificate (the user kubeconfig may be edited by tests).
  cat >"$DIR/controller-manager.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $c/ca.crt
users:
- name: kcm
  user:
    client-certificate: $c/admin-cert.crt
    client-key: $c/admin-cert.key
contexts:
- name: local
  context: {cluster: local, user: kcm}
current-context: local
EOF
  chmod 600 "$DIR/controller-manager.kubeconfig"
  # --port=0 and --secure-port=0: no serving ports, so several clusters never collide.
  start_bg controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$DIR/controller-manager.kubeconfig" \
    --controllers='*,-nodeipam' --leader-elect=false \
    --root-ca-file="$c/ca.crt" --service-account-private-key-file="$c/sa.key" \
    --use-service-account-credentials=false \
    --cluster-signing-cert-file="$c/client-ca.crt" --cluster-signing-key-file="$c/client-ca.key" \
    --port=0 --secure-port=0
  sleep 0.5
  alive controller-manager kube-controller-manager ||
    die_with_log controller-manager "kube-controller-manager exited; see $DIR/logs/controller-manager.log"
}

wait_default_serviceaccount() {
  local i
  for ((i = 0; i < 150; i++)); do
    if KUBECONFIG="$DIR/kubeconfig" kubectl get serviceaccount default -n default >/dev/null 2>&1; then
      return 0
    fi
    alive controller-manager kube-controller-manager ||
      die_with_log controller-manager "kube-controller-manager exited; see $DIR/logs/controller-manager.log"
    sleep 0.2
  done
  die_with_log controller-manager "the default ServiceAccount did not appear within 30 s; see $DIR/logs/controller-manager.log"
}

all_alive() {
  alive etcd etcd && alive apiserver kube-apiserver && alive controller-manager kube-controller-manager
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_up() {
  mkdir -p "$DIR"
  touch "$DIR/$MARKER"
  load_ports
  node_load_settings
  if all_alive && { [[ "${BOTRT_NODE:-1}" == 0 ]] || node_all_alive; }; then
    log "already running (apiserver https://127.0.0.1:$APISERVER_PORT, state $DIR)"
    return 0
  fi
  if ! alive etcd etcd && ! alive apiserver kube-apiserver && ! alive controller-manager kube-controller-manager; then
    env_ports # nothing of an earlier run is alive: the ports asked for now apply
  fi
  for tool in etcd openssl curl ss setsid; do
    command -v "$tool" >/dev/null || die "$tool is missing; run hack/install-deps.sh"
  done
  # Check every port first, so a taken port never leaves half a cluster behind.
  alive etcd etcd || {
    check_port_free "$ETCD_PORT" BOTRT_ETCD_PORT
    check_port_free "$ETCD_PEER_PORT" BOTRT_ETCD_PEER_PORT
  }
  alive apiserver kube-apiserver || check_port_free "$APISERVER_PORT" BOTRT_APISERVER_PORT
  ensure_binaries
  save_ports
  node_save_settings
  gen_certs
  node_certs
  write_kubeconfig
  start_etcd
  start_apiserver
  start_controller_manager
  wait_default_serviceaccount
  if [[ "${BOTRT_NODE:-1}" != 0 ]]; then node_up; fi
  log "up: apiserver https://127.0.0.1:$APISERVER_PORT, etcd 127.0.0.1:$ETCD_PORT, state $DIR"
  log "use it with: source <($0 env)"
}

cmd_env() {
  [[ -f "$DIR/cluster.env" ]] || die "no cluster in $DIR; run: $0 up"
  load_ports
  cat "$DIR/cluster.env"
  # etcd's JSON gateway, for tests that need a compacted history (ClientWatchTests).
  echo "export BOTRT_ETCD_URL=http://127.0.0.1:$ETCD_PORT"
}

cmd_status() {
  load_ports
  local name binary rc=0
  for pair in etcd:etcd apiserver:kube-apiserver controller-manager:kube-controller-manager; do
    name="${pair%%:*}"
    binary="${pair#*:}"
    if alive "$name" "$binary"; then
      echo "$name: running (pid $(pid_of "$name"))"
    else
      echo "$name: stopped"
      rc=1
    fi
  done
  echo "state: $DIR  apiserver: https://127.0.0.1:$APISERVER_PORT  etcd: 127.0.0.1:$ETCD_PORT"
  node_load_settings
  for pair in containerd:containerd kubelet:kubelet scheduler:kube-scheduler proxy:kube-proxy; do
    name="${pair%%:*}"
    binary="${pair#*:}"
    if alive "$name" "$binary"; then echo "node $name: running (pid $(pid_of "$name"))"; else echo "node $name: stopped"; fi
  done
  if [[ -f "$DIR/node2.env" ]]; then
    for pair in containerd2:containerd kubelet2:kubelet; do
      name="${pair%%:*}"
      binary="${pair#*:}"
      if alive "$name" "$binary"; then echo "node2 $name: running (pid $(pid_of "$name"))"; else echo "node2 $name: stopped"; fi
    done
  fi
  return $rc
}

cmd_down() {
  if [[ ! -d "$DIR" ]]; then
    log "nothing to stop: $DIR does not exist"
    return 0
  fi
  [[ -f "$DIR/$MARKER" ]] || die "$DIR was not created by this script (no $MARKER); refusing to remove it"
  node2_down
  node_down
  stop_proc controller-manager kube-controller-manager
  stop_proc apiserver kube-apiserver
  stop_proc etcd etcd
  node_clean_leftovers
  rm -rf "$DIR"
  log "down: stopped and removed $DIR"
}

cmd_stop_apiserver() {
  [[ -f "$DIR/$MARKER" ]] || die "no cluster in $DIR; run: $0 up"
  load_ports
  stop_proc apiserver kube-apiserver
  log "kube-apiserver stopped (etcd and data kept)"
}

cmd_start_apiserver() {
  [[ -f "$DIR/$MARKER" && -f "$DIR/pki/.complete" ]] || die "no cluster in $DIR; run: $0 up"
  load_ports
  node_load_settings
  alive etcd etcd || die "etcd is not running for $DIR; run: $0 up"
  start_apiserver
  log "kube-apiserver ready on https://127.0.0.1:$APISERVER_PORT"
}

cmd_node_up() {
  [[ -f "$DIR/$MARKER" && -f "$DIR/pki/.complete" ]] || die "no cluster in $DIR; run: $0 up"
  load_ports
  all_alive || die "the control plane in $DIR is not running; run: $0 up"
  node_up
}

case "${1:-}" in
  build)
    ensure_binaries
    ensure_node_binaries
    ;;
  up) cmd_up ;;
  node-up) cmd_node_up ;;
  node-down)
    node2_down
    node_down
    ;;
  node2-up)
    [[ -f "$DIR/$MARKER" && -f "$DIR/pki/.complete" ]] || die "no cluster in $DIR; run: $0 up"
    load_ports
    all_alive || die "the control plane in $DIR is not running; run: $0 up"
    node2_up
    ;;
  node2-down) node2_down ;;
  node-images)
    node_load_settings
    alive containerd containerd || die "the node is not running; run: $0 node-up"
    node_import_images
    ;;
  env) cmd_env ;;
  status) cmd_status ;;
  down) cmd_down ;;
  stop-apiserver) cmd_stop_apiserver ;;
  start-apiserver) cmd_start_apiserver ;;
  *)
    echo "usage: $0 build|up|env|status|down|node-up|node-down|node-images|node2-up|node2-down|stop-apiserver|start-apiserver" >&2
    exit 2
    ;;
esac
