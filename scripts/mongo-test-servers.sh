#!/usr/bin/env bash
# Starts the two MongoDB-wire-compatible test servers the MongoDB store's
# conformance suite runs against (no real MongoDB can be installed on our
# machines), each in memory on a free loopback port:
#
#   secantusdb  (secantusd-py)  WiredTiger underneath: transactions, change
#                               streams; no text indexes
#   nx-27017    (nx-27017)      SQLite underneath: $text; no change streams
#
# Both come from PyPI and are installed with pip when missing.
#
# Usage:
#   scripts/mongo-test-servers.sh start [ENV_FILE]   start both, wait until they
#                                                    accept connections, write
#                                                    `export` lines to ENV_FILE
#                                                    (default target/mongo-test-servers.env)
#                                                    and print them
#   scripts/mongo-test-servers.sh stop [ENV_FILE]    stop the servers ENV_FILE names
#
# Or source it from another bash script, which gets the same as functions:
#   source scripts/mongo-test-servers.sh
#   mongo_test_servers_start        # exports MONGO_SECANTUS_URI, MONGO_NX_URI
#   trap mongo_test_servers_stop EXIT
#
# The URIs carry `directConnection=true`: secantusdb advertises itself as a
# single-node replica set whose member address is not necessarily the one we
# connect to, and a test only ever wants the server it started.

_mts_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MONGO_TEST_SERVERS_ENV="${MONGO_TEST_SERVERS_ENV:-$_mts_root/target/mongo-test-servers.env}"
MONGO_TEST_SERVERS_LOG_DIR="${MONGO_TEST_SERVERS_LOG_DIR:-${TMPDIR:-/tmp}/huddle-mongo-test-servers.$$}"

_mts_log() { printf '[mongo-test-servers] %s\n' "$*" >&2; }

# The Python that runs the readiness probe (it needs pymongo, which both
# servers depend on, so it is the one the servers were installed for).
_MTS_PY=python3

# Makes `secantusd-py` and `nx-27017` available: the ones already on PATH,
# else a virtualenv under target/ made once with pip (a venv rather than the
# system Python, which Debian marks as externally managed).
mongo_test_servers_install() {
  if command -v secantusd-py >/dev/null 2>&1 && command -v nx-27017 >/dev/null 2>&1; then
    return 0
  fi
  local venv="$_mts_root/target/mongo-test-servers-venv"
  if [ ! -x "$venv/bin/secantusd-py" ] || [ ! -x "$venv/bin/nx-27017" ]; then
    _mts_log "installing secantusdb and nx-27017 with pip into $venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check secantusdb nx-27017 >&2
  fi
  PATH="$venv/bin:$PATH"
  export PATH
  _MTS_PY="$venv/bin/python"
}

# Prints a loopback TCP port that is free right now.
_mts_free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# Waits until the server on PORT answers a `ping` (through pymongo, which
# both servers depend on), or fails after ~60 s, or at once when PID has died.
_mts_wait() {
  local name=$1 port=$2 pid=$3 log=$4
  local i
  for i in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then
      _mts_log "$name exited during start-up; its log:"
      tail -n 40 "$log" >&2
      return 1
    fi
    if "$_MTS_PY" - "$port" >/dev/null 2>&1 <<'EOF'
import sys
from pymongo import MongoClient
client = MongoClient("127.0.0.1", int(sys.argv[1]), directConnection=True,
                     serverSelectionTimeoutMS=500, connectTimeoutMS=500)
client.admin.command("ping")
EOF
    then
      return 0
    fi
    sleep 0.5
  done
  _mts_log "$name did not answer a ping on port $port within 60 s; its log:"
  tail -n 40 "$log" >&2
  return 1
}

