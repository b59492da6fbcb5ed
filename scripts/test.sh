#!/usr/bin/env bash
# Runs huddle's whole test suite on a fresh Debian machine with the Rust
# toolchain: installs what the tests need (Node.js for the official
# socket.io-client suite), checks formatting and lints, builds once, then
# runs the Rust unit, integration and store conformance tests (the S3 blob
# store ones against moto_server, started on loopback and stopped on exit by
# scripts/s3-test-server.sh) and the Node client and protocol compliance
# suites against the built binaries.
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
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
node --version
cargo --version

log "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building once (server, examples, tests)"
cargo build --workspace --all-targets --locked

log "starting the S3-compatible test server (moto_server on loopback)"
export ENV_FILE="$root/target/s3-test-server.env"
trap 'scripts/s3-test-server.sh stop' EXIT
scripts/s3-test-server.sh start
# shellcheck source=/dev/null
. "$ENV_FILE"
export HUDDLE_TEST_S3_ENDPOINT

log "Rust tests: unit, integration, store conformance (embedded), S3 blob store"
cargo test --workspace --locked

log "Node client suites (official socket.io-client) and protocol compliance"
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
export HUDDLE_BIN="$root/target/debug/huddle"
export HUDDLE_ECHO_BIN="$root/target/debug/examples/protocol_echo"
(cd tests/node && node --test --test-concurrency=1 --test-timeout=120000 --test-reporter=spec)

log "all tests passed"
