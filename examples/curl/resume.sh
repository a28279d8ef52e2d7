#!/usr/bin/env bash
# Resume a subscription after the last message id you saw:
# ./resume.sh LAST_ID PATTERN...    (LAST_ID may be `earliest`: replay all retained)
# The node replays, in publish order, the retained messages of the matching
# topics published after LAST_ID, then goes on live. The response headers go
# to stderr: `Last-Event-ID` there names the newest retained id, so you can
# tell whether anything you missed was lost to retention.
set -euo pipefail
url=${PIGLIX_URL:-http://127.0.0.1:8080}
last=${1:?usage: resume.sh LAST_ID PATTERN...}
shift
[ $# -ge 1 ] || { echo "usage: resume.sh LAST_ID PATTERN..." >&2; exit 2; }
query=()
for pattern in "$@"; do query+=(--data-urlencode "topic=$pattern"); done
# Browsers cannot set headers on a first connection; they use ?lastEventID=.
exec curl --silent --show-error --fail --http2-prior-knowledge -N -G \
  -H "Last-Event-ID: $last" -H 'Accept: application/x-ndjson' \
  --dump-header /dev/stderr "${query[@]}" "$url/v1/subscribe"
