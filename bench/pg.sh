#!/usr/bin/env bash
# Tenantry on PostgreSQL against pgbench on the same server, in one run (issue #22's speed goals).
# Starts a throwaway cluster (scripts/pg-cluster.sh), migrates a database, serves from it, and
# loads it with wrk at 32 connections: 4 KiB file GET and PUT over 1 tenant (N files) and over
# N tenants (one file each). Beside it, pgbench with 32 clients on the same server runs the
# equivalent work as custom scripts: one 4 KiB row inserted per transaction, and a 4 KiB row
# selected by primary key from N rows. Then the same Tenantry runs with row-level security
# disabled on every table (ALTER TABLE ... DISABLE ROW LEVEL SECURITY as the owner, which a
# node does not check; the bench's own database only), and two nodes against one (wrk at 16
# connections on each, summed). During the two-node PUT run it revokes keys on one node and
# times until the other refuses them (the propagation's p50/p99).
#   bench/pg.sh [SECONDS=10] [TENANTS=2000]
# TENANTRY_BIN=path runs another build. Needs wrk and PostgreSQL (installed when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
N=${2:-2000}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -n "${TENANTRY_BIN:-}" ] || cargo build --release -q
BIN=${TENANTRY_BIN:-./target/release/tenantry}
WORK=$(mktemp -d)
eval "$(CI=true bash scripts/pg-cluster.sh start)"
trap 'kill $(jobs -p) 2>/dev/null; bash scripts/pg-cluster.sh stop "$PG_CLUSTER_DIR"; rm -rf "$WORK"' EXIT
PSQL="$PG_CLUSTER_BIN/psql -q -v ON_ERROR_STOP=1"
ADMIN=$TENANTRY_TEST_POSTGRES
BASE=${ADMIN%/postgres}
$PSQL "$ADMIN" -c "CREATE ROLE bench_owner LOGIN" -c "CREATE ROLE bench_app LOGIN" \
  -c "CREATE DATABASE bench OWNER bench_owner" -c "CREATE DATABASE pgbench"
OWNER_URL="${BASE/postgres@/bench_owner@}/bench"
APP_URL="${BASE/postgres@/bench_app@}/bench"
"$BIN" db migrate --url "$OWNER_URL" --app-role bench_app > /dev/null
head -c 3072 /dev/urandom | base64 -w0 > "$WORK/file4k"

