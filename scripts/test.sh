#!/usr/bin/env bash
# Runs huddle's whole test suite on a fresh Debian machine with the Rust
# toolchain: installs what the tests need (Node.js for the official
# socket.io-client suite, Chromium for the test page, Python for the
# MongoDB-wire-compatible and S3-compatible test servers, redis-server),
# checks the Docker deployment files against the settings
# (scripts/check-deploy.sh), checks formatting and lints, builds once, starts
# the test servers (secantusdb and nx-27017 for MongoDB, moto_server for S3,
# redis-server, all on loopback), then runs the Rust unit, integration and
# store conformance tests (embedded and MongoDB backends, local and S3 blob
# stores, Redis-backed limits and upload state) and the Node client, protocol
# compliance and browser suites against the built binaries (browser
# screenshots land in artifacts/screenshots/), and a few seconds of
# huddle-bench against a debug node (scripts/bench-smoke.sh). The test
# servers are stopped on exit, whatever happens.
#
# Usage: scripts/test.sh            (from anywhere in the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

log "checking tools"
# make builds jemalloc, the binary's allocator (tikv-jemalloc-sys).
command -v make >/dev/null 2>&1 || apt_install make
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
# Headless Chromium for the real-browser test of the page (browser.test.mjs);
# playwright-core drives this system browser, it downloads none.
[ -x /usr/bin/chromium ] || apt_install chromium
command -v python3 >/dev/null 2>&1 && python3 -m venv --help >/dev/null 2>&1 \
  || apt_install python3 python3-venv python3-pip
node --version
python3 --version
cargo --version

log "deployment files agree with the settings (docker/, config/production.toml)"
scripts/check-deploy.sh

log "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Doc comments' links resolve (a moved or renamed item breaks them silently).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

log "building once (server, huddle-bench, examples, tests)"
cargo build --workspace --all-targets --locked

cleanup() {
  mongo_test_servers_stop || true
  scripts/s3-test-server.sh stop || true
  scripts/redis-test-server.sh stop || true
}
trap cleanup EXIT

log "starting the MongoDB-wire-compatible test servers (secantusdb, nx-27017)"
# shellcheck source=scripts/mongo-test-servers.sh
source "$root/scripts/mongo-test-servers.sh"
mongo_test_servers_start

log "starting the S3-compatible test server (moto_server on loopback)"
export ENV_FILE="$root/target/s3-test-server.env"
scripts/s3-test-server.sh start
# shellcheck source=/dev/null
. "$ENV_FILE"
export HUDDLE_TEST_S3_ENDPOINT

log "starting the test Redis (redis-server on loopback, in memory)"
export ENV_FILE="$root/target/redis-test-server.env"
scripts/redis-test-server.sh start
# shellcheck source=/dev/null
. "$ENV_FILE"
export HUDDLE_TEST_REDIS_URL
# Here Redis is always there: a Redis test that finds no server fails
# instead of passing vacuously.
export HUDDLE_TEST_REDIS_REQUIRED=1

log "Rust tests: unit, integration, store conformance (embedded, MongoDB on secantusdb and nx-27017${HUDDLE_TEST_MONGODB_URI:+ and HUDDLE_TEST_MONGODB_URI}), S3 blob store"
cargo test --workspace --locked

log "benchmark smoke run: huddle-bench smoke against a debug node (no timing thresholds)"
scripts/bench-smoke.sh

log "Node client suites (official socket.io-client) and protocol compliance"
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
export HUDDLE_BIN="$root/target/debug/huddle"
export HUDDLE_ECHO_BIN="$root/target/debug/examples/protocol_echo"
(cd tests/node && node --test --test-concurrency=1 --test-timeout=120000 --test-reporter=spec)

log "all tests passed"
