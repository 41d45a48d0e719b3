#!/usr/bin/env bash
# Contract fuzzing: schemathesis generates requests from /openapi.json of a running server and
# checks, as a tenant owner and as the operator: no 5xx, every status, content type and header
# documented, bodies match their documented schemas, routes that need a key refuse requests
# without one, unsupported methods get 405. Used by .ci/run.
#   scripts/contract-fuzz.sh [MAX_EXAMPLES=50]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
command -v schemathesis >/dev/null || python3 -m pip install -q schemathesis
PORT=18090
OPERATOR=fuzz-operator
source scripts/serve-debug.sh
ST=$(console_script schemathesis)
OWNER=$(curl -sf http://127.0.0.1:$PORT/v1/tenants -H 'Authorization: Bearer fuzz-operator' \
  -d '{"slug":"fuzz","tier":"enterprise"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["owner_key"])')
# The tenant owner first: the operator run may archive or purge that tenant (it is allowed to).
for who in owner operator; do
  key=fuzz-operator
  [ "$who" = owner ] && key=$OWNER
  echo "== schemathesis as $who"
  "$ST" run "http://127.0.0.1:$PORT/openapi.json" -H "Authorization: Bearer $key" \
    -n "$N" --seed 1 \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth,unsupported_method --no-color --suppress-health-check=filter_too_much 2>&1 | tail -12
done
