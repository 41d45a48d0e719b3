# Sourced by the scripts that check a running server: builds the debug binary, starts it on
# $PORT with operator key $OPERATOR over a fresh data dir in $WORK (removed at exit, the server
# stopped), and waits until it answers. Also `console_script NAME`: the path of a pip-installed
# command (a fresh pyenv may not have a shim for a new console script yet).
console_script() {
  command -v "$1" || echo "$(python3 -c 'import os, sys; print(os.path.dirname(sys.executable))')/$1"
}
cargo build -q
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
TENANTRY_ADMIN_KEY=$OPERATOR TENANTRY_LOG=error ./target/debug/tenantry serve \
  --listen 127.0.0.1:$PORT --data "$WORK/data" > "$WORK/serve.log" 2>&1 &
for _ in $(seq 100); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:$PORT/healthz >/dev/null || { echo "the server did not start:"; cat "$WORK/serve.log"; exit 1; }
