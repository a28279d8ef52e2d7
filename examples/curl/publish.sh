#!/usr/bin/env bash
# Publish one message: ./publish.sh TOPIC [DATA]   (DATA defaults to standard input)
# Prints the ack, e.g. {"ok":true,"id":"5f3a09c1-1","delivery":"fifo"}.
# Node: $PIGLIX_URL (default http://127.0.0.1:8080). Delivery: $PIGLIX_DELIVERY (fifo).
set -euo pipefail
url=${PIGLIX_URL:-http://127.0.0.1:8080}
topic=${1:?usage: publish.sh TOPIC [DATA]}
if [ $# -ge 2 ]; then body=(--data-binary "$2"); else body=(--data-binary @-); fi
# HTTP/2 with prior knowledge (h2c); plain `curl` (HTTP/1.1) works as well.
exec curl --silent --show-error --fail-with-body --http2-prior-knowledge \
  -H "Piglix-Delivery: ${PIGLIX_DELIVERY:-fifo}" -H 'Content-Type: application/octet-stream' \
  "${body[@]}" "$url/v1/topics/$topic"
