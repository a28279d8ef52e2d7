#!/usr/bin/env bash
# Run a command while holding a cluster-wide lock:
#   ./lock.sh NAME COMMAND [ARG...]
# Waits its turn (the oldest request is granted first, across the cluster),
# runs COMMAND with the lock's fencing token in $PIGLIX_LOCK_TOKEN, and
# releases the lock when COMMAND exits by closing the stream. Pass the token
# to whatever the lock protects and have it refuse a lower one than it has
# seen: that, not timing, keeps a paused or cut-off holder out. If the
# stream says `lost` (the node lost the cluster), COMMAND is stopped and the
# script exits 75. Exit status: COMMAND's, or 1 if the lock was never granted.
set -euo pipefail
url=${PIGLIX_URL:-http://127.0.0.1:8080}
[ $# -ge 2 ] || { echo "usage: lock.sh NAME COMMAND [ARG...]" >&2; exit 2; }
name=$1
shift
dir=$(mktemp -d)
helpers=()
# On exit the stream closes, which releases the lock (or leaves its queue).
# SIGKILL: these helpers hold nothing else, and a signal mask inherited from
# the caller cannot keep them alive.
trap 'kill -KILL "${helpers[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkfifo "$dir/stream"
# The lock is held while this request's stream is open (NDJSON records).
curl --silent --show-error --fail --http2-prior-knowledge -N -X POST "$url/v1/locks/$name" >"$dir/stream" &
helpers+=($!)
exec 3<"$dir/stream"
token=
while IFS= read -r line <&3; do
  case $line in
    *'"type":"waiting"'*) echo "lock.sh: waiting for $name: $line" >&2 ;;
    *'"type":"granted"'*) token=$(sed -E 's/.*"token":([0-9]+).*/\1/' <<<"$line") && break ;;
    *'"type":"lost"'* | *'"type":"released"'*) echo "lock.sh: $line" >&2 && exit 1 ;;
  esac
done
[ -n "$token" ] || { echo "lock.sh: the lock stream of $name ended before a grant" >&2; exit 1; }
echo "lock.sh: holding $name with token $token" >&2
PIGLIX_LOCK_TOKEN=$token "$@" &
command=$!
# While COMMAND runs, a `lost` record means another client may be granted
# the lock soon: stop COMMAND.
(
  while IFS= read -r line; do
    case $line in
      *'"type":"lost"'* | *'"type":"released"'*)
        echo "lock.sh: $line" >&2
        touch "$dir/lost"
        kill "$command" 2>/dev/null || true
        ;;
    esac
  done <&3
) &
helpers+=($!)
status=0
wait "$command" || status=$?
[ -e "$dir/lost" ] && exit 75
exit "$status"
