# A real node for the local control plane (sourced by hack/cluster.sh, not run): containerd (CRI) with runc, a CNI
# bridge on a private /24 with host-local IPAM, kubelet, kube-scheduler and kube-proxy (iptables), all 1.20.2 from the
# same Debian source tree as the apiserver. The recipe and the blockers it works around are in docs/testing.md.
#
# Needs from cluster.sh: DIR, CACHE, BIN, APISERVER_PORT and the helpers of hack/lib/proc.sh.
#
# Settings (environment):
#   BOTRT_NODE_SUBNET   the /24 of the pod network, as its first three octets (default 10.244.77); the bridge's
#                       address, .1, is the node's address and where pods reach the host's services
#   BOTRT_NODE_BRIDGE   the bridge's name (default botrt0)
#   BOTRT_KUBELET_PORT  kubelet's port on the bridge address (default 10250); its healthz is the port - 2, on loopback
#   BOTRT_PROXY_PORT    kube-proxy's metrics port on loopback (default 10249); its healthz is the port + 7
# Saved at `up` in $DIR/node.env, like the control plane's ports.

NODE_NAME=botrt-node

node_env_settings() {
  NODE_SUBNET="${BOTRT_NODE_SUBNET:-10.244.77}"
  NODE_BRIDGE="${BOTRT_NODE_BRIDGE:-botrt0}"
  KUBELET_PORT="${BOTRT_KUBELET_PORT:-10250}"
  PROXY_PORT="${BOTRT_PROXY_PORT:-10249}"
}

node_load_settings() {
  if [[ -f "$DIR/node.env" ]]; then
    # shellcheck disable=SC1091
    source "$DIR/node.env"
  else
    node_env_settings
  fi
  NODE_IP="$NODE_SUBNET.1"
  NODE_DIR="$DIR/node"
  # Unix sockets have a 108-byte limit; the state dir may be deep, so containerd's sockets live in /run.
  NODE_RUN="/run/botrt-node-$(printf '%s' "$DIR" | sha256sum | cut -c1-10)"
}

node_save_settings() {
  cat >"$DIR/node.env" <<EOF
NODE_SUBNET=$NODE_SUBNET
NODE_BRIDGE=$NODE_BRIDGE
KUBELET_PORT=$KUBELET_PORT
PROXY_PORT=$PROXY_PORT
EOF
}

# ---------------------------------------------------------------------------------------------
# Binaries: kubelet, kube-scheduler and kube-proxy from the apiserver's source tree (about 6 minutes once, cached).

node_binaries_ok() { [[ -x "$BIN/kubelet" && -x "$BIN/kube-scheduler" && -x "$BIN/kube-proxy" ]]; }

ensure_node_binaries() {
  node_binaries_ok && return 0
  log "kubelet, kube-scheduler and kube-proxy $K8S_VERSION are not cached in $BIN; building them (about 6 minutes)"
  (
    flock -w 3600 9 || die "timed out waiting for another build holding $CACHE/k8s-build.lock"
    node_binaries_ok && exit 0
    local src="$CACHE/src/kubernetes-$K8S_VERSION"
    [[ -d "$src/cmd/kubelet" ]] || die "$src is missing; the apiserver build prepares it (remove $BIN and run up again)"
    cd "$src"
    GOPATH=$PWD/.go CGO_ENABLED=0 make WHAT="cmd/kubelet cmd/kube-scheduler cmd/kube-proxy"
    cp _output/local/bin/linux/amd64/{kubelet,kube-scheduler,kube-proxy} "$BIN/"
  ) 9>"$CACHE/k8s-build.lock"
  node_binaries_ok || die "the node build finished but $BIN lacks kubelet, kube-scheduler or kube-proxy"
}

# ---------------------------------------------------------------------------------------------
# Host network: the bridge pods attach to. Created before the apiserver, which advertises the bridge address.

node_bridge_up() {
  if ip -o addr show dev "$NODE_BRIDGE" 2>/dev/null | grep -F " $NODE_IP/24 " >/dev/null; then
    ip link set "$NODE_BRIDGE" up
    return 0
  fi
  if ip -o -4 addr show | grep -F " $NODE_IP/" >/dev/null; then
    die "$NODE_IP is already used by another interface; set BOTRT_NODE_SUBNET to a free /24 (e.g. 10.244.78)"
  fi
  ip link add "$NODE_BRIDGE" type bridge 2>/dev/null || true
  ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # Removed by this state dir's down only: another cluster on this machine may share the bridge it found.
  touch "$DIR/bridge-created"
}

