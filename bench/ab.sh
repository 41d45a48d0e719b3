#!/usr/bin/env bash
# A/B of two builds on the spread pair (issue: one set of rules in the core; "within 5% of the
# build before"). Both servers run at once, each loaded with 1 tenant over N files and N tenants
# with one file each (bench_pair); then, for ROUNDS rounds, each workload is measured on A and on
# B back to back (A first in even rounds, B first in odd ones), SECONDS each after 2 s of
# unmeasured warm-up. A drift of the VM's speed over the run then falls on both builds alike,
# which a run of one build after the other (http.sh, order.sh) cannot promise. A PUT side is
# charged for the fold its writes left (as in order.sh). Prints each round's figures and, per
# workload, the ratios B/A of the rates and of the server's CPU time per request (median and mean
# over the rounds: B/A above 1 is B faster, resp. B costlier).
#   TENANTRY_BIN_A=path TENANTRY_BIN_B=path bench/ab.sh [SECONDS=4] [TENANTS=10000] [METHOD=PUT] [ROUNDS=6]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TENANTRY_BIN_A:?the build A, e.g. the one before the change}" "${TENANTRY_BIN_B:?the build B}"
DUR=${1:-4}
N=${2:-10000}
METHOD=${3:-PUT}
ROUNDS=${4:-6}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
ROOT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$ROOT"' EXIT
. bench/lib.sh
declare -A PORT=([a]=18081 [b]=18082) PID
for side in a b; do
  mkdir -p "$ROOT/$side"
  WORK=$ROOT/$side
  bin=$TENANTRY_BIN_A; [ $side = b ] && bin=$TENANTRY_BIN_B
  TENANTRY_BIN=$bin bench_serve "${PORT[$side]}"
  PID[$side]=$SERVER
  bench_pair "${PORT[$side]}" "$N"
done
TICK=$(getconf CLK_TCK)
measure() { # side keys-file paths: "rate cpu-us-per-request"
  local side=$1 keys=$2 paths=$3 port=${PORT[$1]} pid=${PID[$1]} rate t0 t1 charged=0
  KEYS="$keys" METHOD="$METHOD" PATHS="$paths" wrk -t2 -c32 -d2s -s bench/keys.lua "http://127.0.0.1:$port" > /dev/null
  [ "$METHOD" = PUT ] && bench_drain "$port" > /dev/null
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  rate=$(KEYS="$keys" METHOD="$METHOD" PATHS="$paths" wrk -t2 -c32 -d"${DUR}s" -s bench/keys.lua "http://127.0.0.1:$port" |
    awk '/Requests\/sec/ {print $2}')
  [ "$METHOD" = PUT ] && charged=$(bench_drain "$port")
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  python3 -c "import sys; r, dur, ms, t0, t1, tick = map(float, sys.argv[1:]); print(r * dur / (dur + ms / 1000), (t1 - t0) / tick * 1e6 / (r * dur))" \
    "$rate" "$DUR" "$charged" "$t0" "$t1" "$TICK"
}
for round in $(seq "$ROUNDS"); do
  order="a b"; [ $((round % 2)) = 0 ] || order="b a"
  for workload in one many; do
    declare -A got
    for side in $order; do
      paths=0; [ $workload = one ] && paths=$N
      got[$side]=$(measure "$side" "$ROOT/$side/$workload.keys" "$paths")
    done
    echo "$round $workload ${got[a]} ${got[b]}" | tee -a "$ROOT/rows"
  done
done
python3 - "$ROOT/rows" "$METHOD" "$N" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
for workload, label in (("one", "1 tenant"), ("many", f"{sys.argv[3]} tenants")):
    mine = [tuple(map(float, r[2:])) for r in rows if r[1] == workload]
    rate = [b / a for a, _, b, _ in mine]
    cpu = [bc / ac for _, ac, _, bc in mine]
    print(f"{sys.argv[2]} {label}: A {statistics.mean(r[0] for r in mine):.0f}/s, B {statistics.mean(r[2] for r in mine):.0f}/s; "
          f"rate B/A median {statistics.median(rate):.3f}, mean {statistics.mean(rate):.3f} (min {min(rate):.3f}, max {max(rate):.3f}); "
          f"CPU per request B/A median {statistics.median(cpu):.3f}, mean {statistics.mean(cpu):.3f}")
PY
