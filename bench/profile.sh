#!/usr/bin/env bash
# Profile of the spread goal's pair (issue: core): the server under `perf record` while wrk reads
# (METHOD=GET) or writes 4 KiB files, first 1 tenant over TENANTS files, then TENANTS tenants with
# one file each, same server, same setup as http.sh. Prints each side's rate under perf and the
# symbols whose share of the profile differs most between the sides (positive: more in the
# spread case). A profile, not a speed figure: perf slows the server. Installs wrk and perf when
# missing. Also prints, per symbol, the CPU time per request it took on each side (samples at
# 2,000 Hz over the requests of the window): a share can move because another symbol grew, a
# time per request cannot.
#   bench/profile.sh [SECONDS=5] [TENANTS=10000] [METHOD=GET]
# TENANTRY_BIN=path profiles another build; PROFILE_THREAD=tenantry-writer profiles only the
# thread of that name (the storage's writer: every write's transaction, commits and folds);
# PROFILE_KEEP=dir keeps the two recordings there (one.data, many.data) for `perf report`.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
N=${2:-10000}
METHOD=${3:-GET}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf; }
cargo build --release -q --bin tenantry
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
. bench/lib.sh
bench_serve 18076
bench_pair 18076 "$N"
for side in one many; do
  paths=0
  [ "$side" = one ] && paths=$N
  KEYS="$WORK/$side.keys" METHOD=$METHOD PATHS=$paths wrk -t2 -c32 -d2s -s bench/keys.lua http://127.0.0.1:18076 > /dev/null
  KEYS="$WORK/$side.keys" METHOD=$METHOD PATHS=$paths wrk -t2 -c32 -d"$((DUR + 2))s" -s bench/keys.lua \
    http://127.0.0.1:18076 > "$WORK/wrk.$side" &
  load=$!
  sleep 1
  target=(-p "$SERVER")
  if [ -n "${PROFILE_THREAD:-}" ]; then
    for t in /proc/"$SERVER"/task/*; do
      [ "$(cat "$t/comm")" = "$PROFILE_THREAD" ] && target=(-t "${t##*/}")
    done
  fi
  perf record -F 2000 -g "${target[@]}" -o "$WORK/$side.data" -- sleep "$DUR" > /dev/null 2>&1
  wait "$load"
  awk '/Requests\/sec/ {print $2}' "$WORK/wrk.$side" > "$WORK/$side.rps"
  perf report -i "$WORK/$side.data" --no-children -n --sort dso,symbol -g none --stdio 2> /dev/null |
    grep -v '^#' > "$WORK/$side.flat"
done
python3 - "$WORK" "$DUR" <<'PY'
import re, sys
work, dur = sys.argv[1], float(sys.argv[2])
rate = {s: float(open(f"{work}/{s}.rps").read()) for s in ("one", "many")}
def load(side):
    shares, us = {}, {}
    for line in open(f"{work}/{side}.flat"):
        m = re.match(r"\s*([\d.]+)%\s+(\d+)\s+(\S+)\s+\[.\]\s+(.*)", line)
        if m:
            key = (m.group(3), m.group(4).strip()[:100])
            shares[key] = float(m.group(1))
            us[key] = int(m.group(2)) * 500 / (rate[side] * dur)
    return shares, us
(one, one_us), (many, many_us) = load("one"), load("many")
print(f"profiled CPU per request: 1 tenant {sum(one_us.values()):.1f} us, N tenants {sum(many_us.values()):.1f} us")
print(f"under perf: 1 tenant {rate['one']:.0f}/s, N tenants {rate['many']:.0f}/s, ratio {rate['many'] / rate['one']:.2f}")
rows = sorted(((many.get(k, 0) - one.get(k, 0), k) for k in set(one) | set(many)), reverse=True)
print("share of the profile, N tenants minus 1 tenant (percentage points):")
for d, (dso, sym) in rows[:15] + rows[-5:]:
    print(f"  {d:+.2f}  {dso[:12]:12}  {sym}")
rows = sorted(((many_us.get(k, 0) - one_us.get(k, 0), k) for k in set(one_us) | set(many_us)), reverse=True)
print("CPU per request, N tenants minus 1 tenant (us; 1 tenant -> N tenants):")
for d, k in rows[:25] + rows[-5:]:
    print(f"  {d:+6.2f}  ({one_us.get(k, 0):5.2f} -> {many_us.get(k, 0):5.2f})  {k[0][:12]:12}  {k[1]}")
PY
if [ -n "${PROFILE_KEEP:-}" ]; then mkdir -p "$PROFILE_KEEP" && cp "$WORK/one.data" "$WORK/many.data" "$PROFILE_KEEP/"; fi
