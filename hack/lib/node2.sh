# A second real node on the same machine (sourced by hack/cluster.sh after hack/lib/node.sh, not run): its own
# containerd and kubelet, named botrt-node2, joining the control plane and the scheduler and kube-proxy of the first
# node (hack/lib/node.sh). It exists for what only two nodes show: a backup pod that must follow the pod mounting a
# ReadWriteOnce claim onto that pod's node (issue 15, RWO placement; hack/node/rwo-e2e.sh).
#
# Two kubelets on one host share more than ports. What each would otherwise take from the other, and how it is kept
# apart:
#   - cgroups: a kubelet removes the pod cgroups under its QoS root that it does not know, so the first node's
#     kubelet would kill the second's pods (and the reverse). The second kubelet's cgroupRoot is /botrt-node2, its pods
#     live under /botrt-node2/kubepods.
#   - fixed paths: kubelet 1.20 writes container logs under /var/log/pods and /var/log/containers, and removes log
#     directories of pods it does not run; its device manager empties /var/lib/kubelet/device-plugins at start. The
#     second node's containerd and kubelet run in a mount namespace of their own (unshare, slave propagation: the
#     host's mounts still reach them), where those three directories are bind mounts of the node's state dir.
#   - network: a bridge of its own (botrt1 on 10.244.78.0/24; the host is .1 there too), with a route from its pods to
#     the first node's /24, where the host's services listen (10.244.77.1). ClusterIP Services go through the first
#     node's kube-proxy: its iptables rules are the host's, and both nodes are this host.
#   - the scheduler: the node registers with the taint dr.botrt.io/second-node=true:NoSchedule, so only pods that
#     tolerate it land there and every other flow keeps running on the first node.
#
# Settings (environment), saved in $DIR/node2.env at node2-up:
#   BOTRT_NODE2_SUBNET         the second node's /24 as three octets (default 10.244.78)
#   BOTRT_NODE2_BRIDGE         its bridge (default botrt1)
#   BOTRT_NODE2_KUBELET_PORT   its kubelet's port on its bridge address (default 10260); healthz is the port - 2

NODE2_NAME=botrt-node2
NODE2_TAINT_KEY=dr.botrt.io/second-node
# Only what the second node's pods run: the sandbox, the engine (backup pods) and the application image.
NODE2_IMAGES=(pause botrt-engine postgres)

node2_load_settings() {
  node_load_settings
  if [[ -f "$DIR/node2.env" ]]; then
    # shellcheck disable=SC1091
    source "$DIR/node2.env"
  else
    NODE2_SUBNET="${BOTRT_NODE2_SUBNET:-10.244.78}"
    NODE2_BRIDGE="${BOTRT_NODE2_BRIDGE:-botrt1}"
    NODE2_KUBELET_PORT="${BOTRT_NODE2_KUBELET_PORT:-10260}"
  fi
  NODE2_IP="$NODE2_SUBNET.1"
  NODE2_DIR="$DIR/node2"
  NODE2_RUN="/run/botrt-node2-$(printf '%s' "$DIR" | sha256sum | cut -c1-10)"
  NODE2_CGROUP=botrt-node2
}

node2_save_settings() {
  cat >"$DIR/node2.env" <<EOF
NODE2_SUBNET=$NODE2_SUBNET
NODE2_BRIDGE=$NODE2_BRIDGE
NODE2_KUBELET_PORT=$NODE2_KUBELET_PORT
EOF
}

ctr2_() { ctr --address "$NODE2_RUN/containerd.sock" -n k8s.io "$@"; }

node2_all_alive() { alive containerd2 containerd && alive kubelet2 kubelet; }

# The kubelet's identity: the Node authorizer lets system:node:botrt-node2 write only its own Node and its pods.
node2_certs() {
  local c="$DIR/pki"
  [[ -f "$c/node2.crt" ]] && return 0
  (
    cd "$c"
    umask 077
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client2.ext
    openssl req -newkey rsa:2048 -nodes -keyout node2.key -out node2.csr -subj "/O=system:nodes/CN=system:node:$NODE2_NAME" 2>/dev/null
    openssl x509 -req -in node2.csr -CA client-ca.crt -CAkey client-ca.key -CAcreateserial -out node2.crt \
      -days 3650 -extfile client2.ext 2>/dev/null
    rm -f node2.csr client2.ext client-ca.srl
  )
}

