#!/usr/bin/env bash
# People (issue: people and the admin page). Builds release, starts Tenantry, and measures in
# the same run:
#   (a) a 4 KiB GET with a signed-in person's session cookie against the same GET with a tenant
#       key (wrk, 32 connections, DURATION seconds each, in the order key, cookie, cookie, key):
#       a session is checked in memory like a key, so the ratio should be about 1;
#   (b) the time of a sign-in (POST /v1/auth/login: one argon2id hash, m=19 MiB t=2 p=1), 40 in a
#       row, p50 and p90, beside GET /v1/whoami with the key the same way (the request's own
#       cost), and 8 sign-ins at once (the hashing runs one per core).
#   bench/people.sh [DURATION_SECONDS=10]
# TENANTRY_BIN=path runs another build.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -n "${TENANTRY_BIN:-}" ] || cargo build --release -q
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
. bench/lib.sh
bench_serve 18075
URL=http://127.0.0.1:18075
OP=(-H "Authorization: Bearer bench-operator")
OWNER=$(curl -sf "$URL/v1/tenants" "${OP[@]}" -d '{"slug":"bench","tier":"enterprise","quotas":{"max_requests_per_minute":null}}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["owner_key"])')
curl -sf -X PUT "$URL/v1/files/bench.txt" -H "Authorization: Bearer $OWNER" --data-binary @"$WORK/file4k" > /dev/null
LOGIN='{"email":"bench@example.com","password":"bench password 1"}'
curl -sf "$URL/v1/users" "${OP[@]}" -d "$LOGIN" > /dev/null
curl -sf "$URL/t/bench/v1/members" "${OP[@]}" -d '{"email":"bench@example.com","role":"writer"}' > /dev/null
COOKIE=$(curl -sf -D - -o /dev/null "$URL/v1/auth/login" -d "$LOGIN" | tr -d '\r' |
  awk -F'[: ;]+' 'tolower($1) == "set-cookie" {print $2; exit}')
[ -n "$COOKIE" ] || { echo "no session cookie" >&2; exit 1; }

rps() { grep 'Requests/sec' | awk '{print $2}'; }
run() { # env... (DUR seconds after 2 s of warm-up)
  env "$@" wrk -t2 -c32 -d2s -s bench/session.lua "$URL" > /dev/null
  env "$@" wrk -t2 -c32 -d"${DUR}s" -s bench/session.lua "$URL" | rps
}
k1=$(run AUTH="Bearer $OWNER"); c1=$(run COOKIE="$COOKIE"); c2=$(run COOKIE="$COOKIE"); k2=$(run AUTH="Bearer $OWNER")
python3 - "$k1" "$c1" "$c2" "$k2" <<'PY'
import sys
k1, c1, c2, k2 = map(float, sys.argv[1:])
key, cookie = (k1 + k2) / 2, (c1 + c2) / 2
print(f"(a) 4 KiB GET: key {key:,.0f}/s ({k1:,.0f}, {k2:,.0f}), session cookie {cookie:,.0f}/s ({c1:,.0f}, {c2:,.0f}): cookie / key {cookie / key:.2f}")
PY

times() { # n curl-args...: one time_total (seconds) per line
  local n=$1; shift
  for _ in $(seq "$n"); do curl -s -o /dev/null -w '%{time_total}\n' "$@"; done
}
times 40 "$URL/v1/auth/login" -d "$LOGIN" > "$WORK/login.txt"
times 40 "$URL/v1/whoami" -H "Authorization: Bearer $OWNER" > "$WORK/whoami.txt"
start=$(date +%s.%N)
pids=()
for _ in $(seq 8); do curl -s -o /dev/null "$URL/v1/auth/login" -d "$LOGIN" & pids+=($!); done
wait "${pids[@]}" # not the server's
end=$(date +%s.%N)
python3 - "$WORK/login.txt" "$WORK/whoami.txt" "$start" "$end" <<'PY'
import sys
def pct(path):
    v = sorted(float(x) * 1000 for x in open(path) if x.strip())
    return v[len(v) // 2], v[int(len(v) * 0.9)]
(lp50, lp90), (wp50, wp90) = pct(sys.argv[1]), pct(sys.argv[2])
print(f"(b) sign-in p50 {lp50:.1f} ms, p90 {lp90:.1f} ms; GET /v1/whoami with the key p50 {wp50:.1f} ms, p90 {wp90:.1f} ms")
print(f"    8 sign-ins at once: {(float(sys.argv[4]) - float(sys.argv[3])) * 1000:.0f} ms in all")
PY
