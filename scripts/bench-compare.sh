#!/usr/bin/env bash
# Compares huddle with the Node.js Socket.IO peer (bench/peer) under the same
# load, with huddle-bench, and prints the Markdown table of
# scripts/bench-table.py.
#
# It builds `huddle` and `huddle-bench` in release mode (unless HUDDLE_BIN and
# BENCH_BIN name built ones), installs the peer's npm packages (npm ci),
# starts Redis (scripts/redis-test-server.sh) and the MongoDB-wire-compatible
# nx-27017 (scripts/mongo-test-servers.sh) for the 2-node runs, and runs every
# scenario against: peer 1 node, peer 2 nodes (Redis adapter), huddle 1 node,
# huddle 2 nodes (Redis bridge, MongoDB documents). Every server process is
# pinned to core 0 and the bench to core 1 with taskset; in 2-node runs the
# second node and Redis share core 0 with the first, and nx-27017 (the
# MongoDB stand-in, a Python program) runs on core 1 beside the bench, its
# CPU reported apart (`db_cpu`). Results are JSON lines
# in artifacts/bench/<time>/results.jsonl; servers are stopped on exit.
#
# Usage: scripts/bench-compare.sh [--quick] [--skip-2node] [--skip-peer]
#                                  [--only WORD] [--runs N] [--conns N]
#                                  [--by-turns]
#   --quick       short runs (3 s measured), fewer rate steps, fewer idle connections
#   --skip-2node  only the 1-node rows
#   --skip-peer   only huddle (the peer's column stays empty)
#   --only WORD   only the runs whose label contains WORD (idle-conns,
#                 small-rooms, big-rooms, max-rate, echo, upload)
#   --runs N      every run N times; the table takes the median of each
#                 figure (a rate step passes when most of its runs pass)
#   --conns N     idle connections of the memory run (default 10000; lowered
#                 to what `ulimit -n` allows, with a note)
#   --by-turns    only the CPU scenarios (small and big rooms), the peer
#                 and huddle measured by turns (peer, huddle, peer, huddle,
#                 ...), so a drift of the machine during the runs weighs on
#                 both columns alike: on one node with both servers running,
#                 then (unless --skip-2node) on two nodes, each turn on
#                 fresh pairs (huddle's on a fresh database)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0
skip_2node=0
skip_peer=0
only=
runs=1
conns=10000
by_turns=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --skip-2node) skip_2node=1 ;;
    --skip-peer) skip_peer=1 ;;
    --only) only=$2; shift ;;
    --runs) runs=$2; shift ;;
    --conns) conns=$2; shift ;;
    --by-turns) by_turns=1 ;;
    *) echo "usage: $0 [--quick] [--skip-2node] [--skip-peer] [--only WORD] [--runs N] [--conns N] [--by-turns]" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '\n==> %s\n' "$*" >&2; }

if [ "$quick" = 1 ]; then
  duration=3 warmup=1 steps=3 hold=3 echo_count=300 upload_mb=8
  [ "$conns" -gt 2000 ] && conns=2000
else
  duration=10 warmup=2 steps=22 hold=30 echo_count=2000 upload_mb=32
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
if [ -z "${HUDDLE_BIN:-}" ]; then
  log "building huddle (release)"
  cargo build --release --locked --bin huddle
  HUDDLE_BIN="$CARGO_TARGET_DIR/release/huddle"
fi
if [ -z "${BENCH_BIN:-}" ]; then
  log "building huddle-bench (release)"
  cargo build --release --locked -p huddle-bench
  BENCH_BIN="$CARGO_TARGET_DIR/release/huddle-bench"
fi
# A binary given that is not there would make every run fail on its own,
# each with "no result": say it once, before anything starts.
for bin in "$HUDDLE_BIN" "$BENCH_BIN"; do
  if [ ! -x "$bin" ]; then
    echo "bench-compare: $bin is not an executable (build it, or unset HUDDLE_BIN / BENCH_BIN)" >&2
    exit 2
  fi
done

log "installing the peer's npm packages"
(cd bench/peer && npm ci --no-audit --no-fund --loglevel=error)

# Every connection is a file descriptor in the bench and in the server.
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ]; then
  ulimit -n "$hard"
  if [ $((conns + 2000)) -gt "$hard" ]; then
    conns=$((hard - 2000))
    log "ulimit -n allows $hard open files: the memory run uses $conns idle connections"
  fi
else
  ulimit -n 1048576 2>/dev/null || true
fi

out="$root/artifacts/bench/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
results="$out/results.jsonl"
secret=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
run_id=$(date +%s)
server_pids=()
redis_pid=
# What the servers must not inherit from the caller's shell: a 1-node run
# is plain, a 2-node run sets these itself.
unset REDIS_URL MONGODB_URI MONGODB_DB MONGO_TEST_SERVERS_PIDS
work=$(mktemp -d)

