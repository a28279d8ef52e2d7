#!/usr/bin/env bash
# Subscribe as a browser's EventSource does: server-sent events over HTTP/1.1.
# ./subscribe-sse.sh 'sensors.>'
# Each record is `event: <type>`, `id: <message id>` for messages, and
# `data: <the same JSON as NDJSON>`, then a blank line.
set -euo pipefail
url=${PIGLIX_URL:-http://127.0.0.1:8080}
[ $# -ge 1 ] || { echo "usage: subscribe-sse.sh PATTERN..." >&2; exit 2; }
query=()
for pattern in "$@"; do query+=(--data-urlencode "topic=$pattern"); done
exec curl --silent --show-error --fail --http1.1 -N -G \
  -H 'Accept: text/event-stream' "${query[@]}" "$url/v1/subscribe"
