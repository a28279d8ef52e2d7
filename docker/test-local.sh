#!/usr/bin/env bash
# Builds the Piglix container image without a registry and runs it: three
# containers on loopback ports, publish on one node and subscribe on another,
# stop one and check the other two install a new view and go on; then removes
# everything it started.
#
# docker/Dockerfile needs the official swift and debian images, which cannot
# be pulled where no registry is reachable. This script builds the same
# image from local parts instead: the release binary (built here with
# --static-swift-stdlib, as the Dockerfile does), the shared libraries `ldd`
# lists, and a minimal /etc, on an empty base (FROM scratch). The runtime
# settings (ENV, EXPOSE, USER, HEALTHCHECK, STOPSIGNAL, ENTRYPOINT, CMD) are
# copied verbatim from the Dockerfile's last stage, so they cannot drift.
#
# Usage: docker/test-local.sh            (from anywhere; needs podman, runc, curl, python3)
# Environment:
#   PIGLIX_BINARY=path      use this piglix binary instead of building the release one
#   PIGLIX_KEEP_IMAGE=1     keep the image localhost/piglix:test-local afterwards
#
# Containers run as `podman --runtime runc run --network host` with explicit
# ulimits: on these machines crun and cgroup-managed runs do not work.
# Exit status 0: every check passed. When the binary has no cluster mode
# (/v1/cluster says "clustered":false) the multi-node checks are skipped and
# a line starting with "SKIP:" says so; the single-node checks still run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

for tool in podman runc curl python3; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (apt-get install podman runc curl python3)"; exit 3; }
done

# Without systemd, podman logs an error about health check timers at every
# run, stop and rm; the checks themselves work (`podman healthcheck run`).
podman_() { podman --runtime runc "$@" 2> >(grep -v 'systemd connection' >&2); }
run_flags=(--ulimit nofile=1024:1024 --ulimit nproc=1000:1000 --network host)
image=localhost/piglix:test-local
prefix=piglix-local-$$
work=$root/.build/docker-local
containers=()
pids=()