cleanup() {
  local pid
  for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${server_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$redis_pid" ]; then
    HUDDLE_REDIS_STATE_DIR="$work/redis" scripts/redis-test-server.sh stop || true
  fi
  if [ -n "${MONGO_TEST_SERVERS_PIDS:-}" ]; then mongo_test_servers_stop || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

{
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "pinning: servers (both nodes of a 2-node run, and Redis) on core 0, huddle-bench on core 1 (nx-27017 too, in 2-node runs)"
  echo "mode: $([ "$quick" = 1 ] && echo quick || echo full), ${duration} s measured after ${warmup} s warmup; idle connections: $conns; runs of each: $runs${only:+; only: $only}$([ "$skip_peer" = 0 ] || echo '; peer skipped')$([ "$by_turns" = 0 ] || echo '; peer and huddle by turns, rooms only')"
} | tee "$out/machine.txt" >&2

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (at most 30 s) until http://127.0.0.1:$1/health answers.
wait_up() {
  local port=$1 pid=$2 _
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { echo "server on port $port exited" >&2; return 1; }
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server on port $port did not come up" >&2
  return 1
}

# start_huddle PORT [VAR=VALUE...]: a huddle node on core 0; sets $started.
start_huddle() {
  local port=$1; shift
  local data
  data=$(mktemp -d "$work/huddle-data.XXXX")
  taskset -c 0 env HOST=127.0.0.1 PORT="$port" DATA_DIR="$data" JWT_SECRET="$secret" \
    RUST_LOG=warn \
    HUDDLE__RATE_LIMITS__SOCKET_EVENTS_PER_SECOND=0 \
    HUDDLE__RATE_LIMITS__HTTP_USER_PER_MINUTE=0 \
    HUDDLE__RATE_LIMITS__HTTP_IP_PER_MINUTE=0 \
    HUDDLE__RATE_LIMITS__SOCKET_HANDSHAKES_IP_PER_MINUTE=0 \
    HUDDLE__LIMITS__MAX_CONNECTIONS_PER_USER=1000 \
    HUDDLE__UPLOADS__HTTP_MAX_FILE_SIZE=$((64 * 1024 * 1024)) \
    "$@" "$HUDDLE_BIN" >"$out/huddle-$port.log" 2>&1 &
  started=$!
  server_pids+=("$started")
  wait_up "$port" "$started"
}

# start_peer PORT [VAR=VALUE...]: a peer node on core 0; sets $started.
start_peer() {
  local port=$1; shift
  taskset -c 0 env PORT="$port" JWT_SECRET="$secret" "$@" node bench/peer/server.js \
    >"$out/peer-$port.log" 2>&1 &
  started=$!
  server_pids+=("$started")
  wait_up "$port" "$started"
}

stop_servers() {
  local pid
  for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${server_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  server_pids=()
  sleep 1
}

# Whether runs labelled $1 are wanted (--only).
wanted() {
  [ -z "$only" ] || [[ "$1" == *"$only"* ]]
}

# CPU ticks used so far by the servers, Redis and the MongoDB stand-ins.
server_ticks() {
  local pid total=0
  for pid in "${server_pids[@]}" $redis_pid ${MONGO_TEST_SERVERS_PIDS:-}; do
    [ -r "/proc/$pid/stat" ] || continue
    # utime + stime: fields 14 and 15 (the command name has no spaces here).
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

# Waits (at most 60 s) until the servers are quiet: under 5 % of a core over
# a second. A run must not pay for the one before it (10,000 connections
# closing mean presence updates and their writes for seconds after).
settle() {
  local tck before after waited=0
  tck=$(getconf CLK_TCK)
  before=$(server_ticks)
  while [ "$waited" -lt 60 ]; do
    sleep 1
    waited=$((waited + 1))
    after=$(server_ticks)
    if [ $(((after - before) * 20)) -lt "$tck" ]; then break; fi
    before=$after
  done
  [ "$waited" -le 1 ] || log "waited ${waited} s for the servers to go quiet"
}

# huddle_pair: (re)starts the two nodes of a 2-node huddle run on a fresh
# database and Redis key prefix (dropping the last database) and points
# ${common[@]} at them.
pair=0
huddle_pair() {
  stop_servers
  if [ "$pair" -gt 0 ]; then
    "$_MTS_PY" -c 'import pymongo, sys; pymongo.MongoClient(sys.argv[1]).drop_database(sys.argv[2])' \
      "$MONGO_NX_URI" "bench_${run_id}_$pair" || true
  fi
  pair=$((pair + 1))
  local shared=(REDIS_URL="$redis_url" MONGODB_URI="$MONGO_NX_URI" MONGODB_DB="bench_${run_id}_$pair"
    HUDDLE__REDIS__KEY_PREFIX="bench-$run_id-$pair")
  local port_a port_b pid_a
  port_a=$(free_port)
  start_huddle "$port_a" "${shared[@]}"
  pid_a=$started
  port_b=$(free_port)
  start_huddle "$port_b" "${shared[@]}"
  common=(--url "http://127.0.0.1:$port_a" --url "http://127.0.0.1:$port_b"
    --server-pid "$pid_a" --server-pid "$started" --server-pid "$redis_pid")
  common+=(--db-pid "${MONGO_TEST_SERVERS_PIDS##* }") # nx-27017 (secantus idles)
}
before_run=
fresh=

# bench LABEL ARGS...: huddle-bench on core 1, $runs times, each line appended.
bench() {
  local label=$1; shift
  wanted "$label" || return 0
  local line run
  for run in $(seq 1 "$runs"); do
    [ -z "$before_run" ] || "$before_run"
    settle
    log "$label$([ "$runs" = 1 ] || echo " (run $run of $runs)")"
    line=$(taskset -c 1 "$BENCH_BIN" --jwt-secret "$secret" --label "$label" --source-ips 8 \
      --duration "$duration" --warmup "$warmup" "${common[@]}" "$@" 2>>"$out/bench.log") || true
    [ -n "$line" ] || line="{\"label\": \"$label\", \"error\": \"no result (see bench.log)\"}"
    echo "$line" >>"$results"
    echo "$line" | cut -c1-400 >&2
  done
}

# Whether the last rate step passed (loss < 1 %, p99 < 100 ms) in most of
# its $runs runs.
step_passed() {
  tail -n "$runs" "$results" | python3 -c '
import json, sys
rs = [json.loads(l) for l in sys.stdin if l.strip()]
ok = [
    "error" not in r and r.get("loss_pct", 100) < 1 and r.get("latency_ms", {}).get("p99", 1e9) < 100
    and r.get("connect_failed", 1) == 0
    for r in rs
]
sys.exit(0 if 2 * sum(ok) > len(ok) else 1)'
}

# suite NAME: every chat scenario against the servers in ${common[@]}.
suite() {
  local name=$1 saved=$before_run
  # Idle memory first, on fresh processes (every run of it: earlier runs
  # would have grown the heap already and hide what connections cost).
  before_run=$fresh
  bench "$name idle-conns" conns --connections "$conns" --hold "$hold"
  before_run=$saved
  bench "$name small-rooms" fanout --subscribers 1000 --rooms 100 --rate 2000
  bench "$name big-rooms" fanout --subscribers 1000 --rooms 10 --rate 250
  local rate ladder=$steps step
  wanted "$name max-rate" || ladder=0
  for step in $(seq 0 $((ladder - 1))); do
    # Steps of 2^(1/4) (250, 297, 354, 420, 500, … 9514 msg/s): four steps
    # are exactly 2×, so "2× the peer's" is a step count (doubling could not
    # tell 1.0× from 1.9×, steps of 1.25 put 1.95× and 2.44× side by side);
    # the last step is about where the bench's own core is full (98 % from
    # 8000 msg/s on, against huddle's batched writes); the quick mode only
    # checks that the ladder works.
    if [ "$quick" = 1 ]; then
      rate=$((250 * 4 ** step))
    else
      rate=$(awk -v s="$step" 'BEGIN { printf "%d", 250 * 2 ^ (s / 4) + 0.5 }')
    fi
    bench "$name max-rate $rate" fanout --subscribers 1000 --rooms 10 --rate "$rate"
    step_passed || break
  done
  bench "$name echo" echo --count "$echo_count"
}

uploads() {
  local size=$((upload_mb * 1024 * 1024))
  bench "huddle-1 upload base64 1x" upload --clients 1 --chunk-size 65536 --in-flight 8 --file-size "$size" --mode base64
  bench "huddle-1 upload base64 8x" upload --clients 8 --chunk-size 65536 --in-flight 8 --file-size "$((size / 4))" --mode base64
  bench "huddle-1 upload binary 1x" upload --clients 1 --chunk-size 65536 --in-flight 8 --file-size "$size" --mode binary
  bench "huddle-1 upload http 1x" upload --clients 1 --file-size "$size" --mode http
}

# The targets. Each function (re)starts its servers and points ${common[@]}
# at them; `fresh` names the one of the target being run.
peer_single() {
  stop_servers
  local port
  port=$(free_port)
  start_peer "$port"
  common=(--peer --url "http://127.0.0.1:$port" --server-pid "$started")
}
peer_pair() {
  stop_servers
  local port_a port_b pid_a
  port_a=$(free_port)
  start_peer "$port_a" REDIS_URL="$redis_url"
  pid_a=$started
  port_b=$(free_port)
  start_peer "$port_b" REDIS_URL="$redis_url"
  common=(--peer --url "http://127.0.0.1:$port_a" --url "http://127.0.0.1:$port_b"
    --server-pid "$pid_a" --server-pid "$started" --server-pid "$redis_pid")
}
huddle_single() {
  stop_servers
  local port
  port=$(free_port)
  start_huddle "$port"
  common=(--url "http://127.0.0.1:$port" --server-pid "$started")
}

# cluster_services: starts Redis (core 0) and nx-27017 (core 1) for the
# 2-node runs.
cluster_services() {
  log "starting Redis (core 0) and nx-27017 (core 1) for the 2-node runs"
  ENV_FILE="$work/redis.env" HUDDLE_REDIS_STATE_DIR="$work/redis" scripts/redis-test-server.sh start >&2
  # shellcheck source=/dev/null
  . "$work/redis.env"
  redis_url=$HUDDLE_TEST_REDIS_URL
  redis_pid=$(cat "$work/redis/pid")
  taskset -pc 0 "$redis_pid" >/dev/null
  # shellcheck source=scripts/mongo-test-servers.sh
  MONGO_TEST_SERVERS_ENV="$work/mongo.env"
  source "$root/scripts/mongo-test-servers.sh"
  mongo_test_servers_start
  # The database is not the server under test (the peer has none) and
  # nx-27017, a Python stand-in, costs many times MongoDB's CPU per insert:
  # on core 0 it took 40-60 % of the core the nodes are measured on and
  # pushed small rooms past saturation. It runs beside the bench instead;
  # huddle-bench reports its CPU apart (--db-pid).
  for pid in $MONGO_TEST_SERVERS_PIDS; do taskset -apc 1 "$pid" >/dev/null; done
}

if [ "$by_turns" = 1 ]; then
  log "peer and huddle, 1 node, measured by turns"
  stop_servers
  port=$(free_port)
  start_peer "$port"
  peer_common=(--peer --url "http://127.0.0.1:$port" --server-pid "$started")
  port=$(free_port)
  start_huddle "$port"
  huddle_common=(--url "http://127.0.0.1:$port" --server-pid "$started")
  turns=$runs
  runs=1
  for turn in $(seq 1 "$turns"); do
    log "turn $turn of $turns"
    for target in peer huddle; do
      if [ "$target" = peer ]; then common=("${peer_common[@]}"); else common=("${huddle_common[@]}"); fi
      bench "$target-1 small-rooms" fanout --subscribers 1000 --rooms 100 --rate 2000
      bench "$target-1 big-rooms" fanout --subscribers 1000 --rooms 10 --rate 250
    done
  done
  stop_servers
  if [ "$skip_2node" = 0 ]; then
    cluster_services
    log "peer and huddle, 2 nodes, measured by turns"
    for turn in $(seq 1 "$turns"); do
      log "turn $turn of $turns (2 nodes)"
      for target in peer huddle; do
        # Fresh servers for every run, as in the full suite (huddle's on a
        # fresh database: nx-27017 slows down as one grows).
        before_run=${target}_pair
        bench "$target-2 small-rooms" fanout --subscribers 1000 --rooms 100 --rate 2000
        bench "$target-2 big-rooms" fanout --subscribers 1000 --rooms 10 --rate 250
      done
    done
    before_run=
    stop_servers
  fi
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2
  python3 scripts/bench-table.py "$results" | tee "$out/table.md"
  echo "results: $results" >&2
  exit 0
fi

if [ "$skip_peer" = 0 ]; then
  log "peer, 1 node"
  fresh=peer_single
  peer_single
  suite peer-1
  stop_servers
fi

log "huddle, 1 node"
fresh=huddle_single
huddle_single
suite huddle-1
uploads
stop_servers

if [ "$skip_2node" = 0 ]; then
  cluster_services

  if [ "$skip_peer" = 0 ]; then
    log "peer, 2 nodes (Redis adapter)"
    fresh=peer_pair
    peer_pair
    suite peer-2
    stop_servers
  fi

  log "huddle, 2 nodes (Redis bridge, nx-27017 documents)"
  # Every run gets two fresh nodes on a fresh database (the one before is
  # dropped): nx-27017 slows down as a database grows (after the idle run's
  # 10,000 users a lookup by _id took 835 µs instead of 390, an insert of
  # five messages 1.9 ms instead of 0.9), which MongoDB's indexes do not.
  fresh=huddle_pair
  before_run=huddle_pair
  suite huddle-2
  before_run=
  stop_servers
fi

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt" >&2
python3 scripts/bench-table.py "$results" | tee "$out/table.md"
echo "results: $results" >&2
