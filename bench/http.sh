#!/usr/bin/env bash
# HTTP benchmark (issue: core). Builds release, starts Tenantry and nginx on loopback, and loads
# both with wrk: 4 KiB file GET and PUT at 32 connections, with (a) 1 tenant and (b) 10,000
# tenants with requests spread over all of them. nginx serves the same 4 KiB file behind a
# bearer-header check: the reference measured in the same run. Baseline (a) reads and writes N
# files of the one tenant, so (a) and (b) have the same working set and only the number of
# tenants differs; the one-file figures (every request on the same row) are printed too. (a) and
# (b) are each run twice, in the order a b b a, and averaged, and so are nginx and the one-file GET
# (nginx first and last, the one-file GET second and second to last); every run follows 2 s of
# warm-up. Also: tenant creation latency and
# server RSS with 10,000 idle tenants.
# Before each Tenantry run the script waits until the log tails are folded (/metrics), so no run
# pays for the folds of the writes before it; after each PUT run it waits again and charges the
# run for the time a fold was under way meanwhile (/metrics): a PUT rate is the run's requests
# over its window plus that time, so work a run leaves to the writer cannot flatter it. PUT_SECONDS
# sets the PUT windows: 30 shows the sustained rate.
#   bench/http.sh [DURATION_SECONDS=10] [TENANTS=10000] [PUT_SECONDS=DURATION_SECONDS]
# TENANTRY_BIN=path runs another build (e.g. an older commit's, for an A/B in the same conditions).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
N=${2:-10000}
PUT_DUR=${3:-$DUR}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light || apt-get install -y -qq nginx; }
[ -n "${TENANTRY_BIN:-}" ] || cargo build --release -q
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; nginx -c "$WORK/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$WORK"' EXIT
. bench/lib.sh
bench_serve 18070
TOKEN=bench-token

cat > "$WORK/nginx.conf" <<NGINX
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18080;
    location = /v1/files/bench.txt {
      if (\$http_authorization != "Bearer $TOKEN") { return 401; }
      alias $WORK/file4k;
      default_type text/plain;
    }
  }
}
NGINX
nginx -c "$WORK/nginx.conf"

rps() { grep 'Requests/sec' | awk '{print $2}'; }
RUN_DUR=$DUR
run_wrk() { # name url lua-env... (RUN_DUR seconds)
  local name=$1 url=$2; shift 2
  case "$url" in *:18070) bench_drain 18070 > /dev/null ;; esac
  # 2 s of warm-up, not measured: the file cache (64 MiB) holds one working set of 10,000 4 KiB
  # files but not two, so a run would otherwise begin with the previous run's files cached.
  env "$@" wrk -t2 -c32 -d2s -s bench/keys.lua "$url" > /dev/null
  local out; out=$(env "$@" wrk -t2 -c32 -d"${RUN_DUR}s" --latency -s bench/keys.lua "$url")
  local p99; p99=$(echo "$out" | grep -E '^ +99%' | awk '{print $2}')
  local rate; rate=$(echo "$out" | rps)
  case "$name" in
    tenantry-put-*)
      local ms; ms=$(bench_drain 18070)
      rate=$(python3 -c "import sys; r, d, ms = map(float, sys.argv[1:]); print(round(r * d / (d + ms / 1000), 2))" "$rate" "$RUN_DUR" "$ms")
      printf '%-34s %10s req/s   p99 %s   (charged %s s of folding after the window)\n' "$name" "$rate" "$p99" "$(python3 -c "print(round($ms / 1000, 1))")" ;;
    *) printf '%-34s %10s req/s   p99 %s\n' "$name" "$rate" "$p99" ;;
  esac
  echo "$rate" > "$WORK/$name.rps"
}

mean() { # the mean of two runs' rates, by name
  python3 -c "import sys; print((float(sys.argv[1]) + float(sys.argv[2])) / 2)" "$(cat "$WORK/$1.rps")" "$(cat "$WORK/$2.rps")"
}

