#!/usr/bin/env bash
# Starts a 3-node Piglix cluster on loopback with the README's build:
#   node n1: HTTP 127.0.0.1:8081, cluster 127.0.0.1:7001
#   node n2: HTTP 127.0.0.1:8082, cluster 127.0.0.1:7002
#   node n3: HTTP 127.0.0.1:8083, cluster 127.0.0.1:7003
# Waits until the three nodes share one primary view, prints how to use it,
# and stops every node on Ctrl-C (or when `--check` is given, right after
# a publish on n1 reached a subscriber on n2: the CI smoke test).
#
#   examples/local-cluster.sh            # run until Ctrl-C
#   examples/local-cluster.sh --check    # start, publish n1 -> subscribe n2, stop
#   PIGLIX_BIN=/path/to/piglix examples/local-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PIGLIX_BIN:-}" ]; then
  bin=$PIGLIX_BIN
else
  swift build --product piglix >&2
  bin="$(swift build --product piglix --show-bin-path)/piglix"
fi
logs=${PIGLIX_LOG_DIR:-$(mktemp -d -t piglix-cluster.XXXXXX)}
seeds=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
# Only nodes holding this key join (docs/operations.md, "Cluster key").
key="$logs/cluster.key"
[ -f "$key" ] || { head -c 32 /dev/urandom | base64 >"$key"; chmod 600 "$key"; }
pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT INT TERM

for i in 1 2 3; do
  "$bin" serve --node-id "n$i" --listen "127.0.0.1:808$i" \
    --cluster-listen "127.0.0.1:700$i" --seeds "$seeds" --cluster-key-file "$key" >"$logs/n$i.log" 2>&1 &
  pids+=($!)
done

# One primary view with all three members on every node.
for _ in $(seq 1 100); do
  ok=0
  for i in 1 2 3; do
    curl -s "http://127.0.0.1:808$i/v1/cluster" | grep -q '"members":\["n[123]","n[123]","n[123]"\].*"primary":true' && ok=$((ok + 1))
  done
  [ "$ok" = 3 ] && break
  sleep 0.2
done
if [ "$ok" != 3 ]; then
  echo "the cluster did not form; logs in $logs" >&2
  tail -n 20 "$logs"/n*.log >&2
  exit 1
fi
echo "cluster up: $(curl -s http://127.0.0.1:8081/v1/cluster)"

if [ "${1:-}" = "--check" ]; then
  out="$logs/sub.out"
  curl -sN --http2-prior-knowledge 'http://127.0.0.1:8082/v1/subscribe?topic=demo.*' >"$out" &
  sub=$!
  for _ in $(seq 1 50); do grep -q '"type":"view"' "$out" && break; sleep 0.1; done
  curl -s --http2-prior-knowledge -d 'hello from n1' http://127.0.0.1:8081/v1/topics/demo.greeting
  for _ in $(seq 1 50); do grep -q 'hello from n1' "$out" && break; sleep 0.1; done
  kill "$sub" 2>/dev/null || true
  cat "$out"
  grep -q '"data":"hello from n1"' "$out" || { echo "the message did not reach n2" >&2; exit 1; }
  echo "ok: published on n1, delivered on n2"
  exit 0
fi

cat <<'USAGE'
Try it (another terminal):
  curl --http2-prior-knowledge -N 'http://127.0.0.1:8082/v1/subscribe?topic=demo.*'
  curl --http2-prior-knowledge -d 'hello from n1' http://127.0.0.1:8081/v1/topics/demo.greeting
  curl --http2-prior-knowledge -H 'Piglix-Delivery: safe' -d 'stable' http://127.0.0.1:8083/v1/topics/demo.greeting
  curl http://127.0.0.1:8081/v1/cluster
Stop with Ctrl-C.
USAGE
echo "logs: $logs"
wait
