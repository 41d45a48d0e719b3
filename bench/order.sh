#!/usr/bin/env bash
# Order check for the spread goal (issue: core): 1 tenant over N files vs N tenants with one file
# each, alternated in pairs, both orders, so a drift of the VM's rate over a sequence shows up as
# the difference between the two orders instead of as a tenancy cost. Each side gets 2 s of
# unmeasured warm-up, then SECONDS measured. Prints one line per pair with its ratio (N / 1).
#   bench/order.sh [SECONDS=5] [TENANTS=10000] [METHOD=GET] [ROUNDS=3]
# TENANTRY_BIN=path runs another build.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}
N=${2:-10000}
METHOD=${3:-GET}
ROUNDS=${4:-3}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q --bin tenantry
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
head -c 3072 /dev/urandom | base64 -w0 > "$WORK/file4k"
TENANTRY_ADMIN_KEY=bench-operator TENANTRY_LOG=warn "${TENANTRY_BIN:-./target/release/tenantry}" serve \
  --listen 127.0.0.1:18075 --data "$WORK/data" > "$WORK/serve.log" 2>&1 &
for _ in $(seq 50); do curl -sf http://127.0.0.1:18075/healthz >/dev/null && break; sleep 0.1; done
python3 bench/setup.py http://127.0.0.1:18075 bench-operator 1 "$WORK/one.keys" "$WORK/file4k" single "$N" > /dev/null
python3 bench/setup.py http://127.0.0.1:18075 bench-operator "$N" "$WORK/many.keys" "$WORK/file4k" many > /dev/null
sleep 2
side() { # keys-file [PATHS]
  local paths=${2:-0}
  KEYS="$1" METHOD="$METHOD" PATHS="$paths" wrk -t2 -c32 -d2s -s bench/keys.lua http://127.0.0.1:18075 > /dev/null
  KEYS="$1" METHOD="$METHOD" PATHS="$paths" wrk -t2 -c32 -d"${DUR}s" -s bench/keys.lua http://127.0.0.1:18075 |
    awk '/Requests\/sec/ {print $2}'
}
for first in one many; do
  for _ in $(seq "$ROUNDS"); do
    if [ "$first" = one ]; then o=$(side "$WORK/one.keys" "$N"); m=$(side "$WORK/many.keys"); else
      m=$(side "$WORK/many.keys"); o=$(side "$WORK/one.keys" "$N"); fi
    python3 -c "import sys; o, m = map(float, sys.argv[2:]); print(f'{sys.argv[1]:>4} first: 1 tenant {o:9.0f}  N tenants {m:9.0f}  ratio {m / o:.2f}')" \
      "$first" "$o" "$m"
  done
done
