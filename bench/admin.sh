#!/usr/bin/env bash
# The admin page's server side with many tenants (issue: people and the admin page). Builds
# release, starts Tenantry, creates N tenants (default 100,000), a super-admin and a member of
# 50 tenants, then measures with wrk (1 connection: one request at a time, so its latency is the
# server's time plus loopback; then 4 connections, sharing the two cores with wrk), DURATION
# seconds each, the latency distribution, p50 and p99 as wrk reports them, of:
#   (a) the switcher's search, GET /v1/auth/tenants?q=&limit=12, for the super-admin (every
#       tenant) with queries that match many, few and none (a miss walks every slug and name);
#   (b) the same for the member (their 50 memberships);
#   (c) the operator's tenant list, GET /v1/tenants?q=&limit=50, with the same queries, and a
#       page without a search;
#   (d) the page itself (GET /admin/t/SLUG/files: the shell every first render starts from);
#   (e) GET /healthz, the reference: the cost of any request in the same run;
#   (f) a search right after a change (a new tenant), which first rebuilds the search index
#       (curl's time, 20 rounds).
# Goals: (a)-(c) p99 <= 20 ms; (d) <= 100 ms.
#   bench/admin.sh [TENANTS=100000] [DURATION_SECONDS=10]
# TENANTRY_BIN=path runs another build.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
DUR=${2:-10}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -n "${TENANTRY_BIN:-}" ] || cargo build --release -q
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
. bench/lib.sh
bench_serve 18076
URL=http://127.0.0.1:18076
OP=(-H "Authorization: Bearer bench-operator")

start=$(date +%s)
python3 - "$URL" "$N" <<'PY'
# N tenants t000000..., named "<Word> <Word> <i>", over 4 kept-alive connections.
import http.client, json, sys, threading
url, n = sys.argv[1], int(sys.argv[2])
host, port = url.split("//")[1].split(":")
words = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent"]
def work(part):
    c = http.client.HTTPConnection(host, int(port))
    for i in range(part, n, 4):
        body = json.dumps({"slug": f"t{i:06d}", "name": f"{words[i % 10]} {words[(i // 10) % 10]} {i}"})
        c.request("POST", "/v1/tenants", body, {"Authorization": "Bearer bench-operator", "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 201:
            sys.exit(f"tenant {i}: {r.status}")
threads = [threading.Thread(target=work, args=(p,)) for p in range(4)]
for t in threads: t.start()
for t in threads: t.join()
PY
echo "created $N tenants in $(( $(date +%s) - start )) s"

PASS='bench password 1'
curl -sf "$URL/v1/users" "${OP[@]}" -d "{\"email\":\"root@example.com\",\"password\":\"$PASS\",\"super_admin\":true}" > /dev/null
curl -sf "$URL/v1/users" "${OP[@]}" -d "{\"email\":\"member@example.com\",\"password\":\"$PASS\"}" > /dev/null
for i in $(seq 0 $(( N / 50 )) $(( N - 1 )) | head -50); do
  curl -sf "$URL/t/$(printf 't%06d' "$i")/v1/members" "${OP[@]}" -d '{"email":"member@example.com","role":"reader"}' > /dev/null
done
cookie() {
  curl -sf -D - -o /dev/null "$URL/v1/auth/login" -d "{\"email\":\"$1\",\"password\":\"$PASS\"}" | tr -d '\r' |
    awk -F'[: ;]+' 'tolower($1) == "set-cookie" {print $2; exit}'
}
ROOT=$(cookie root@example.com)
MEMBER=$(cookie member@example.com)

# Queries: a slug prefix matching many, a name word, a rarer number, and a miss.
MANY="t0,acme,hooli%20stark,9999,zzzz-none"
MISS="zzzz-none"
lat() { # name env...: p50 and p99 from wrk --latency
  local name=$1; shift
  env "$@" wrk -t1 -c"$CONNS" -d2s -s bench/switcher.lua "$URL" > /dev/null
  env "$@" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -s bench/switcher.lua "$URL" > "$WORK/out"
  awk -v n="$name" '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {r=$2}
    END {printf "%-58s p50 %8s  p99 %8s  (%s req/s)\n", n, p50, p99, r}' "$WORK/out"
}
for CONNS in 1 4; do
echo "with $N tenants, $CONNS connection(s), ${DUR} s each:"
lat "(a) switcher, super-admin, mixed queries" COOKIE="$ROOT" PATH_PREFIX="/v1/auth/tenants?limit=12&q=" QUERIES="$MANY"
lat "(a) switcher, super-admin, a miss (walks every tenant)" COOKIE="$ROOT" PATH_PREFIX="/v1/auth/tenants?limit=12&q=" QUERIES="$MISS"
lat "(b) switcher, member of 50, mixed queries" COOKIE="$MEMBER" PATH_PREFIX="/v1/auth/tenants?limit=12&q=" QUERIES="$MANY"
lat "(c) tenant list, operator, mixed queries" AUTH="Bearer bench-operator" PATH_PREFIX="/v1/tenants?limit=50&q=" QUERIES="$MANY"
lat "(c) tenant list, operator, a miss (walks every tenant)" AUTH="Bearer bench-operator" PATH_PREFIX="/v1/tenants?limit=50&q=" QUERIES="$MISS"
lat "(c) tenant list, operator, a page without a search" AUTH="Bearer bench-operator" PATH_PREFIX="/v1/tenants?limit=50" QUERIES=""
lat "(d) the page (GET /admin/t/t000001/files)" PATH_PREFIX="/admin/t/t000001/files" QUERIES=""
lat "(e) reference: GET /healthz" PATH_PREFIX="/healthz" QUERIES=""
done
for i in $(seq 20); do
  curl -sf "$URL/v1/tenants" "${OP[@]}" -d "{\"slug\":\"late-$i\"}" > /dev/null
  curl -s -o /dev/null -w '%{time_total}\n' "$URL/v1/auth/tenants?limit=12&q=late" -H "Cookie: $ROOT"
done > "$WORK/rebuild.txt"
python3 - "$WORK/rebuild.txt" <<'PY'
import sys
v = sorted(float(x) * 1000 for x in open(sys.argv[1]) if x.strip())
print(f"(f) a search just after a new tenant (rebuilds the index): p50 {v[len(v) // 2]:.2f} ms, worst {v[-1]:.2f} ms")
PY
