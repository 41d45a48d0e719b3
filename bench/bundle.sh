#!/usr/bin/env bash
# Bundle export and import (issue: bundles): a tenant of ~1 GiB in mixed file sizes (200 × 4 MiB,
# 2,000 × 64 KiB, 20,000 × 4 KiB) exported over HTTP to a file, then imported into an empty
# tenant; rates against the disk's own sequential copy of 1 GiB (dd with fsync) in the same run,
# and the server's anonymous-memory growth during each; then the same export and import with the CLI
# (`tenantry tenant export` flushes, verifies and fsyncs the bundle as it arrives).
#   bench/bundle.sh [SCALE=1.0]
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${1:-1.0}
cargo build --release -q --bin tenantry
WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}")
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
TENANTRY_ADMIN_KEY=bench-operator TENANTRY_LOG=warn,tenantry_http::api::bundles=info ./target/release/tenantry serve \
  --listen 127.0.0.1:18074 --data "$WORK/data" > "$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:18074/healthz >/dev/null && break; sleep 0.1; done
python3 - "$SCALE" <<'PY'
import http.client, json, os, sys, threading
scale = float(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", 18074)
c.request("POST", "/v1/tenants", json.dumps({"slug": "big", "tier": "enterprise"}), {"Authorization": "Bearer bench-operator"})
owner = json.loads(c.getresponse().read())["owner_key"]
jobs = [(f"/large/{i}.bin", 4 << 20) for i in range(int(200 * scale))]
jobs += [(f"/medium/{i // 100}/{i}.bin", 64 << 10) for i in range(int(2000 * scale))]
jobs += [(f"/small/{i // 1000}/{i}.txt", 4 << 10) for i in range(int(20000 * scale))]
def work(part):
    conn = http.client.HTTPConnection("127.0.0.1", 18074)
    for path, size in part:
        conn.request("PUT", "/v1/files" + path, os.urandom(size), {"Authorization": "Bearer " + owner})
        r = conn.getresponse(); r.read()
        assert r.status in (200, 201), (path, r.status)
threads = [threading.Thread(target=work, args=(jobs[i::8],)) for i in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print(f"loaded {len(jobs)} files, {sum(s for _, s in jobs) / 2**20:.0f} MiB")
PY
# Anonymous memory (heap): the readers' mmap of the database shows in VmRSS as file pages the
# kernel can drop at will, which is the page cache, not the server's memory.
rss() { awk '/RssAnon/ {print $2}' /proc/$SERVER/status; }
BEFORE=$(rss)
PEAK=$BEFORE
( while sleep 0.1; do r=$(rss); [ "$r" -gt "$(cat "$WORK/peak" 2>/dev/null || echo 0)" ] && echo "$r" > "$WORK/peak"; done ) &
SAMPLER=$!
T0=$(date +%s.%N)
curl -sf -H 'Authorization: Bearer bench-operator' http://127.0.0.1:18074/v1/tenants/big/export -o "$WORK/big.tenantry"
sync "$WORK/big.tenantry"
T1=$(date +%s.%N)
PEAK=$(cat "$WORK/peak" 2>/dev/null || echo "$BEFORE")
# Import into an empty tenant (curl -T streams the file; the answer is the import's report).
curl -sf -X POST -H 'Authorization: Bearer bench-operator' -H 'Content-Type: application/json' \
  -d '{"slug": "restored", "tier": "enterprise"}' http://127.0.0.1:18074/v1/tenants > /dev/null
IBEFORE=$(rss)
echo "$IBEFORE" > "$WORK/peak"
I0=$(date +%s.%N)
curl -sf -X POST -T "$WORK/big.tenantry" -H 'Authorization: Bearer bench-operator' \
  http://127.0.0.1:18074/v1/tenants/restored/import > "$WORK/report.json"
I1=$(date +%s.%N)
kill $SAMPLER 2>/dev/null || true
IPEAK=$(cat "$WORK/peak" 2>/dev/null || echo "$IBEFORE")
# The same two with the CLI, as an operator runs them: the export is written, flushed as it grows,
# verified on a thread of its own and fsynced before it says done; the import is streamed up.
CLI() { TENANTRY_URL=http://127.0.0.1:18074 TENANTRY_KEY=bench-operator ./target/release/tenantry --json "$@"; }
C0=$(date +%s.%N)
CLI tenant export big -o "$WORK/cli.tenantry" > /dev/null
C1=$(date +%s.%N)
CLI tenant create restored2 --tier enterprise > /dev/null
C2=$(date +%s.%N)
CLI tenant import restored2 "$WORK/cli.tenantry" > /dev/null
C3=$(date +%s.%N)
rm -f "$WORK/cli.tenantry"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('import report:', json.dumps(r['files']))" "$WORK/report.json"
grep 'import committed' "$WORK/serve.log" | tail -1 || true
BYTES=$(du -b "$WORK/big.tenantry" | cut -f1)
head -c $((1 << 30)) /dev/urandom > "$WORK/ref.bin"
sync
D0=$(date +%s.%N)
dd if="$WORK/ref.bin" of="$WORK/ref.copy" bs=1M conv=fsync status=none
D1=$(date +%s.%N)
python3 - "$T0" "$T1" "$BYTES" "$D0" "$D1" "$BEFORE" "$PEAK" "$SCALE" "$I0" "$I1" "$IBEFORE" "$IPEAK" "$C0" "$C1" "$C2" "$C3" <<'PY'
import sys
t0, t1, size, d0, d1, before, peak, scale, i0, i1, ibefore, ipeak, c0, c1, c2, c3 = map(float, sys.argv[1:])
data = (200 * 4 * 2**20 + 2000 * 64 * 2**10 + 20000 * 4 * 2**10) * scale
export = data / (t1 - t0) / 2**20
disk = 2**30 / (d1 - d0) / 2**20
print(f"export: {data / 2**20:.0f} MiB of files in {t1 - t0:.1f} s = {export:.0f} MiB/s (bundle {size / 2**20:.0f} MiB)")
print(f"disk sequential copy (dd, fsync): {disk:.0f} MiB/s")
print(f"ratio {export / disk:.2f} (goal >= 0.5)")
print(f"server anonymous RSS {before / 1024:.0f} MiB before, {peak / 1024:.0f} MiB at peak: +{(peak - before) / 1024:.0f} MiB (goal < 64)")
imp = data / (i1 - i0) / 2**20
print(f"import: {i1 - i0:.1f} s = {imp:.0f} MiB/s of files; ratio {imp / disk:.2f} (goal >= 0.5)")
print(f"server anonymous RSS during import: {ibefore / 1024:.0f} MiB before, {ipeak / 1024:.0f} MiB at peak: +{(ipeak - ibefore) / 1024:.0f} MiB (goal < 64)")
cli_export, cli_import = data / (c1 - c0) / 2**20, data / (c3 - c2) / 2**20
print(f"CLI export (flushed as it grows, verified, fsynced): {c1 - c0:.1f} s = {cli_export:.0f} MiB/s; ratio {cli_export / disk:.2f} (goal >= 0.5)")
print(f"CLI import: {c3 - c2:.1f} s = {cli_import:.0f} MiB/s; ratio {cli_import / disk:.2f} (goal >= 0.5)")
PY
