#!/usr/bin/env bash
# Safe publish: ./safe-publish.sh TOPIC DATA
# `safe` is total order plus stability: the answer (200) comes only once every
# member of the topic's groups holds the message, so a 200 means it survives
# the crash of any node but one.
set -euo pipefail
url=${PIGLIX_URL:-http://127.0.0.1:8080}
topic=${1:?usage: safe-publish.sh TOPIC DATA}
data=${2:?usage: safe-publish.sh TOPIC DATA}
exec curl --silent --show-error --fail-with-body --http2-prior-knowledge \
  -H 'Piglix-Delivery: safe' --data-binary "$data" \
  --write-out '\nHTTP %{http_code}, message id %header{piglix-message-id}\n' \
  "$url/v1/topics/$topic"
