#!/usr/bin/env bash
# Figures that do not drift with a noisy neighbour (issue 14; docs/performance.md,
# "Counts per delivered message"): for a fixed-count `piglix bench` run against
# a node started here,
#   - instructions per delivered message: the node runs under
#     `valgrind --tool=callgrind`; its counters are zeroed after a warm-up run
#     and dumped after the measured run (callgrind_control), and the dump's
#     total Ir is divided by the messages delivered;
#   - allocations per delivered message: the node runs with
#     scripts/malloc-count.c preloaded (malloc, calloc, realloc and the aligned
#     allocations counted); SIGUSR1 dumps the counts before and after the
#     measured run.
# The bench's clients run natively; only the node is counted.
#
# Usage: scripts/bench-counts.sh [--messages N] [--subscribers N] [--only instructions|allocations] [--skip-build]
#   --messages     measured messages (default 20000 under callgrind, 100000 for allocations)
#   --subscribers  1: `bench 1to1` (default); more: `bench fanout --subscribers N`
# Prints one line per figure and a RESULT line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

messages=""; subscribers=1; only="instructions,allocations"; build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --messages) messages=$2; shift ;;
    --subscribers) subscribers=$2; shift ;;
    --only) only=$2; shift ;;
    --skip-build) build=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
wants() { [[ ",$only," == *",$1,"* ]]; }

if wants instructions && ! command -v valgrind >/dev/null; then
  apt-get install -y -qq valgrind >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
fi
if [ "$build" = 1 ]; then
  nice -n 10 swift build -c release --product piglix 2>&1 | grep -E 'error|warning: .*\.swift|Build' || true
fi
bin="$(swift build -c release --show-bin-path)/piglix"
[ -x "$bin" ] || { echo "no release piglix at $bin: run without --skip-build" >&2; exit 1; }

work=$(mktemp -d)
node=""
cleanup() {
  if [ -n "$node" ]; then kill "$node" 2>/dev/null || true; wait "$node" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

scenario=(1to1)
[ "$subscribers" -gt 1 ] && scenario=(fanout --subscribers "$subscribers")
port=""

# start_node PREFIX…: `piglix serve` on a free loopback port, run by PREFIX
# (valgrind, env …); waits up to 60 s for it to listen.
start_node() {
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "$@" serve --listen "127.0.0.1:$port" --log-level warning >"$work/node.log" 2>&1 &
  node=$!
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$node" 2>/dev/null || break
    sleep 0.1
  done
  echo "the node did not listen on $port:" >&2
  cat "$work/node.log" >&2
  exit 1
}

stop_node() {
  kill -TERM "$node" 2>/dev/null || true
  wait "$node" 2>/dev/null || true
  node=""
}

# bench N: a fixed-count run against the node; prints the messages delivered.
bench() {
  local line
  line=$("$bin" bench "${scenario[@]}" --url "http://127.0.0.1:$port" --warmup 0 --messages "$1" | grep '^RESULT ')
  tr ' ' '\n' <<<"$line" | sed -n 's/^delivered=//p'
}

result="RESULT scenario=${scenario[0]} subs=$subscribers"
echo "scripts/bench-counts.sh: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), \`piglix bench ${scenario[*]} --warmup 0 --messages N\` against a node started here"

if wants instructions; then
  count=${messages:-20000}
  # valgrind 3.19 cannot read this toolchain's DWARF 5: count a copy without
  # debug information (the same code); the shim keeps the async main's thread.
  objcopy --strip-debug "$bin" "$work/piglix"
  cc -O2 -shared -fPIC -o "$work/dispatch-main-shim.so" scripts/dispatch-main-shim.c
  start_node env LD_PRELOAD="$work/dispatch-main-shim.so" valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" "$work/piglix"
  bench 2000 >/dev/null
  callgrind_control --zero "$node" >/dev/null 2>&1
  delivered=$(bench "$count")
  callgrind_control --dump "$node" >/dev/null 2>&1
  for _ in $(seq 100); do [ -s "$work/callgrind.out.1" ] && break; sleep 0.1; done
  stop_node
  ir=$(sed -n 's/^summary: //p' "$work/callgrind.out.1")
  per=$(awk -v i="$ir" -v n="$delivered" 'BEGIN { printf "%.0f", i / n }')
  printf 'instructions per delivered message: %s (node Ir %s over %s deliveries, callgrind)\n' "$per" "$ir" "$delivered"
  result="$result instr_messages=$delivered instructions_per_msg=$per"
fi

if wants allocations; then
  count=${messages:-100000}
  cc -O2 -shared -fPIC -o "$work/malloc-count.so" scripts/malloc-count.c
  export MALLOC_COUNT_FILE="$work/malloc-count.txt"
  start_node env LD_PRELOAD="$work/malloc-count.so" "$bin"
  unset MALLOC_COUNT_FILE
  bench 2000 >/dev/null
  kill -USR1 "$node"
  delivered=$(bench "$count")
  kill -USR1 "$node"
  for _ in $(seq 50); do [ "$(wc -l <"$work/malloc-count.txt")" -ge 2 ] && break; sleep 0.1; done
  stop_node
  before=$(sed -n '1s/.* total=//p' "$work/malloc-count.txt")
  after=$(sed -n '2s/.* total=//p' "$work/malloc-count.txt")
  # The kinds, measured run only: "malloc=… calloc=… realloc=… memalign=…".
  kinds=$(awk 'NR <= 2 { for (i = 3; i <= 6; i++) { split($i, kv, "="); v[NR, i] = kv[2]; k[i] = kv[1] } }
    END { for (i = 3; i <= 6; i++) printf "%s%s %d", (i > 3 ? ", " : ""), k[i], v[2, i] - v[1, i] }' "$work/malloc-count.txt")
  per=$(awk -v a="$before" -v b="$after" -v n="$delivered" 'BEGIN { printf "%.2f", (b - a) / n }')
  printf 'allocations per delivered message: %s (node %s allocations over %s deliveries: %s)\n' "$per" "$((after - before))" "$delivered" "$kinds"
  result="$result alloc_messages=$delivered allocations_per_msg=$per"
fi
echo "$result"
