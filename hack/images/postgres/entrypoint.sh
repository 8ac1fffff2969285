#!/bin/sh
# Like the stock image's entrypoint, in short: a new data directory is initialised (password auth from
# POSTGRES_PASSWORD, or trust on the pod network when none is set), then the server listens on every address.
set -eu
if [ "${1:-}" = postgres ]; then
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pw="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD:-postgres}" >"$pw"
    initdb --username=postgres --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
    rm -f "$pw"
    printf 'host all all 0.0.0.0/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  fi
  exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
fi
exec "$@"
