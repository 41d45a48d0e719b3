#!/usr/bin/env bash
# Dedicated tenants at scale (issue: bundles, placement): N tenants created with
# "placement": "dedicated" (creation latency), one write to each in turn (each a cache miss),
# the server's open descriptors (bounded by max_open_dedicated, default 64), and the time a
# restart takes until /healthz answers (every dedicated database is read once at start).
#   bench/dedicated.sh [N=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
cargo build --release -q --bin tenantry
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
serve() {
  TENANTRY_ADMIN_KEY=op TENANTRY_LOG=warn ./target/release/tenantry serve --listen 127.0.0.1:18077 \
    --data "$WORK/data" > "$WORK/serve.log" 2>&1 &
  for _ in $(seq 600); do curl -sf http://127.0.0.1:18077/healthz >/dev/null && return; sleep 0.05; done
}
serve
python3 - "$N" <<'PY'
import http.client, json, statistics, sys, time
n = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", 18077)
lat, keys = [], []
for i in range(n):
    t = time.time()
    c.request("POST", "/v1/tenants", json.dumps({"slug": f"d{i}", "tier": "enterprise", "placement": "dedicated"}),
              {"Authorization": "Bearer op", "Content-Type": "application/json"})
    r = c.getresponse(); d = r.read(); assert r.status == 201, d
    lat.append(time.time() - t); keys.append(json.loads(d)["owner_key"])
lat.sort()
print(f"{n} dedicated tenants: create p50 {statistics.median(lat)*1000:.1f} ms, p90 {lat[int(n*.9)]*1000:.1f} ms")
t = time.time()
for i, k in enumerate(keys):
    c.request("PUT", "/v1/files/x.txt", f"tenant {i}".encode(), {"Authorization": "Bearer " + k})
    r = c.getresponse(); r.read(); assert r.status == 201
print(f"one write to each in turn: {(time.time()-t)*1000/n:.2f} ms per tenant")
PY
PID=$(pgrep -f "listen 127.0.0.1:18077")
echo "open descriptors: $(ls /proc/$PID/fd | wc -l); on disk: $(du -sh "$WORK/data/tenants" | cut -f1)"
kill "$PID"; while kill -0 "$PID" 2>/dev/null; do sleep 0.05; done
T0=$(date +%s.%N); serve; T1=$(date +%s.%N)
python3 -c "print(f'restart until /healthz: {$T1 - $T0:.2f} s')"
echo "open descriptors after the restart: $(ls /proc/$(pgrep -f 'listen 127.0.0.1:18077')/fd | wc -l)"
