#!/usr/bin/env bash
# The OpenAPI document as real tools take it: openapi-spec-validator finds no error in
# /openapi.json of a running server, and a Python client generated from it by
# openapi-python-client creates a tenant, puts, gets, lists and deletes a file
# (scripts/client_smoke.py). Used by .ci/run.
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
