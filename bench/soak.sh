#!/usr/bin/env bash
# Soak: mixed traffic from many tenants for a configurable time, in consecutive wrk intervals,
# reporting throughput, p50/p99 latency, errors and server RSS per interval, as a table
# (bench/results/soak.md) and a plot (bench/results/soak.png). No leak: RSS flattens; no
# degradation: throughput and p99 stay level.
#   bench/soak.sh [TOTAL_SECONDS=300] [INTERVAL_SECONDS=15] [TENANTS=200]
# PROFILE=debug uses the debug build (the short run in .ci/run). The run fails if any request
# failed or the heap (anonymous RSS) grew by more than 64 MiB from the first interval.
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${1:-300}
STEP=${2:-15}
N=${3:-200}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then cargo build --release -q; else cargo build -q; fi
WORK=$(mktemp -d)
OUT=bench/results
mkdir -p "$OUT"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
# 3072 random bytes are exactly 4096 base64 characters (no second head: SIGPIPE under pipefail).
head -c 3072 /dev/urandom | base64 -w0 > "$WORK/file4k"
TENANTRY_ADMIN_KEY=soak-operator TENANTRY_LOG=warn "./target/$PROFILE/tenantry" serve \
  --listen 127.0.0.1:18075 --data "$WORK/data" > "$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:18075/healthz >/dev/null && break; sleep 0.1; done
python3 bench/setup.py http://127.0.0.1:18075 soak-operator "$N" "$WORK/keys" "$WORK/file4k" soak > /dev/null

echo "t_s,rps,p50_ms,p99_ms,errors,rss_mib,anon_mib,file_mib,db_mib" > "$OUT/soak.csv"
elapsed=0
to_ms() { python3 -c "import sys; v=sys.argv[1]; u=v.lstrip('0123456789.'); n=float(v[:len(v)-len(u)]); print(round(n*{'us':0.001,'ms':1,'s':1000}[u],3))" "$1"; }
while [ "$elapsed" -lt "$TOTAL" ]; do
  out=$(KEYS="$WORK/keys" wrk -t2 -c32 -d"${STEP}s" --latency -s bench/mixed.lua http://127.0.0.1:18075)
  elapsed=$((elapsed + STEP))
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" {print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
  errors=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  errors=${errors:-0}
  socket=$(echo "$out" | awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}')
  errors=$((errors + ${socket:-0}))
  # RSS split: anonymous memory (the heap: a leak shows here) and file-backed pages (SQLite's
  # memory-mapped database, which grows with the data and which the kernel can reclaim).
  rss=$(( $(awk '/VmRSS/ {print $2}' /proc/$SERVER/status) / 1024 ))
  anon=$(( $(awk '/RssAnon/ {print $2}' /proc/$SERVER/status) / 1024 ))
  file=$(( $(awk '/RssFile/ {print $2}' /proc/$SERVER/status) / 1024 ))
  db=$(( $(du -sk "$WORK/data" | awk '{print $1}') / 1024 ))
  echo "$elapsed,$rps,$p50,$p99,$errors,$rss,$anon,$file,$db" | tee -a "$OUT/soak.csv"
done

python3 - "$OUT" <<'PY'
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/soak.csv")))
t = [int(r["t_s"]) for r in rows]
fig, ax = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
ax[0].plot(t, [float(r["rps"]) for r in rows], marker="o"); ax[0].set_ylabel("requests/s")
ax[1].plot(t, [float(r["p50_ms"]) for r in rows], marker="o", label="p50")
ax[1].plot(t, [float(r["p99_ms"]) for r in rows], marker="o", label="p99"); ax[1].set_ylabel("latency ms"); ax[1].legend()
ax[2].plot(t, [int(r["anon_mib"]) for r in rows], marker="o", label="RSS anonymous (heap)")
ax[2].plot(t, [int(r["file_mib"]) for r in rows], marker="o", label="RSS file-backed (mmap'd db)")
ax[2].plot(t, [int(r["db_mib"]) for r in rows], linestyle="--", label="data dir size")
ax[2].set_ylabel("MiB"); ax[2].set_xlabel("seconds"); ax[2].legend()
for a in ax: a.grid(True, alpha=0.3)
fig.suptitle("Tenantry soak: mixed traffic over many tenants")
fig.tight_layout(); fig.savefig(f"{out}/soak.png", dpi=90)
with open(f"{out}/soak.md", "w") as f:
    f.write("| t (s) | req/s | p50 ms | p99 ms | errors | RSS MiB | anon MiB | file MiB | data dir MiB |\n|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        f.write(f"| {r['t_s']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | {r['rss_mib']} | {r['anon_mib']} | {r['file_mib']} | {r['db_mib']} |\n")
print(open(f"{out}/soak.md").read())
errors = sum(int(r["errors"]) for r in rows)
heap_growth = int(rows[-1]["anon_mib"]) - int(rows[0]["anon_mib"])
print(f"soak: {len(rows)} intervals, {errors} errors, heap grew {heap_growth} MiB")
if errors or heap_growth > 64:
    sys.exit("soak failed: requests failed or the heap grew")
PY