serve() { # PORT: a node on the bench database
  TENANTRY_ADMIN_KEY=bench-operator TENANTRY_LOG=warn TENANTRY_DATABASE_URL="$APP_URL" "$BIN" serve \
    --listen "127.0.0.1:$1" --data "$WORK/data-$1" > "$WORK/serve-$1.log" 2>&1 &
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/readyz" > /dev/null && return; sleep 0.1; done
  cat "$WORK/serve-$1.log" >&2
  exit 1
}
rps() { grep 'Requests/sec' | awk '{print $2}'; }
load() { # URL METHOD KEYS [PATHS] [CONNECTIONS]: requests per second over DUR
  local url=$1 method=$2 keys=$3 paths=${4:-0} c=${5:-32}
  METHOD=$method KEYS=$keys PATHS=$paths wrk -t2 -c"$c" -d2s -s bench/keys.lua "$url" > /dev/null
  METHOD=$method KEYS=$keys PATHS=$paths wrk -t2 -c"$c" -d"${DUR}s" -s bench/keys.lua "$url" | rps
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

serve 18070
A=http://127.0.0.1:18070
python3 bench/setup.py "$A" bench-operator 1 "$WORK/one.keys" "$WORK/file4k" single "$N" > /dev/null
python3 bench/setup.py "$A" bench-operator "$N" "$WORK/many.keys" "$WORK/file4k" many > /dev/null

# pgbench: the same work as plain SQL on the same server, 32 clients.
PGB="${BASE}/pgbench"
$PSQL "$PGB" -c "CREATE TABLE rows4k (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)" \
  -c "INSERT INTO rows4k (body) SELECT repeat(md5(g::text), 128) FROM generate_series(1, $N) g"
echo "INSERT INTO rows4k (body) VALUES (repeat(md5(random()::text), 128));" > "$WORK/insert.sql"
printf '\\set id random(1, %d)\nSELECT body FROM rows4k WHERE id = :id;\n' "$N" > "$WORK/select.sql"
pgbench_tps() { # SCRIPT
  "$PG_CLUSTER_BIN/pgbench" -n -c 32 -j 2 -T "$DUR" -f "$1" "$PGB" 2>/dev/null | awk '/^tps/ {print int($3)}'
}

echo "== Tenantry on PostgreSQL against pgbench (32 connections, ${DUR}s each, 4 KiB, $N tenants)"
get1=$(load "$A" GET "$WORK/one.keys" "$N")
getn=$(load "$A" GET "$WORK/many.keys")
sel=$(pgbench_tps "$WORK/select.sql")
put1=$(load "$A" PUT "$WORK/one.keys" "$N")
putn=$(load "$A" PUT "$WORK/many.keys")
ins=$(pgbench_tps "$WORK/insert.sql")
printf '%-34s %10s %10s\n' "" "req/s" "÷ pgbench"
printf '%-34s %10s %10s\n' "GET, 1 tenant" "$get1" "$(ratio "$get1" "$sel")"
printf '%-34s %10s %10s\n' "GET, $N tenants" "$getn" "$(ratio "$getn" "$sel")"
printf '%-34s %10s\n' "pgbench select by key" "$sel"
printf '%-34s %10s %10s\n' "PUT, 1 tenant" "$put1" "$(ratio "$put1" "$ins")"
printf '%-34s %10s %10s\n' "PUT, $N tenants" "$putn" "$(ratio "$putn" "$ins")"
printf '%-34s %10s\n' "pgbench insert" "$ins"

echo "== row-level security on against off ($N tenants; on, off, off, on)"
rls() { # ENABLE|DISABLE
  local sql
  sql=$("$PG_CLUSTER_BIN/psql" -At "$OWNER_URL" -c \
    "SELECT string_agg(format('ALTER TABLE %I $1 ROW LEVEL SECURITY', tablename), '; ')
       FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'tenantry_schema'")
  $PSQL "$OWNER_URL" -c "$sql"
}
on_get=$(load "$A" GET "$WORK/many.keys"); on_put=$(load "$A" PUT "$WORK/many.keys")
rls DISABLE
off_get=$(load "$A" GET "$WORK/many.keys"); off_put=$(load "$A" PUT "$WORK/many.keys")
off_get2=$(load "$A" GET "$WORK/many.keys"); off_put2=$(load "$A" PUT "$WORK/many.keys")
rls ENABLE
on_get2=$(load "$A" GET "$WORK/many.keys"); on_put2=$(load "$A" PUT "$WORK/many.keys")
mean() { python3 -c "print(round(($1 + $2) / 2))"; }
g_on=$(mean "$on_get" "$on_get2"); g_off=$(mean "$off_get" "$off_get2")
p_on=$(mean "$on_put" "$on_put2"); p_off=$(mean "$off_put" "$off_put2")
printf '%-34s %10s %10s %10s\n' "" "RLS on" "RLS off" "on ÷ off"
printf '%-34s %10s %10s %10s\n' "GET, $N tenants" "$g_on" "$g_off" "$(ratio "$g_on" "$g_off")"
printf '%-34s %10s %10s %10s\n' "PUT, $N tenants" "$p_on" "$p_off" "$(ratio "$p_on" "$p_off")"

echo "== two nodes against one ($N tenants; 32 connections in all)"
serve 18071
B=http://127.0.0.1:18071
two() { # METHOD: the two nodes' summed rate, 16 connections each
  local a b
  load "$A" "$1" "$WORK/many.keys" 0 16 > "$WORK/two-a" &
  local first=$!
  load "$B" "$1" "$WORK/many.keys" 0 16 > "$WORK/two-b"
  wait "$first"
  a=$(cat "$WORK/two-a"); b=$(cat "$WORK/two-b")
  python3 -c "print(round($a + $b))"
}
one_get=$(load "$A" GET "$WORK/many.keys"); two_get=$(two GET)
one_put=$(load "$A" PUT "$WORK/many.keys")
# Revocations timed while both nodes take PUTs.
python3 bench/revocation.py "$A" "$B" "$(head -1 "$WORK/one.keys")" 50 > "$WORK/revocation" &
REVOKER=$!
two_put=$(two PUT)
wait $REVOKER
printf '%-34s %10s %10s %10s\n' "" "1 node" "2 nodes" "2 ÷ 1"
printf '%-34s %10s %10s %10s\n' "GET" "$one_get" "$two_get" "$(ratio "$two_get" "$one_get")"
printf '%-34s %10s %10s %10s\n' "PUT" "$one_put" "$two_put" "$(ratio "$two_put" "$one_put")"
echo "key revoked on one node, refused by the other (under the two-node PUT load): $(cat "$WORK/revocation")"