say() { printf '[test-local] %s\n' "$*"; }
fail() { printf '[test-local] FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for name in "${containers[@]}"; do
    if [ "$status" -ne 0 ] && podman_ container exists "$name" 2>/dev/null; then
      echo "---- logs of $name ----" >&2
      podman_ logs "$name" 2>&1 | tail -20 >&2 || true
    fi
    podman_ rm -f -t 0 "$name" >/dev/null 2>&1 || true
  done
  if [ "${PIGLIX_KEEP_IMAGE:-0}" != 1 ]; then podman rmi -f "$image" >/dev/null 2>&1 || true; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. the release binary ----
if [ -n "${PIGLIX_BINARY:-}" ]; then
  binary=$PIGLIX_BINARY
  say "using $binary"
else
  # Its own build directory: `swift test` holds .build while the tests run
  # (DockerTests runs this script), so a build there would wait forever.
  scratch=$root/.build/docker-release
  say "building the release binary (swift build -c release --product piglix --static-swift-stdlib --scratch-path .build/docker-release)"
  mkdir -p "$scratch"
  nice -n 10 swift build -c release --product piglix --static-swift-stdlib --scratch-path "$scratch" >"$scratch/build.log" 2>&1 ||
    { tail -30 "$scratch/build.log" >&2; fail "release build failed (log: .build/docker-release/build.log)"; }
  binary=$(swift build -c release --scratch-path "$scratch" --show-bin-path)/piglix
fi
[ -x "$binary" ] || fail "no executable at $binary"

# ---- 2. a root file system: the binary, its shared libraries, a minimal /etc ----
rm -rf "$work"
mkdir -p "$work/rootfs/usr/local/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
chmod 1777 "$work/rootfs/tmp"
install -m 0755 "$binary" "$work/rootfs/usr/local/bin/piglix"
# Every library ldd resolves (`name => /path`) and the loader (a bare path).
libraries=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
for library in $libraries; do
  cp --parents -L "$library" "$work/rootfs/"
done
say "image libraries: $(echo "$libraries" | xargs -n1 basename | tr '\n' ' ')"
# The same user as the Dockerfile's `useradd --uid 10001 piglix`.
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\npiglix:x:10001:10001::/nonexistent:/usr/sbin/nologin\n' >"$work/rootfs/etc/passwd"
printf 'root:x:0:\npiglix:x:10001:\n' >"$work/rootfs/etc/group"
printf 'hosts: files dns\n' >"$work/rootfs/etc/nsswitch.conf"

# ---- 3. the image: FROM scratch + the Dockerfile's runtime settings ----
{
  echo "FROM scratch"
  echo "COPY rootfs/ /"
  # debian:bookworm-slim's PATH, which the Dockerfile's runtime stage inherits.
  echo "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  # The last stage of docker/Dockerfile, continuation lines joined, without
  # the instructions that build (RUN, COPY).
  awk '/^FROM /{ stage = "" } { line = $0; while (line ~ /\\$/ && (getline next_line) > 0) line = substr(line, 1, length(line) - 1) next_line; stage = stage line "\n" }
       END { printf "%s", stage }' docker/Dockerfile |
    grep -E '^(ENV|EXPOSE|USER|HEALTHCHECK|STOPSIGNAL|ENTRYPOINT|CMD|WORKDIR|LABEL) '
} >"$work/Containerfile"
say "Containerfile:"
sed 's/^/    /' "$work/Containerfile"
podman build --quiet --format docker -t "$image" -f "$work/Containerfile" "$work" >/dev/null
inspect=$(podman image inspect "$image")
python3 - "$inspect" <<'EOF' || fail "the image's configuration differs from docker/Dockerfile"
import json, sys
image = json.loads(sys.argv[1])[0]
config = image["Config"]
assert config["Entrypoint"] == ["piglix"], config["Entrypoint"]
assert config["Cmd"] == ["serve"], config["Cmd"]
assert config["User"] == "10001:10001", config["User"]
health = image.get("Healthcheck") or config.get("Healthcheck")
assert health["Test"] == ["CMD", "piglix", "probe", "/healthz"], health
assert set(config["ExposedPorts"]) == {"8080/tcp", "7000/tcp"}, config["ExposedPorts"]
env = dict(item.split("=", 1) for item in config["Env"])
assert env["PIGLIX_LISTEN"] == "0.0.0.0:8080" and env["PIGLIX_CLUSTER_LISTEN"] == "0.0.0.0:7000", env
assert config.get("StopSignal") in ("SIGTERM", "15"), config.get("StopSignal")
EOF
say "image $image: entrypoint piglix, cmd serve, user 10001, health check piglix probe, ports 8080 7000"
podman_ run --rm "${run_flags[@]}" "$image" --help >/dev/null || fail "the binary does not start in the image (missing library?)"

# ---- helpers ----
read -r -a ports <<<"$(python3 - <<'EOF'
import socket
sockets = [socket.socket() for _ in range(6)]
for s in sockets: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
)"
http=("${ports[@]:0:3}")
peer=("${ports[@]:3:3}")
seeds="127.0.0.1:${peer[0]},127.0.0.1:${peer[1]},127.0.0.1:${peer[2]}"

# start INDEX clustered|single
start() {
  local i=$1 mode=$2 name="$prefix-n$(($1 + 1))"
  local env=(-e "PIGLIX_NODE_ID=n$((i + 1))" -e "PIGLIX_LISTEN=127.0.0.1:${http[$i]}" -e PIGLIX_LOG_LEVEL=notice)
  if [ "$mode" = clustered ]; then
    env+=(-e "PIGLIX_CLUSTER_LISTEN=127.0.0.1:${peer[$i]}" -e "PIGLIX_SEEDS=$seeds" -e PIGLIX_SUSPICION_TIMEOUT_MS=1000)
  else
    env+=(-e PIGLIX_CLUSTER_LISTEN= -e PIGLIX_SEEDS=)
  fi
  podman_ rm -f -t 0 "$name" >/dev/null 2>&1 || true
  podman_ run -d --name "$name" "${run_flags[@]}" "${env[@]}" "$image" >/dev/null
  containers+=("$name")
}

