# shellcheck shell=bash
# Shared by the end-to-end flows whose Pods the local node runs (sourced, not run): the kubelet starts every Job Pod
# in containerd from the images hack/images.sh built from images/*/Containerfile, with the Pod's securityContext,
# volumes and Secrets as a node applies them. The controller of a flow runs on the host, scoped to the flow's
# namespace (--namespace) with its own backup namespace, and names the engine image the node has.
#
# The Pods reach the host's services at the bridge address. node_services_up starts one set there (S3 and AWS KMS on
# moto, OpenBao Transit, fake-gcs-server, PostgreSQL; hack/services.sh with BOTRT_SERVICES_HOST) unless it already
# runs (hack/test.sh starts it once for all flows), and node_cleanup stops it only if this flow started it.
#
# A flow sets NODE_FLOW (its name, for messages), sources this file, then calls node_require and node_services_up.

NODE_LIB_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ENGINE_IMAGE=botrt.local/botrt-engine:dev
# An application image with a shell, coreutils and PostgreSQL's clients and server (hack/images/postgres): the
# flows' application Pods and dump commands run in it.
APP_IMAGE=botrt.local/postgres:15
NODE_SERVICES_DIR="${BOTRT_NODE_SERVICES_DIR:-$NODE_LIB_REPO/.local/node-services}"
NODE_SERVICES_STARTED=0

node_fail() {
  echo "${NODE_FLOW:-node}: FAIL: $*" >&2
  exit 1
}

# The cluster's env (KUBECONFIG), a Ready node with the images, and NODE_IP (the bridge address).
node_require() {
  # shellcheck disable=SC1090
  source <(bash "$NODE_LIB_REPO/hack/cluster.sh" env)
  local dir="$BOTRT_CLUSTER_DIR"
  [[ -f "$dir/node.env" ]] || node_fail "no node settings in $dir; start the node with hack/cluster.sh node-up"
  # shellcheck disable=SC1091
  source "$dir/node.env"
  NODE_IP="$NODE_SUBNET.1"
  NODE_RUN="/run/botrt-node-$(printf '%s' "$dir" | sha256sum | cut -c1-10)"
  [[ "$(kubectl get node botrt-node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] ||
    node_fail "the node botrt-node is not Ready (hack/cluster.sh node-up)"
  local img
  for img in "$ENGINE_IMAGE" "$APP_IMAGE"; do
    node_ctr images ls -q | grep -Fx "$img" >/dev/null ||
      node_fail "the node has no image $img; run hack/images.sh, then hack/cluster.sh node-images"
  done
  # The stand-in answers to the stock image's name, so specs that say `image: postgres:16` run unchanged.
  node_ctr images tag --force "$APP_IMAGE" docker.io/library/postgres:16 >/dev/null
  [[ -x "${BOTRT_CONTROLLER_BIN:-}" ]] || node_fail "BOTRT_CONTROLLER_BIN is not set to the built botrt-controller"
}

node_ctr() { ctr --address "$NODE_RUN/containerd.sock" -n k8s.io "$@"; }

# Services on the bridge address (the defaults + 10000, so they never meet the loopback set or a CI's).
node_services_up() {
  if BOTRT_SERVICES_DIR="$NODE_SERVICES_DIR" bash "$NODE_LIB_REPO/hack/services.sh" status >/dev/null 2>&1; then
    NODE_SERVICES_STARTED=0
  else
    NODE_SERVICES_STARTED=1
    BOTRT_SERVICES_DIR="$NODE_SERVICES_DIR" BOTRT_SERVICES_HOST="$NODE_IP" BOTRT_SERVICES_ONLY="moto vault gcs postgres" \
      BOTRT_S3_PORT=15000 BOTRT_VAULT_PORT=18200 BOTRT_VAULT_TLS_PORT=18210 BOTRT_GCS_PORT=14443 BOTRT_PG_PORT=15433 \
      bash "$NODE_LIB_REPO/hack/services.sh" up >"${TMPDIR:-/tmp}/botrt-node-services-$$.log" 2>&1 ||
      node_fail "the Pods' services did not start on $NODE_IP: $(tail -n 5 "${TMPDIR:-/tmp}/botrt-node-services-$$.log")"
    rm -f "${TMPDIR:-/tmp}/botrt-node-services-$$.log"
  fi
  # shellcheck disable=SC1090
  source <(BOTRT_SERVICES_DIR="$NODE_SERVICES_DIR" bash "$NODE_LIB_REPO/hack/services.sh" env)
  [[ "$BOTRT_S3_ENDPOINT" == *"$NODE_IP"* ]] ||
    node_fail "the services in $NODE_SERVICES_DIR listen on $BOTRT_S3_ENDPOINT, not the bridge $NODE_IP"
}

node_services_down() {
  if ((NODE_SERVICES_STARTED == 1)); then
    BOTRT_SERVICES_DIR="$NODE_SERVICES_DIR" bash "$NODE_LIB_REPO/hack/services.sh" down >/dev/null 2>&1 || true
  fi
}

# node_sa_kubeconfig FILE: a kubeconfig of the controller's ServiceAccount botrt-system/botrt-controller, with the
# shipped manifests/rbac/ applied, so a flow's controller has exactly the permissions an install grants: a missing
# grant fails the flow, and the apiserver's audit log shows what the grants were used for (hack/rbac-audit.py).
node_sa_kubeconfig() {
  local out="$1" rbac="$NODE_LIB_REPO/manifests/rbac" token server ca
  kubectl apply -f "$NODE_LIB_REPO/manifests/namespace.yaml" -f "$rbac/serviceaccount.yaml" \
    -f "$rbac/clusterrole.yaml" -f "$rbac/clusterrolebinding.yaml" -f "$rbac/leader-election-role.yaml" >/dev/null ||
    node_fail "could not apply manifests/rbac/"
  token="$(kubectl create --raw /api/v1/namespaces/botrt-system/serviceaccounts/botrt-controller/token -f - <<<'{
    "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["status"]["token"])')" ||
    node_fail "no token for the ServiceAccount botrt-system/botrt-controller (TokenRequest)"
  server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  ca="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
  if [[ -z "$ca" ]]; then
    ca="$(base64 -w0 <"$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')")"
  fi
  (
    umask 077
    cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: botrt-controller, user: {token: "$token"}}]
contexts: [{name: botrt-controller, context: {cluster: local, user: botrt-controller}}]
current-context: botrt-controller
EOF
  )
}

# node_controller LOG ARGS...: botrt-controller on the host with the node's engine image, as its ServiceAccount
# (node_sa_kubeconfig); its pid in NODE_CONTROLLER_PID.
node_controller() {
  local out="$1"
  shift
  local kc="${out%.log}.kubeconfig"
  node_sa_kubeconfig "$kc"
  KUBECONFIG="$kc" "$BOTRT_CONTROLLER_BIN" run --engine-image "$ENGINE_IMAGE" "$@" >"$out" 2>&1 &
  NODE_CONTROLLER_PID=$!
}

# node_pods_dump NAMESPACE...: the Pods of these namespaces with their containers' states, for a failure's log.
node_pods_dump() {
  local ns
  for ns in "$@"; do
    echo "--- pods in $ns"
    kubectl -n "$ns" get pods -o wide 2>&1 | head -20
    kubectl -n "$ns" get pods -o jsonpath='{range .items[*]}{.metadata.name}{": "}{range .status.containerStatuses[*]}{.name}={.state}{" "}{end}{"\n"}{end}' 2>&1 | head -20
    kubectl -n "$ns" get events --sort-by=.lastTimestamp 2>&1 | tail -10
  done
}
