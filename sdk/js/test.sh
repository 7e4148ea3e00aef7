#!/usr/bin/env bash
# The TypeScript SDK's test command: installs its dependencies (npm ci, committed lockfile),
# compiles it with tsc and runs every test with node --test against real arqonbus nodes,
# real redis-server processes and a real headless Chromium.
#
# The arqonbus binary: $ARQONBUS_BIN when set, else `cargo build --release` in the repository
# root and target/release/arqonbus. Missing system packages (redis-server, chromium) are
# installed with apt-get.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get here: install ${missing[*]} and re-run" >&2
    exit 1
  fi
  as_root() {
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo "$@"; else "$@"; fi
  }
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  fi
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "the SDK tests need Node >= 20 (playwright-core); found $(node --version)" >&2
  exit 1
fi

if [ -z "${ARQONBUS_BIN:-}" ]; then
  echo "==> cargo build --release (the arqonbus binary the tests run)"
  (cd "$root" && cargo build --release --locked --bin arqonbus)
  export ARQONBUS_BIN="$root/target/release/arqonbus"
fi
echo "==> arqonbus: $ARQONBUS_BIN"

echo "==> npm ci"
npm ci --no-audit --no-fund

echo "==> tsc"
npm run --silent build

echo "==> node --test (unit tests, shared scenarios S01-S14, cross-language scripts, examples, Chromium)"
# One file at a time: the scenarios kill and restart nodes and time reconnects on a small machine.
# Every test has a deadline, and the runner exits when the tests are done even if a failed test
# left a connection open.
node --test --test-concurrency=1 --test-timeout=180000 --test-force-exit test/*.test.mjs