url() { echo "http://127.0.0.1:${http[$1]}"; }

# wait_up INDEX: until the node answers its health probe, or its container exits.
wait_up() {
  local name="$prefix-n$(($1 + 1))"
  for _ in $(seq 200); do
    curl -fsS -o /dev/null "$(url "$1")/healthz" 2>/dev/null && return 0
    [ "$(podman_ inspect -f '{{.State.Running}}' "$name")" = true ] || return 1
    sleep 0.1
  done
  fail "$name did not answer /healthz within 20 s"
}

# cluster_field INDEX EXPR: a Python expression over the node's /v1/cluster as `c`.
cluster_field() {
  curl -fsS "$(url "$1")/v1/cluster" | python3 -c "import json, sys; c = json.load(sys.stdin); print($2)"
}

# poll SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds.
poll() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ $SECONDS -lt "$deadline" ] || fail "timed out after ${seconds}s waiting until $what"
    sleep 0.2
  done
}

# subscribe INDEX PATTERN FILE: a background NDJSON subscriber writing to FILE.
subscribe() {
  curl -sS --http2-prior-knowledge -N -G --data-urlencode "topic=$2" "$(url "$1")/v1/subscribe" >"$3" 2>&1 &
  pids+=($!)
  poll 10 "the subscriber on n$(($1 + 1)) got its view" grep -qs '"type":"view"' "$3"
}

publish() { # publish INDEX TOPIC DATA [DELIVERY]
  curl -fsS --http2-prior-knowledge -H "Piglix-Delivery: ${4:-fifo}" --data-binary "$3" "$(url "$1")/v1/topics/$2" >/dev/null
}

healthy() { # the image's HEALTHCHECK, run as the engine would
  podman_ healthcheck run "$prefix-n$(($1 + 1))" >/dev/null 2>&1
}

# ---- 4. is this build clustered? ----
start 0 clustered
if wait_up 0; then
  clustered=$(cluster_field 0 'str(c["clustered"]).lower()')
else
  log=$(podman_ logs "$prefix-n1" 2>&1 | tail -3)
  echo "$log" | grep -qi 'cluster' || fail "n1 exited at start: $log"
  say "the binary refuses the cluster settings: $(echo "$log" | grep -i cluster | head -1)"
  clustered=false
fi

if [ "$clustered" != true ]; then
  # ---- 5a. single-node build: three independent containers ----
  say "SKIP: multi-node checks (publish on one node and subscribe on another; a new view after a stop) need a clustered build; this binary has no cluster mode (it refuses the cluster settings, or /v1/cluster says \"clustered\":false). Running the single-node container checks instead."
  podman_ rm -f -t 0 "$prefix-n1" >/dev/null
  for i in 0 1 2; do start "$i" single; done
  for i in 0 1 2; do
    wait_up "$i" || fail "n$((i + 1)) exited: $(podman_ logs "$prefix-n$((i + 1))" 2>&1 | tail -3)"
    poll 20 "n$((i + 1)) is healthy (HEALTHCHECK piglix probe)" healthy "$i"
    [ "$(cluster_field "$i" 'c["node"]')" = "n$((i + 1))" ] || fail "n$((i + 1)) reports another node id"
    subscribe "$i" 'local.*' "$work/sub-$i.ndjson"
    publish "$i" local.check "hello n$((i + 1))"
    poll 10 "n$((i + 1))'s subscriber got the message" grep -q "\"data\":\"hello n$((i + 1))\"" "$work/sub-$i.ndjson"
  done
  say "3 containers healthy as uid 10001; each publishes and delivers"
  podman_ stop -t 15 "$prefix-n3" >/dev/null
  [ "$(podman_ inspect -f '{{.State.ExitCode}}' "$prefix-n3")" = 0 ] || fail "n3 did not exit 0 on SIGTERM"
  poll 10 "n3's subscriber got the end record" grep -q '"type":"end"' "$work/sub-2.ndjson"
  say "n3 stopped gracefully on SIGTERM (exit 0, subscribers got an end record)"
  for i in 0 1; do
    publish "$i" local.after "still here n$((i + 1))"
    poll 10 "n$((i + 1)) still delivers" grep -q "still here n$((i + 1))" "$work/sub-$i.ndjson"
  done
  say "n1 and n2 go on"
  say "PASS (single-node container checks; multi-node part skipped)"
  exit 0
