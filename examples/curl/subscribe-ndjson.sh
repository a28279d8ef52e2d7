#!/usr/bin/env bash
# Subscribe to one or more patterns and print NDJSON records, one per line,
# as they arrive: ./subscribe-ndjson.sh 'sensors.*.temp' 'logs.>'
# `*` is exactly one token, `>` one or more trailing tokens. The stream starts
# with a `view` record per pattern, then `message` records; Ctrl-C stops it.
set -euo pipefail
url=${PIGLIX_URL:-http://127.0.0.1:8080}
[ $# -ge 1 ] || { echo "usage: subscribe-ndjson.sh PATTERN..." >&2; exit 2; }
query=()
for pattern in "$@"; do query+=(--data-urlencode "topic=$pattern"); done
# -N: print each batch as it arrives. -G: the --data-urlencode pairs go in the query.
exec curl --silent --show-error --fail --http2-prior-knowledge -N -G \
  -H 'Accept: application/x-ndjson' "${query[@]}" "$url/v1/subscribe"
