#!/usr/bin/env bash
# Order check for the spread goal (issue: core): 1 tenant over N files vs N tenants with one file
# each, alternated in pairs, both orders, so a drift of the VM's rate over a sequence shows up as
# the difference between the two orders instead of as a tenancy cost. Each side gets 2 s of
# unmeasured warm-up, then SECONDS measured. Prints one line per pair with its ratio (N / 1), and
# each side's file cache misses per 1,000 reads while measured (from /metrics) and the server's
# CPU time per request (user + system, from /proc: less sensitive than a rate to how the VM
# shares its cores with wrk at that moment) and bytes written per request (`wchar` from
# /proc/PID/io: WAL frames, checkpoints and responses, so the storage's write volume per request)
# and the writer thread's own CPU time per request (`tenantry-writer` in /proc/PID/task: the one
# thread every write goes through, so what of a side's CPU is the storage's and what the requests');
# at the end, the mean and median of the pairs' ratios, the ratio of the summed rates, and each
# side's mean CPU time and bytes written per request.
# PUT: a side's writes leave entries in the log tails that the writer folds later (issue core,
# BENCHMARKS.md), so after each PUT window the script waits until the tails are folded and
# charges the side for the time a fold was under way meanwhile (/metrics): its rate is its
# requests over window + that time, and its CPU per request counts the drain. The next side
# starts with empty tails.
#   bench/order.sh [SECONDS=5] [TENANTS=10000] [METHOD=GET] [ROUNDS=3]
# TENANTRY_BIN=path runs another build.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
N=${2:-10000}
METHOD=${3:-GET}
ROUNDS=${4:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ -n "${TENANTRY_BIN:-}" ] || cargo build --release -q --bin tenantry
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
. bench/lib.sh
bench_serve 18075
bench_pair 18075 "$N"
cache() { # "hits misses" of the file cache so far
  curl -sf http://127.0.0.1:18075/metrics |
    awk '/^tenantry_file_cache_hits_total / {h=$2} /^tenantry_file_cache_misses_total / {m=$2} END {print h+0, m+0}'
}
cpu_ticks() { # the server's user + system CPU time so far, in clock ticks
  awk '{print $14 + $15}' "/proc/$SERVER/stat"
}
writer_ticks() { # the writer thread's user + system CPU time so far, in clock ticks
  local t
  for t in /proc/"$SERVER"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = tenantry-writer ] && awk '{print $14 + $15}' "$t/stat" && return
  done
  echo 0
}
written() { # bytes the server has passed to write calls so far
  awk '/^wchar:/ {print $2}' "/proc/$SERVER/io"
}
TICK=$(getconf CLK_TCK)
side() { # keys-file [PATHS]: "rate misses-per-1000-reads cpu-us-per-request"
  local paths=${2:-0}
  KEYS="$1" METHOD="$METHOD" PATHS="$paths" wrk -t2 -c32 -d2s -s bench/keys.lua http://127.0.0.1:18075 > /dev/null
  local before rate after t0 t1
  before=$(cache)
  t0=$(cpu_ticks)
  local k0 k1; k0=$(writer_ticks)
  local w0 w1; w0=$(written)
  rate=$(KEYS="$1" METHOD="$METHOD" PATHS="$paths" wrk -t2 -c32 -d"${DUR}s" -s bench/keys.lua http://127.0.0.1:18075 |
    awk '/Requests\/sec/ {print $2}')
  after=$(cache)
  local charged=0
  [ "$METHOD" = PUT ] && charged=$(bench_drain 18075)
  t1=$(cpu_ticks)
  k1=$(writer_ticks)
  w1=$(written)
  python3 -c "import sys; r = float(sys.argv[1]); h0, m0, h1, m1, t0, t1, tick, dur, ms, w0, w1, k0, k1 = map(int, sys.argv[2:]); n = h1 - h0 + m1 - m0; print(r * dur / (dur + ms / 1000), round(1000 * (m1 - m0) / n, 1) if n else 0, round((t1 - t0) / tick * 1e6 / (r * dur), 1), round(ms / 1000, 1), round((w1 - w0) / (r * dur) / 1024, 1), round((k1 - k0) / tick * 1e6 / (r * dur), 1))" \
    "$rate" $before $after "$t0" "$t1" "$TICK" "$DUR" "$charged" "$w0" "$w1" "$k0" "$k1"
}
for first in one many; do
  for _ in $(seq "$ROUNDS"); do
    if [ "$first" = one ]; then o=$(side "$WORK/one.keys" "$N"); m=$(side "$WORK/many.keys"); else
      m=$(side "$WORK/many.keys"); o=$(side "$WORK/one.keys" "$N"); fi
    python3 -c "import sys; o, om, oc, od, ow, ok, m, mm, mc, md, mw, mk = map(float, sys.argv[2:]); print(f'{sys.argv[1]:>4} first: 1 tenant {o:9.0f} (misses {om:5.1f}/1000, cpu {oc:5.1f} us/req, fold {od:4.1f} s, {ow:5.1f} KiB/req written, writer {ok:5.1f} us/req)  N tenants {m:9.0f} (misses {mm:5.1f}/1000, cpu {mc:5.1f} us/req, fold {md:4.1f} s, {mw:5.1f} KiB/req written, writer {mk:5.1f} us/req)  ratio {m / o:.2f}')" \
      "$first" $o $m | tee -a "$WORK/pairs"
  done
done
python3 - "$WORK/pairs" <<'PY'
import statistics, sys
import re
side = re.compile(r"tenants? +([\d.]+) \(misses +[\d.]+/1000, cpu +([\d.]+) us/req, fold +[\d.]+ s, +([\d.]+) KiB/req written, writer +([\d.]+) us")
rows = [[tuple(map(float, m)) for m in side.findall(line)] for line in open(sys.argv[1])]
one = [r[0][0] for r in rows]
many = [r[1][0] for r in rows]
ratios = [m / o for o, m in zip(one, many)]
cpu_one = statistics.mean(r[0][1] for r in rows)
cpu_many = statistics.mean(r[1][1] for r in rows)
print(f"{len(ratios)} pairs: ratio mean {statistics.mean(ratios):.2f}, median {statistics.median(ratios):.2f}, "
      f"summed rates {sum(many) / sum(one):.2f} (N tenants {sum(many) / len(many):.0f}/s, 1 tenant {sum(one) / len(one):.0f}/s)")
print(f"server CPU per request: 1 tenant {cpu_one:.1f} us, N tenants {cpu_many:.1f} us "
      f"(N tenants {cpu_many - cpu_one:+.1f} us, ratio {cpu_one / cpu_many:.2f})")
w_one = statistics.mean(r[0][2] for r in rows)
w_many = statistics.mean(r[1][2] for r in rows)
print(f"bytes written per request: 1 tenant {w_one:.1f} KiB, N tenants {w_many:.1f} KiB ({w_many - w_one:+.1f} KiB)")
k_one = statistics.mean(r[0][3] for r in rows)
k_many = statistics.mean(r[1][3] for r in rows)
print(f"writer thread CPU per request: 1 tenant {k_one:.1f} us, N tenants {k_many:.1f} us ({k_many - k_one:+.1f} us)")
PY