node2_bridge_up() {
  if ! ip -o addr show dev "$NODE2_BRIDGE" 2>/dev/null | grep -F " $NODE2_IP/24 " >/dev/null; then
    if ip -o -4 addr show | grep -F " $NODE2_IP/" >/dev/null; then
      die "$NODE2_IP is already used by another interface; set BOTRT_NODE2_SUBNET to a free /24"
    fi
    ip link add "$NODE2_BRIDGE" type bridge 2>/dev/null || true
    ip addr add "$NODE2_IP/24" dev "$NODE2_BRIDGE"
  fi
  ip link set "$NODE2_BRIDGE" up
  # Pods of this node to each other and to the first node's pods (kube-proxy set FORWARD's policy to DROP).
  local pair
  for pair in "$NODE2_BRIDGE $NODE2_BRIDGE" "$NODE2_BRIDGE $NODE_BRIDGE" "$NODE_BRIDGE $NODE2_BRIDGE"; do
    set -- $pair
    iptables -C FORWARD -i "$1" -o "$2" -j ACCEPT 2>/dev/null || iptables -I FORWARD 1 -i "$1" -o "$2" -j ACCEPT
  done
}

node2_cgroups_up() {
  local d
  for d in /sys/fs/cgroup/*/; do
    [[ -f "$d/cgroup.procs" ]] || continue
    mkdir -p "$d$NODE2_CGROUP"
  done
  # A new cpuset cgroup has no cpus and no mems: nothing could run under it.
  local cs=/sys/fs/cgroup/cpuset
  if [[ -d "$cs/$NODE2_CGROUP" ]]; then
    [[ -n "$(cat "$cs/$NODE2_CGROUP/cpuset.cpus")" ]] || cat "$cs/cpuset.cpus" >"$cs/$NODE2_CGROUP/cpuset.cpus"
    [[ -n "$(cat "$cs/$NODE2_CGROUP/cpuset.mems")" ]] || cat "$cs/cpuset.mems" >"$cs/$NODE2_CGROUP/cpuset.mems"
  fi
}

node2_write_configs() {
  mkdir -p "$NODE2_DIR"/{containerd,cni/net.d,cni/ipam,kubelet,var-log-pods,var-log-containers,var-lib-kubelet} "$NODE2_RUN"
  # The first node's files, with this node's names, paths and addresses.
  local from="$NODE_DIR"
  sed -e "s|$NODE_DIR/|$NODE2_DIR/|g" -e "s|$NODE_RUN|$NODE2_RUN|g" \
    "$from/containerd/config.toml" >"$NODE2_DIR/containerd/config.toml"
  # A route to the first node's /24 too: the host's services listen on its address.
  node_cni_conflist "$NODE2_DIR/cni" botrt-net2 "$NODE2_BRIDGE" "$NODE2_SUBNET" ", {\"dst\": \"$NODE_SUBNET.0/24\", \"gw\": \"$NODE2_IP\"}"
  cp "$NODE_DIR/resolv.conf" "$NODE2_DIR/resolv.conf"
  sed -e "s|^address: .*|address: $NODE2_IP|" -e "s|^port: .*|port: $NODE2_KUBELET_PORT|" \
    -e "s|^healthzPort: .*|healthzPort: $((NODE2_KUBELET_PORT - 2))|" -e "s|$NODE_DIR/|$NODE2_DIR/|g" \
    "$NODE_DIR/kubelet-config.yaml" >"$NODE2_DIR/kubelet-config.yaml"
  printf 'cgroupRoot: /%s\n' "$NODE2_CGROUP" >>"$NODE2_DIR/kubelet-config.yaml"
  sed -e "s|$DIR/pki/node\.|$DIR/pki/node2.|g" "$NODE_DIR/kubelet.kubeconfig" >"$NODE2_DIR/kubelet.kubeconfig"
  chmod 600 "$NODE2_DIR/kubelet.kubeconfig"
}

# containerd in a new mount namespace, with the kubelet's fixed paths bound to this node's state dir; the kubelet
# joins that namespace (nsenter) so that both see the same volumes, sandboxes and logs.
node2_start_containerd() {
  alive containerd2 containerd && return 0
  mkdir -p /var/log/pods /var/log/containers /var/lib/kubelet
  start_bg containerd2 unshare --mount --propagation slave -- sh -c "
    mount --bind '$NODE2_DIR/var-log-pods' /var/log/pods &&
    mount --bind '$NODE2_DIR/var-log-containers' /var/log/containers &&
    mount --bind '$NODE2_DIR/var-lib-kubelet' /var/lib/kubelet &&
    exec containerd --config '$NODE2_DIR/containerd/config.toml'"
  local i
  for ((i = 0; i < 100; i++)); do
    ctr2_ version >/dev/null 2>&1 && return 0
    alive containerd2 containerd || die_with_log containerd2 "the second node's containerd exited"
    sleep 0.1
  done
  die_with_log containerd2 "the second node's containerd did not answer on $NODE2_RUN/containerd.sock within 10 s"
}

node2_import_images() {
  local dir="${BOTRT_IMAGES_DIR:-$REPO/.local/images}" name
  for name in "${NODE2_IMAGES[@]}"; do
    [[ -f "$dir/$name.oci.tar" ]] || die "no $name image in $dir; run hack/images.sh first"
    ctr2_ images import "$dir/$name.oci.tar" >/dev/null
  done
}

node2_start_kubelet() {
  alive kubelet2 kubelet && return 0
  local ns_pid
  ns_pid="$(pid_of containerd2)"
  start_bg kubelet2 nsenter -t "$ns_pid" -m -- "$BIN/kubelet" \
    --config="$NODE2_DIR/kubelet-config.yaml" --kubeconfig="$NODE2_DIR/kubelet.kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint="unix://$NODE2_RUN/containerd.sock" \
    --image-service-endpoint="unix://$NODE2_RUN/containerd.sock" --runtime-request-timeout=2m \
    --pod-infra-container-image="botrt.local/pause:$K8S_VERSION" \
    --root-dir="$NODE2_DIR/kubelet" --cert-dir="$NODE2_DIR/kubelet/pki" \
    --volume-plugin-dir="$NODE2_DIR/kubelet/volume-plugins" \
    --hostname-override="$NODE2_NAME" --node-ip="$NODE2_IP" --v=1 \
    --register-with-taints="$NODE2_TAINT_KEY=true:NoSchedule"
}

node2_wait_ready() {
  local i status
  for ((i = 0; i < 450; i++)); do
    status="$(KUBECONFIG="$DIR/kubeconfig" kubectl get node "$NODE2_NAME" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
    [[ "$status" == True ]] && return 0
    alive kubelet2 kubelet || die_with_log kubelet2 "the second node's kubelet exited"
    alive containerd2 containerd || die_with_log containerd2 "the second node's containerd exited"
    sleep 0.2
  done
  die_with_log kubelet2 "node $NODE2_NAME was not Ready within 90 s (Ready=$status)"
}

node2_up() {
  node2_load_settings
  node_all_alive || die "the first node is not running; run: $0 up (or node-up)"
  if node2_all_alive; then
    log "node $NODE2_NAME already running"
    return 0
  fi
  node2_save_settings
  node2_certs
  node2_bridge_up
  node2_cgroups_up
  node2_write_configs
  node2_start_containerd
  node2_import_images
  node2_start_kubelet
  node2_wait_ready
  log "node $NODE2_NAME Ready (pods on $NODE2_SUBNET.0/24, tainted $NODE2_TAINT_KEY=true:NoSchedule)"
}

node2_down() {
  node2_load_settings
  [[ -d "$NODE2_DIR" ]] || return 0
  # Pods first, while the kubelet runs; then the Node, so that nothing waits for a node that is gone.
  if alive kubelet2 kubelet && alive apiserver kube-apiserver; then
    KUBECONFIG="$DIR/kubeconfig" kubectl delete pods --all-namespaces --field-selector "spec.nodeName=$NODE2_NAME" \
      --grace-period=1 --wait=false >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 40; i++)); do
      [[ -z "$(ctr2_ tasks ls -q 2>/dev/null | head -1)" ]] && break
      sleep 0.5
    done
  fi
  stop_proc kubelet2 kubelet
  if alive containerd2 containerd; then
    local t
    for t in $(ctr2_ tasks ls -q 2>/dev/null); do ctr2_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    sleep 0.5
    for t in $(ctr2_ tasks ls -q 2>/dev/null); do ctr2_ tasks rm -f "$t" >/dev/null 2>&1 || true; done
  fi
  stop_proc containerd2 containerd
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $NODE2_RUN/containerd.sock" 2>/dev/null || true
  if alive apiserver kube-apiserver; then
    KUBECONFIG="$DIR/kubeconfig" kubectl delete pods --all-namespaces --field-selector "spec.nodeName=$NODE2_NAME" \
      --grace-period=0 --force >/dev/null 2>&1 || true
    KUBECONFIG="$DIR/kubeconfig" kubectl delete node "$NODE2_NAME" --ignore-not-found >/dev/null 2>&1 || true
  fi
  # The mount namespace ended with its last process, and its mounts with it. The bridge, its rules and cgroups stay
  # until here.
  local pair
  for pair in "$NODE2_BRIDGE $NODE2_BRIDGE" "$NODE2_BRIDGE $NODE_BRIDGE" "$NODE_BRIDGE $NODE2_BRIDGE"; do
    set -- $pair
    iptables -D FORWARD -i "$1" -o "$2" -j ACCEPT 2>/dev/null || true
  done
  ip link del "$NODE2_BRIDGE" 2>/dev/null || true
  local d
  for d in /sys/fs/cgroup/*/"$NODE2_CGROUP"; do
    [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -rf "$NODE2_RUN" "$NODE2_DIR"
  log "node $NODE2_NAME stopped"
}
