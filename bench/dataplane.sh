#!/usr/bin/env bash
# Data-plane benchmarks (issue: agent data plane). Builds release, and for each section starts a
# fresh Tenantry on loopback and loads it with the bench_dataplane example (Rust, tokio):
#   memory    memory set/get rate against file PUT/GET of the same 1 KiB at 32 connections
#   search    search latency, one query at a time: a tenant of 100 docs alone, then the same
#             tenant among 1,000 tenants of 100 docs plus one tenant of 100,000 docs (BIG_DOCS=
#             1000000 for a million), random small tenants, and the big tenant; the index's bytes
#             against the text's
#   import    bulk indexing on import: 100,000 documents of 1 KiB prose (IMPORT_DOCS=) exported
#             and imported into an empty tenant, against unindexed files and against SQLite FTS5
#             loading the same documents in one transaction
#   sse       1,000 SSE subscribers of one tenant, 200 events at 50/s: latency from commit
#   webhooks  5,000 events to one webhook on a local keep-alive receiver: delivery rate
#   bench/dataplane.sh [SECTIONS="memory search import sse webhooks"] [SCALE=1.0]
set -euo pipefail
cd "$(dirname "$0")/.."
SECTIONS=${1:-memory search import sse webhooks}
SCALE=${2:-1.0}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# TENANTRY_BIN=path runs another build of the server (e.g. an older commit's, for an A/B).
BIN=${TENANTRY_BIN:-./target/release/tenantry}
cargo build --release -q --bin tenantry --example bench_dataplane
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
for section in $SECTIONS; do
  rm -rf "$WORK/data"
  TENANTRY_ADMIN_KEY=bench-operator TENANTRY_LOG=warn TENANTRY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS=1 \
    "$BIN" serve --listen 127.0.0.1:18071 --data "$WORK/data" > "$WORK/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 50); do curl -sf http://127.0.0.1:18071/healthz >/dev/null && break; sleep 0.1; done
  echo "== $section"
  BENCH_DATA_DIR="$WORK/data" ./target/release/examples/bench_dataplane http://127.0.0.1:18071 bench-operator "$section" "$SCALE"
  if [ "$section" = search ]; then
    echo "database size: $(du -sh "$WORK/data" | cut -f1)"
  fi
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
done