# ---------------------------------------------------------------------------------------------
# Certificates of the node: the kubelet's client identity (Node authorizer), and the apiserver's client for logs/exec.

node_certs() {
  local c="$DIR/pki"
  [[ -f "$c/.node-complete" ]] && return 0
  (
    cd "$c"
    umask 077
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
    mk() {
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      openssl x509 -req -in "$1.csr" -CA client-ca.crt -CAkey client-ca.key -CAcreateserial -out "$1.crt" \
        -days 3650 -extfile client.ext 2>/dev/null
    }
    mk node "/O=system:nodes/CN=system:node:$NODE_NAME"
    mk apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    mk kube-proxy "/CN=system:kube-proxy"
    mk kube-scheduler "/CN=system:kube-scheduler"
    rm -f ./*.csr ./*.ext ./*.srl
    touch .node-complete
  )
}

node_kubeconfig() { # NAME CERT: a kubeconfig for a node component, to the bridge address
  local c="$DIR/pki"
  cat >"$NODE_DIR/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://$NODE_IP:$APISERVER_PORT", certificate-authority: $c/ca.crt}
users:
- name: u
  user: {client-certificate: $c/$2.crt, client-key: $c/$2.key}
contexts:
- name: local
  context: {cluster: local, user: u}
current-context: local
EOF
  chmod 600 "$NODE_DIR/$1.kubeconfig"
}

# ---------------------------------------------------------------------------------------------
# Components

node_write_configs() {
  mkdir -p "$NODE_DIR"/{containerd,cni/net.d,cni/ipam,kubelet} "$NODE_RUN"
  cat >"$NODE_DIR/containerd/config.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_RUN/state"
[grpc]
  address = "$NODE_RUN/containerd.sock"
[ttrpc]
  address = "$NODE_RUN/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "botrt.local/pause:$K8S_VERSION"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # REQUIRED on this machine kind: no CAP_SYS_RESOURCE, so runc cannot set a negative oom_score_adj and every
  # sandbox would fail with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$NODE_RUN/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"
EOF
  node_cni_conflist "$NODE_DIR/cni" botrt-net "$NODE_BRIDGE" "$NODE_SUBNET" ""
  # No cluster DNS here (no CoreDNS package): pods address services by IP.
  printf '# the local testbed has no DNS for pods\n' >"$NODE_DIR/resolv.conf"
  cat >"$NODE_DIR/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((KUBELET_PORT - 2))
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $DIR/pki/client-ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failSwapOn: false
makeIPTablesUtilChains: false
clusterDomain: cluster.local
resolvConf: $NODE_DIR/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
rotateCertificates: false
serializeImagePulls: false
maxPods: 60
protectKernelDefaults: false
EOF
  node_kubeconfig kubelet node
  node_kubeconfig kube-proxy kube-proxy
  node_kubeconfig kube-scheduler kube-scheduler
}

# node_cni_conflist DIR NETWORK BRIDGE SUBNET EXTRA_ROUTES: DIR/net.d/10-botrt-bridge.conflist, the bridge plugin on
# BRIDGE with host-local IPAM (its state in DIR/ipam) on SUBNET.0/24, the host at SUBNET.1 as the gateway of the routes:
# the Service range, and EXTRA_ROUTES (JSON objects, each with a leading comma). No default route.
# isGateway false: the plugin would turn on ip_forward; forwarding is opened for the bridges only (node_start_proxy).
node_cni_conflist() {
  cat >"$1/net.d/10-botrt-bridge.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$2",
  "plugins": [
    {
      "type": "bridge", "bridge": "$3", "isGateway": false, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$1/ipam",
        "ranges": [[{"subnet": "$4.0/24", "rangeStart": "$4.10", "gateway": "$4.1"}]],
        "routes": [{"dst": "10.96.0.0/16", "gw": "$4.1"}$5]
      }
    }
  ]
}
EOF
}

ctr_() { ctr --address "$NODE_RUN/containerd.sock" -n k8s.io "$@"; }

node_start_containerd() {
  alive containerd containerd && return 0
  start_bg containerd containerd --config "$NODE_DIR/containerd/config.toml"
  local i
  for ((i = 0; i < 100; i++)); do
    ctr_ version >/dev/null 2>&1 && return 0
    alive containerd containerd || die_with_log containerd "containerd exited; see $DIR/logs/containerd.log"
    sleep 0.1
  done
  die_with_log containerd "containerd did not answer on $NODE_RUN/containerd.sock within 10 s"
}

# Images come from no registry: hack/images.sh saves them as OCI archives, imported here.
node_import_archive() { ctr_ images import "$1" >/dev/null; }

node_start_kubelet() {
  alive kubelet kubelet && return 0
  start_bg kubelet "$BIN/kubelet" \
    --config="$NODE_DIR/kubelet-config.yaml" --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint="unix://$NODE_RUN/containerd.sock" \
    --image-service-endpoint="unix://$NODE_RUN/containerd.sock" --runtime-request-timeout=2m \
    --pod-infra-container-image="botrt.local/pause:$K8S_VERSION" \
    --root-dir="$NODE_DIR/kubelet" --cert-dir="$NODE_DIR/kubelet/pki" \
    --volume-plugin-dir="$NODE_DIR/kubelet/volume-plugins" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
}

node_start_scheduler() {
  alive scheduler kube-scheduler && return 0
  start_bg scheduler "$BIN/kube-scheduler" --kubeconfig="$NODE_DIR/kube-scheduler.kubeconfig" \
    --leader-elect=false --port=0 --secure-port=0
}

node_start_proxy() {
  alive proxy kube-proxy && return 0
  # ClusterIP Services (the in-cluster apiserver address 10.96.0.1 among them): iptables, and forwarding opened
  # for the bridge only. Pods get no default route, so nothing leaves the machine.
  node_record_sysctls
  iptables -C FORWARD -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j ACCEPT 2>/dev/null ||
    iptables -I FORWARD 1 -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j ACCEPT
  iptables -P FORWARD DROP
  sysctl -q -w net.ipv4.ip_forward=1
  start_bg proxy "$BIN/kube-proxy" --kubeconfig="$NODE_DIR/kube-proxy.kubeconfig" \
    --hostname-override="$NODE_NAME" --proxy-mode=iptables --cluster-cidr="$NODE_SUBNET.0/24" \
    --bind-address="$NODE_IP" --nodeport-addresses="$NODE_SUBNET.0/24" --conntrack-max-per-core=0 \
    --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
    --metrics-bind-address="127.0.0.1:$PROXY_PORT" --healthz-bind-address="127.0.0.1:$((PROXY_PORT + 7))"
}

# kubelet 1.20 sets vm.overcommit_memory, kernel.panic and kernel.panic_on_oops; kube-proxy route_localnet; the
# bridge forwarding ip_forward. The values from before are recorded once and put back by node_down.
NODE_SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops net.ipv4.ip_forward net.ipv4.conf.all.route_localnet)
node_record_sysctls() {
  [[ -f "$NODE_DIR/sysctl-before" ]] && return 0
  local k
  for k in "${NODE_SYSCTLS[@]}"; do echo "$k=$(sysctl -n "$k")"; done >"$NODE_DIR/sysctl-before"
}

node_wait_ready() {
  local i status taints
  for ((i = 0; i < 450; i++)); do
    status="$(KUBECONFIG="$DIR/kubeconfig" kubectl get node "$NODE_NAME" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
    if [[ "$status" == True ]]; then
      taints="$(KUBECONFIG="$DIR/kubeconfig" kubectl get node "$NODE_NAME" -o jsonpath='{.spec.taints}' 2>/dev/null || true)"
      [[ -z "$taints" ]] && return 0
    fi
    alive kubelet kubelet || die_with_log kubelet "kubelet exited; see $DIR/logs/kubelet.log"
    alive containerd containerd || die_with_log containerd "containerd exited; see $DIR/logs/containerd.log"
    sleep 0.2
  done
  die_with_log kubelet "node $NODE_NAME was not Ready and untainted within 90 s (Ready=$status taints=$taints)"
}

# Leftovers of a run that was killed (a CI machine gets the session's machine after its processes are ended): pod
# sandboxes' mounts and network namespaces, and an old bridge without our address.
node_clean_leftovers() {
  local m mounts
  mounts="$(awk '{print $2}' /proc/self/mounts | grep -E "^($NODE_DIR|$NODE_RUN)(/|$)" | sort -r || true)"
  for m in $mounts; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

node_up() {
  node_load_settings
  if node_all_alive; then
    log "node $NODE_NAME already running"
    return 0
  fi
  for tool in containerd runc ctr iptables ip sysctl gcc; do
    command -v "$tool" >/dev/null || die "$tool is missing; run hack/install-deps.sh"
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] ||
    die "the CNI plugins are missing (/usr/lib/cni/bridge); run hack/install-deps.sh"
  ensure_node_binaries
  node_save_settings
  node_certs
  mkdir -p "$NODE_DIR"
  # Mounts of an earlier node whose processes were killed (never while its kubelet or containerd still runs).
  alive kubelet kubelet || alive containerd containerd || node_clean_leftovers
  node_bridge_up
  node_write_configs
  node_record_sysctls
  node_start_containerd
  node_import_images
  node_start_scheduler
  node_start_kubelet
  node_start_proxy
  node_wait_ready
  log "node $NODE_NAME Ready (pods on $NODE_SUBNET.0/24, host at $NODE_IP)"
}

# Images built by hack/images.sh, imported on every node start (containerd's store is in the state dir). The pause
# image must be among them: without it no pod sandbox starts.
node_import_images() {
  local f
  local dir="${BOTRT_IMAGES_DIR:-$REPO/.local/images}"
  [[ -f "$dir/pause.oci.tar" ]] || die "no pause image in $dir; run hack/images.sh first"
  for f in "$dir"/*.oci.tar; do
    [[ -e "$f" ]] || continue
    node_import_archive "$f"
  done
}

node_all_alive() {
  alive containerd containerd && alive kubelet kubelet && alive scheduler kube-scheduler && alive proxy kube-proxy
}

node_down() {
  node_load_settings
  # A state dir that never started a node (BOTRT_NODE=0: a helper's or a test's private control plane) has nothing
  # to stop, and must not touch what is machine-wide: kube-proxy's rules, the FORWARD chain and the kubepods cgroups
  # belong to the node of another state dir (tearing them down made that node NotReady mid-run).
  if [[ ! -d "$NODE_DIR" ]]; then return 0; fi
  # 1. Pods first, while the kubelet runs: it tears down their network and volumes.
  if alive kubelet kubelet && alive apiserver kube-apiserver; then
    KUBECONFIG="$DIR/kubeconfig" kubectl delete pods --all-namespaces --all --grace-period=1 --wait=false \
      >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 40; i++)); do
      [[ -z "$(ctr_ tasks ls -q 2>/dev/null | head -1)" ]] && break
      sleep 0.5
    done
  fi
  # 2. kube-proxy and its rules, the bridge's forwarding rule.
  stop_proc proxy kube-proxy
  [[ -x "$BIN/kube-proxy" ]] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  iptables -D FORWARD -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j ACCEPT 2>/dev/null || true
  iptables -P FORWARD ACCEPT 2>/dev/null || true
  stop_proc kubelet kubelet
  stop_proc scheduler kube-scheduler
  # 3. Containers left, then containerd.
  if alive containerd containerd; then
    local t
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    sleep 0.5
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$t" >/dev/null 2>&1 || true; done
  fi
  stop_proc containerd containerd
  # Shims outlive containerd; only ours (their -address names our socket).
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $NODE_RUN/containerd.sock" 2>/dev/null || true
  # 4. Mounts (deepest first), network namespaces of our sandboxes, the bridge, cgroups.
  node_clean_leftovers
  local n
  for n in /run/netns/cni-*; do
    [[ -e "$n" ]] || continue
    ip netns pids "$(basename "$n")" 2>/dev/null | grep . >/dev/null && continue
    umount "$n" 2>/dev/null || true
    rm -f "$n"
  done
  if [[ -f "$DIR/bridge-created" ]] && ip -o addr show dev "$NODE_BRIDGE" 2>/dev/null | grep -F " $NODE_IP/24 " >/dev/null; then
    ip link del "$NODE_BRIDGE" 2>/dev/null || true
    rm -f "$DIR/bridge-created"
  fi
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  # 5. Kernel settings back to what they were.
  if [[ -f "$NODE_DIR/sysctl-before" ]]; then
    # Once: a second down must not restore values recorded by an earlier node.
    local kv
    while read -r kv; do sysctl -q -w "$kv" 2>/dev/null || true; done <"$NODE_DIR/sysctl-before"
    rm -f "$NODE_DIR/sysctl-before"
  fi
  rm -rf "$NODE_RUN"
  if [[ -d "$NODE_DIR" ]]; then log "node stopped"; fi
}