mongo_test_servers_start() {
  mongo_test_servers_install
  mkdir -p "$MONGO_TEST_SERVERS_LOG_DIR" "$(dirname "$MONGO_TEST_SERVERS_ENV")"
  local secantus_port nx_port secantus_pid nx_pid
  secantus_port="$(_mts_free_port)"
  nx_port="$(_mts_free_port)"
  while [ "$nx_port" = "$secantus_port" ]; do nx_port="$(_mts_free_port)"; done

  local secantus_log="$MONGO_TEST_SERVERS_LOG_DIR/secantusdb.log"
  local nx_log="$MONGO_TEST_SERVERS_LOG_DIR/nx-27017.log"
  secantusd-py --host 127.0.0.1 --port "$secantus_port" --storage-path :memory: \
    --log-level WARNING >"$secantus_log" 2>&1 &
  secantus_pid=$!
  nx-27017 --db memory --host 127.0.0.1 -p "$nx_port" \
    --log-file "$MONGO_TEST_SERVERS_LOG_DIR/nx-27017.server.log" \
    --pid-file "$MONGO_TEST_SERVERS_LOG_DIR/nx-27017.pid" >"$nx_log" 2>&1 &
  nx_pid=$!

  MONGO_SECANTUS_URI="mongodb://127.0.0.1:$secantus_port/?directConnection=true"
  MONGO_NX_URI="mongodb://127.0.0.1:$nx_port/?directConnection=true"
  MONGO_TEST_SERVERS_PIDS="$secantus_pid $nx_pid"
  export MONGO_SECANTUS_URI MONGO_NX_URI MONGO_TEST_SERVERS_PIDS
  {
    echo "export MONGO_SECANTUS_URI='$MONGO_SECANTUS_URI'"
    echo "export MONGO_NX_URI='$MONGO_NX_URI'"
    echo "export MONGO_TEST_SERVERS_PIDS='$MONGO_TEST_SERVERS_PIDS'"
    echo "export MONGO_TEST_SERVERS_LOG_DIR='$MONGO_TEST_SERVERS_LOG_DIR'"
  } >"$MONGO_TEST_SERVERS_ENV"

  _mts_wait secantusdb "$secantus_port" "$secantus_pid" "$secantus_log" || { mongo_test_servers_stop; return 1; }
  _mts_wait nx-27017 "$nx_port" "$nx_pid" "$nx_log" || { mongo_test_servers_stop; return 1; }
  _mts_log "secantusdb on 127.0.0.1:$secantus_port (pid $secantus_pid), nx-27017 on 127.0.0.1:$nx_port (pid $nx_pid); logs in $MONGO_TEST_SERVERS_LOG_DIR"
}

# Stops the servers this shell started (or the ones the env file names) and
# removes their logs.
mongo_test_servers_stop() {
  local pids="${MONGO_TEST_SERVERS_PIDS:-}" logs="$MONGO_TEST_SERVERS_LOG_DIR"
  if [ -z "$pids" ] && [ -f "$MONGO_TEST_SERVERS_ENV" ]; then
    pids="$(sed -n "s/^export MONGO_TEST_SERVERS_PIDS='\(.*\)'$/\1/p" "$MONGO_TEST_SERVERS_ENV")"
    logs="$(sed -n "s/^export MONGO_TEST_SERVERS_LOG_DIR='\(.*\)'$/\1/p" "$MONGO_TEST_SERVERS_ENV")"
  fi
  local pid
  for pid in $pids; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $pids; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$MONGO_TEST_SERVERS_ENV"
  case "$logs" in */huddle-mongo-test-servers.*) rm -rf "$logs" ;; esac
  unset MONGO_TEST_SERVERS_PIDS
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    start)
      [ -n "${2:-}" ] && MONGO_TEST_SERVERS_ENV="$2"
      mongo_test_servers_start
      cat "$MONGO_TEST_SERVERS_ENV"
      ;;
    stop)
      [ -n "${2:-}" ] && MONGO_TEST_SERVERS_ENV="$2"
      mongo_test_servers_stop
      ;;
    *)
      echo "usage: $0 start|stop [ENV_FILE]" >&2
      exit 2
      ;;
  esac
fi
