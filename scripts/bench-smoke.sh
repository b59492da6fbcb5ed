#!/usr/bin/env bash
# The benchmark's CI smoke run: starts a debug `huddle` (the one
# scripts/test.sh built) on a free loopback port with a temporary DATA_DIR
# and default settings, and runs `huddle-bench smoke` against it — a few
# seconds of every scenario (idle connections, fan-out, echo, uploads as
# base64, binary and HTTP multipart), each checked for sane results: every
# connection stays, every message is delivered, every upload completes.
# No timing thresholds: speed is measured by scripts/bench-compare.sh.
#
# Usage: scripts/bench-smoke.sh   (HUDDLE_BIN / BENCH_BIN override the binaries)
set -euo pipefail
# A plain node on its embedded defaults, whatever the caller's shell exports.
unset REDIS_URL MONGODB_URI MONGODB_DB
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
huddle="${HUDDLE_BIN:-$target_dir/debug/huddle}"
bench="${BENCH_BIN:-$target_dir/debug/huddle-bench}"
for bin in "$huddle" "$bench"; do
  [ -x "$bin" ] || { echo "$bin is missing: cargo build --workspace first" >&2; exit 1; }
done

data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
secret=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
HOST=127.0.0.1 PORT="$port" DATA_DIR="$data" JWT_SECRET="$secret" RUST_LOG=warn \
  "$huddle" >"$data/huddle.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
  kill -0 "$pid" 2>/dev/null || { echo "huddle exited; its log:" >&2; cat "$data/huddle.log" >&2; exit 1; }
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done

if ! "$bench" --url "http://127.0.0.1:$port" --jwt-secret "$secret" --server-pid "$pid" smoke \
  >"$data/smoke.json"; then
  echo "huddle-bench smoke failed; its result:" >&2
  cat "$data/smoke.json" >&2
  echo "huddle's log:" >&2
  tail -n 50 "$data/huddle.log" >&2
  exit 1
fi
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
for x in r["results"]:
    what = x["scenario"] + (" " + x["mode"] if "mode" in x else "")
    print(f"  {what}: ok")
' "$data/smoke.json"
echo "huddle-bench smoke: ok"
