#!/usr/bin/env bash
# Publish a batch of NDJSON records, gzip-compressed, in one request:
# ./batch-publish-gzip.sh [FILE]   (records from FILE, `-` for standard input,
# or with no argument a small built-in sample). One record per line:
#   {"topic":"sensors.paris.temp","data":"21.5"}
#   {"topic":"sensors.lyon.temp","data_b64":"AAH/","delivery":"safe","headers":{"unit":"C"}}
# The answer is one ack per record, in order; a bad record gets an error ack
# ({"ok":false,"status":400,...}) and the others are still published.
set -euo pipefail
url=${PIGLIX_URL:-http://127.0.0.1:8080}
records() {
  if [ $# -ge 1 ]; then cat -- "$1"   # cat - reads standard input
  else
    printf '%s\n' \
      '{"topic":"sensors.paris.temp","data":"21.5"}' \
      '{"topic":"sensors.lyon.temp","data":"19.0","delivery":"total"}' \
      '{"topic":"sensors.nice.temp","data":"24.5","delivery":"safe","headers":{"unit":"C"}}'
  fi
}
# --data-binary @- with a compressed body: curl sends Content-Length, so the
# node reads the batch whole (bounded) and answers with all the acks.
records "$@" | gzip -c | curl --silent --show-error --fail-with-body --http2-prior-knowledge \
  -H 'Content-Type: application/x-ndjson' -H 'Content-Encoding: gzip' \
  --data-binary @- "$url/v1/publish"
