#!/usr/bin/env bash
# Piglix beside its peers, in the same minutes (issue 14; docs/performance.md,
# "Comparing with peers: scripts/bench-peers.sh"). Builds piglix in release,
# then, round after round, runs each Piglix scenario and its peer one after the
# other (alternating which goes first) and prints one markdown table:
# scenario | Piglix | peer | ratio | target | met?
#
#   1to1     piglix bench 1to1                 vs ../shared/peers/nats-1to1.sh 1 S
#   fanout   piglix bench fanout --subscribers 4  vs nats-1to1.sh 4 S
#   latency  piglix bench 1to1 --rate 10000 p99  vs nats-1to1.sh 1 S 10000 p99
#   post     h2load -D S -c 4 -m 100, 128-byte body, on POST /v1/topics/bench.t
#            of a running `piglix serve`          vs h2post.sh S (nghttpd)
#   cluster  piglix bench --nodes 3 fifo, safe, fanout, safe --rate 5000 (p99)
#            vs cpg.sh S and cpg.sh S 5000 (Corosync CPG, agreed order)
#
# Beside throughput, CPU per delivered message (utime+stime): Piglix's node(s)
# from `piglix bench`'s RESULT line; nats-server's, nghttpd's and corosync's
# from stand-ins put first on PATH that run the real server and record its CPU
# time when it exits (the peer scripts start their servers themselves).
# Ratios are Piglix / peer, taken per round and given as the median of the
# rounds; each figure is the median of the rounds (range in brackets). A
# Piglix run whose subscribers lost messages (gap records) is left out of the
# medians and the table says how many were.
#
# Usage: scripts/bench-peers.sh [--quick] [--only NAME[,NAME…]] [--rounds N]
#                               [--seconds S] [--skip-build]
#   --quick       1 round of 2 s runs (default: 3 rounds of 5 s)
#   --only        some of: 1to1 fanout latency post cluster
#   --skip-build  use the release binary as it is
# Peers: ${PIGLIX_PEERS:-../shared/peers}, relative to the repository root.
# Logs of every run: .build/bench-peers/DATE/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

rounds=3; seconds=5; warmup=1; only="1to1,fanout,latency,post,cluster"; build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) rounds=1; seconds=2; warmup=0.5 ;;
    --only) only=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --skip-build) build=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for name in ${only//,/ }; do
  case "$name" in 1to1|fanout|latency|post|cluster) ;; *) echo "unknown scenario $name; known: 1to1 fanout latency post cluster" >&2; exit 2 ;; esac
done
wants() { [[ ",$only," == *",$1,"* ]]; }

peers=$(cd "${PIGLIX_PEERS:-../shared/peers}" && pwd)

# What the peers need, installed once before the stand-ins are made (as the
# peer scripts themselves would install it).
need=()
if wants 1to1 || wants fanout || wants latency; then command -v nats-server >/dev/null || need+=(nats-server); fi
if wants post; then command -v nghttpd >/dev/null || need+=(nghttp2-server); command -v h2load >/dev/null || need+=(nghttp2-client); fi
if wants cluster; then command -v corosync >/dev/null || need+=(corosync); [ -f /usr/include/corosync/cpg.h ] || need+=(libcpg-dev); fi
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

if [ "$build" = 1 ]; then
  nice -n 10 swift build -c release --product piglix 2>&1 | grep -E 'error|warning: .*\.swift|Compiling piglix|Build' || true
fi
bin="$(swift build -c release --show-bin-path)/piglix"
[ -x "$bin" ] || { echo "no release piglix at $bin: run without --skip-build" >&2; exit 1; }

logs="$root/.build/bench-peers/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$logs"
work=$(mktemp -d)
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Stand-ins for the peers' servers: each runs the real one, forwards SIGTERM
# to it, and when it has exited writes its user+system CPU seconds (bash's
# `times`: the children's line) to $work/NAME.cpu.
mkdir "$work/bin"
for server in nats-server nghttpd corosync; do
  real=$(command -v "$server" || true)
  [ -n "$real" ] || continue
  cat >"$work/bin/$server" <<EOF