fi

# ---- 5b. clustered build: one cluster of three ----
for i in 1 2; do start "$i" clustered; done
for i in 1 2; do wait_up "$i" || fail "n$((i + 1)) exited: $(podman_ logs "$prefix-n$((i + 1))" 2>&1 | tail -3)"; done
same_view() { # same_view SIZE INDEX...: every listed node is in one primary view of SIZE members
  local size=$1 first="" i view
  shift
  for i in "$@"; do
    view=$(cluster_field "$i" "'%s %s' % (c['view'], ','.join(sorted(m if isinstance(m, str) else m.get('id', m.get('node')) for m in c['members']))) if c['primary'] and len(c['members']) == $size else ''" 2>/dev/null) || return 1
    [ -n "$view" ] || return 1
    if [ -z "$first" ]; then first=$view; elif [ "$view" != "$first" ]; then return 1; fi
  done
  echo "$first" >"$work/view"
}
poll 60 "n1, n2, n3 share one view of 3 members" same_view 3 0 1 2
read -r view3 members3 <"$work/view"
say "view $view3 with members $members3 on all three nodes"
for i in 0 1 2; do poll 20 "n$((i + 1)) is healthy" healthy "$i"; done

subscribe 1 'orders.>' "$work/sub-n2.ndjson"
# n2's join of the group `orders.>` reaches n1 as an ordered event; until it
# has, n1 has nobody to send orders.* to. Publish warm-ups until one arrives.
warmed_up() { publish 0 orders.warmup "warm-up" && sleep 0.3 && grep -q '"data":"warm-up"' "$work/sub-n2.ndjson"; }
poll 30 "a warm-up message published on n1 reaches n2's subscriber" warmed_up
publish 0 orders.eu.created "from n1"
poll 20 "n2's subscriber got the message published on n1" grep -q '"data":"from n1"' "$work/sub-n2.ndjson"
# n3 may learn of n2's join a moment after n1: publish again until it lands.
safe_from_n3() {
  grep -q '"data":"safe from n3"' "$work/sub-n2.ndjson" ||
    { publish 2 orders.us.created "safe from n3" safe && sleep 0.5 && grep -q '"data":"safe from n3"' "$work/sub-n2.ndjson"; }
}
poll 30 "n2's subscriber got a safe message published on n3" safe_from_n3
say "published on n1 and n3, delivered on n2"

podman_ stop -t 15 "$prefix-n3" >/dev/null
say "stopped n3"
new_view() { same_view 2 0 1 && read -r v _ <"$work/view" && [ "$v" -gt "$view3" ]; }
poll 60 "n1 and n2 install a new view of 2 members" new_view
read -r view2 members2 <"$work/view"
say "view $view2 with members $members2 on n1 and n2"
curl -fsS -o /dev/null "$(url 0)/readyz" || fail "n1 is not ready in the new primary view"
publish 0 orders.eu.created "after the view change"
poll 20 "n2's subscriber got a message published after the view change" grep -q '"data":"after the view change"' "$work/sub-n2.ndjson"
say "n1 and n2 go on: published on n1 after the view change, delivered on n2"
say "PASS (three-node cluster in containers)"
