#!/usr/bin/env bash
# A worker of a work queue: ./work-queue.sh QUEUE PATTERN [COMMAND [ARG...]]
# Every message whose topic matches PATTERN goes to exactly one worker of
# QUEUE across the cluster (round robin, in the agreed order). Each record
# is printed as an NDJSON line, or, with COMMAND, given to COMMAND on its
# standard input; it is acknowledged (`POST /v1/ack`) when printed, or when
# COMMAND exits 0. A message not acknowledged goes to another worker, marked
# `"redelivered":true`, when this one stops. Ctrl-C stops it.
set -euo pipefail
url=${PIGLIX_URL:-http://127.0.0.1:8080}
[ $# -ge 2 ] || { echo "usage: work-queue.sh QUEUE PATTERN [COMMAND [ARG...]]" >&2; exit 2; }
queue=$1
pattern=$2
shift 2
curl --silent --show-error --fail --http2-prior-knowledge -N -G -H 'Accept: application/x-ndjson' \
  --data-urlencode "topic=$pattern" --data-urlencode "queue=$queue" "$url/v1/subscribe" |
  while IFS= read -r line; do
    case $line in
      *'"type":"message"'*) ;;
      *) continue ;;
    esac
    id=$(sed -E 's/.*"id":"([^"]+)".*/\1/' <<<"$line")
    if [ $# -gt 0 ]; then
      if ! printf '%s\n' "$line" | "$@"; then
        echo "work-queue.sh: $* failed on $id; not acknowledged" >&2
        continue
      fi
    else
      printf '%s\n' "$line"
    fi
    # Queue names and ids hold no characters JSON would escape.
    curl --silent --show-error --fail --http2-prior-knowledge -o /dev/null \
      -H 'Content-Type: application/json' -d "{\"queue\":\"$queue\",\"ids\":[\"$id\"]}" "$url/v1/ack" ||
      echo "work-queue.sh: the ack of $id failed" >&2
  done