#!/usr/bin/env bash
"$real" "\$@" &
child=\$!
trap 'kill -TERM \$child 2>/dev/null' TERM INT HUP
# A trapped signal interrupts wait (status 128+N): wait again for the real one.
status=0
wait \$child || status=\$?
while kill -0 \$child 2>/dev/null; do status=0; wait \$child || status=\$?; done
# \`times\` itself, not in a pipeline: a subshell would count no children.
times >"$work/$server.times"
sed -n 2p "$work/$server.times" | awk '{ split(\$1, u, /[ms]/); split(\$2, s, /[ms]/); printf "%.3f\n", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' >"$work/$server.cpu.tmp"
mv "$work/$server.cpu.tmp" "$work/$server.cpu"
exit \$status
EOF
  chmod +x "$work/bin/$server"
done

results="$logs/results.tsv"
: >"$results"
# record ROUND KEY VALUE
record() { [ -n "$3" ] && printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; return 0; }
# field KEY LINE: the value of KEY=… in a RESULT line
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n 1; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# proc_cpu PID: utime+stime in seconds
proc_cpu() { awk -v tck="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / tck }' "/proc/$1/stat"; }

# piglix_bench ROUND KEY ARGS…: one `piglix bench` run; records its msgs/s,
# smallest per-subscriber msgs/s, p99 and node CPU per delivered message.
piglix_bench() {
  local round=$1 key=$2 log line
  shift 2
  log="$logs/$key.$round.log"
  echo "  piglix bench $*" >&2
  "$bin" bench "$@" --seconds "$seconds" --warmup "$warmup" >"$log" 2>&1 || echo "    (exit $?; see $log)" >&2
  line=$(grep '^RESULT ' "$log" | tail -n 1 || true)
  if [ -z "$line" ]; then
    echo "    no RESULT: $(grep -m 1 -E 'failed|did not|Error' "$log" || echo "see $log")" >&2
    record "$round" "$key.failed" 1
    return 0
  fi
  # A run that lost messages (gap records) measured something else: it is
  # left out of the medians and counted in the table instead.
  if [ "$(field lost "$line")" != 0 ]; then
    echo "    LOST $(field lost "$line") messages: not comparable, left out ($log)" >&2
    record "$round" "$key.lost" 1
    return 0
  fi
  record "$round" "$key.rate" "$(field delivered_msgs_per_s "$line")"
  record "$round" "$key.persub" "$(field per_sub_min_msgs_per_s "$line")"
  record "$round" "$key.p99" "$(field p99_us "$line")"
  record "$round" "$key.cpu" "$(field node_cpu_us_per_msg "$line")"
}

# peer_run ROUND KEY SERVER SCRIPT ARGS…: one peer script run; records its
# msgs/s (or h2load's req/s), p99, and SERVER's CPU per delivered message.
peer_run() {
  local round=$1 key=$2 server=$3 script=$4 log line cpu count waited=0
  shift 4
  log="$logs/$key.$round.log"
  echo "  $script $*" >&2
  rm -f "$work/$server.cpu"
  PATH="$work/bin:$PATH" bash "$peers/$script" "$@" >"$log" 2>&1 || echo "    (exit $?; see $log)" >&2
  while [ ! -f "$work/$server.cpu" ] && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
  cpu=$(cat "$work/$server.cpu" 2>/dev/null || true)
  if [ "$script" = h2post.sh ]; then
    record "$round" "$key.rate" "$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$log")"
    count=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$log")
  else
    line=$(grep '^RESULT ' "$log" | tail -n 1 || true)
    [ -n "$line" ] || return 0
    record "$round" "$key.rate" "$(field delivered_msgs_per_s "$line")"
    record "$round" "$key.p99" "$(field p99_us "$line")"
    count=$(field delivered "$line")
  fi
  if [ -n "$cpu" ] && [ -n "$count" ] && [ "$count" -gt 0 ]; then
    record "$round" "$key.cpu" "$(awk -v c="$cpu" -v n="$count" 'BEGIN { printf "%.3f", c / n * 1e6 }')"
  fi
}

