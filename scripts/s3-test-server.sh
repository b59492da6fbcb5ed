#!/usr/bin/env bash
# Starts or stops the S3-compatible server the tests use: moto_server (from
# pip, installed quietly when missing) on a free loopback port.
#
#   scripts/s3-test-server.sh start   # starts it, writes $ENV_FILE
#   scripts/s3-test-server.sh stop    # stops the one `start` started
#
# $ENV_FILE (default target/s3-test-server.env) holds the exports the tests
# read: HUDDLE_TEST_S3_ENDPOINT (http://127.0.0.1:PORT) plus the dummy
# credentials moto accepts. Each test makes its own bucket there.
set -euo pipefail
cd "$(dirname "$0")/.."
state_dir=${HUDDLE_S3_STATE_DIR:-$PWD/target/s3-test-server}
env_file=${ENV_FILE:-$state_dir/env}
pid_file=$state_dir/pid

start() {
  mkdir -p "$state_dir"
  if ! command -v moto_server >/dev/null 2>&1; then
    python3 -m pip install --quiet 'moto[server]' flask flask-cors >/dev/null
  fi
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  moto_server -H 127.0.0.1 -p "$port" >"$state_dir/log" 2>&1 &
  echo $! >"$pid_file"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 \
      || python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" >/dev/null 2>&1; then
      cat >"$env_file" <<ENV
export HUDDLE_TEST_S3_ENDPOINT=http://127.0.0.1:$port
export HUDDLE_TEST_S3_PID=$(cat "$pid_file")
ENV
      echo "moto_server on http://127.0.0.1:$port (env: $env_file)"
      return 0
    fi
    sleep 0.1
  done
  echo "moto_server did not start; log:" >&2
  cat "$state_dir/log" >&2
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