echo "== setup: 1 tenant"
echo "$TOKEN" > "$WORK/nginx.keys"
python3 bench/setup.py http://127.0.0.1:18070 bench-operator 1 "$WORK/one.keys" "$WORK/file4k" single "$N"
echo "== setup: $N tenants (tenant creation latency over one connection)"
CREATE=$(python3 bench/setup.py http://127.0.0.1:18070 bench-operator "$N" "$WORK/many.keys" "$WORK/file4k" many)
echo "$CREATE"
sleep 2
RSS=$(awk '/VmRSS/ {print $2}' /proc/$SERVER/status)
ANON=$(awk '/RssAnon/ {print $2}' /proc/$SERVER/status)
FILE=$(awk '/RssFile/ {print $2}' /proc/$SERVER/status)
# VmRSS also counts the pages of the readers' memory maps of the database that were touched
# (file-backed: the kernel drops them at will; until session 10 the writer's map too, most of
# it); the anonymous part is the server's own memory.
echo "server RSS with $((N + 2)) idle tenants: $((RSS / 1024)) MiB (anonymous $((ANON / 1024)) MiB, file-backed $((FILE / 1024)) MiB)"

echo "== load: wrk -t2 -c32 -d${DUR}s, PUT -d${PUT_DUR}s (nginx first and last, the 1-file GET second and second to last: each averaged)"
echo "   (a) and (b) run in the order a b b a and are averaged: on this VM a run's rate drifts with"
echo "   its place in the sequence, and the order cancels a steady drift)"
run_wrk nginx-get-first http://127.0.0.1:18080 KEYS="$WORK/nginx.keys" METHOD=GET
run_wrk tenantry-get-1-tenant-1-file-1 http://127.0.0.1:18070 KEYS="$WORK/one.keys" METHOD=GET
for m in GET PUT; do
  lower=$(echo "$m" | tr 'A-Z' 'a-z')
  if [ "$m" = PUT ]; then RUN_DUR=$PUT_DUR; else RUN_DUR=$DUR; fi
  [ "$m" = PUT ] && run_wrk tenantry-put-1-tenant-1-path http://127.0.0.1:18070 KEYS="$WORK/one.keys" METHOD=PUT
  run_wrk "tenantry-$lower-1-tenant-a1" http://127.0.0.1:18070 KEYS="$WORK/one.keys" METHOD=$m PATHS="$N"
  run_wrk "tenantry-$lower-${N}-tenants-b1" http://127.0.0.1:18070 KEYS="$WORK/many.keys" METHOD=$m
  run_wrk "tenantry-$lower-${N}-tenants-b2" http://127.0.0.1:18070 KEYS="$WORK/many.keys" METHOD=$m
  run_wrk "tenantry-$lower-1-tenant-a2" http://127.0.0.1:18070 KEYS="$WORK/one.keys" METHOD=$m PATHS="$N"
  for side in "1-tenant-a" "${N}-tenants-b"; do
    mean "tenantry-$lower-${side}1" "tenantry-$lower-${side}2" > "$WORK/tenantry-$lower-${side%-?}.rps"
  done
done
RUN_DUR=$DUR
run_wrk tenantry-get-1-tenant-1-file-2 http://127.0.0.1:18070 KEYS="$WORK/one.keys" METHOD=GET
run_wrk nginx-get-last http://127.0.0.1:18080 KEYS="$WORK/nginx.keys" METHOD=GET
# The same order trick: nginx, Tenantry ... Tenantry, nginx, each side averaged.
mean nginx-get-first nginx-get-last > "$WORK/nginx-get.rps"
mean tenantry-get-1-tenant-1-file-1 tenantry-get-1-tenant-1-file-2 > "$WORK/tenantry-get-1-tenant-1-file.rps"

r() { cat "$WORK/$1.rps"; }
python3 - "$(r nginx-get)" "$(r tenantry-get-1-tenant-1-file)" "$(r tenantry-get-1-tenant)" "$(r tenantry-get-${N}-tenants)" "$(r tenantry-put-1-tenant)" "$(r tenantry-put-${N}-tenants)" <<'PY'
import sys
ng, g1f, g1, gn, p1, pn = map(float, sys.argv[1:])
print(f"GET 1 tenant 1 file / nginx   = {g1f/ng:.2f}  (goal >= 0.5; nginx serves the same one file)")
print(f"GET many tenants / 1 tenant   = {gn/g1:.2f}  (goal >= 0.9)")
print(f"PUT many tenants / 1 tenant   = {pn/p1:.2f}  (goal >= 0.9)")
PY
