#!/usr/bin/env bash
# The OpenAPI document as real tools take it: openapi-spec-validator finds no error in
# /openapi.json of a running server, and a Python client generated from it by
# openapi-python-client creates a tenant, puts, gets, lists and deletes a file
# (scripts/client_smoke.py). Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import openapi_spec_validator' 2>/dev/null || python3 -m pip install -q openapi-spec-validator
command -v openapi-python-client >/dev/null || python3 -m pip install -q openapi-python-client
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
