#!/usr/bin/env bash
# NATS publishing (issue #25's speed goals): Tenantry on its embedded store publishing to a
# nats-server -js of its own (Debian's, on a free port), with a core-NATS subscriber to every
# bench tenant's subjects (bench/nats.py):
#   paced  RATE writes/s of 1 KiB files over 10 tenants: commit-to-subscriber latency p50/p99
#          (from each write's answer to its event's arrival; goal p99 <= 50 ms on loopback);
#   flood  8 writers as fast as they go, over 10 tenants and into one: the publish rate against
#          the write rate (goal >= 1.0).
#   bench/nats.sh [SECONDS=10] [RATE=500]
# TENANTRY_BIN=path runs another build. Needs nats-server (installed when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}
RATE=${2:-500}
[ -x /usr/sbin/nats-server ] || { apt-get update -qq && apt-get install -y -qq nats-server; }
[ -n "${TENANTRY_BIN:-}" ] || cargo build --release -q
BIN=${TENANTRY_BIN:-./target/release/tenantry}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NATS_PORT=$(free_port)
PORT=$(free_port)
/usr/sbin/nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$WORK/nats" > "$WORK/nats.log" 2>&1 &
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done
TENANTRY_ADMIN_KEY=bench-operator TENANTRY_LOG=warn TENANTRY_NATS_URL="nats://127.0.0.1:$NATS_PORT" "$BIN" serve \
  --listen "127.0.0.1:$PORT" --data "$WORK/data" > "$WORK/serve.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
echo "== paced: $RATE writes/s for ${DUR}s over 10 tenants"
python3 bench/nats.py "http://127.0.0.1:$PORT" bench-operator "$NATS_PORT" paced 10 "$DUR" "$RATE"
echo "== flood: 8 writers for ${DUR}s over 10 tenants"
python3 bench/nats.py "http://127.0.0.1:$PORT" bench-operator "$NATS_PORT" flood 10 "$DUR" 8
echo "== flood: 8 writers for ${DUR}s into one tenant (published one message at a time)"
python3 bench/nats.py "http://127.0.0.1:$PORT" bench-operator "$NATS_PORT" flood 1 "$DUR" 8
