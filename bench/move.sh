#!/usr/bin/env bash
# Online move (issue: bundles, placement): a tenant of FILES × 4 KiB files plus 1,000 memory
# entries moves shared → dedicated → shared while WRITERS writers (each as fast as it can) and 4
# readers load it, and 4 writers load another tenant. Prints each move's report (rounds, copy time, the write fence) and the
# write latency the moving tenant saw during each move (max, p99) against before it.
#   bench/move.sh [FILES=10000] [WRITERS=8]
# BACKEND=postgres runs it on PostgreSQL (a throwaway cluster, scripts/pg-cluster.sh): the
# tenant moves between the shared database and a database of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${1:-10000}
WRITERS=${2:-8}
cargo build --release -q --bin tenantry
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
if [ "${BACKEND:-sqlite}" = postgres ]; then
  eval "$(CI=true bash scripts/pg-cluster.sh start)"
  trap 'kill $(jobs -p) 2>/dev/null; bash scripts/pg-cluster.sh stop "$PG_CLUSTER_DIR"; rm -rf "$WORK"' EXIT
  PSQL="$PG_CLUSTER_BIN/psql -q -v ON_ERROR_STOP=1"
  BASE=${TENANTRY_TEST_POSTGRES%/postgres}
  $PSQL "$TENANTRY_TEST_POSTGRES" -c "CREATE ROLE bench_owner LOGIN CREATEDB" -c "CREATE ROLE bench_app LOGIN" \
    -c "CREATE DATABASE bench OWNER bench_owner"
  export TENANTRY_DATABASE_OWNER_URL="${BASE/postgres@/bench_owner@}/bench"
  export TENANTRY_DATABASE_URL="${BASE/postgres@/bench_app@}/bench"
  ./target/release/tenantry db migrate --url "$TENANTRY_DATABASE_OWNER_URL" --app-role bench_app > /dev/null
fi
TENANTRY_ADMIN_KEY=bench-operator TENANTRY_LOG=warn,tenantry_store_sqlite::moves=info,tenantry_store_postgres::moves=info ./target/release/tenantry serve \
  --listen 127.0.0.1:18075 --data "$WORK/data" > "$WORK/serve.log" 2>&1 &
for _ in $(seq 50); do curl -sf http://127.0.0.1:18075/healthz >/dev/null && break; sleep 0.1; done
python3 - "$FILES" "$WRITERS" <<'PY'
import http.client, json, os, sys, threading, time
files, writers = int(sys.argv[1]), int(sys.argv[2])
H = ("127.0.0.1", 18075)
def call(conn, method, path, body=None, key="bench-operator", ctype=None):
    h = {"Authorization": "Bearer " + key}
    if ctype: h["Content-Type"] = ctype
    conn.request(method, path, body, h)
    r = conn.getresponse(); data = r.read()
    return r.status, data
c = http.client.HTTPConnection(*H)
def tenant(slug):
    s, d = call(c, "POST", "/v1/tenants", json.dumps({"slug": slug, "tier": "enterprise"}), ctype="application/json")
    assert s == 201, d
    return json.loads(d)["owner_key"]
mover, other = tenant("mover"), tenant("other")
def load(part):
    conn = http.client.HTTPConnection(*H)
    for i in part:
        s, _ = call(conn, "PUT", f"/v1/files/base/{i // 1000}/{i}.bin", os.urandom(4096), key=mover)
        assert s in (200, 201), s
    for i in part[:125]:
        s, _ = call(conn, "PUT", f"/v1/memory/ns/k{i}", json.dumps({"i": i, "text": "some words to index"}), key=mover, ctype="application/json")
        assert s == 200, s
threads = [threading.Thread(target=load, args=(list(range(files))[i::8],)) for i in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print(f"loaded {files} files of 4 KiB and 1,000 memory entries")
stop = False
lat = []  # (time, seconds) of the moving tenant's writes
olat = []  # and of the other tenant's
lock = threading.Lock()
def writer(key, w, record):
    conn = http.client.HTTPConnection(*H); n = 0
    while not stop:
        t0 = time.time()
        s, _ = call(conn, "PUT", f"/v1/files/live/{w}/{n % 100}.txt", os.urandom(2048), key=key)
        assert s in (200, 201), s
        with lock:
            (lat if record else olat).append((t0, time.time() - t0))
        n += 1
def reader(key):
    conn = http.client.HTTPConnection(*H); n = 0
    while not stop:
        s, _ = call(conn, "GET", f"/v1/files/base/{(n % files) // 1000}/{n % files}.bin", key=key)
        assert s == 200, s
        n += 1
load_threads = [threading.Thread(target=writer, args=(mover, w, True)) for w in range(writers)]
load_threads += [threading.Thread(target=writer, args=(other, 100 + w, False)) for w in range(4)]
load_threads += [threading.Thread(target=reader, args=(mover,)) for _ in range(4)]
[t.start() for t in load_threads]
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else 0
time.sleep(3)
for to in ("dedicated", "shared"):
    t0 = time.time()
    s, d = call(http.client.HTTPConnection(*H), "POST", "/v1/tenants/mover/move", json.dumps({"placement": to}), ctype="application/json")
    t1 = time.time()
    assert s == 200, d
    r = json.loads(d)
    with lock:
        during = [l for (t, l) in lat if t0 <= t <= t1]
        before = [l for (t, l) in lat if t < t0][-len(during) * 2:] if during else []
        other = [l for (t, l) in olat if t0 <= t <= t1]
        other_before = [l for (t, l) in olat if t < t0][-len(other) * 2:] if other else []
    print(f"move -> {to}: {r['files']} files, {r['rows']} rows, {r['rounds']} rounds, {r['copy_ms']} ms in all, "
          f"fence {r['fence_ms']} ms, verified {r['verified']}")
    print(f"  the tenant's writes during the move: {len(during)}, p99 {pct(during, .99) * 1000:.1f} ms, "
          f"max {max(during) * 1000 if during else 0:.1f} ms (before: p99 {pct(before, .99) * 1000:.1f} ms, "
          f"max {max(before) * 1000 if before else 0:.1f} ms)")
    print(f"  the other tenant's writes meanwhile: {len(other)}, p99 {pct(other, .99) * 1000:.1f} ms, "
          f"max {max(other) * 1000 if other else 0:.1f} ms (before: p99 {pct(other_before, .99) * 1000:.1f} ms, "
          f"max {max(other_before) * 1000 if other_before else 0:.1f} ms)")
    time.sleep(2)
stop = True
[t.join() for t in load_threads]
PY
grep -oE 'move (round|switched).*' "$WORK/serve.log" | sed 's/\x1b\[[0-9;]*m//g' | head -30
