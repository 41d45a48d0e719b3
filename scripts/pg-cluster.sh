#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: its own data directory in a temp dir, a free port
# on 127.0.0.1, trust authentication (nothing but this machine reaches it), stopped and removed
# by `stop`, TLS on (certificates in the cluster dir, see below). The tests take its address from
# TENANTRY_TEST_POSTGRES (a superuser's URL; each test creates a database and roles of its own in it).
#
#   eval "$(bash scripts/pg-cluster.sh start)"   # exports TENANTRY_TEST_POSTGRES and PG_CLUSTER_DIR
#   bash scripts/pg-cluster.sh stop "$PG_CLUSTER_DIR"
#   bash scripts/pg-cluster.sh halt|resume DIR   # stop and start the server only, same port and data
#
# With CI=true and no PostgreSQL on the machine it installs Debian's (apt-get, as root). initdb
# and the server refuse to run as root, so under root they run as the `postgres` user.
set -euo pipefail

bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
start)
  if [ -z "$(bin_dir)" ] || ! command -v openssl > /dev/null; then
    if [ "${CI:-}" = true ] && [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql openssl) >&2
    else
      echo "no PostgreSQL or openssl here: install Debian's postgresql and openssl packages (or run under CI=true as root)" >&2
      exit 1
    fi
  fi
  BIN=$(bin_dir)
  DIR=$(mktemp -d /tmp/tenantry-pg.XXXXXX)
  chmod 700 "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
  # TLS as a managed server offers it: a CA of the cluster's own (ca.crt; its key signs client
  # certificates in the TLS tests) and a server certificate for the name localhost only, so a test
  # can see a name checked. Clients that do not ask for TLS may still connect without.
  # Members of tenantry_cert_login log in with a client certificate only (pg_hba `cert`).
  ( cd "$DIR" &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=tenantry test CA" \
      -keyout ca.key -out ca.crt &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr &&
    printf 'subjectAltName=DNS:localhost\n' > server.ext &&
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile server.ext -out server.crt &&
    chmod 600 server.key &&
    if [ "$(id -u)" = 0 ]; then chown postgres: server.key server.crt ca.crt; fi
  ) >"$DIR/certs.log" 2>&1 || { cat "$DIR/certs.log" >&2; exit 1; }
  as_owner sed -i '1i hostssl all +tenantry_cert_login 127.0.0.1/32 cert\nhost all +tenantry_cert_login 127.0.0.1/32 reject' \
    "$DIR/data/pg_hba.conf"
  OPTS="-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=256MB"
  OPTS="$OPTS -c ssl=on -c ssl_cert_file=$DIR/server.crt -c ssl_key_file=$DIR/server.key -c ssl_ca_file=$DIR/ca.crt"
  echo "$OPTS" > "$DIR/options"
  as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -o "$OPTS" start >&2 \
    || { cat "$DIR/server.log" >&2; exit 1; }
  as_owner "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAt \
    -c "CREATE ROLE tenantry_cert_login NOLOGIN" >/dev/null
  echo "export PG_CLUSTER_DIR=$DIR"
  echo "export PG_CLUSTER_BIN=$BIN"
  echo "export TENANTRY_TEST_POSTGRES=postgres://postgres@127.0.0.1:$PORT/postgres"
  ;;
halt)
  DIR=${2:?the cluster dir printed by start}
  as_owner "$(bin_dir)/pg_ctl" -D "$DIR/data" -m fast -w stop >&2
  ;;
resume)
  DIR=${2:?the cluster dir printed by start}
  as_owner "$(bin_dir)/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -o "$(cat "$DIR/options")" start >&2
  ;;
stop)
  DIR=${2:?the cluster dir printed by start}
  BIN=$(bin_dir)
  [ -d "$DIR/data" ] && as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
  rm -rf "$DIR"
  ;;
*)
  echo "usage: $0 start | stop DIR | halt DIR | resume DIR" >&2
  exit 2
  ;;
esac
