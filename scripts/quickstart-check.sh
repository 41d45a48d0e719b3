#!/usr/bin/env bash
# Runs the README's quickstart as a newcomer would, from the README itself (never a copy): the
# server with the first command of its first block, then each `sh` block of "One-minute
# quickstart" in order, in bash with -e. Fails if a command fails, if an answer holds an error, or
# if the file put is not read back. Needs port 7070 free and no ./tenantry-data (a fresh clone);
# removes the data dir it made. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -e tenantry-data ] && { echo "./tenantry-data exists: run this from a fresh clone"; exit 1; }
WORK=$(mktemp -d)
SERVER=
# `cargo run` starts the server as its child: the whole process group is stopped.
trap '[ -n "$SERVER" ] && kill -- -"$SERVER" 2>/dev/null; wait 2>/dev/null; rm -rf tenantry-data "$WORK"' EXIT
python3 - README.md "$WORK" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
serve = blocks[0].splitlines()[0].split("#")[0].strip()
start = text.index("## One-minute quickstart")
end = text.index("\n## ", start + 1)
quick = re.findall(r"```sh\n(.*?)```", text[start:end], re.S)
assert serve.endswith("serve") and len(quick) == 2, (serve, len(quick))
open(f"{sys.argv[2]}/serve.sh", "w").write(serve + "\n")
for i, b in enumerate(quick):
    open(f"{sys.argv[2]}/block{i}.sh", "w").write("shopt -s expand_aliases\nset -euo pipefail\n" + b)
PY
echo "== $(cat "$WORK/serve.sh")"
cargo build --release -q --bin tenantry
curl -sf localhost:7070/healthz >/dev/null && { echo "something already answers on port 7070"; exit 1; }
setsid bash "$WORK/serve.sh" > "$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 300); do curl -sf localhost:7070/healthz >/dev/null && break; sleep 0.1; done
curl -sf localhost:7070/healthz >/dev/null || { cat "$WORK/serve.log"; exit 1; }
# The CLI block's `tenant switch` saves the active tenant: in this run's own client config.
export TENANTRY_CLIENT_CONFIG="$WORK/client.toml"
for i in 0 1; do
  echo "== quickstart block $((i + 1))"
  if ! bash "$WORK/block$i.sh" < /dev/null > "$WORK/out$i" 2>&1; then
    cat "$WORK/out$i"; echo "block $((i + 1)) failed"; exit 1
  fi
  cat "$WORK/out$i"; echo
  if grep -q '"error"' "$WORK/out$i"; then echo "block $((i + 1)): an answer holds an error"; exit 1; fi
done
# What the blocks wrote is there: each tenant's /docs/hello.txt, read back with the operator key.
OP=$(cat tenantry-data/admin.key)
for tenant in acme beta; do
  got=$(curl -sf localhost:7070/v1/files/docs/hello.txt -H "Authorization: Bearer $OP" -H "X-Tenant-ID: $tenant")
  [ "$got" = hello ] || { echo "$tenant's /docs/hello.txt holds '$got', not hello"; exit 1; }
done
echo "quickstart: both blocks ran as written"
