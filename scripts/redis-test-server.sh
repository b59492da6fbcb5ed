#!/usr/bin/env bash
# Starts or stops the Redis the tests share: one redis-server (from apt,
# installed when missing) on a free loopback port, in memory only (no RDB
# snapshots, no AOF), daemonized with its pid file under target/.
#
#   scripts/redis-test-server.sh start   # starts it, writes $ENV_FILE
#   scripts/redis-test-server.sh stop    # stops the one `start` started
#
# $ENV_FILE (default target/redis-test-server/env) holds the export the tests
# read: HUDDLE_TEST_REDIS_URL (redis://127.0.0.1:PORT/). Every test isolates
# itself with a key prefix of its own, so all of them share this one server.
set -euo pipefail
cd "$(dirname "$0")/.."
state_dir=${HUDDLE_REDIS_STATE_DIR:-$PWD/target/redis-test-server}
env_file=${ENV_FILE:-$state_dir/env}
pid_file=$state_dir/pid

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install() {
  command -v redis-server >/dev/null 2>&1 && return 0
  echo "installing redis-server from apt" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

start() {
  install
  mkdir -p "$state_dir"
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "a test Redis is already running (pid $(cat "$pid_file")); stopping it first" >&2
    stop
  fi
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --protected-mode yes --daemonize yes --pidfile "$pid_file" \
    --logfile "$state_dir/log" --dir "$state_dir"
  for _ in $(seq 1 100); do
    if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
      cat >"$env_file" <<ENV
export HUDDLE_TEST_REDIS_URL=redis://127.0.0.1:$port/
ENV
      echo "redis-server on 127.0.0.1:$port (env: $env_file)"
      return 0
    fi
    sleep 0.1
  done
  echo "redis-server did not start; log:" >&2
  cat "$state_dir/log" >&2 || true
  stop
  return 1
}

stop() {
  if [ -f "$pid_file" ]; then
    local pid
    pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null || true
    # Wait (up to 5 s) so the port is free when this returns.
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$pid_file" "$env_file"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
