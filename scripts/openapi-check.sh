#!/usr/bin/env bash
# The OpenAPI document as real tools take it: openapi-spec-validator finds no error in
# /openapi.json of a running server; a Python client generated from it by openapi-python-client
# (scripts/client_smoke.py) and a TypeScript one, types by openapi-typescript and calls by
# openapi-fetch, checked by tsc --strict (scripts/client_smoke.ts), each create a tenant, put,
# get, list and delete a file. Used by .ci/run; needs python3 with pip, and node with npm.
set -euo pipefail
cd "$(dirname "$0")/.."
# Pinned: a new release of the generator may name the generated API differently.
python3 -m pip install -q openapi-spec-validator==0.9.0 openapi-python-client==0.29.1
PORT=18091
OPERATOR=openapi-operator
source scripts/serve-debug.sh
GEN=$(console_script openapi-python-client)
curl -sf http://127.0.0.1:$PORT/openapi.json -o "$WORK/openapi.json"
echo "== openapi-spec-validator"
python3 - "$WORK/openapi.json" <<'PY'
import sys
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator.readers import read_from_filename
spec, _ = read_from_filename(sys.argv[1])
errors = list(OpenAPIV31SpecValidator(spec).iter_errors())
for e in errors:
    print("-", e.message)
print(f"{len(errors)} error(s)")
sys.exit(1 if errors else 0)
PY
echo "== openapi-python-client, and a smoke test with the client it generates"
(cd "$WORK" && "$GEN" generate --path openapi.json --meta none --output-path tenantry_client > generate.log 2>&1) \
  || { cat "$WORK/generate.log"; exit 1; }
PYTHONPATH="$WORK" python3 scripts/client_smoke.py "http://127.0.0.1:$PORT" openapi-operator
echo "== openapi-typescript and openapi-fetch, checked by tsc --strict, and a smoke test with them"
TS="$WORK/ts"
mkdir -p "$TS"
cp scripts/client_smoke.ts "$TS/"
(
  cd "$TS"
  echo '{"name": "tenantry-client-smoke", "private": true, "type": "module"}' > package.json
  # Pinned, as the Python tools are.
  npm install --silent --no-audit --no-fund \
    openapi-typescript@7.13.0 openapi-fetch@0.17.0 typescript@5.9.3 @types/node@20.19.43 > npm.log 2>&1 \
    || { cat npm.log; exit 1; }
  npx openapi-typescript ../openapi.json -o schema.d.ts > gen.log 2>&1 || { cat gen.log; exit 1; }
  npx tsc --strict --module nodenext --target es2022 --types node --outDir out client_smoke.ts
)
node "$TS/out/client_smoke.js" "http://127.0.0.1:$PORT" openapi-operator
