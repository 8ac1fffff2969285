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

# node_hostpath_pv NAME NAMESPACE CLAIM DIR [SIZE [CLASS]]: a PersistentVolume on the node's DIR reserved for claim
# NAMESPACE/CLAIM (the testbed has no provisioner); NAMESPACE "-" leaves it unreserved, for the first claim of its class
# and size that asks. SIZE defaults to 1Gi, CLASS to "" (no class).
node_hostpath_pv() {
  local ref=""
  [[ "$2" != - ]] && ref="claimRef: {namespace: $2, name: $3}"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolume
metadata: {name: $1}
spec:
  capacity: {storage: ${5:-1Gi}}
  accessModes: [ReadWriteOnce]
  storageClassName: "${6:-}"
  persistentVolumeReclaimPolicy: Retain
  $ref
  hostPath: {path: "$4", type: Directory}
EOF
}

# node_vault_tls DIR PORT: Vault over TLS on the node's address, PORT: a TLS front (hack/lib/tls-proxy.py) with a
# certificate for NODE_IP from a CA of the flow's own (a private CA, as many sites have; OpenBao's -dev-tls certificate
# names only localhost), in front of the node services' plain-HTTP Vault. Sets NODE_VAULT_TLS_ADDR, NODE_VAULT_CA (the
# CA's PEM file) and NODE_VAULT_TLS_PID (the proxy, for the flow to stop). Needs node_services_up first.
node_vault_tls() {
  local pki="$1/pki" port="$2"
  mkdir -p "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/ca-key.pem" \
    -out "$pki/ca.pem" -days 1 -subj "/CN=${NODE_FLOW:-node} CA" 2>/dev/null || node_fail "could not make a CA"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/vault-key.pem" \
    -out "$pki/vault.csr" -subj "/CN=$NODE_IP" 2>/dev/null || node_fail "could not make Vault's key"
  printf 'subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\n' "$NODE_IP" >"$pki/san.ext"
  openssl x509 -req -in "$pki/vault.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca-key.pem" -CAcreateserial \
    -out "$pki/vault.pem" -days 1 -extfile "$pki/san.ext" 2>/dev/null || node_fail "could not sign Vault's certificate"
  python3 "$NODE_LIB_REPO/hack/lib/tls-proxy.py" "$NODE_IP:$port" "${VAULT_ADDR#http://}" "$pki/vault.pem" \
    "$pki/vault-key.pem" >"$1/tls-proxy.log" 2>&1 &
  NODE_VAULT_TLS_PID=$!
  NODE_VAULT_TLS_ADDR="https://$NODE_IP:$port"
  NODE_VAULT_CA="$pki/ca.pem"
  for _ in $(seq 1 50); do
    curl -sf --cacert "$NODE_VAULT_CA" "$NODE_VAULT_TLS_ADDR/v1/sys/health" >/dev/null && return 0
    sleep 0.2
  done
  node_fail "Vault does not answer over TLS at $NODE_VAULT_TLS_ADDR: $(cat "$1/tls-proxy.log")"
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

# ---------------------------------------------------------------------------------------------
# What a flow's setup and teardown share. A flow sets NODE_FLOW_WORK (its temporary directory, where node_controller's
# log goes as controller.log), and lists what its teardown removes in NODE_FLOW_NAMESPACES, NODE_FLOW_PVS and
# NODE_FLOW_PATHS as it creates them.

fail() { node_fail "$@"; }
log() { echo "${NODE_FLOW:-node}: $(date -u +%H:%M:%S) $*" >&2; }
NODE_FLOW_WORK=""
NODE_FLOW_NAMESPACES=()
NODE_FLOW_PVS=()
NODE_FLOW_PATHS=()
NODE_CONTROLLER_PID=""

# node_flow_bucket BUCKET: a bucket in the node services' S3.
node_flow_bucket() {
  python3 -c 'import os, sys, boto3; boto3.client("s3", endpoint_url=os.environ["BOTRT_S3_ENDPOINT"], region_name="us-east-1").create_bucket(Bucket=sys.argv[1])' "$1" ||
    node_fail "could not create the bucket $1 at $BOTRT_S3_ENDPOINT"
}

# node_flow_namespace NS: the namespace, once its default ServiceAccount exists; removed by node_flow_cleanup.
node_flow_namespace() {
  kubectl create namespace "$1" >/dev/null || node_fail "could not create the namespace $1"
  [[ " ${NODE_FLOW_NAMESPACES[*]} " == *" $1 "* ]] || NODE_FLOW_NAMESPACES+=("$1")
  for _ in $(seq 1 100); do kubectl -n "$1" get serviceaccount default >/dev/null 2>&1 && return 0; sleep 0.2; done
  node_fail "the namespace $1 got no default ServiceAccount within 20 s"
}

# node_flow_secrets NS: the Secrets the flows' policies name, in NS: s3-creds (the node services' S3 keys) and
# vault-token (OpenBao's token, also in $NODE_FLOW_WORK/vault-token for the engine's command line).
node_flow_secrets() {
  (umask 077 && printf '%s' "$VAULT_TOKEN" >"$NODE_FLOW_WORK/vault-token")
  kubectl -n "$1" create secret generic s3-creds --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
    --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" >/dev/null
  kubectl -n "$1" create secret generic vault-token --from-file=token="$NODE_FLOW_WORK/vault-token" >/dev/null
}

# node_flow_cleanup RC NS...: a flow's teardown, from its EXIT trap. The RecoveryPlans, then the BackupPolicies, of
# the namespaces NS are deleted while the flow's controller still runs (it removes their finalizers); the controller
# is stopped; when RC is not 0, the controller log's tail, the namespaces' Pods and the policies' and plans' status
# are shown; then NODE_FLOW_NAMESPACES, NODE_FLOW_PVS and NODE_FLOW_PATHS are removed, and the services stopped if
# this flow started them.
node_flow_cleanup() {
  local rc="$1" ns
  shift
  set +e
  for ns in "$@"; do
    kubectl -n "$ns" delete recoveryplans --all --timeout=60s >/dev/null 2>&1
    kubectl -n "$ns" delete backuppolicies --all --timeout=60s >/dev/null 2>&1
  done
  if [[ -n "$NODE_CONTROLLER_PID" ]]; then
    kill -TERM "$NODE_CONTROLLER_PID"
    wait "$NODE_CONTROLLER_PID"
  fi
  if [[ "$rc" -ne 0 ]]; then
    {
      echo "--- controller log"
      tail -n 40 "$NODE_FLOW_WORK/controller.log"
      node_pods_dump "${NODE_FLOW_NAMESPACES[@]}"
      for ns in "$@"; do
        echo "--- policy status in $ns"
        kubectl -n "$ns" get backuppolicies -o jsonpath='{range .items[*]}{.metadata.name}: {.status}{"\n"}{end}'
        echo "--- plan status in $ns"
        kubectl -n "$ns" get recoveryplans -o jsonpath='{range .items[*]}{.metadata.name}: {.status}{"\n"}{end}'
      done
    } >&2
  fi
  if ((${#NODE_FLOW_NAMESPACES[@]})); then
    kubectl delete namespace "${NODE_FLOW_NAMESPACES[@]}" --ignore-not-found --wait=false >/dev/null 2>&1
  fi
  if ((${#NODE_FLOW_PVS[@]})); then kubectl delete pv "${NODE_FLOW_PVS[@]}" --wait=false >/dev/null 2>&1; fi
  node_services_down
  if ((${#NODE_FLOW_PATHS[@]})); then rm -rf "${NODE_FLOW_PATHS[@]}"; fi
}

# node_flow_store PREFIX: a policy's repository and encryption (the YAML under spec, indented by 2), for the flows'
# policies: the bucket $BUCKET of the node services' S3 under PREFIX, keys from their OpenBao Transit key botrt-test,
# with the Secrets node_flow_secrets made.
node_flow_store() {
  cat <<EOF2
  repository:
    s3: {bucket: "$BUCKET", prefix: "$1", endpoint: "$BOTRT_S3_ENDPOINT", region: us-east-1, forcePathStyle: true,
         credentialsSecretRef: {name: s3-creds}}
  encryption:
    kms:
      vaultTransit: {address: "$VAULT_ADDR", key: botrt-test, authSecretRef: {name: vault-token}}
      allowPlaintextHTTP: true  # the test services' Vault speaks plain HTTP
EOF2
}

# node_flow_snapshot NS POLICY: waits up to 180 s for the policy's first snapshot and prints its id; fails naming the
# policy's conditions when its backup failed or none came.
node_flow_snapshot() {
  local snap="" _
  for _ in $(seq 1 180); do
    snap="$(kubectl -n "$1" get backuppolicy "$2" -o jsonpath='{.status.lastSnapshot}')"
    [[ -n "$snap" ]] && break
    [[ "$(kubectl -n "$1" get backuppolicy "$2" \
      -o jsonpath='{.status.conditions[?(@.type=="LastBackupSucceeded")].status}')" == False ]] && break
    sleep 1
  done
  [[ -n "$snap" ]] ||
    node_fail "the backup of $2 made no snapshot: $(kubectl -n "$1" get backuppolicy "$2" -o jsonpath='{.status.conditions}')"
  echo "$snap"
}
