#!/usr/bin/env bash
# Single POSTs against a 3-node cluster: three `piglix serve` on loopback,
# h2load -c 4 -m 100 with a 128-byte body on n1's POST /v1/topics/bench.t,
# then req/s and the CPU per request summed over the three nodes
# (utime+stime from /proc). docs/performance.md, "Single POST on the event loop".
#
# Usage: scripts/bench-post-cluster.sh [BINARY=.build/release/piglix] [BASE_PORT=18200] [SECONDS=4]
set -euo pipefail
bin=${1:-.build/release/piglix}
base=${2:-18200}
seconds=${3:-4}
work=$(mktemp -d)
head -c 128 /dev/zero | tr '\0' x >"$work/body"
seeds="127.0.0.1:$((base + 10)),127.0.0.1:$((base + 11)),127.0.0.1:$((base + 12))"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for i in 0 1 2; do
  "$bin" serve --node-id "n$((i + 1))" --listen "127.0.0.1:$((base + i))" --cluster-listen "127.0.0.1:$((base + 10 + i))" \
    --seeds "$seeds" --log-level error >"$work/n$((i + 1)).log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 150); do
  members=$(curl -s "http://127.0.0.1:$base/v1/cluster" | python3 -c 'import sys,json; print(len(json.load(sys.stdin).get("members",[])))' 2>/dev/null || true)
  [ "$members" = 3 ] && break
  sleep 0.1
done
[ "$members" = 3 ] || { echo "the cluster did not form; logs in $work" >&2; exit 1; }
cpu() { local sum=0 pid; for pid in "${pids[@]}"; do sum=$((sum + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat"))); done; echo "$sum"; }
before=$(cpu)
out=$(h2load -D "$seconds" -c 4 -m 100 -d "$work/body" "http://127.0.0.1:$base/v1/topics/bench.t" 2>&1 | grep -E 'finished in|status codes')
after=$(cpu)
answered=$(sed -n 's/.*status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
echo "$out"
python3 -c "import os; t=os.sysconf('SC_CLK_TCK'); print('CPU per request, 3 nodes: %.1f µs (load average %s)' % (($after-$before)/t*1e6/max(1,$answered), open('/proc/loadavg').read().split()[0]))"