# piglix_post ROUND: h2load against POST /v1/topics/bench.t of a `piglix
# serve` started here; records req/s (all answers 2xx) and node CPU per request.
piglix_post() {
  local round=$1 log="$logs/post.piglix.$1.log" port cpu0 cpu1 ok
  port=$(free_port)
  "$bin" serve --listen "127.0.0.1:$port" --log-level warning >"$logs/post.serve.$round.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  head -c 128 /dev/zero | tr '\0' x >"$work/body"
  echo "  h2load -D $seconds -c 4 -m 100 -d <128 B> http://127.0.0.1:$port/v1/topics/bench.t" >&2
  cpu0=$(proc_cpu "$serve_pid")
  h2load -D "$seconds" -c 4 -m 100 -d "$work/body" "http://127.0.0.1:$port/v1/topics/bench.t" >"$log" 2>&1 || echo "    (h2load exit $?; see $log)" >&2
  cpu1=$(proc_cpu "$serve_pid")
  kill "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  serve_pid=""
  ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$log")
  if ! grep -q 'status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' "$log"; then echo "    not every answer was 2xx ($log)" >&2; return 0; fi
  record "$round" post.piglix.rate "$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$log")"
  [ -n "$ok" ] && [ "$ok" -gt 0 ] && record "$round" post.piglix.cpu "$(awk -v a="$cpu0" -v b="$cpu1" -v n="$ok" 'BEGIN { printf "%.3f", (b - a) / n * 1e6 }')"
  return 0
}

# pair ROUND FIRST SECOND: runs the two commands (strings of words) in turn,
# swapping their order on odd rounds.
pair() {
  if [ $(($1 % 2)) = 0 ]; then eval "$2"; eval "$3"; else eval "$3"; eval "$2"; fi
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- Sources Package.swift 2>/dev/null || commit="$commit (with uncommitted changes)"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 0 $((rounds - 1))); do
  echo "round $((round + 1)) of $rounds, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  if wants 1to1; then
    pair "$round" "piglix_bench $round 1to1.piglix 1to1" "peer_run $round 1to1.nats nats-server nats-1to1.sh 1 $seconds"
  fi
  if wants fanout; then
    pair "$round" "piglix_bench $round fanout.piglix fanout --subscribers 4" "peer_run $round fanout.nats nats-server nats-1to1.sh 4 $seconds"
  fi
  if wants latency; then
    pair "$round" "piglix_bench $round latency.piglix 1to1 --rate 10000" "peer_run $round latency.nats nats-server nats-1to1.sh 1 $seconds 10000"
  fi
  if wants post; then
    pair "$round" "piglix_post $round" "peer_run $round post.nghttpd nghttpd h2post.sh $seconds"
  fi
  if wants cluster; then
    pair "$round" "piglix_bench $round fifo.piglix --nodes 3 fifo" "peer_run $round cpg.corosync corosync cpg.sh $seconds"
    piglix_bench "$round" safe.piglix --nodes 3 safe
    piglix_bench "$round" cfanout.piglix --nodes 3 fanout
    pair "$round" "piglix_bench $round safepaced.piglix --nodes 3 safe --rate 5000" "peer_run $round cpgpaced.corosync corosync cpg.sh $seconds 5000"
  fi
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "scripts/bench-peers.sh: $started, commit $commit, $rounds round(s) of ${seconds} s, load average $load_start at start, $load_end at end ($(nproc) cores; logs in ${logs#"$root"/})"
echo
python3 - "$results" <<'EOF'
import statistics, sys
from collections import defaultdict

values = defaultdict(dict)  # key -> round -> value
for row in open(sys.argv[1]):
    round_, key, value = row.rstrip("\n").split("\t")
    try:
        values[key][round_] = float(value)
    except ValueError:
        pass

def figure(key, unit):
    rounds = values.get(key, {})
    if not rounds:
        failed = values.get(key.rsplit(".", 1)[0] + ".failed", {})
        lost = values.get(key.rsplit(".", 1)[0] + ".lost", {})
        if failed or lost:
            return None, "; ".join(([f"failed in {len(failed)} run(s)"] if failed else []) + ([f"lost messages in {len(lost)} run(s)"] if lost else []))
        return None, "—"
    seq = list(rounds.values())
    med = statistics.median(seq)
    text = fmt(med, unit)
    if len(seq) > 1:
        text += f" ({fmt(min(seq), unit)} – {fmt(max(seq), unit)})"
    failed = values.get(key.rsplit(".", 1)[0] + ".failed", {})
    if failed:
        text += f"; failed in {len(failed)} run(s)"
    lost = values.get(key.rsplit(".", 1)[0] + ".lost", {})
    if lost:
        text += f"; {len(lost)} run(s) with lost messages left out"
    return med, text

