#!/usr/bin/env bash
# Fuzzes a real node against its own contract, docs/openapi.yaml, with
# schemathesis (PyPI): starts `piglix serve` on a free loopback port (from a
# scratch directory: the document is embedded in the binary), loads the
# document the node serves at /openapi.yaml, and runs every phase (examples,
# coverage, fuzzing) with these checks:
#
#   not_a_server_error           no 5xx, anywhere
#   status_code_conformance      every status is documented for its operation
#   content_type_conformance     every Content-Type is documented
#   response_schema_conformance  bodies match their schemas (NDJSON acks too,
#                                through scripts/schemathesis_hooks.py)
#
# and fails on any failure, or when the node crashed or stopped answering.
#
# Excluded: GET /v1/subscribe (operationId `subscribe`) and POST
# /v1/locks/{name} (`requestLock`). A subscribe or lock stream never ends by
# itself, so every valid request would hang until the request timeout and
# count as an error; their error paths (400, 406) are covered by
# Tests/PiglixHTTPTests/BadInputTests and LockRouteTests. Every other operation is fuzzed, and
# --request-timeout bounds each request in case one hangs all the same.
#
#   scripts/schemathesis.sh              about 2-4 minutes
#   SCHEMATHESIS_MAX_EXAMPLES=500 SCHEMATHESIS_SEED=42 scripts/schemathesis.sh
#
# Needs `swift build --product piglix` (or PIGLIX_BIN) and `pip install
# schemathesis` (4.x).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

binary=${PIGLIX_BIN:-$root/.build/debug/piglix}
if [ ! -x "$binary" ]; then
  echo "no piglix binary at $binary: run swift build --product piglix first, or set PIGLIX_BIN" >&2
  exit 1
fi
command -v schemathesis >/dev/null || { echo "schemathesis is not installed: pip install schemathesis" >&2; exit 1; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
base="http://127.0.0.1:$port"
scratch=$(mktemp -d)
log="$scratch/piglix.log"
node=""
cleanup() {
  if [ -n "$node" ] && kill -0 "$node" 2>/dev/null; then
    kill -TERM "$node" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$node" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$node" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

# From the scratch directory: nothing of the checkout is at hand.
(cd "$scratch" && exec "$binary" serve --listen "127.0.0.1:$port" >"$log" 2>&1) &
node=$!
for _ in $(seq 100); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$node" 2>/dev/null || { echo "piglix serve exited at start:" >&2; cat "$log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$base/openapi.yaml" -o "$scratch/served.yaml"
cmp -s "$scratch/served.yaml" docs/openapi.yaml || { echo "GET /openapi.yaml differs from docs/openapi.yaml: run scripts/gen-openapi-swift.sh and rebuild" >&2; exit 1; }

# The schema is the document the node just served (checked identical to
# docs/openapi.yaml above), given as a file with --url: loaded by URL,
# schemathesis 4.32 silently leaves out the operation at the schema's own
# path (GET /openapi.yaml) as soon as any filter is set.
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
arguments=(
  run "$scratch/served.yaml" --url "$base/"
  --checks "$checks"
  --exclude-operation-id subscribe
  --exclude-operation-id requestLock
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-400}"
  --request-timeout 10
  --workers 1
  --generation-database none
  --suppress-health-check "too_slow,filter_too_much"
  --no-color
)
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then arguments+=(--seed "$SCHEMATHESIS_SEED"); fi
# SCHEMATHESIS_REPORT_DIR=DIR keeps a HAR of every request and answer there.
if [ -n "${SCHEMATHESIS_REPORT_DIR:-}" ]; then arguments+=(--report har --report-dir "$SCHEMATHESIS_REPORT_DIR"); fi
echo "+ schemathesis ${arguments[*]}"
status=0
(cd "$scratch" && SCHEMATHESIS_HOOKS="$root/scripts/schemathesis_hooks.py" timeout 600 schemathesis "${arguments[@]}") || status=$?

if ! kill -0 "$node" 2>/dev/null; then
  echo "FAIL: the node under test is gone; its log:" >&2
  tail -n 50 "$log" >&2
  exit 1
fi
if ! curl -fsS --max-time 5 "$base/healthz" >/dev/null; then
  echo "FAIL: the node under test no longer answers /healthz; its log:" >&2
  tail -n 50 "$log" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "FAIL: schemathesis exited $status; the node's log:" >&2
  tail -n 50 "$log" >&2
  exit "$status"
fi
echo "schemathesis: green, and the node is alive"