def fmt(v, unit):
    if unit == "/s":
        return f"{v:,.0f}"
    if unit == "µs":
        return f"{v:,.2f} µs" if v < 100 else f"{v:,.0f} µs"
    return f"{v:g}"

def ratio(pkey, qkey):
    common = sorted(set(values.get(pkey, {})) & set(values.get(qkey, {})))
    ratios = [values[pkey][r] / values[qkey][r] for r in common if values[qkey][r] > 0]
    return statistics.median(ratios) if ratios else None

rows = []
def row(name, pkey, qkey, unit, target, check):
    pmed, ptext = figure(pkey, unit)
    qmed, qtext = figure(qkey, unit) if qkey else (None, "—")
    r = ratio(pkey, qkey) if qkey else None
    met = "—"
    if check and pmed is not None:
        verdict = check(pmed, r, values.get(pkey, {}))
        met = "—" if verdict is None else ("**yes**" if verdict else "**no**")
    rows.append((name, ptext, qtext, f"{r:.2f}" if r is not None else "—", target, met))

row("1→1 delivered msgs/s (`bench 1to1` / NATS `nats-1to1.sh 1`)", "1to1.piglix.rate", "1to1.nats.rate", "/s", "≥ 0.5×",
    lambda p, r, _: None if r is None else r >= 0.5)
row("node CPU per delivered msg, 1→1 (Piglix node / nats-server)", "1to1.piglix.cpu", "1to1.nats.cpu", "µs", "≤ 2×",
    lambda p, r, _: None if r is None else r <= 2)
row("1→4 delivered msgs/s, sum (`bench fanout --subscribers 4` / `nats-1to1.sh 4`)", "fanout.piglix.rate", "fanout.nats.rate", "/s", "≥ 0.5×",
    lambda p, r, _: None if r is None else r >= 0.5)
row("node CPU per delivered msg, 1→4", "fanout.piglix.cpu", "fanout.nats.cpu", "µs", "", None)
row("p99 at 10,000 msgs/s (`bench 1to1 --rate 10000` / `nats-1to1.sh 1 S 10000`)", "latency.piglix.p99", "latency.nats.p99", "µs", "≤ 2×",
    lambda p, r, _: None if r is None else r <= 2)
row("`POST /v1/topics/bench.t` req/s, h2load -c 4 -m 100, 128 B (/ nghttpd `h2post.sh`)", "post.piglix.rate", "post.nghttpd.rate", "/s", "≥ 0.5×",
    lambda p, r, _: None if r is None else r >= 0.5)
row("server CPU per POST (Piglix node / nghttpd)", "post.piglix.cpu", "post.nghttpd.cpu", "µs", "", None)
row("3 nodes, fifo n1→n2 msgs/s (`bench --nodes 3 fifo` / CPG `cpg.sh`)", "fifo.piglix.rate", "cpg.corosync.rate", "/s", "≥ 250,000 and ≥ 2×",
    lambda p, r, _: None if r is None else (p >= 250_000 and r >= 2))
row("3 nodes, safe n1→n2 msgs/s (/ CPG `cpg.sh`)", "safe.piglix.rate", "cpg.corosync.rate", "/s", "≥ 1×",
    lambda p, r, _: None if r is None else r >= 1)
row("3 nodes, safe at 5,000 msgs/s, p99 (/ CPG `cpg.sh S 5000`)", "safepaced.piglix.p99", "cpgpaced.corosync.p99", "µs", "< 5 ms in every run",
    lambda p, r, runs: max(runs.values()) < 5000)
row("3 nodes, fan-out, msgs/s at the slowest of 3 subscribers", "cfanout.piglix.persub", None, "/s", "≥ 150,000",
    lambda p, r, _: p >= 150_000)
row("node CPU per delivered msg, 3 nodes fifo (sum over nodes / corosync)", "fifo.piglix.cpu", "cpg.corosync.cpu", "µs", "", None)
row("node CPU per delivered msg, 3 nodes safe (sum over nodes / corosync)", "safe.piglix.cpu", "cpg.corosync.cpu", "µs", "", None)

rows = [r for r in rows if not (r[1] == "—" and r[2] == "—")]
print("| scenario | Piglix | peer | ratio | target | met? |")
print("| --- | ---: | ---: | ---: | --- | --- |")
for r in rows:
    print("| " + " | ".join(r) + " |")
EOF
